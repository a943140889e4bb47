"""The simulation's selection step: run a strategy on a store round, or reuse the one recorded there."""

from __future__ import annotations

import warnings

import numpy as np

from aloe.selector.clustering import FewPointsPerClusterWarning
from aloe.selector.config import SelectParams
from aloe.selector.strategies import run_strategy
from aloe.selector.view import RoundView
from aloe.store import Store


def round_seed(seed: int, t: int) -> int:
    """The selector's seed in round ``t`` of a run seeded ``seed`` (distinct per round, reproducible)."""
    return int(np.random.SeedSequence([seed, t]).generate_state(1)[0] >> 1)


def selection_name(strategy: str, budget: int) -> str:
    """Name of the simulation's selection record in the store."""
    return f"sim-{strategy}-b{budget}"


def select_batch(
    store: Store, t: int, strategy: str, budget: int, seed: int, params: SelectParams
) -> tuple[list[str], float]:
    """The batch ids chosen on round ``t`` and the selection's seconds.

    A selection recorded earlier (an interrupted run) is read back instead of rerun. k-means's
    warning about few points per cluster (expected on small pools) is not shown.
    """
    name = selection_name(strategy, budget)
    if name not in store.selections(t):
        view = RoundView.from_round(store.round(t), store.ids)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FewPointsPerClusterWarning)
            selection = run_strategy(view, strategy, budget, round_seed(seed, t), params)
        record_selection(store, t, name, selection)
    attrs, arrays = store.read_selection(t, name)
    return [str(i) for i in arrays["chosen_ids"]], float(attrs["timings"]["total"])


def record_selection(store: Store, t: int, name: str, selection) -> None:
    """TEMPORARY until the selector's recording lands."""
    ids = store.ids[selection.positions]
    store.write_selection(t, name, {"strategy": selection.strategy, "timings": selection.timings},
                          {"chosen_ids": np.asarray(ids).astype(str), "positions": selection.positions})
