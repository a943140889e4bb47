"""OOD scores, oriented so that **higher means more likely unknown**.

The logit scores are pure functions of a block of rows (torch tensors on any device); the ``knn``
score needs the labeled set and runs through FAISS. :func:`compute_scores` applies a score to a whole
:class:`~aloe.selector.view.RoundView` block by block, and falls back to ``knn`` (saying so) when the
round has fewer than two known classes, where the logit scores mean nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import faiss
import numpy as np
import torch

from aloe.errors import AloeError
from aloe.internal.arrays import BLOCK_ROWS
from aloe.selector.view import RoundView


def gradnorm(features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """GradNorm (Huang et al. 2021), negated: ``-||h||_1 * sum_k |softmax(z)_k - 1/C|``.

    For a linear head ``z = W h + b`` and the loss ``KL(u || softmax(z))`` against the uniform label
    ``u`` (Huang et al.'s code uses the cross-entropy to ``u``, which differs by a constant), the
    gradient with respect to ``W`` is ``(softmax(z) - 1/C) h^T``; its entry-wise L1 norm is
    ``||h||_1 * sum_k |softmax(z)_k - 1/C|``, exactly the score Huang et al. compute with autograd.
    The form ``||h||_1 * sum_k |C softmax(z)_k - 1|`` is ``C`` times larger:
    within a round ``C`` is fixed, so the ranking, the threshold's flags and the batch are the same.
    In-distribution items have large gradient norms, so the score is negated.
    """
    probs = torch.softmax(logits.float(), dim=1)
    spread = (probs - 1.0 / logits.shape[1]).abs().sum(dim=1)
    return -(torch.linalg.vector_norm(features.float(), ord=1, dim=1) * spread)


def energy(features: torch.Tensor, logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Free energy ``-T * logsumexp(z / T)`` (Liu et al. 2020); higher for unknown items."""
    return -temperature * torch.logsumexp(logits.float() / temperature, dim=1)


def msp(features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Negated maximum softmax probability (Hendrycks & Gimpel 2017)."""
    return -torch.softmax(logits.float(), dim=1).max(dim=1).values


def maxlogit(features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Negated maximum logit (Hendrycks et al. 2022)."""
    return -logits.float().max(dim=1).values


LOGIT_SCORES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "gradnorm": gradnorm,
    "energy": energy,
    "msp": msp,
    "maxlogit": maxlogit,
}
MIXES: dict[str, tuple[str, ...]] = {"msp+knn": ("msp", "knn")}
"""Scores that mix others by rank: what the head is unsure of, and what lies far from every label."""
SCORES: tuple[str, ...] = (*LOGIT_SCORES, "knn", *MIXES)


def score_parts(name: str) -> tuple[str, ...]:
    """The plain scores that score ``name`` is made of (itself, unless it is a mix)."""
    return MIXES.get(name, (name,))


def rank_mix(*components: np.ndarray) -> np.ndarray:
    """Mean over ``components`` (each ``(N,)``, higher = more unknown) of each item's percentile rank.

    An item's percentile rank in a component is its average rank (ties share it) divided by ``N``,
    in ``(0, 1]``; the mix is their mean, as float32. It needs every item's score, so it is taken
    once the whole pool is scored.
    """
    mixed = np.zeros(len(components[0]), dtype=np.float64)
    for values in components:
        _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
        last = np.cumsum(counts)
        mixed += ((last - (counts - 1) / 2.0) / len(values))[inverse]
    return (mixed / len(components)).astype(np.float32)


def unit_rows(block: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as float32."""
    block = np.asarray(block, dtype=np.float32)
    norms = np.linalg.norm(block, axis=1, keepdims=True)
    return block / np.maximum(norms, np.float32(1e-12))


KNN_MATMUL_ELEMENTS = 1 << 27  # rows x labeled distances one torch step holds (512 MiB of float32)
EXACT_ELEMENTS = 1 << 24  # row x neighbour x dimension differences one exact-distance step holds (64 MiB)


def exact_sq_distances(rows: np.ndarray, labeled: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """Squared distances from ``rows`` to their ``neighbours`` (indices into ``labeled``), ascending.

    Summed element by element, the same way whatever the thread count (a matrix product's rounding
    depends on how BLAS splits it), so equal distances come out equal: two labels that are each
    other's nearest, or duplicate rows, tie exactly and share their rank in :func:`rank_mix`.
    """
    out = np.empty(neighbours.shape, dtype=np.float32)
    step = max(1, EXACT_ELEMENTS // max(1, neighbours.shape[1] * rows.shape[1]))
    for start in range(0, len(rows), step):
        stop = start + step
        out[start:stop] = np.square(rows[start:stop, None, :] - labeled[neighbours[start:stop]]).sum(axis=2)
    out.sort(axis=1)
    return out


def gpu_or_none(device: str | torch.device) -> torch.device | None:
    """``device`` when it is a GPU (where :class:`KnnScorer` runs on torch), else ``None`` (FAISS)."""
    device = torch.device(device)
    return device if device.type == "cuda" else None


class KnnScorer:
    """The ``knn`` score of any block of rows against a fixed labeled set (Sun et al. 2022).

    Distance from each L2-normalized row to its ``k``-th nearest labeled row. With no ``device``, a
    flat FAISS index of the labeled rows (CPU); with a torch ``device`` (a GPU), the labeled rows live
    there and each block's distances are one matrix product, in row slices of at most
    :data:`KNN_MATMUL_ELEMENTS` distances. Memory is ``L x D`` plus one slice, never ``N x L``. A
    labeled row does not count as its own neighbour (leave-one-out), so the labeled items' scores
    are honest for the threshold. With fewer labeled rows than ``k`` the farthest available one is
    used; a lone labeled item scores 0.
    """

    def __init__(self, labeled_features: np.ndarray, k: int = 1, device: str | torch.device | None = None) -> None:
        if len(labeled_features) == 0:
            raise AloeError("the knn score needs at least one labeled item")
        if k < 1:
            raise AloeError(f"knn k must be >= 1, got {k}")
        self.k = k
        self.total = len(labeled_features)
        self.device = None if device is None else torch.device(device)
        self.unit_labeled = unit_rows(labeled_features)
        if self.device is None:
            self.index = faiss.IndexFlatL2(labeled_features.shape[1])
            self.index.add(self.unit_labeled)
        else:
            self.labeled = torch.from_numpy(self.unit_labeled).to(self.device)
            self.labeled_sq = (self.labeled * self.labeled).sum(dim=1)

    def nearest(self, rows: np.ndarray, count: int) -> np.ndarray:
        """Squared distances from the unit ``rows`` to their ``count`` nearest labeled rows, ascending:
        the neighbours found by FAISS (on the GPU, by a matrix product), their distances then summed
        element by element (:func:`exact_sq_distances`; on the GPU the same sum in torch)."""
        if self.device is None:
            return exact_sq_distances(rows, self.unit_labeled, self.index.search(rows, count)[1])
        out = np.empty((len(rows), count), dtype=np.float32)
        step = max(1, KNN_MATMUL_ELEMENTS // max(self.total, count * rows.shape[1]))
        with torch.no_grad():
            for start in range(0, len(rows), step):
                block = torch.from_numpy(rows[start : start + step]).to(self.device)
                squared = (block * block).sum(dim=1, keepdim=True) + self.labeled_sq - 2.0 * block @ self.labeled.T
                found = torch.topk(squared, count, dim=1, largest=False).indices
                exact = (block[:, None, :] - self.labeled[found]).square().sum(dim=2)  # as exact_sq_distances
                out[start : start + step] = exact.sort(dim=1).values.cpu().numpy()
        return out

    def block(self, rows: np.ndarray, is_labeled: np.ndarray) -> np.ndarray:
        """Scores of ``rows`` (float32); ``is_labeled`` marks the rows that are in the index."""
        total = self.total
        dist = np.sqrt(np.maximum(self.nearest(unit_rows(rows), min(self.k + 1, total)), 0.0))
        scores = dist[:, min(self.k, total) - 1].copy()
        labeled_col = min(self.k, total - 1)
        scores[is_labeled] = dist[is_labeled, labeled_col] if labeled_col >= 1 else 0.0
        return scores.astype(np.float32)


def score_block(
    name: str,
    knn: KnnScorer | None,
    features: np.ndarray,
    logits: np.ndarray | None,
    labeled: np.ndarray,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """``(rows, parts)`` float32: each plain score that ``name`` is made of (:func:`score_parts`), for
    one block of rows. ``knn`` scores the ``knn`` part (``labeled`` marks the block's rows that are in
    its index); ``logits`` are only read by logit scores."""
    columns = []
    for part in score_parts(name):
        if part == "knn":
            columns.append(knn.block(features, labeled))
        else:
            with torch.no_grad():
                h, z = torch.from_numpy(features).to(device), torch.from_numpy(logits).to(device)
                columns.append(LOGIT_SCORES[part](h, z).cpu().numpy())
    return np.stack(columns, axis=1)


def combine_parts(name: str, parts: np.ndarray) -> np.ndarray:
    """Score ``name`` for the whole pool from its parts' columns (``N x parts``): their rank mix for a
    mix (:data:`MIXES`), the one column otherwise."""
    return rank_mix(*parts.T) if name in MIXES else np.ascontiguousarray(parts[:, 0])


def _pool_parts(
    name: str,
    knn: KnnScorer | None,
    features: np.ndarray,
    logits: np.ndarray | None,
    labeled_positions: np.ndarray,
    block_rows: int,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """:func:`score_block` over every row, ``block_rows`` rows at a time: ``(N, parts)``."""
    labeled = np.zeros(len(features), dtype=bool)
    labeled[labeled_positions] = True
    out = np.empty((len(features), len(score_parts(name))), dtype=np.float32)
    for start in range(0, len(features), block_rows):
        stop = min(start + block_rows, len(features))
        block_logits = None if logits is None else logits[start:stop]
        out[start:stop] = score_block(name, knn, features[start:stop], block_logits, labeled[start:stop], device)
    return out


def knn_scores(
    features: np.ndarray,
    labeled_positions: np.ndarray,
    k: int = 1,
    block_rows: int = BLOCK_ROWS,
) -> np.ndarray:
    """:class:`KnnScorer` over every row of ``features``, ``block_rows`` rows at a time."""
    positions = np.asarray(labeled_positions, dtype=np.int64)
    scorer = KnnScorer(features[np.sort(positions)], k)
    return _pool_parts("knn", scorer, features, None, positions, block_rows)[:, 0]


@dataclass
class ScoreResult:
    """Per-item scores over the whole pool and which score produced them."""

    scores: np.ndarray  # (N,) float32, higher = more likely unknown
    name: str  # the score actually used
    notes: list[str] = field(default_factory=list)


def resolve_score(name: str, n_classes: int) -> tuple[str, list[str]]:
    """The score to use and a note: a logit score with fewer than two known classes becomes ``knn``.

    Raises :class:`AloeError` for an unknown score name.
    """
    if name not in SCORES:
        raise AloeError(f"unknown score {name!r}; choose one of {', '.join(SCORES)}")
    if name != "knn" and n_classes < 2:
        return "knn", [f"{name} needs >= 2 known classes, the round has {n_classes}: used knn"]
    return name, []


def compute_scores(
    view: RoundView,
    name: str = "msp+knn",
    *,
    knn_k: int = 1,
    device: str | torch.device = "cpu",
    block_rows: int = BLOCK_ROWS,
) -> ScoreResult:
    """Score every pool item of ``view`` with score ``name``, ``block_rows`` rows at a time.

    A logit score with fewer than two known classes falls back to ``knn`` and adds a note.
    Raises :class:`AloeError` for an unknown score name or a round without labeled items.
    """
    name, notes = resolve_score(name, view.n_classes)
    positions = np.asarray(view.labeled_positions, dtype=np.int64)
    knn = None
    if "knn" in score_parts(name):
        knn = KnnScorer(view.features[np.sort(positions)], knn_k, gpu_or_none(device))
    parts = _pool_parts(name, knn, view.features, view.logits, positions, block_rows, device)
    return ScoreResult(combine_parts(name, parts), name, notes)
