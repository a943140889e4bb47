"""The OOD threshold: ``tau`` such that at least ``tpr`` of the labeled items count as known."""

from __future__ import annotations

import numpy as np

from aloe.errors import AloeError


def ood_threshold(labeled_scores: np.ndarray, tpr: float = 0.95) -> float:
    """The ``tpr`` quantile of the labeled items' scores; an item is flagged OOD when ``o > tau``.

    Interpolation: none. ``tau`` is the empirical-CDF ("inverted_cdf") quantile, the smallest labeled
    score ``s`` with ``#{o <= s} >= tpr * L``, so ``tau`` is always one of the labeled scores and at
    least ``tpr`` of the labeled items satisfy ``o <= tau`` (are not flagged), whatever ``L`` is. A
    linear interpolation could fall between two scores and flag slightly more than ``1 - tpr`` of them.

    Raises :class:`AloeError` when there are no labeled scores or ``tpr`` is outside ``(0, 1]``.
    """
    scores = np.asarray(labeled_scores, dtype=np.float64).reshape(-1)
    if not 0.0 < tpr <= 1.0:
        raise AloeError(f"tpr must be in (0, 1], got {tpr}")
    if len(scores) == 0:
        raise AloeError("the threshold needs at least one labeled item")
    return float(np.quantile(scores, tpr, method="inverted_cdf"))
