"""Readers of published nodes: :class:`RowReader` (a feature cache) and :class:`RoundReader` (a round).

Both read through a backend's :class:`~aloe.store.backend.NodeReader`; a published node never
changes, so its array list and shapes are read once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from aloe.errors import AloeError
from aloe.internal.arrays import cast
from aloe.store.backend import NodeReader
from aloe.store.schema import ROUND_ARRAYS

VERIFY_BLOCK_BYTES = 64 << 20  # :meth:`RowReader.verify` reads about this much at a time


class RowReader:
    """Row-wise access to a node's ``features`` (and any other N-row arrays), as float32."""

    def __init__(self, node: NodeReader, label: str) -> None:
        self._node = node
        self.label = label
        self.attrs = node.attrs()
        self._names = set(node.array_names())  # published nodes never change: list them once
        self._info: dict[str, tuple[tuple[int, ...], np.dtype, int]] = {}

    def _require(self, name: str) -> tuple[tuple[int, ...], np.dtype, int]:
        """Shape, dtype and chunk rows of array ``name``; :class:`DamagedNode` if it is missing."""
        if name not in self._names:
            raise self._node.damaged(f"array '{name}' is missing")
        if name not in self._info:
            self._info[name] = self._node.info(name)
        return self._info[name]

    @property
    def n_items(self) -> int:
        """Rows in the node's ``features``."""
        return self._require("features")[0][0]

    @property
    def feature_dim(self) -> int:
        """Width ``D`` of ``features``."""
        return self._require("features")[0][1]

    @property
    def chunk_rows(self) -> int:
        """Rows per chunk of ``features`` (the natural block size)."""
        return self._require("features")[2]

    def _rows(
        self, name: str, rows: Sequence[int] | np.ndarray | None, dtype: Any = np.float32
    ) -> np.ndarray:
        shape = self._require(name)[0]
        if rows is None:
            values = self._node.read(name)
            return cast(values, dtype or values.dtype)
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= shape[0]):
            raise AloeError(f"{self.label}: row positions out of range 0..{shape[0] - 1}")
        unique, inverse = np.unique(rows, return_inverse=True)
        if unique.size == 0:
            return np.zeros((0,) + shape[1:], dtype=np.float32)
        span = unique[-1] - unique[0] + 1
        if span <= 4 * unique.size:  # dense enough: one contiguous read beats a scatter-gather
            values = self._node.read(name, int(unique[0]), int(unique[-1]) + 1)[unique - unique[0]]
        else:
            values = self._node.gather(name, unique)
        return cast(values, dtype or values.dtype)[inverse]

    def features(
        self, rows: Sequence[int] | np.ndarray | None = None, dtype: Any = np.float32
    ) -> np.ndarray:
        """All features (N x D) or the given rows, in the order asked; ``dtype=None`` keeps the
        stored dtype (float16 by default) and skips the conversion."""
        return self._rows("features", rows, dtype)

    def iter_blocks(
        self, block_rows: int | None = None, start: int = 0, stop: int | None = None, dtype: Any = np.float32
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, features_block)``, ``block_rows`` (default: a chunk) at a time, over rows
        ``[start, stop)`` (default: all); ``dtype=None`` keeps the stored dtype."""
        step, stop = block_rows or self.chunk_rows, self.n_items if stop is None else stop
        for first in range(start, stop, step):
            values = self._node.read("features", first, min(first + step, stop))
            yield first, cast(values, dtype or values.dtype)

    def stored_dtype(self, name: str = "features") -> np.dtype:
        """The dtype array ``name`` is stored in (features: float16 by default)."""
        return self._require(name)[1]

    def verify(self) -> None:
        """Read every array of the node in full, a block at a time: :class:`DamagedNode` when a chunk
        is missing, truncated or fails its checksum, or floats hold NaN or inf."""
        for name in sorted(self._names):
            shape, dtype, chunk_rows = self._require(name)
            if not shape:
                self._node.read(name)
                continue
            row_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * max(1, dtype.itemsize))
            step = max(chunk_rows, VERIFY_BLOCK_BYTES // row_bytes // chunk_rows * chunk_rows)
            for start in range(0, shape[0], step):
                values = self._node.read(name, start, min(start + step, shape[0]))
                if values.dtype.kind == "f" and not np.isfinite(values).all():
                    raise self._node.damaged(f"{name} holds NaN or inf (rows {start}..)")

    def close(self) -> None:
        """Release the node's file handles."""
        self._node.close()


class RoundReader(RowReader):
    """A complete round: features, logits, the labeled set, class names and provenance."""

    def __init__(self, node: NodeReader, t: int, n_items: int, label: str) -> None:
        super().__init__(node, label)
        self.t = t
        for name in ROUND_ARRAYS:
            self._require(name)
        (n_feat, _), (n_logit, width) = self._require("features")[0], self._require("logits")[0]
        self.class_names: list[str] = list(self.attrs.get("class_names", []))
        self.labeled_positions = self._node.read("labeled_positions").astype(np.int64)
        self.labeled_classes = self._node.read("labeled_classes").astype(np.int64)
        if n_feat != n_items or n_logit != n_items:
            raise node.damaged(f"features/logits have {n_feat}/{n_logit} rows, pool has {n_items}")
        if width != len(self.class_names):
            raise node.damaged(f"logits have {width} columns but the round lists {len(self.class_names)} classes")
        if len(self.labeled_positions) != len(self.labeled_classes):
            raise node.damaged("labeled_positions and labeled_classes differ in length")

    @property
    def n_classes(self) -> int:
        """``C = |K_t|``, the number of known classes."""
        return len(self.class_names)

    @property
    def provenance(self) -> dict[str, Any]:
        """How the round was made (backbone, checkpoint hash, mode, settings, seed, timings)."""
        return dict(self.attrs.get("provenance", {}))

    @property
    def mode(self) -> str | None:
        """The embedder mode recorded in the provenance (``finetune``, ``linear``, ...)."""
        return self.provenance.get("mode")

    def logits(self, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """All logits (N x C) or the given rows, as float32."""
        return self._rows("logits", rows)

    def iter_blocks(
        self, block_rows: int | None = None, start: int = 0, stop: int | None = None, dtype: Any = np.float32
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(start, features_block, logits_block)``: features as ``dtype`` (``None``: as
        stored), logits as float32, over rows ``[start, stop)`` (default: all)."""
        for first, features in super().iter_blocks(block_rows, start, stop, dtype):
            yield first, features, cast(self._node.read("logits", first, first + len(features)), np.float32)
