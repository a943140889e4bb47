"""The simulation's oracle: a pool of features with ground-truth labels, and its held-out test split.

A pool comes from a cached-features npz (``features`` N x D, ``labels`` N; optional ``ids``,
``classes`` naming integer labels, ``test_features`` and ``test_labels``) or from features the
embedder computed. Without a given test split, a stratified share of every class with at least two
items is carved out (seeded) before anything is labeled; those items never enter the pool.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from aloe.data.npz import npz_digest, read_npz
from aloe.errors import AloeError
from aloe.internal.split import stratified_sample
from aloe.labels import check_pool_ids, positions_in

TEST_FRACTION = 0.2


class OracleLabels:
    """What every simulation pool offers: ``ids`` and true ``labels`` (str arrays, pool order), the
    evaluation set's ``test_labels``, a ``description`` dict; the oracle's answers and id -> position
    lookups."""

    ids: np.ndarray
    labels: np.ndarray
    test_labels: np.ndarray
    description: dict

    @property
    def class_names(self) -> list[str]:
        """Every class of the pool, sorted."""
        return sorted(set(self.labels.tolist()))

    def oracle(self, positions: np.ndarray) -> dict[str, str]:
        """``{id: true label}`` of the items at ``positions``."""
        return dict(zip(self.ids[positions].tolist(), self.labels[positions].tolist(), strict=True))

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.ids.tolist())}

    def position_of(self, ids: Iterable[str]) -> np.ndarray:
        """Pool positions of ``ids`` (an :class:`AloeError` names the first few ids outside the pool)."""
        return positions_in(self._positions, ids, "the pool")


@dataclass(frozen=True)
class OraclePool(OracleLabels):
    """Pool features with their true class names, and the test split the metrics use."""

    ids: np.ndarray  # (N,) str
    features: np.ndarray  # (N, D) float32
    labels: np.ndarray  # (N,) str class names
    test_features: np.ndarray  # (M, D) float32
    test_labels: np.ndarray  # (M,) str
    description: dict


def stratified_split(labels: np.ndarray, fraction: float = TEST_FRACTION, seed: int = 0) -> np.ndarray:
    """Sorted test positions: ``round(fraction * n)`` (at least 1, at most ``n - 1``) of each class with
    ``n >= 2`` items."""
    return stratified_sample(labels, lambda n: min(n - 1, max(1, round(fraction * n))), seed)


def _check_features(name: str, features: np.ndarray, n: int, source: str) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or len(features) != n:
        raise AloeError(f"{source}: {name} must be ({n}, D), a row for each of the {n} labels, got {features.shape}")
    if not np.isfinite(features).all():
        raise AloeError(f"{source}: {name} hold NaN or inf")
    return features


def make_oracle_pool(
    ids: np.ndarray,
    features: np.ndarray,
    labels: np.ndarray,
    test_features: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    split_seed: int = 0,
    description: dict | None = None,
    source: str = "pool",
) -> OraclePool:
    """Check the arrays and carve the test split out of the pool when none is given."""
    ids, labels = np.asarray(ids).astype(str), np.asarray(labels).astype(str)
    if ids.ndim != 1 or labels.shape != ids.shape:
        raise AloeError(f"{source}: need ids and labels of shape (N,), got {ids.shape} and {labels.shape}")
    if len(np.unique(ids)) != len(ids):
        raise AloeError(f"{source}: ids are not unique")
    check_pool_ids(ids.tolist(), source)
    features = _check_features("features", features, len(ids), source)
    if (test_features is None) != (test_labels is None):
        raise AloeError(f"{source}: give both test_features and test_labels, or neither")
    description = dict(description or {})
    if test_features is None:
        keep, test, description["test_split"] = carve_test_split(labels, split_seed)
        test_features, test_labels = features[test], labels[test]
        ids, features, labels = ids[keep], features[keep], labels[keep]
    else:
        test_labels = np.asarray(test_labels).astype(str)
        test_features = _check_features("test_features", test_features, len(test_labels), source)
        if test_features.shape[1] != features.shape[1]:
            raise AloeError(f"{source}: test_features have {test_features.shape[1]} columns, "
                            f"features {features.shape[1]}")
        description.setdefault("test_split", "given")
    if len(test_labels) == 0:
        raise AloeError(f"{source}: the test split is empty (no class has two items)")
    description["labels_sha256_16"] = labels_digest(ids, labels, test_labels)
    return OraclePool(ids, features, labels, test_features, test_labels, description)


def carve_test_split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Pool and test positions when no test split is given (:func:`stratified_split` of
    :data:`TEST_FRACTION`), and how the split was made, in words."""
    test = stratified_split(labels, TEST_FRACTION, seed)
    keep = np.setdiff1d(np.arange(len(labels)), test)
    return keep, test, f"stratified {TEST_FRACTION:.0%} of the pool, seed {seed}"


def labels_digest(ids: np.ndarray, labels: np.ndarray, test_labels: np.ndarray) -> str:
    """A short hash of the pool's ids and labels and the test labels (part of the resume check)."""
    digest = hashlib.sha256()
    for part in (ids, labels, test_labels):
        digest.update("\n".join(part.tolist()).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _names(values: np.ndarray, classes: np.ndarray | None, key: str, source: str) -> np.ndarray:
    values = np.asarray(values)
    if classes is None:
        return values.astype(str)
    if values.dtype.kind not in "iu" or values.min() < 0 or values.max() >= len(classes):
        raise AloeError(f"{source}: with 'classes', {key} must be integers in [0, {len(classes)})")
    return np.asarray(classes).astype(str)[values]


def load_npz_pool(path: str | Path, split_seed: int = 0) -> OraclePool:
    """An :class:`OraclePool` from a cached-features npz (see the module docstring)."""
    path = Path(path)
    arrays = read_npz(path)
    missing = [key for key in ("features", "labels") if key not in arrays]
    if missing:
        raise AloeError(f"{path}: missing array(s) {missing}; it holds {sorted(arrays)}")
    n = len(arrays["labels"])
    width = len(str(max(n - 1, 0)))
    ids = arrays.get("ids", np.array([f"item-{i:0{width}d}" for i in range(n)]))
    classes = arrays.get("classes")
    test_labels = arrays.get("test_labels")
    return make_oracle_pool(
        ids,
        arrays["features"],
        _names(arrays["labels"], classes, "labels", str(path)),
        arrays.get("test_features"),
        None if test_labels is None else _names(test_labels, classes, "test_labels", str(path)),
        split_seed,
        {"features": str(path), "sha256_16": npz_digest(path)},
        str(path),
    )
