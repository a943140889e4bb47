"""Lloyd's k-means over rows that arrive in blocks, on one rank or many.

The rows are a :class:`RowSource`: an in-memory tensor, a cache of stored rows, or one rank's shard
of them. Every iteration streams the blocks once, accumulates per-cluster sums (float64) and counts,
and all-reduces them over the ranks, so memory is the ``k x D`` centroids, an ``O(n)`` vector of
distances and one ``block x k`` distance block, never an ``n x k`` matrix.

The initial centroids are the rows FAISS would pick for the same seed (the first ``k`` of its
``rand_perm(n, seed + 1)``), and a training sample is the first ``m`` of ``rand_perm(n, seed)``, as
FAISS draws its own subsample: on data with well-separated clusters the torch and FAISS backends
give the same clusters. An emptied cluster is handled as FAISS does (a populous one is split).
What remains different is float rounding: FAISS sums in float32, this code in float64, so a point
almost equidistant from two centroids may go either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import faiss
import numpy as np
import torch

from aloe.internal.dist import Comm

_SPARSE_DRAWS = 100_000  # up to this many draws, a sparse Fisher-Yates beats shuffling all n rows


class RowSource(Protocol):
    """Rows ``[offset, offset + n_rows)`` of the clustered set, held by this rank."""

    offset: int
    n_rows: int
    dim: int

    def blocks(self) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(local start, float32 block)`` on the compute device, in row order."""
        ...

    def take(self, local_rows: np.ndarray) -> torch.Tensor:
        """The given local rows as a float32 tensor on the compute device."""
        ...


class TensorSource:
    """A :class:`RowSource` over one in-memory tensor, ``block_rows`` rows at a time."""

    def __init__(self, x: torch.Tensor, block_rows: int, offset: int = 0) -> None:
        self.x, self.block_rows, self.offset = x, block_rows, offset
        self.n_rows, self.dim = x.shape

    def blocks(self) -> Iterator[tuple[int, torch.Tensor]]:
        """See :meth:`RowSource.blocks`."""
        for start in range(0, self.n_rows, self.block_rows):
            yield start, self.x[start : start + self.block_rows]

    def take(self, local_rows: np.ndarray) -> torch.Tensor:
        """See :meth:`RowSource.take`."""
        return self.x[torch.from_numpy(np.asarray(local_rows, dtype=np.int64)).to(self.x.device)]


def faiss_permutation_head(n: int, count: int, seed: int) -> np.ndarray:
    """The first ``count`` entries of FAISS's ``rand_perm(n, seed)``, as int64.

    A sparse Fisher-Yates over FAISS's own generator for small ``count`` (memory ``O(count)``),
    the full permutation otherwise.
    """
    count = min(count, n)
    if count > _SPARSE_DRAWS:
        perm = np.empty(n, dtype=np.int32)
        faiss.rand_perm(faiss.swig_ptr(perm), n, seed)
        return perm[:count].astype(np.int64)
    generator = faiss.RandomGenerator(seed)
    moved: dict[int, int] = {}
    head = np.empty(count, dtype=np.int64)
    for i in range(count):
        j = i + generator.rand_int(n - i) if i + 1 < n else i
        head[i] = moved.get(j, j)
        moved[j] = moved.get(i, i)
    return head


def initial_rows(n: int, k: int, seed: int) -> np.ndarray:
    """Rows whose values start the ``k`` centroids: those FAISS's k-means picks for ``seed`` (with
    exactly ``k`` rows, FAISS takes them in order, whatever the seed)."""
    return np.arange(k) if n == k else faiss_permutation_head(n, k, seed + 1)


def training_sample(n: int, size: int, seed: int) -> np.ndarray:
    """The seeded training sample of ``size`` rows out of ``n``, in FAISS's order."""
    return faiss_permutation_head(n, size, seed)


