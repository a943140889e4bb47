"""A benchmark round on disk: N x D clustered features (float16), C-class logits, a labeled set.

Shared by ``bench_select.py`` (CPU) and ``gpu_select.py`` (CUDA). Features are drawn block by block
around ``n_centres`` random unit centres, so nothing N x D is ever held while writing.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from aloe.store import create_store

BLOCK_ROWS = 16_384


def build_round(
    path: Path,
    n: int,
    dim: int = 512,
    n_classes: int = 100,
    per_class: int = 10,
    n_centres: int = 400,
    seed: int = 0,
) -> float:
    """Write a one-round store at ``path``; return the seconds it took."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_centres, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    width = len(str(n - 1))
    store = create_store(path, [f"item-{i:0{width}d}" for i in range(n)], meta={"bench": "select"})
    labeled = rng.choice(n, n_classes * per_class, replace=False)
    classes = np.repeat(np.arange(n_classes), per_class)
    writer = store.begin_round(
        0,
        feature_dim=dim,
        class_names=[f"class-{c:03d}" for c in range(n_classes)],
        labeled_positions=labeled,
        labeled_classes=classes,
        provenance={"mode": "bench"},
        chunk_rows=BLOCK_ROWS,
    )
    for start in range(0, n, BLOCK_ROWS):
        rows = min(BLOCK_ROWS, n - start)
        members = rng.integers(0, n_centres, rows)
        features = centres[members] + 0.05 * rng.standard_normal((rows, dim), dtype=np.float32)
        logits = 3.0 * rng.standard_normal((rows, n_classes), dtype=np.float32)
        writer.write(features.astype(np.float16), logits)
    writer.commit()
    return time.perf_counter() - started
