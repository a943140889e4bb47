"""Small synthetic rounds for the selector tests: a long-tailed pool, a few known classes, a head."""

from __future__ import annotations

import numpy as np

from aloe.data.synthetic import make_pool
from aloe.embedder.head import fit_linear_head, head_logits
from aloe.selector.view import RoundView


def build_view(
    n_known: int = 4,
    per_class: int = 5,
    n_classes: int = 12,
    n0: int = 60,
    dim: int = 16,
    spread: float = 0.1,
    seed: int = 0,
) -> tuple[RoundView, np.ndarray]:
    """A round whose first ``n_known`` classes have ``per_class`` labels each; returns (view, truth)."""
    pool = make_pool(n_classes=n_classes, n0=n0, alpha=0.2, dim=dim, spread=spread, seed=seed)
    rng = np.random.default_rng(seed)
    labeled = [rng.choice(np.flatnonzero(pool.labels == c), per_class, replace=False) for c in range(n_known)]
    positions = np.concatenate(labeled) if labeled else np.empty(0, dtype=np.int64)
    head = fit_linear_head(pool.features[positions], pool.labels[positions], n_known)
    view = RoundView(
        ids=pool.ids,
        features=pool.features,
        logits=head_logits(head, pool.features),
        labeled_positions=positions,
        labeled_classes=pool.labels[positions],
        class_names=pool.class_names[:n_known],
    )
    return view, pool.labels