@contextmanager
def _matmul_precision(device: torch.device) -> Iterator[None]:
    """TF32 distance matmuls on CUDA; the CPU stays in full float32."""
    previous = torch.get_float32_matmul_precision()
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def nearest(
    block: torch.Tensor, centroids: torch.Tensor, centroid_sq: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of each row of ``block`` and the squared distance to it."""
    dist = torch.addmm(centroid_sq, block, centroids.T, alpha=-2.0)
    best, index = dist.min(dim=1)
    return index, (best + (block * block).sum(dim=1)).clamp_min_(0.0)


def global_rows(source: RowSource, rows: np.ndarray, comm: Comm) -> torch.Tensor:
    """Rows at global indices ``rows``, on every rank: each rank fills those it holds, then a sum."""
    rows = np.asarray(rows, dtype=np.int64)
    out = torch.zeros((len(rows), source.dim), dtype=torch.float64)
    mine = (rows >= source.offset) & (rows < source.offset + source.n_rows)
    if mine.any():
        out[torch.from_numpy(mine)] = source.take(rows[mine] - source.offset).double().cpu()
    return comm.all_reduce(out).float()


def assign(source: RowSource, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid and squared distance for every local row (tensors on the centroids' device)."""
    assignment = torch.empty(source.n_rows, dtype=torch.int64, device=centroids.device)
    sq_distance = torch.empty(source.n_rows, dtype=torch.float32, device=centroids.device)
    centroid_sq = (centroids * centroids).sum(dim=1)
    with _matmul_precision(centroids.device):
        for start, block in source.blocks():
            index, distance = nearest(block, centroids, centroid_sq)
            assignment[start : start + len(block)] = index
            sq_distance[start : start + len(block)] = distance
    return assignment, sq_distance


def split_empty_clusters(centroids: np.ndarray, counts: np.ndarray, n: int) -> int:
    """Give each empty cluster half of a populous one, in place, exactly as FAISS does.

    FAISS's ``split_clusters``: for each empty cluster in turn, walk the clusters from the first,
    picking cluster ``j`` with probability ``(count_j - 1) / (n - k)`` (its generator seeded 1234);
    copy its centroid with a symmetric relative perturbation of 1/1024 and split its count in two.
    ``centroids`` is float32 ``k x D``; ``counts`` float32. Returns how many clusters were split.
    """
    k, dim = centroids.shape
    generator = faiss.RandomGenerator(1234)
    signs = np.where(np.arange(dim) % 2 == 0, 1.0, -1.0) / 1024.0
    split = 0
    for empty in np.flatnonzero(counts == 0):
        donor = 0
        while True:
            chance = np.float32((np.float64(counts[donor]) - 1.0) / np.float64(np.float32(n - k)))
            if np.float32(generator.rand_float()) < chance:
                break
            donor = (donor + 1) % k
        source = centroids[donor].astype(np.float64)
        centroids[empty] = (source * (1.0 + signs)).astype(np.float32)
        centroids[donor] = (source * (1.0 - signs)).astype(np.float32)
        counts[empty] = counts[donor] / np.float32(2)
        counts[donor] -= counts[empty]
        split += 1
    return split


def lloyd(
    source: RowSource,
    n_total: int,
    k: int,
    seed: int,
    niter: int,
    comm: Comm,
    device: torch.device,
    init: np.ndarray | None = None,
) -> torch.Tensor:
    """``niter`` Lloyd iterations over ``n_total`` rows spread over the ranks; the ``k x D`` centroids.

    Every rank starts from the same rows (``init``, default :func:`initial_rows`) and ends with the same centroids;
    an emptied cluster takes half of a populous one (:func:`split_empty_clusters`).
    """
    init = initial_rows(n_total, k, seed) if init is None else init
    centroids = global_rows(source, init, comm).to(device)
    for _ in range(niter):
        sums = torch.zeros((k, source.dim), dtype=torch.float64, device=device)
        counts = torch.zeros(k, dtype=torch.int64, device=device)
        centroid_sq = (centroids * centroids).sum(dim=1)
        with _matmul_precision(device):
            for start, block in source.blocks():
                cluster, _ = nearest(block, centroids, centroid_sq)
                counts += torch.bincount(cluster, minlength=k)
                # index_put_ with accumulate is deterministic on CUDA too (index_add_ uses atomics there)
                sums.index_put_((cluster,), block.double(), accumulate=True)
        comm.all_reduce(sums)
        comm.all_reduce(counts)
        filled = counts > 0
        centroids[filled] = (sums[filled] / counts[filled].unsqueeze(1).double()).float()
        if not filled.all():
            host = centroids.cpu().numpy()
            split_empty_clusters(host, counts.cpu().numpy().astype(np.float32), n_total)
            centroids = torch.from_numpy(host).to(device)
    return centroids
