"""Stratified sampling: a seeded draw of some positions from each class (test and validation splits)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def stratified_sample(labels: np.ndarray, take: Callable[[int], int], seed: int, min_classes: int = 1) -> np.ndarray:
    """Sorted int64 positions drawn from each class of ``labels``.

    Classes go in sorted order; a class of ``n`` items gives ``take(n)`` of its positions, drawn
    without replacement by one generator seeded with ``seed``. A class with ``take(n) == 0`` gives
    none and draws nothing, so it does not shift the later classes' draws. When fewer than
    ``min_classes`` classes give positions the sample is empty.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    drawn = []
    for name in np.unique(labels):
        members = np.flatnonzero(labels == name)
        size = take(len(members))
        if size > 0:
            drawn.append(rng.choice(members, size=size, replace=False))
    if not drawn or len(drawn) < min_classes:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(drawn)).astype(np.int64)
