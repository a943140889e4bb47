"""``RoundView``: the numpy view of one round that every selection strategy reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from aloe.errors import AloeError
from aloe.internal.arrays import BLOCK_ROWS


def candidate_positions(n_items: int, labeled_positions: np.ndarray, excluded_positions: np.ndarray) -> np.ndarray:
    """Sorted int64 positions that may be selected: neither labeled nor excluded."""
    candidates = np.ones(n_items, dtype=bool)
    candidates[np.asarray(labeled_positions, dtype=np.int64)] = False
    candidates[np.asarray(excluded_positions, dtype=np.int64)] = False
    return np.flatnonzero(candidates).astype(np.int64)


def check_finite(name: str, array: np.ndarray, ids: np.ndarray, offset: int = 0) -> None:
    """Raise :class:`AloeError` saying how many rows of ``array`` hold NaN/inf, and the first one.

    ``array`` may be a block of rows starting at pool position ``offset`` (``ids`` are the pool's).
    """
    bad_rows = 0
    first = -1
    for start in range(0, len(array), BLOCK_ROWS):
        block = array[start : start + BLOCK_ROWS]
        with np.errstate(over="ignore", invalid="ignore"):
            bad = ~np.isfinite(block.sum(axis=1))  # NaN/inf anywhere in a row make its sum non-finite
        if bad.any():  # ... and so may an overflowing sum of finite values: check those rows exactly
            bad[bad] = ~np.isfinite(block[bad]).all(axis=1)
        if bad.any():
            if first < 0:
                first = start + int(np.argmax(bad))
            bad_rows += int(bad.sum())
    if bad_rows:
        first += offset
        raise AloeError(
            f"{name} hold NaN or inf in {bad_rows} row(s); first: row {first} (id {str(ids[first])!r})"
        )


@dataclass(frozen=True, eq=False)
class RoundView:
    """One round's pool, as arrays: what a strategy needs and nothing else.

    Attributes
    ----------
    ids
        ``(N,)`` item ids, pool order.
    features
        ``(N, D)`` float32: the vectors the linear head reads.
    logits
        ``(N, C)`` float32, ``C = len(class_names)``.
    labeled_positions
        ``(L,)`` int64 pool positions of the labeled items (unique, in ``[0, N)``).
    labeled_classes
        ``(L,)`` int64 indices into ``class_names``.
    class_names
        The known classes ``K_t``.
    excluded_positions
        ``(E,)`` int64 positions that are never candidates: images the embedder could not read
        (their rows hold a placeholder's embedding; the round's ``provenance["skipped"]``).
    head
        The settings of the round's linear head (a linear round's ``provenance["head"]``), or
        ``None`` (a fine-tuned head, or a view built by hand). The out-of-fold threshold refits it.

    Construction validates everything and raises :class:`AloeError` on NaN/inf (how many rows and
    the first), a logits width that is not ``len(class_names)``, or positions/classes out of range.
    """

    ids: np.ndarray
    features: np.ndarray
    logits: np.ndarray
    labeled_positions: np.ndarray
    labeled_classes: np.ndarray
    class_names: tuple[str, ...]
    excluded_positions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    head: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        coerce = {
            "ids": np.asarray(self.ids).astype(str, copy=False),
            "features": np.asarray(self.features, dtype=np.float32),
            "logits": np.asarray(self.logits, dtype=np.float32),
            "labeled_positions": np.asarray(self.labeled_positions, dtype=np.int64).reshape(-1),
            "labeled_classes": np.asarray(self.labeled_classes, dtype=np.int64).reshape(-1),
            "class_names": tuple(str(name) for name in self.class_names),
            "excluded_positions": np.asarray(self.excluded_positions, dtype=np.int64).reshape(-1),
        }
        for key, value in coerce.items():
            object.__setattr__(self, key, value)
        self._validate()

    def _validate(self) -> None:
        n = len(self.ids)
        if self.features.ndim != 2 or len(self.features) != n:
            raise AloeError(f"features must be ({n}, D) for {n} ids, got {self.features.shape}")
        if self.logits.ndim != 2 or len(self.logits) != n:
            raise AloeError(f"logits must be ({n}, C) for {n} ids, got {self.logits.shape}")
        if self.logits.shape[1] != len(self.class_names):
            raise AloeError(
                f"logits have {self.logits.shape[1]} columns but the round names "
                f"{len(self.class_names)} classes"
            )
        positions, classes = self.labeled_positions, self.labeled_classes
        if len(positions) != len(classes):
            raise AloeError(f"{len(positions)} labeled positions but {len(classes)} labeled classes")
        if len(positions):
            out = (positions < 0) | (positions >= n)
            if out.any():
                raise AloeError(
                    f"{int(out.sum())} labeled position(s) outside [0, {n}); first: {positions[out][0]}"
                )
            if len(np.unique(positions)) != len(positions):
                raise AloeError("labeled positions repeat an item")
            bad = (classes < 0) | (classes >= len(self.class_names))
            if bad.any():
                raise AloeError(
                    f"{int(bad.sum())} labeled class index(es) outside [0, {len(self.class_names)}); "
                    f"first: {classes[bad][0]}"
                )
        excluded = self.excluded_positions
        if len(excluded) and (excluded.min() < 0 or excluded.max() >= n):
            raise AloeError(f"excluded positions must lie in [0, {n})")
        check_finite("features", self.features, self.ids)
        check_finite("logits", self.logits, self.ids)

    @property
    def n_items(self) -> int:
        """Pool size ``N``."""
        return len(self.ids)

    @property
    def n_classes(self) -> int:
        """Number of known classes ``C``."""
        return len(self.class_names)

    @cached_property
    def labeled_mask(self) -> np.ndarray:
        """``(N,)`` bool, True for labeled items."""
        mask = np.zeros(self.n_items, dtype=bool)
        mask[self.labeled_positions] = True
        return mask

    @cached_property
    def unlabeled_positions(self) -> np.ndarray:
        """Sorted int64 positions of the candidates: unlabeled and not excluded."""
        return candidate_positions(self.n_items, self.labeled_positions, self.excluded_positions)

    @classmethod
    def from_round(cls, reader: Any, ids: np.ndarray) -> RoundView:
        """Load a store round (``store.round(t)``) into a view; ``ids`` are the store's pool ids.

        The store reads the features in one call and casts them to float32 (a float16 store costs
        a transient half-size copy, never a second float32 one).
        """
        if len(ids) != reader.n_items:
            raise AloeError(f"the round holds {reader.n_items} items but the pool has {len(ids)} ids")
        return cls(
            ids=ids,
            features=reader.features(),
            logits=reader.logits(),
            labeled_positions=reader.labeled_positions,
            labeled_classes=reader.labeled_classes,
            class_names=tuple(reader.class_names),
            excluded_positions=excluded_positions(reader),
            head=reader.provenance.get("head"),
        )


def excluded_positions(reader: Any) -> np.ndarray:
    """Positions a round's embedder could not read (``provenance["skipped"]``): never candidates."""
    return np.asarray(reader.provenance.get("skipped", {}).get("positions", []), dtype=np.int64)
