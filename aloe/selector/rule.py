"""The ALOE rule (Xie et al., TMLR 2025) and its two halves alone, ``ood`` and ``kmeans``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from aloe.internal.arrays import BLOCK_ROWS
from aloe.selector.clustering import KMeansResult, kmeans, resolve_backend
from aloe.selector.config import SelectParams
from aloe.selector.heldout import threshold_scores
from aloe.selector.scores import compute_scores
from aloe.selector.selection import Selection
from aloe.selector.threshold import ood_threshold
from aloe.selector.view import RoundView


@dataclass
class Scored:
    """Per-item OOD scores, the threshold and the flags, with notes and step timings."""

    scores: np.ndarray
    name: str
    tau: float
    flagged: np.ndarray
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def selection_device(params: SelectParams) -> torch.device:
    """Where scores and k-means run: CUDA when there is a GPU and the k-means backend is not FAISS
    (``backend: faiss`` keeps everything on the CPU), else the CPU."""
    on_gpu = torch.cuda.is_available() and resolve_backend(params.backend) != "faiss"
    return torch.device("cuda") if on_gpu else torch.device("cpu")


def score_round(view: RoundView, params: SelectParams, seed: int = 0) -> Scored:
    """Steps 1-2: score every item, threshold at ``params.tpr`` over the labeled items, flag ``o > tau``.

    The labeled scores come from :func:`~aloe.selector.heldout.threshold_scores` (``seed`` draws
    the out-of-fold split).
    """
    started = time.perf_counter()
    result = compute_scores(view, params.score, knn_k=params.knn_k, device=selection_device(params))
    scored_at = time.perf_counter()
    notes = list(result.notes)
    labeled = threshold_scores(
        result.scores[view.labeled_positions], lambda: view.features[view.labeled_positions], view.labeled_classes,
        result.name, params, view.head, seed, notes,
    )
    tau = ood_threshold(labeled, params.tpr)
    flagged = result.scores > tau
    timings = {"scores": scored_at - started, "threshold": time.perf_counter() - scored_at}
    return Scored(result.scores, result.name, tau, flagged, notes, timings)


def top_positions(values: np.ndarray, positions: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` positions with the highest ``values`` (ties: lower position first)."""
    return positions[np.lexsort((positions, -values))[:count]]


def row_norms(block: np.ndarray) -> np.ndarray:
    """L2 norm of each float32 row, at least 1e-12 (what rows are divided by to normalize them)."""
    return np.maximum(np.sqrt(np.einsum("ij,ij->i", block, block)), np.float32(1e-12))


def cluster_input(view: RoundView, positions: np.ndarray, normalize: bool) -> np.ndarray:
    """Features of ``positions`` as one contiguous float32 array, L2-normalized when asked.

    Gathered and normalized in place block by block: the only full-size allocation is the output.
    """
    out = np.empty((len(positions), view.features.shape[1]), dtype=np.float32)
    for start in range(0, len(positions), BLOCK_ROWS):
        block = out[start : start + BLOCK_ROWS]
        np.take(view.features, positions[start : start + BLOCK_ROWS], axis=0, out=block)
        if normalize:
            block /= row_norms(block)[:, None]
    return out


def cuda_cluster_input(view: RoundView, positions: np.ndarray, normalize: bool) -> torch.Tensor:
    """Like :func:`cluster_input`, built straight into CUDA memory (no host copy).

    ``positions`` must be sorted ascending (as ``view.unlabeled_positions`` is): contiguous row
    blocks go to the GPU as they are and the wanted rows are picked and normalized there.
    """
    wanted = np.zeros(view.n_items, dtype=bool)
    wanted[positions] = True
    out = torch.empty((len(positions), view.features.shape[1]), dtype=torch.float32, device="cuda")
    filled = 0
    for start in range(0, view.n_items, BLOCK_ROWS):
        block = torch.from_numpy(view.features[start : start + BLOCK_ROWS]).to("cuda")
        block = block[torch.from_numpy(wanted[start : start + BLOCK_ROWS]).to("cuda")]
        out[filled : filled + len(block)] = torch.nn.functional.normalize(block, dim=1) if normalize else block
        filled += len(block)
    return out


