"""``Selection``: one labeling batch and everything needed to explain and reproduce it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Selection:
    """The chosen batch (``positions``, in rank order) and the per-item evidence behind it.

    Per-item arrays cover the whole pool (``N``); ``clusters`` is -1 for items not clustered (labeled
    items, or strategies without clustering); ``scores``/``flagged`` are the OOD score ``o`` and
    ``o > tau`` (``None`` when there were no labels to score against).
    """

    strategy: str
    budget: int
    seed: int
    params: dict[str, Any]
    positions: np.ndarray
    scores: np.ndarray | None = None
    score_name: str | None = None
    tau: float | None = None
    flagged: np.ndarray | None = None
    clusters: np.ndarray | None = None
    cluster_ratios: np.ndarray | None = None
    k: int | None = None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def chosen_scores(self) -> np.ndarray:
        """``o`` of each chosen item (NaN when not scored)."""
        if self.scores is None:
            return np.full(len(self.positions), np.nan, dtype=np.float32)
        return self.scores[self.positions]

    @property
    def chosen_clusters(self) -> np.ndarray:
        """Cluster of each chosen item (-1 when not clustered)."""
        if self.clusters is None:
            return np.full(len(self.positions), -1, dtype=np.int64)
        return self.clusters[self.positions]

    @property
    def chosen_flagged(self) -> np.ndarray:
        """Whether each chosen item is flagged OOD (False when not scored)."""
        if self.flagged is None:
            return np.zeros(len(self.positions), dtype=bool)
        return self.flagged[self.positions]

    @property
    def chosen_ratios(self) -> np.ndarray:
        """OOD ratio of each chosen item's cluster (NaN when not clustered)."""
        out = np.full(len(self.positions), np.nan)
        if self.cluster_ratios is not None:
            clustered = self.chosen_clusters >= 0
            out[clustered] = self.cluster_ratios[self.chosen_clusters[clustered]]
        return out
