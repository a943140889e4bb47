"""Baseline strategies: random, uncertainty (confidence, margin, entropy), coreset and BADGE.

Strategies that need logits over at least two classes fall back to a seeded uniform sample (and
say so) when the round has fewer; the registry in :mod:`aloe.selector.strategies` handles cold
starts and budgets that cover the whole unlabeled set before any of these runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import faiss
import numpy as np
import torch

from aloe.internal.arrays import BLOCK_ROWS
from aloe.selector.config import SelectParams
from aloe.selector.rule import top_positions
from aloe.selector.selection import Selection
from aloe.selector.view import RoundView


def select_random(view: RoundView, budget: int, seed: int, params: SelectParams) -> Selection:
    """A uniform sample of ``B`` unlabeled items (``numpy.random.default_rng(seed)``)."""
    return random_batch(view.unlabeled_positions, budget, seed, params)


def random_batch(unlabeled: np.ndarray, budget: int, seed: int, params: SelectParams) -> Selection:
    """A uniform sample of ``budget`` of the ``unlabeled`` positions, seeded."""
    chosen = np.random.default_rng(seed).choice(unlabeled, budget, replace=False)
    return Selection("random", budget, seed, params.model_dump(), positions=chosen.astype(np.int64))


def _least_confidence(probs: torch.Tensor) -> torch.Tensor:
    return 1.0 - probs.max(dim=1).values


def _smallest_margin(probs: torch.Tensor) -> torch.Tensor:
    top2 = probs.topk(2, dim=1).values
    return -(top2[:, 0] - top2[:, 1])


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=1)


UNCERTAINTY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "confidence": _least_confidence,
    "margin": _smallest_margin,
    "entropy": _entropy,
}


def uncertainty(view: RoundView, positions: np.ndarray, kind: str) -> np.ndarray:
    """Uncertainty of the items at ``positions`` (higher = more uncertain), from softmaxed logits."""
    out = np.empty(len(positions), dtype=np.float32)
    function = UNCERTAINTY[kind]
    for start in range(0, len(positions), BLOCK_ROWS):
        logits = torch.from_numpy(view.logits[positions[start : start + BLOCK_ROWS]])
        out[start : start + len(logits)] = function(torch.softmax(logits, dim=1)).numpy()
    return out


def _fallback_random(view: RoundView, budget: int, seed: int, params: SelectParams, name: str) -> Selection:
    selection = select_random(view, budget, seed, params)
    selection.strategy = name
    selection.notes.append(f"{name} needs >= 2 known classes, the round has {view.n_classes}: uniform random")
    return selection


def make_uncertainty_strategy(kind: str) -> Callable[[RoundView, int, int, SelectParams], Selection]:
    """A strategy taking the ``B`` most uncertain unlabeled items under ``kind`` (ties: lower position)."""

    def select(view: RoundView, budget: int, seed: int, params: SelectParams) -> Selection:
        if view.n_classes < 2:
            return _fallback_random(view, budget, seed, params, kind)
        started = time.perf_counter()
        unlabeled = view.unlabeled_positions
        chosen = top_positions(uncertainty(view, unlabeled, kind), unlabeled, budget)
        timings = {"rank": time.perf_counter() - started}
        return Selection(kind, budget, seed, params.model_dump(), positions=chosen, timings=timings)

    select.__doc__ = f"Uncertainty sampling by {kind}: the B unlabeled items where it is highest."
    return select


def _row_scale(view: RoundView, normalize: bool) -> np.ndarray:
    """Per-row factor applied to features: ``1/||h||`` when normalizing, else 1 (an O(N) vector)."""
    if not normalize:
        return np.ones(view.n_items, dtype=np.float32)
    norms = np.empty(view.n_items, dtype=np.float32)
    for start in range(0, view.n_items, BLOCK_ROWS):
        norms[start : start + BLOCK_ROWS] = np.linalg.norm(view.features[start : start + BLOCK_ROWS], axis=1)
    return 1.0 / np.maximum(norms, np.float32(1e-12))


def select_coreset(view: RoundView, budget: int, seed: int, params: SelectParams) -> Selection:
    """Core-set (Sener & Savarese 2018): k-center greedy from the labeled set.

    Each step takes the unlabeled item farthest from every labeled or already chosen item (ties: lower
    position). Distances are computed against one new centre at a time over ``BLOCK_ROWS``-row
    gathers, so memory is O(N) plus a block: never ``N x N`` and no second copy of the features.
    Features are L2-normalized unless ``params.normalize`` is False. Deterministic (no randomness).
    """
    started = time.perf_counter()
    unlabeled = view.unlabeled_positions
    scale = _row_scale(view, params.normalize)
    labeled = np.sort(view.labeled_positions)
    index = faiss.IndexFlatL2(view.features.shape[1])
    index.add(view.features[labeled] * scale[labeled, None])
    nearest = np.empty(len(unlabeled), dtype=np.float32)
    for start in range(0, len(unlabeled), BLOCK_ROWS):
        rows = unlabeled[start : start + BLOCK_ROWS]
        nearest[start : start + len(rows)] = index.search(view.features[rows] * scale[rows, None], 1)[0][:, 0]
    sq_norm = np.empty(len(unlabeled), dtype=np.float32)
    for start in range(0, len(unlabeled), BLOCK_ROWS):
        rows = unlabeled[start : start + BLOCK_ROWS]
        sq_norm[start : start + len(rows)] = (np.square(view.features[rows]).sum(axis=1)) * scale[rows] ** 2
    chosen = np.empty(budget, dtype=np.int64)
    for step in range(budget):
        j = int(np.argmax(nearest))
        chosen[step] = unlabeled[j]
        centre = view.features[unlabeled[j]] * scale[unlabeled[j]]
        for start in range(0, len(unlabeled), BLOCK_ROWS):
            rows = unlabeled[start : start + BLOCK_ROWS]
            dots = (view.features[rows] @ centre) * scale[rows]
            dist = sq_norm[start : start + len(rows)] + sq_norm[j] - 2.0 * dots
            np.minimum(nearest[start : start + len(rows)], dist, out=nearest[start : start + len(rows)])
        nearest[j] = -np.inf
    timings = {"rank": time.perf_counter() - started}
    return Selection("coreset", budget, seed, params.model_dump(), positions=chosen, timings=timings)


def select_badge(view: RoundView, budget: int, seed: int, params: SelectParams) -> Selection:
    """BADGE (Ash et al. 2020): k-means++ seeding over last-layer gradient embeddings.

    The gradient embedding of item ``i`` under its predicted label is ``g_i = a_i (x) h_i`` with
    ``a_i = softmax(z_i) - onehot(argmax z_i)``. Its squared distances follow from the outer-product
    structure, ``||g_i - g_j||^2 = |a_i|^2 |h_i|^2 + |a_j|^2 |h_j|^2 - 2 (a_i . a_j)(h_i . h_j)``, so
    the ``N x (C * D)`` embedding matrix is never built: memory is the ``N x C`` probabilities plus
    O(N) vectors and one block of gathered features. The first centre is the largest gradient (as
    in the authors' code), each next one is drawn with probability proportional to the squared
    distance to the nearest centre, from ``numpy.random.default_rng(seed)``.
    """
    if view.n_classes < 2:
        return _fallback_random(view, budget, seed, params, "badge")
    started = time.perf_counter()
    unlabeled = view.unlabeled_positions
    a = np.empty((len(unlabeled), view.n_classes), dtype=np.float32)
    h_sq = np.empty(len(unlabeled), dtype=np.float32)
    for start in range(0, len(unlabeled), BLOCK_ROWS):
        rows = unlabeled[start : start + BLOCK_ROWS]
        probs = torch.softmax(torch.from_numpy(view.logits[rows]), dim=1).numpy()
        probs[np.arange(len(rows)), probs.argmax(axis=1)] -= 1.0
        a[start : start + len(rows)] = probs
        h_sq[start : start + len(rows)] = np.square(view.features[rows]).sum(axis=1)
    g_sq = np.square(a).sum(axis=1) * h_sq
    rng = np.random.default_rng(seed)
    nearest = np.full(len(unlabeled), np.inf, dtype=np.float64)
    chosen = np.empty(budget, dtype=np.int64)
    j = int(np.argmax(g_sq))
    for step in range(budget):
        chosen[step] = j
        h_j = view.features[unlabeled[j]]
        for start in range(0, len(unlabeled), BLOCK_ROWS):
            rows = unlabeled[start : start + BLOCK_ROWS]
            cross = (a[start : start + len(rows)] @ a[j]) * (view.features[rows] @ h_j)
            dist = np.maximum(g_sq[start : start + len(rows)] + g_sq[j] - 2.0 * cross, 0.0)
            np.minimum(nearest[start : start + len(rows)], dist, out=nearest[start : start + len(rows)])
        nearest[chosen[: step + 1]] = 0.0
        total = nearest.sum()
        if step + 1 < budget:
            if total > 0:
                j = int(rng.choice(len(unlabeled), p=nearest / total))
            else:
                j = int(rng.choice(np.setdiff1d(np.arange(len(unlabeled)), chosen[: step + 1])))
    timings = {"rank": time.perf_counter() - started}
    return Selection("badge", budget, seed, params.model_dump(), positions=unlabeled[chosen], timings=timings)
