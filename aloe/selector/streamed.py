"""Selection that streams a round's features from the store: out of core, and sharded over ranks.

One pass over this rank's rows (all rows in one process, a contiguous chunk-aligned share under
``torchrun``) reads the store a block at a time, checks the values, scores every row and keeps
what k-means trains on, as float32 (normalized): the candidates' rows, or with ``kmeans_sample``
only the sampled ones, which are then assigned in a second streamed pass. The threshold comes from every rank's labeled
scores; k-means is :func:`aloe.selector.lloyd.lloyd` with sums and counts all-reduced; the per-item
scores and clusters are gathered and the batch chosen with the same functions as the in-memory rule
(:func:`aloe.selector.rule.aloe_from_clusters`), so both paths pick the same batch from the same
clusters. Host memory: ``O(N)`` vectors, the ``k x D`` centroids and one block, plus the kept rows:
the candidates' float32 features (none on CUDA, where they live on the GPU), or only the sample.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from aloe.errors import AloeError
from aloe.internal.dist import Comm
from aloe.selector.clustering import default_block_rows, training_notes
from aloe.selector.config import SelectConfig, SelectParams
from aloe.selector.lloyd import TensorSource, assign, initial_rows, lloyd, training_sample
from aloe.selector.rule import Scored, aloe_from_clusters, aloe_k, ood_from_scores, row_norms, selection_device
from aloe.selector.scores import KnnScorer, combine_parts, gpu_or_none, resolve_score, score_block, score_parts
from aloe.selector.selection import Selection
from aloe.selector.strategies import trivial_selection
from aloe.selector.heldout import threshold_scores
from aloe.selector.threshold import ood_threshold
from aloe.selector.view import candidate_positions, check_finite, excluded_positions

STREAMED_STRATEGIES = ("aloe", "ood")
IN_MEMORY_PEAK = 2.5  # the in-memory path's peak host memory over the float32 features (bench/select)
READ_ROWS = 16_384  # rows read at a time (rounded to whole chunks): the one block held beyond O(N)


def available_memory() -> int | None:
    """Bytes the kernel says a new allocation can get (``MemAvailable``), ``None`` when unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def streaming_reason(config: SelectConfig, n_items: int, dim: int, comm: Comm) -> str | None:
    """Why this selection streams from the store, or ``None`` for the in-memory path (FAISS fits).

    Raises :class:`AloeError` for a request only one of the paths can serve.
    """
    params = config.params()
    reason = None
    if comm.sharded:
        reason = f"sharded over {comm.world} ranks"
    elif params.kmeans_sample is not None:
        reason = f"k-means trained on a sample of {params.kmeans_sample}"
    elif params.stream == "always":
        reason = "asked for (stream: always)"
    elif params.stream == "auto":
        available = available_memory()
        needed = IN_MEMORY_PEAK * n_items * dim * 4
        if available is not None and needed > 0.8 * available:
            reason = f"the in-memory path needs about {needed / 2**30:.1f} GiB, {available / 2**30:.1f} GiB free"
    if reason is None:
        return None
    if params.stream == "never":
        raise AloeError(f"this selection must stream from the store ({reason}) but stream is 'never'")
    if config.strategy not in STREAMED_STRATEGIES:
        raise AloeError(
            f"strategy {config.strategy!r} runs in one process, in memory; streamed ({reason}) are: "
            f"{', '.join(STREAMED_STRATEGIES)}"
        )
    return reason