def cluster_unlabeled(
    view: RoundView, k: int, seed: int, params: SelectParams, timings: dict[str, float]
) -> KMeansResult:
    """Step 3's k-means over the unlabeled items' (normalized) features; adds its timings.

    For the torch backend on CUDA the input goes to the GPU block by block; otherwise it is one
    contiguous host array (FAISS needs one): a copy of the unlabeled rows beside the view's features.
    """
    started = time.perf_counter()
    if resolve_backend(params.backend) == "torch" and torch.cuda.is_available():
        x = cuda_cluster_input(view, view.unlabeled_positions, params.normalize)
    else:
        x = cluster_input(view, view.unlabeled_positions, params.normalize)
    prepared = time.perf_counter()
    result = kmeans(
        x,
        k,
        seed=seed,
        niter=params.niter,
        backend=params.backend,
        max_points_per_centroid=params.max_points_per_centroid,
    )
    timings["prepare"] = prepared - started
    timings["kmeans"] = time.perf_counter() - prepared
    return result


def cluster_tensors(assignment: np.ndarray, scores: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``assignment`` as int64 and ``scores`` as float64 tensors, for the per-cluster reductions."""
    return (torch.from_numpy(np.asarray(assignment, dtype=np.int64)),
            torch.from_numpy(np.asarray(scores, dtype=np.float64)))


def cluster_max(cluster: torch.Tensor, score: torch.Tensor, k: int) -> torch.Tensor:
    """Highest ``score`` of each of the ``k`` clusters (``-inf`` for an empty one): one scatter."""
    return torch.full((k,), -torch.inf, dtype=torch.float64).scatter_reduce(0, cluster, score, "amax")


def rank_clusters(
    assignment: np.ndarray, scores: np.ndarray, flagged: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Steps 4-5: OOD ratio per cluster and the non-empty clusters in rank order.

    Rank: OOD ratio descending, then the cluster's highest ``o`` descending (the score of the first
    member it would give), then cluster id ascending (so the order is total and reproducible). When
    the ratios tie (at 0, when no item clears ``tau``) the rule is thus the ``B`` highest-``o`` items
    at most ``per_cluster`` per cluster. Returns ``(ratios (k,), ranked cluster ids)``.
    """
    counts = np.bincount(assignment, minlength=k)
    n_flagged = np.bincount(assignment, weights=flagged.astype(np.float64), minlength=k)
    ratios = n_flagged / np.maximum(counts, 1)
    top_scores = cluster_max(*cluster_tensors(assignment, scores), k).numpy()
    nonempty = np.flatnonzero(counts > 0)
    order = np.lexsort((nonempty, -top_scores[nonempty], -ratios[nonempty]))
    return ratios, nonempty[order]


def best_member(assignment: np.ndarray, scores: np.ndarray, positions: np.ndarray, k: int) -> np.ndarray:
    """Step 6: for each cluster, the position of its member with the highest ``scores`` (-1 if empty).

    Ties go to the lower position. Two O(N) scatter-reductions (highest score per cluster, then the
    lowest position among the members that reach it), no sort.
    """
    cluster, score = cluster_tensors(assignment, scores)
    best = cluster_max(cluster, score, k)
    hit = score == best[cluster]
    none = torch.iinfo(torch.int64).max
    position = torch.from_numpy(np.asarray(positions, dtype=np.int64))
    chosen = torch.full((k,), none, dtype=torch.int64).scatter_reduce(0, cluster[hit], position[hit], "amin")
    chosen[chosen == none] = -1
    return chosen.numpy()


def pick_from_top_clusters(
    assignment: np.ndarray, scores: np.ndarray, positions: np.ndarray, ranked: np.ndarray, k: int, budget: int,
    per_cluster: int,
) -> np.ndarray:
    """Step 6: up to ``per_cluster`` highest-score members of each of the top ``budget`` clusters of
    ``ranked``, and of those the ``budget`` with the highest scores.

    ``assignment``, ``scores`` and ``positions`` (ascending, as the callers' unlabeled positions are)
    cover the clustered items, in the same order. With ``per_cluster = 1`` this is the paper's step:
    the highest-score member of each top cluster. Ties go to the lower position. One
    :func:`best_member` pass per pick (O(N) each, no sort of the pool). The batch is ordered by pick
    (each cluster's best member first, then the runners-up), then by cluster rank.
    """
    top = ranked[:budget]
    items = np.arange(len(assignment))
    remaining = np.ones(len(assignment), dtype=bool)
    offers: list[np.ndarray] = []
    for pick in range(per_cluster):
        live = remaining if pick else slice(None)  # the first pass reads the arrays themselves, no copies
        best = best_member(assignment[live], scores[live], items[live], k)[top]
        offers.append(best)
        remaining[best[best >= 0]] = False
    offered = np.stack(offers)  # (pick, cluster rank) -> item, -1 where the cluster ran out
    chosen = offered[offered >= 0]  # in (pick, cluster rank) order
    kept = np.sort(np.lexsort((chosen, -scores[chosen]))[:budget])
    return positions[chosen[kept]]


def choose_from_clusters(
    unlabeled: np.ndarray,
    scores: np.ndarray,
    flagged: np.ndarray,
    assignment: np.ndarray,
    k: int,
    budget: int,
    per_cluster: int = 1,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Steps 4-6 from the clusters of the ``unlabeled`` positions: ``(batch, cluster ratios, notes)``.

    ``scores`` and ``flagged`` cover the whole pool; ``assignment`` the unlabeled positions, in order.
    The top ``budget`` clusters (:func:`rank_clusters`) each offer up to ``per_cluster`` of their
    highest-``o`` members and the batch is the ``budget`` highest-``o`` of those
    (:func:`pick_from_top_clusters`); when they offer fewer, the rest of the batch is the
    highest-``o`` items not yet taken.
    """
    unlabeled_scores = scores[unlabeled]
    ratios, ranked = rank_clusters(assignment, unlabeled_scores, flagged[unlabeled], k)
    chosen = pick_from_top_clusters(assignment, unlabeled_scores, unlabeled, ranked, k, budget, per_cluster)
    notes = []
    if len(chosen) < budget:
        rest = np.setdiff1d(unlabeled, chosen, assume_unique=True)
        fill = top_positions(scores[rest], rest, budget - len(chosen))
        chosen = np.concatenate([chosen, fill])
        notes.append(f"the top clusters offered {len(chosen) - len(fill)} items < budget {budget}: "
                     f"filled {len(fill)} by highest o")
    return chosen, ratios, notes


def select_aloe(view: RoundView, budget: int, seed: int, params: SelectParams) -> Selection:
    """ALOE: k-means with a surplus of clusters, then the most-OOD members of the most-OOD clusters.

    The rule: ``k = min(n_unlabeled, multiplier * max(B, C))``; clusters ranked by
    OOD ratio (ties: higher top ``o``, then lower cluster id); the top ``B`` each offer their
    ``per_cluster`` highest-``o`` unlabeled members (the paper: one) and the batch is the ``B``
    highest-``o`` offers; when they offer fewer than ``B`` the rest of the batch is the highest-``o``
    unlabeled items not yet taken.
    """
    scored = score_round(view, params, seed)
    timings = dict(scored.timings)
    unlabeled = view.unlabeled_positions
    k = aloe_k(len(unlabeled), budget, view.n_classes, params)
    result = cluster_unlabeled(view, k, seed, params, timings)
    scored.notes = [*scored.notes, *result.notes, f"k-means backend {result.backend}"]
    scored.timings = timings
    return aloe_from_clusters(scored, unlabeled, result.assignment, k, budget, seed, params)


def aloe_k(n_unlabeled: int, budget: int, n_classes: int, params: SelectParams) -> int:
    """Step 3's number of clusters: ``min(n_unlabeled, multiplier * max(B, C))``."""
    return min(n_unlabeled, params.multiplier * max(budget, n_classes))


def aloe_from_clusters(
    scored: Scored,
    unlabeled: np.ndarray,
    assignment: np.ndarray,
    k: int,
    budget: int,
    seed: int,
    params: SelectParams,
) -> Selection:
    """Steps 4-6 once the unlabeled positions are clustered (``assignment``, in their order).

    ``scored`` covers the whole pool; its notes and timings go into the selection (plus ``rank``).
    """
    started = time.perf_counter()
    chosen, ratios, notes = choose_from_clusters(
        unlabeled, scored.scores, scored.flagged, assignment, k, budget, params.per_cluster
    )
    clusters = np.full(len(scored.scores), -1, dtype=np.int64)
    clusters[unlabeled] = assignment
    return scored_selection(
        "aloe", scored, chosen, budget, seed, params, started, notes, clusters=clusters, cluster_ratios=ratios, k=k
    )


def scored_selection(
    strategy: str,
    scored: Scored,
    positions: np.ndarray,
    budget: int,
    seed: int,
    params: SelectParams,
    started: float,
    notes: list[str] | None = None,
    *,
    clusters: np.ndarray | None = None,
    cluster_ratios: np.ndarray | None = None,
    k: int | None = None,
) -> Selection:
    """The :class:`Selection` of a batch chosen from ``scored``: its scores, threshold, flags, notes
    (then ``notes``) and timings, plus ``rank``, the seconds since ``started`` (``time.perf_counter``).
    ALOE adds its ``clusters``, ``cluster_ratios`` and ``k``."""
    return Selection(
        strategy=strategy,
        budget=budget,
        seed=seed,
        params=params.model_dump(),
        positions=positions,
        scores=scored.scores,
        score_name=scored.name,
        tau=scored.tau,
        flagged=scored.flagged,
        notes=[*scored.notes, *(notes or [])],
        timings={**scored.timings, "rank": time.perf_counter() - started},
        clusters=clusters,
        cluster_ratios=cluster_ratios,
        k=k,
    )


def select_ood(view: RoundView, budget: int, seed: int, params: SelectParams) -> Selection:
    """ALOE's OOD half alone: the ``B`` unlabeled items with the highest ``o`` (ties: lower position)."""
    return ood_from_scores(score_round(view, params, seed), view.unlabeled_positions, budget, seed, params)


def ood_from_scores(
    scored: Scored, unlabeled: np.ndarray, budget: int, seed: int, params: SelectParams
) -> Selection:
    """The ``ood`` batch from the pool's scores: the top ``B`` unlabeled ``o``."""
    started = time.perf_counter()
    chosen = top_positions(scored.scores[unlabeled], unlabeled, budget)
    return scored_selection("ood", scored, chosen, budget, seed, params, started)


def select_kmeans(view: RoundView, budget: int, seed: int, params: SelectParams) -> Selection:
    """ALOE's diversity half alone: ``k = B`` clusters, the member nearest each centroid.

    Clusters are taken largest first (ties: lower id); with fewer than ``B`` non-empty clusters the
    rest is a seeded uniform sample of the remaining unlabeled items.
    """
    timings: dict[str, float] = {}
    unlabeled = view.unlabeled_positions
    result = cluster_unlabeled(view, budget, seed, params, timings)
    started = time.perf_counter()
    assignment = result.assignment
    nearest = best_member(assignment, -result.sq_distance, unlabeled, budget)
    nonempty = np.flatnonzero(nearest >= 0)
    sizes = np.bincount(assignment, minlength=budget)[nonempty]
    chosen = nearest[nonempty][np.lexsort((nonempty, -sizes))]
    notes = [*result.notes, f"k-means backend {result.backend}"]
    if len(chosen) < budget:
        rest = np.setdiff1d(unlabeled, chosen, assume_unique=True)
        fill = np.random.default_rng(seed).choice(rest, budget - len(chosen), replace=False)
        chosen = np.concatenate([chosen, fill])
        notes.append(f"only {len(nonempty)} non-empty clusters: filled {len(fill)} at random")
    timings["rank"] = time.perf_counter() - started
    clusters = np.full(view.n_items, -1, dtype=np.int64)
    clusters[unlabeled] = assignment
    return Selection(
        strategy="kmeans",
        budget=budget,
        seed=seed,
        params=params.model_dump(),
        positions=chosen,
        clusters=clusters,
        k=budget,
        notes=notes,
        timings=timings,
    )
