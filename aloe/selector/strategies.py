"""The strategy registry and the one entry point every strategy runs through.

A strategy is ``select(view, budget, seed, params) -> Selection``. :func:`run_strategy` handles what
is common to all of them: checking the budget, a budget that covers every unlabeled item, the cold
start (no labels: a uniform sample, recorded), and attaching the OOD scores, ``tau`` and flags to
every selection so that batches of different strategies can be compared item by item.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from aloe.errors import AloeError
from aloe.selector.baselines import (
    make_uncertainty_strategy,
    random_batch,
    select_badge,
    select_coreset,
    select_random,
)
from aloe.selector.config import SelectParams
from aloe.selector.rule import rank_clusters, score_round, select_aloe, select_kmeans, select_ood
from aloe.selector.selection import Selection
from aloe.selector.view import RoundView

SelectFn = Callable[[RoundView, int, int, SelectParams], Selection]


@dataclass(frozen=True)
class Strategy:
    """A registered strategy: its function, whether it needs labels, and a one-line summary."""

    name: str
    select: SelectFn
    needs_labels: bool
    summary: str


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("aloe", select_aloe, True, "most-OOD members of the most-OOD k-means clusters (default)"),
        Strategy("random", select_random, False, "uniform sample"),
        Strategy("confidence", make_uncertainty_strategy("confidence"), True, "lowest top softmax"),
        Strategy("margin", make_uncertainty_strategy("margin"), True, "smallest top-2 softmax margin"),
        Strategy("entropy", make_uncertainty_strategy("entropy"), True, "highest softmax entropy"),
        Strategy("coreset", select_coreset, True, "k-center greedy from the labeled set"),
        Strategy("badge", select_badge, True, "k-means++ seeding on gradient embeddings"),
        Strategy("ood", select_ood, True, "top-B OOD score (ALOE without clustering)"),
        Strategy("kmeans", select_kmeans, False, "member nearest each of B centroids (ALOE without OOD)"),
    )
}


def _attach_scores(view: RoundView, selection: Selection, params: SelectParams) -> None:
    """Fill in ``o``, ``tau``, flags (and cluster OOD ratios) for a selection that did not score."""
    scored = score_round(view, params, selection.seed)
    selection.scores, selection.score_name = scored.scores, scored.name
    selection.tau, selection.flagged = scored.tau, scored.flagged
    selection.notes.extend(scored.notes)
    selection.timings.update({f"{step} (record)": s for step, s in scored.timings.items()})
    if selection.clusters is not None and selection.k:
        unlabeled = view.unlabeled_positions
        assignment = selection.clusters[unlabeled]
        selection.cluster_ratios, _ = rank_clusters(
            assignment, scored.scores[unlabeled], scored.flagged[unlabeled], selection.k
        )


def trivial_selection(
    name: str, budget: int, seed: int, params: SelectParams, unlabeled: np.ndarray, n_labeled: int
) -> Selection | None:
    """The cases every strategy shares, or ``None`` when the strategy itself must run.

    Raises :class:`AloeError` for an unknown strategy, ``budget <= 0``, a seed outside
    ``[0, 2**31)`` or no unlabeled items. A budget of at least the number of unlabeled items takes
    all of them (in position order); with no labels at all, a strategy that needs labels is
    replaced by a uniform sample. Both cases are written to ``notes``.
    """
    if name not in STRATEGIES:
        raise AloeError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if budget <= 0:
        raise AloeError(f"budget must be > 0, got {budget}")
    if not 0 <= seed < 2**31:
        raise AloeError(f"seed must be in [0, 2**31), got {seed}")
    if len(unlabeled) == 0:
        raise AloeError("every pool item is labeled: nothing left to select")
    if budget >= len(unlabeled):
        selection = Selection(name, budget, seed, params.model_dump(), positions=unlabeled.copy())
        selection.notes.append(f"budget {budget} >= {len(unlabeled)} unlabeled items: took them all")
        return selection
    if STRATEGIES[name].needs_labels and n_labeled == 0:
        selection = random_batch(unlabeled, budget, seed, params)
        selection.strategy = name
        selection.notes.append("cold start: no labeled items, so a uniform random sample")
        return selection
    return None


def run_strategy(
    view: RoundView, name: str, budget: int, seed: int = 0, params: SelectParams | None = None
) -> Selection:
    """Select ``budget`` unlabeled items of ``view`` with strategy ``name``.

    The shared cases and errors are :func:`trivial_selection`'s; scores, ``tau`` and flags are
    attached to every selection made with labels. Timings include a ``total``.
    """
    params = params or SelectParams()
    started = time.perf_counter()
    selection = trivial_selection(name, budget, seed, params, view.unlabeled_positions, len(view.labeled_positions))
    if selection is None:
        selection = STRATEGIES[name].select(view, budget, seed, params)
    if selection.scores is None and len(view.labeled_positions):
        _attach_scores(view, selection, params)
    selection.positions = np.asarray(selection.positions, dtype=np.int64)
    selection.timings["total"] = time.perf_counter() - started
    return selection
