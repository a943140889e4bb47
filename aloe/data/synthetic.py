"""Long-tailed Gaussian-mixture pools for tests and benchmarks.

Class ``i`` has ``N_i = N_0 * alpha^(i/(n-1))`` items (:func:`aloe.data.longtail.longtail_counts`)
drawn around its own random unit-norm centre; ``spread`` is the per-dimension standard deviation
around it, so classes separate well for small spreads and overlap for large ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aloe.data.longtail import longtail_counts


@dataclass(frozen=True)
class SyntheticPool:
    """A pool of features with ground-truth labels (for the simulation oracle)."""

    ids: np.ndarray  # (N,) str
    features: np.ndarray  # (N, D) float32
    labels: np.ndarray  # (N,) int64, class 0 the head
    class_names: list[str]


def make_pool(
    n_classes: int = 20,
    n0: int = 200,
    alpha: float = 0.1,
    dim: int = 32,
    spread: float = 0.05,
    seed: int = 0,
) -> SyntheticPool:
    """Draw a shuffled long-tailed pool; the same arguments give the same pool."""
    rng = np.random.default_rng(seed)
    counts = longtail_counts(n_classes, n0, alpha)
    centres = rng.standard_normal((n_classes, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(n_classes, dtype=np.int64), counts)
    features = centres[labels] + spread * rng.standard_normal((len(labels), dim))
    order = rng.permutation(len(labels))
    width = len(str(len(labels) - 1))
    ids = np.array([f"item-{i:0{width}d}" for i in range(len(labels))])
    return SyntheticPool(
        ids=ids,
        features=features[order].astype(np.float32),
        labels=labels[order],
        class_names=[f"class-{i:03d}" for i in range(n_classes)],
    )


def iter_random_blocks(n_rows: int, dim: int, block_rows: int, seed: int = 0, dtype=np.float16):
    """Yield ``(start, block)`` of random rows without holding ``n_rows x dim`` (for benchmarks)."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_rows, block_rows):
        rows = min(block_rows, n_rows - start)
        yield start, rng.standard_normal((rows, dim), dtype=np.float32).astype(dtype)
