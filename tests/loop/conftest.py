"""Shared fixtures: a small long-tailed synthetic pool saved as a cached-features npz."""

from __future__ import annotations

import numpy as np
import pytest

from aloe.data.synthetic import make_pool


@pytest.fixture(scope="session")
def pool_npz(tmp_path_factory):
    """8 long-tailed classes (60 down to 6 items), 16-d features, with a given test split."""
    pool = make_pool(n_classes=8, n0=60, alpha=0.1, dim=16, spread=0.25, seed=7)
    test = make_pool(n_classes=8, n0=10, alpha=1.0, dim=16, spread=0.25, seed=7)
    path = tmp_path_factory.mktemp("pool") / "pool.npz"
    np.savez(
        path,
        ids=pool.ids,
        features=pool.features,
        labels=pool.labels,
        classes=np.array(pool.class_names),
        test_features=test.features,
        test_labels=test.labels,
    )
    return path