def read_block_rows(reader: Any) -> int:
    """Rows per read: whole chunks, about :data:`READ_ROWS`."""
    return reader.chunk_rows * max(1, READ_ROWS // reader.chunk_rows)


def unit_block(rows: np.ndarray, normalize: bool, device: torch.device) -> torch.Tensor:
    """Stored rows as float32 on ``device``, each divided by its norm when ``normalize``
    (:func:`aloe.selector.rule.row_norms`, exactly as the in-memory path's k-means input)."""
    rows32 = rows.astype(np.float32)
    if normalize:
        rows32 /= row_norms(rows32)[:, None]
    return torch.from_numpy(rows32).to(device)


class StoreRows:
    """This rank's candidate rows read again from the store, a block at a time: a ``RowSource``."""

    def __init__(self, reader: Any, shard: Shard, normalize: bool, device: torch.device) -> None:
        self.reader, self.shard, self.normalize, self.device = reader, shard, normalize, device
        self.offset, self.n_rows, self.dim = shard.first, shard.n_candidates_here, reader.feature_dim

    def blocks(self) -> Iterator[tuple[int, torch.Tensor]]:
        """See :class:`aloe.selector.lloyd.RowSource`."""
        done, shard = 0, self.shard
        for start, rows, _ in self.reader.iter_blocks(read_block_rows(self.reader), shard.start, shard.stop, None):
            rows = rows[shard.is_candidate(start, start + len(rows))]
            yield done, unit_block(rows, self.normalize, self.device)
            done += len(rows)

    def take(self, local_rows: np.ndarray) -> torch.Tensor:
        """See :class:`aloe.selector.lloyd.RowSource`."""
        positions = self.shard.candidates[self.shard.first + np.asarray(local_rows, dtype=np.int64)]
        return unit_block(self.reader.features(positions, dtype=None), self.normalize, self.device)


@dataclass
class Shard:
    """This rank's rows ``[start, stop)`` and where its candidates sit among all candidates."""

    start: int
    stop: int
    candidates: np.ndarray  # sorted positions of every candidate in the pool

    @property
    def first(self) -> int:
        """Index (among all candidates) of this rank's first candidate."""
        return int(np.searchsorted(self.candidates, self.start))

    @property
    def n_candidates_here(self) -> int:
        """How many candidates fall in ``[start, stop)``."""
        return int(np.searchsorted(self.candidates, self.stop)) - self.first

    def is_candidate(self, start: int, stop: int) -> np.ndarray:
        """Boolean mask of the candidates among rows ``[start, stop)``."""
        mask = np.zeros(stop - start, dtype=bool)
        lo, hi = np.searchsorted(self.candidates, [start, stop])
        mask[self.candidates[lo:hi] - start] = True
        return mask


@dataclass
class FirstPass:
    """What one pass over the shard leaves: its scores (one column per part of the score), and the
    kept rows (float32, normalized)."""

    scores: np.ndarray
    kept: torch.Tensor
    seconds_read: float
    seconds_score: float


def first_pass(
    reader: Any,
    ids: np.ndarray,
    shard: Shard,
    score_name: str,
    knn: KnnScorer | None,
    labeled_mask: np.ndarray,
    keep: np.ndarray,
    normalize: bool,
    device: torch.device,
) -> FirstPass:
    """Read, check and score rows ``[shard.start, shard.stop)``; keep the rows at the sorted pool
    positions ``keep`` (k-means' training rows) as float32 on ``device``, normalized when asked."""
    scores = np.empty((shard.stop - shard.start, len(score_parts(score_name))), dtype=np.float32)
    kept = torch.empty((len(keep), reader.feature_dim), dtype=torch.float32, device=device)
    read_s = score_s = 0.0
    blocks = reader.iter_blocks(read_block_rows(reader), shard.start, shard.stop, None)
    while True:
        began = time.perf_counter()
        start, features, logits = next(blocks, (None, None, None))
        if start is None:
            break
        stop = start + len(features)
        read = time.perf_counter()
        check_finite("features", features, ids, offset=start)
        check_finite("logits", logits, ids, offset=start)
        scores[start - shard.start : stop - shard.start] = score_block(
            score_name, knn, features, logits, labeled_mask[start:stop]
        )
        lo, hi = np.searchsorted(keep, [start, stop])
        if hi > lo:
            kept[lo:hi] = unit_block(features[keep[lo:hi] - start], normalize, device)
        read_s += read - began
        score_s += time.perf_counter() - read
    return FirstPass(scores, kept, read_s, score_s)


def select_streamed(reader: Any, ids: np.ndarray, config: SelectConfig, comm: Comm, reason: str) -> Selection:
    """Run ``config`` on a store round, streaming its features (see the module docstring).

    Every rank returns the same :class:`Selection`; rank 0 is the one that records it.
    """
    started = time.perf_counter()
    params: SelectParams = config.params()
    n_items = reader.n_items
    labeled = np.asarray(reader.labeled_positions, dtype=np.int64)
    excluded = excluded_positions(reader)
    if len(excluded) and (excluded.min() < 0 or excluded.max() >= n_items):
        raise AloeError(f"excluded positions must lie in [0, {n_items})")
    candidates = candidate_positions(n_items, labeled, excluded)
    notes = [f"streamed from the store: {reason}"]
    trivial = trivial_selection(config.strategy, config.budget, config.seed, params, candidates, len(labeled))
    if trivial is not None and len(labeled) == 0:
        trivial.notes[:0] = notes
        return trivial
    score_name, score_notes = resolve_score(params.score, len(reader.class_names))
    shard = Shard(*comm.row_range(n_items, reader.chunk_rows), candidates)
    device = comm.device if comm.device.type == "cuda" else selection_device(params)
    knn = KnnScorer(reader.features(np.sort(labeled)), params.knn_k, gpu_or_none(device)) \
        if "knn" in score_parts(score_name) else None
    clustering = trivial is None and config.strategy == "aloe"
    n_candidates = len(candidates)
    k = aloe_k(n_candidates, config.budget, len(reader.class_names), params) if clustering else 0
    if clustering and params.kmeans_sample is not None and params.kmeans_sample < k:
        raise AloeError(
            f"--kmeans-sample {params.kmeans_sample} is below the {k} clusters k-means makes (multiplier "
            f"{params.multiplier} x max(budget {config.budget}, {len(reader.class_names)} classes), at most the "
            f"{n_candidates} candidates): pass --kmeans-sample {k} or more (several times k trains better), "
            "or a smaller --budget or --multiplier"
        )
    sample = None
    train_first, train_stop = shard.first, shard.first + shard.n_candidates_here  # k-means rows held here
    if clustering and params.kmeans_sample is not None and params.kmeans_sample < n_candidates:
        drawn = training_sample(n_candidates, params.kmeans_sample, config.seed)
        sample = np.sort(drawn)
        train_first, train_stop = np.searchsorted(sample, [train_first, train_stop])
    keep = np.zeros(0, dtype=np.int64)
    if clustering:
        keep = candidates[sample[train_first:train_stop]] if sample is not None else candidates[train_first:train_stop]
    error = None
    try:
        labeled_mask = np.zeros(n_items, dtype=bool)
        labeled_mask[labeled] = True
        pass_ = first_pass(reader, ids, shard, score_name, knn, labeled_mask, keep, params.normalize, device)
    except AloeError as exc:
        error = exc
    comm.agree(error)
    timings = {"read": pass_.seconds_read, "scores": pass_.seconds_score}
    began = time.perf_counter()
    scores = combine_parts(score_name, comm.concat(pass_.scores))
    labeled_scores = scores[labeled]
    labeled_scores = threshold_scores(
        labeled_scores, lambda: reader.features(labeled), reader.labeled_classes, score_name, params,
        reader.provenance.get("head"), config.seed, score_notes,
    )
    tau = ood_threshold(labeled_scores, params.tpr)
    timings["threshold"] = time.perf_counter() - began
    scored = Scored(scores, score_name, tau, scores > tau, [*notes, *score_notes], timings)
    if trivial is not None:
        trivial.scores, trivial.score_name, trivial.tau, trivial.flagged = scores, score_name, tau, scored.flagged
        trivial.notes[:0] = scored.notes
        trivial.timings.update(timings)
        return trivial
    if config.strategy == "ood":
        return ood_from_scores(scored, candidates, config.budget, config.seed, params)

    began = time.perf_counter()
    n_train = len(sample) if sample is not None else n_candidates
    scored.notes.extend(training_notes(n_candidates, k, n_train if sample is not None else None))
    init = None
    if sample is not None:
        init = np.searchsorted(sample, drawn[initial_rows(len(sample), k, config.seed)])
    block_rows = default_block_rows(k)
    train = TensorSource(pass_.kept, block_rows, offset=int(train_first))
    centroids = lloyd(train, n_train, k, config.seed, params.niter, comm, device, init=init)
    timings["kmeans"] = time.perf_counter() - began
    began = time.perf_counter()
    rows = train if sample is None else StoreRows(reader, shard, params.normalize, device)
    assignment = comm.concat(assign(rows, centroids)[0].cpu().numpy())
    timings["assign"] = time.perf_counter() - began
    scored.notes.append(f"k-means backend torch-{device.type} (streamed Lloyd, FAISS's initial centroids)")
    selection = aloe_from_clusters(scored, candidates, assignment, k, config.budget, config.seed, params)
    selection.timings["streamed"] = time.perf_counter() - started
    return selection
