"""k-means for the diversity stage: FAISS (GPU when it has one, else CPU) or a blocked torch Lloyd.

Both backends use every training point by default (FAISS otherwise subsamples to 256 points per
centroid without a word), warn when there are fewer than 39 points per cluster, and are seeded: the
same seed gives the same clusters on a CPU. Neither ever holds an ``N x k`` distance matrix: FAISS
searches in blocks internally and the torch backend assigns ``block_rows`` rows at a time.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import faiss
import numpy as np
import torch

from aloe.errors import AloeError
from aloe.internal.dist import Comm
from aloe.selector.lloyd import TensorSource, assign, lloyd, training_sample

BACKENDS = ("auto", "faiss", "torch")
MIN_POINTS_PER_CLUSTER = 39
DEFAULT_NITER = 20


class FewPointsPerClusterWarning(UserWarning):
    """Fewer than 39 training points per cluster: the centroids will be noisy."""


@dataclass
class KMeansResult:
    """Centroids, each point's cluster and squared distance to it, and how it was computed."""

    centroids: np.ndarray  # (k, D) float32
    assignment: np.ndarray  # (n,) int64
    sq_distance: np.ndarray  # (n,) float32, to the assigned centroid
    backend: str  # "faiss-cpu", "faiss-gpu", "torch-cpu", "torch-cuda"
    seconds: float
    notes: list[str] = field(default_factory=list)


def faiss_has_gpu() -> bool:
    """True when the installed FAISS was built with GPU support and sees a GPU."""
    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def resolve_backend(backend: str) -> str:
    """``auto`` -> ``faiss`` when FAISS has a GPU, else ``torch`` when CUDA is available, else ``faiss``."""
    if backend not in BACKENDS:
        raise AloeError(f"unknown k-means backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    if faiss_has_gpu():
        return "faiss"
    return "torch" if torch.cuda.is_available() else "faiss"


def _faiss_kmeans(
    x: np.ndarray, k: int, niter: int, seed: int, max_points_per_centroid: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    gpu = faiss_has_gpu()
    cap = max_points_per_centroid if max_points_per_centroid is not None else math.ceil(len(x) / k) + 1
    kmeans = faiss.Kmeans(
        x.shape[1],
        k,
        niter=niter,
        seed=seed,
        max_points_per_centroid=cap,
        min_points_per_centroid=1,  # our own warning replaces FAISS's stderr line
        verbose=False,
        gpu=gpu,
    )
    kmeans.train(x)
    sq_distance, assignment = kmeans.index.search(x, 1)
    backend = "faiss-gpu" if gpu else "faiss-cpu"
    return kmeans.centroids, assignment[:, 0].astype(np.int64), sq_distance[:, 0], backend


def training_notes(n: int, k: int, sample: int | None) -> list[str]:
    """Notes on k-means training (and a :class:`FewPointsPerClusterWarning` below 39 points per cluster).

    ``sample`` is the size of the training sample, ``None`` when every one of the ``n`` points trains.
    """
    notes = []
    if n < MIN_POINTS_PER_CLUSTER * k:
        message = f"{n} points for {k} clusters is fewer than {MIN_POINTS_PER_CLUSTER} per cluster"
        warnings.warn(message, FewPointsPerClusterWarning, stacklevel=3)
        notes.append(message)
    if sample is not None and n > sample:
        notes.append(f"trained on {sample} sampled points of {n}")
    return notes


def default_block_rows(k: int) -> int:
    """Rows per distance block: about 64M distance entries (``block x k``), at least 1,024 rows."""
    return max(1024, (1 << 26) // max(k, 1))


def torch_kmeans(
    x: np.ndarray | torch.Tensor,
    k: int,
    *,
    niter: int = DEFAULT_NITER,
    seed: int = 0,
    device: str | torch.device | None = None,
    block_rows: int | None = None,
    max_points_per_centroid: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lloyd's k-means in torch (:func:`aloe.selector.lloyd.lloyd`) on one in-memory array.

    Starts from the rows FAISS's k-means starts from for the same seed; assignment runs
    ``block_rows`` rows at a time (default :func:`default_block_rows`), so memory is the data, the
    centroids and one ``block_rows x k`` block. An emptied cluster takes half of a populous one, as
    in FAISS. On CUDA the distance matmuls use TF32. ``max_points_per_centroid`` trains on
    FAISS's seeded sample of ``k * max_points_per_centroid`` rows (the final assignment covers all
    rows). Returns centroids, assignment and squared distances, on ``device``.
    """
    device = torch.device(device) if device is not None else (x.device if torch.is_tensor(x) else torch.device("cpu"))
    data = torch.as_tensor(x).to(device=device, dtype=torch.float32)
    n = len(data)
    block_rows = block_rows or default_block_rows(k)
    train = data
    if max_points_per_centroid is not None and n > k * max_points_per_centroid:
        train = data[torch.from_numpy(training_sample(n, k * max_points_per_centroid, seed)).to(device)]
    centroids = lloyd(TensorSource(train, block_rows), len(train), k, seed, niter, Comm(), device)
    assignment, sq_distance = assign(TensorSource(data, block_rows), centroids)
    return centroids, assignment, sq_distance


def kmeans(
    x: np.ndarray | torch.Tensor,
    k: int,
    *,
    seed: int = 0,
    niter: int = DEFAULT_NITER,
    backend: str = "auto",
    max_points_per_centroid: int | None = None,
) -> KMeansResult:
    """Cluster the rows of ``x`` into ``k`` clusters.

    Parameters
    ----------
    x
        Training points (float32 ``n x D``; a torch tensor stays on its device for the torch
        backend); also the points assigned.
    k
        Number of clusters, ``1 <= k <= n``.
    seed, niter
        Seed of the initial centroids and the number of Lloyd iterations.
    backend
        ``auto`` (FAISS on GPU if it has one, torch on CUDA if available, FAISS on CPU otherwise),
        ``faiss`` or ``torch`` (on CUDA when available, else CPU).
    max_points_per_centroid
        ``None`` (default) trains on every point; a number caps the training sample at
        ``k * max_points_per_centroid`` points, as FAISS does by default.

    Warns :class:`FewPointsPerClusterWarning` (and adds a note) below 39 points per cluster.
    """
    if torch.is_tensor(x) and resolve_backend(backend) == "faiss":
        x = x.cpu().numpy()
    if not torch.is_tensor(x):
        x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    if not 1 <= k <= n:
        raise AloeError(f"k-means needs 1 <= k <= n points, got k={k} for n={n}")
    sample = k * max_points_per_centroid if max_points_per_centroid is not None else None
    notes = training_notes(n, k, sample)
    started = time.perf_counter()
    if resolve_backend(backend) == "faiss":
        centroids, assignment, sq_distance, name = _faiss_kmeans(x, k, niter, seed, max_points_per_centroid)
    else:
        device = x.device if torch.is_tensor(x) else ("cuda" if torch.cuda.is_available() else "cpu")
        result = torch_kmeans(
            x, k, niter=niter, seed=seed, device=device, max_points_per_centroid=max_points_per_centroid
        )
        centroids, assignment, sq_distance = (t.cpu().numpy() for t in result)
        name = f"torch-{torch.device(device).type}"
    return KMeansResult(
        centroids=centroids,
        assignment=assignment.astype(np.int64),
        sq_distance=sq_distance.astype(np.float32),
        backend=name,
        seconds=time.perf_counter() - started,
        notes=notes,
    )
