"""Long-tailed class sizes: ``N_i = floor(N_0 * alpha^(i / (n - 1)))``.

The exponent runs from 0 for the head class to 1 for the last class, so the last class holds
``N_0 * alpha`` items (the imbalance ratio is ``1 / alpha``), as in the CIFAR-LT protocol of
Cao et al. (2019) that the ALOE paper follows.
"""

from __future__ import annotations

import numpy as np


def longtail_counts(n_classes: int, n0: int = 500, alpha: float = 0.01) -> np.ndarray:
    """Items per class, head first; every class keeps at least one item."""
    if n_classes < 1:
        raise ValueError("n_classes must be >= 1")
    if not 0 < alpha <= 1:
        raise ValueError("alpha must be in (0, 1]")
    exponents = np.arange(n_classes) / max(n_classes - 1, 1)
    counts = np.floor(n0 * alpha**exponents + 1e-9).astype(np.int64)
    return np.maximum(counts, 1)


def longtail_subsample(
    labels: np.ndarray, n0: int = 500, alpha: float = 0.01, seed: int = 0
) -> np.ndarray:
    """Positions of a long-tailed subset of ``labels`` (classes 0..n-1, class 0 the head).

    Class ``i`` keeps ``min(longtail_counts(n)[i], available)`` items, chosen at random with ``seed``.
    Returns sorted positions.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    counts = longtail_counts(len(classes), n0, alpha)
    rng = np.random.default_rng(seed)
    keep = []
    for cls, count in zip(classes, counts, strict=True):
        members = np.flatnonzero(labels == cls)
        keep.append(rng.choice(members, size=min(int(count), len(members)), replace=False))
    return np.sort(np.concatenate(keep))
