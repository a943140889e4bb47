"""The round store: one API over the Zarr and HDF5 backends (see :mod:`aloe.store.schema`)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aloe import __version__
from aloe.errors import AloeError
from aloe.internal.arrays import cast
from aloe.store.backend import Backend, NodeReader, NodeWriter
from aloe.store.hdf5_backend import Hdf5Backend
from aloe.store.schema import (
    CACHE,
    ROUND_ARRAYS,
    ROUNDS,
    SCHEMA_VERSION,
    SELECTIONS,
    STORE_KIND,
    check_name,
    fingerprint,
    parse_round_name,
    round_name,
)
from aloe.store.zarr_backend import ZarrBackend

BACKENDS: dict[str, Backend] = {b.name: b for b in (ZarrBackend(), Hdf5Backend())}
DEFAULT_CHUNK_ROWS = 8192


def backend_for(path: str | Path, backend: str | None = None) -> Backend:
    """The backend named ``backend``, or the one whose suffix ``path`` has (``.zarr``, ``.h5``)."""
    if backend is not None:
        if backend not in BACKENDS:
            raise AloeError(f"unknown store backend {backend!r}; choose from {sorted(BACKENDS)}")
        return BACKENDS[backend]
    suffix = Path(path).suffix.lower()
    for candidate in BACKENDS.values():
        if suffix in candidate.suffixes:
            return candidate
    raise AloeError(
        f"cannot tell the store backend from {str(path)!r}: name it *.zarr or *.h5 (or pass a backend)"
    )


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _progress_path(staging: Path) -> Path:
    return staging.with_name(staging.name + ".progress.json")


def _disk_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class RowReader:
    """Row-wise access to a node's ``features`` (and any other N-row arrays), as float32."""

    def __init__(self, node: NodeReader, label: str) -> None:
        self._node = node
        self.label = label
        self.attrs = node.attrs()
        self._names = set(node.array_names())  # published nodes never change: list them once
        self._info: dict[str, tuple[tuple[int, ...], np.dtype, int]] = {}

    def _require(self, name: str) -> tuple[tuple[int, ...], np.dtype, int]:
        """Shape, dtype and chunk rows of array ``name``; :class:`AloeError` if it is missing."""
        if name not in self._names:
            raise AloeError(f"{self.label}: array '{name}' is missing")
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

    def iter_blocks(self, block_rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, features_block)`` as float32, ``block_rows`` (default: a chunk) at a time."""
        step, n = block_rows or self.chunk_rows, self.n_items
        for start in range(0, n, step):
            yield start, cast(self._node.read("features", start, min(start + step, n)), np.float32)

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
            raise AloeError(f"{label}: features/logits have {n_feat}/{n_logit} rows, pool has {n_items}")
        if width != len(self.class_names):
            raise AloeError(
                f"{label}: logits have {width} columns but the round lists {len(self.class_names)} classes"
            )
        if len(self.labeled_positions) != len(self.labeled_classes):
            raise AloeError(f"{label}: labeled_positions and labeled_classes differ in length")

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

    def iter_blocks(self, block_rows: int | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(start, features_block, logits_block)`` as float32."""
        for start, features in super().iter_blocks(block_rows):
            stop = start + len(features)
            yield start, features, cast(self._node.read("logits", start, stop), np.float32)


class StagedWriter:
    """Streams N-row arrays into a staged node, a chunk at a time, then publishes it atomically.

    Progress is saved after every full chunk, so a writer killed mid-way can be resumed from
    ``rows_done`` by a later writer with the same signature; ``commit`` renames the staged node
    into place in one step, so readers see the whole node or nothing.
    """

    def __init__(
        self,
        store: Store,
        parts: tuple[str, ...],
        row_arrays: dict[str, tuple[int, np.dtype]],
        static_arrays: dict[str, np.ndarray],
        attrs: dict[str, Any],
        chunk_rows: int,
        resume: bool,
        resume_token: str = "",
    ) -> None:
        self._store = store
        self._backend = store.backend
        self._parts = parts
        self._row_arrays = row_arrays
        self._attrs = attrs
        self.chunk_rows = chunk_rows
        self._staging = self._backend.staging_path(store.path, *parts)
        self._progress = _progress_path(self._staging)
        self._signature = self._sign(row_arrays, static_arrays, chunk_rows, resume_token)
        self._pending: list[list[np.ndarray]] = [[] for _ in row_arrays]
        self._pending_rows = 0
        self._durable = self._try_resume() if resume else 0
        if self._durable == 0:
            self._node = self._start(static_arrays)
        self.resumed_from = self._durable

    def _sign(self, row_arrays, static_arrays, chunk_rows, token) -> str:
        digest = hashlib.sha256(json.dumps([self._parts, chunk_rows, token]).encode())
        for name, (width, dtype) in row_arrays.items():
            digest.update(f"{name}:{width}:{np.dtype(dtype).str}".encode())
        for name, values in static_arrays.items():
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(values).tobytes())
        structural = {k: v for k, v in self._attrs.items() if k != "provenance"}
        digest.update(json.dumps(structural, sort_keys=True, default=str).encode())
        return digest.hexdigest()

    def _try_resume(self) -> int:
        try:
            progress = json.loads(self._progress.read_text())
            if progress.get("signature") != self._signature or progress.get("rows_done", 0) <= 0:
                return 0
            self._node = self._backend.append_node(self._staging)
            return int(progress["rows_done"])
        except (OSError, ValueError, KeyError):
            return 0

    def _start(self, static_arrays: dict[str, np.ndarray]) -> NodeWriter:
        _remove(self._staging)
        _remove(self._progress)
        node = self._backend.new_node(self._staging)
        n = self._store.n_items
        for name, (width, dtype) in self._row_arrays.items():
            node.create_array(name, (n, width), dtype, chunk_rows=self.chunk_rows)
        for name, values in static_arrays.items():
            node.create_array(name, values.shape, values.dtype)
            if len(values):
                node.write_rows(name, 0, values)
        node.set_attrs(self._attrs)
        node.flush()
        self._save_progress()
        return node

    def _save_progress(self) -> None:
        _write_json_atomic(self._progress, {"signature": self._signature, "rows_done": self._durable})

    @property
    def rows_done(self) -> int:
        """Rows accepted so far (on a resumed writer: where the caller must continue)."""
        return self._durable + self._pending_rows

    def write(self, *blocks: np.ndarray) -> None:
        """Append one block per row array (same row count each, in the order they were declared)."""
        if len(blocks) != len(self._row_arrays):
            raise ValueError(f"expected {len(self._row_arrays)} blocks, got {len(blocks)}")
        rows = len(blocks[0])
        for block, (name, (width, _)) in zip(blocks, self._row_arrays.items(), strict=True):
            if block.ndim != 2 or block.shape != (rows, width):
                raise ValueError(f"{name} block has shape {block.shape}, expected ({rows}, {width})")
        if self.rows_done + rows > self._store.n_items:
            raise ValueError(f"writing past the pool's {self._store.n_items} rows")
        for pending, block in zip(self._pending, blocks, strict=True):
            pending.append(block)
        self._pending_rows += rows
        if self._pending_rows >= self.chunk_rows:
            self._flush(whole_chunks_only=True)

    def _flush(self, whole_chunks_only: bool) -> None:
        rows = self._pending_rows
        if whole_chunks_only:
            rows -= rows % self.chunk_rows
        if rows == 0:
            return
        for index, (name, (_, dtype)) in enumerate(self._row_arrays.items()):
            joined = np.concatenate(self._pending[index]).astype(dtype, copy=False)
            self._node.write_rows(name, self._durable, joined[:rows])
            self._pending[index] = [joined[rows:]] if rows < len(joined) else []
        self._node.flush()
        self._durable += rows
        self._pending_rows -= rows
        self._save_progress()

    def commit(self, extra_attrs: dict[str, Any] | None = None) -> None:
        """Write what is buffered, check every row is there, and publish the node."""
        self._flush(whole_chunks_only=False)
        if self._durable != self._store.n_items:
            raise ValueError(f"only {self._durable} of {self._store.n_items} rows were written")
        self._node.set_attrs({**self._attrs, **(extra_attrs or {}), "committed_at": time.time()})
        self._node.close()
        self._store.publish(self._parts, self._staging)
        _remove(self._progress)

    def abort(self) -> None:
        """Drop the staged node and its progress."""
        self._node.close()
        _remove(self._staging)
        _remove(self._progress)


class Store:
    """A pool's store: ids, complete rounds, their selections and feature caches.

    Use :func:`create_store` or :func:`open_store` rather than the constructor.
    """

    def __init__(self, path: Path, backend: Backend, writable: bool) -> None:
        self.path = path
        self.backend = backend
        self.writable = writable
        try:
            root = backend.open_node(path)
        except (OSError, KeyError, ValueError) as exc:
            raise AloeError(f"{path}: not an aloe store ({type(exc).__name__})") from None
        try:
            attrs = root.attrs()
            if attrs.get("kind") != STORE_KIND:
                raise AloeError(f"{path}: not an aloe store (no '{STORE_KIND}' marker)")
            version = int(attrs.get("schema_version", 0))
            if version > SCHEMA_VERSION:
                raise AloeError(
                    f"{path}: schema version {version} is newer than this aloe reads "
                    f"({SCHEMA_VERSION}); upgrade aloe-al"
                )
            if "ids" not in root.array_names():
                raise AloeError(f"{path}: the pool's 'ids' array is missing")
            self.ids: np.ndarray = root.read("ids")
        finally:
            root.close()
        self.meta: dict[str, Any] = dict(attrs.get("meta", {}))
        self.schema_version = version
        self.fingerprint: str = attrs.get("fingerprint", "")
        if len(self.ids) != attrs.get("n_items") or fingerprint(self.ids) != self.fingerprint:
            raise AloeError(f"{path}: the pool ids do not match the store's fingerprint")
        self._positions: dict[str, int] | None = None

    @property
    def n_items(self) -> int:
        """Pool size ``N``."""
        return len(self.ids)

    def _need_writable(self) -> None:
        if not self.writable:
            raise AloeError(f"{self.path}: store opened read-only")

    def position_of(self, ids: Iterable[str]) -> np.ndarray:
        """Pool positions of ``ids``; :class:`AloeError` naming the first few unknown ids."""
        if self._positions is None:
            self._positions = {item: i for i, item in enumerate(self.ids.tolist())}
        ids = list(ids)
        missing = [item for item in ids if item not in self._positions]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:3])
            raise AloeError(f"{len(missing)} ids are not in the pool of {self.path}: {shown}")
        return np.array([self._positions[item] for item in ids], dtype=np.int64)

    # rounds -------------------------------------------------------------------------------

    def rounds(self) -> list[int]:
        """Sorted numbers of the complete rounds."""
        names = self.backend.list_nodes(self.path, ROUNDS)
        return sorted(t for t in map(parse_round_name, names) if t is not None)

    def incomplete_rounds(self) -> list[int]:
        """Rounds that a writer began but did not commit (it crashed, or is still writing)."""
        staged = self.backend.list_staged(self.path)
        return sorted(int(parts[1]) for parts in staged if parts[0] == ROUNDS)

    def latest_round(self) -> int:
        """The newest complete round; :class:`AloeError` when there is none."""
        rounds = self.rounds()
        if not rounds:
            raise AloeError(f"{self.path}: no complete round yet (run aloe-embed first)")
        return rounds[-1]

    def next_round(self) -> int:
        """The number a new round gets: one past the newest complete round, 0 for a new store."""
        rounds = self.rounds()
        return rounds[-1] + 1 if rounds else 0

    def round(self, t: int) -> RoundReader:
        """Open complete round ``t``; a clear :class:`AloeError` if it is missing or incomplete."""
        if t not in self.rounds():
            if t in self.incomplete_rounds():
                raise AloeError(
                    f"{self.path}: round {t} is incomplete (its writer stopped mid-round); "
                    f"rerun aloe-embed for round {t} to resume it"
                )
            rounds = ", ".join(map(str, self.rounds())) or "none"
            raise AloeError(f"{self.path}: no round {t} (complete rounds: {rounds})")
        node = self.backend.open_node(self.backend.node_path(self.path, ROUNDS, round_name(t)))
        return RoundReader(node, t, self.n_items, f"{self.path} round {t}")

    def begin_round(
        self,
        t: int,
        *,
        feature_dim: int,
        class_names: Sequence[str],
        labeled_positions: np.ndarray,
        labeled_classes: np.ndarray,
        provenance: dict[str, Any] | None = None,
        feature_dtype: str = "float16",
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        resume: bool = True,
        resume_token: str = "",
    ) -> StagedWriter:
        """Start (or resume) writing round ``t``; returns a writer taking ``(features, logits)`` blocks.

        A staged round left by a killed writer is resumed when everything that shapes its content
        (classes, labeled set, dtypes, chunking, ``resume_token``) is the same, else restarted.
        """
        self._need_writable()
        if t < 0:
            raise AloeError(f"round numbers start at 0, got {t}")
        if t in self.rounds():
            raise AloeError(f"{self.path}: round {t} already exists (rounds are immutable)")
        positions = np.asarray(labeled_positions, dtype=np.int64)
        classes = np.asarray(labeled_classes, dtype=np.int64)
        if positions.shape != classes.shape or positions.ndim != 1:
            raise AloeError("labeled positions and classes must be 1-D and of equal length")
        if positions.size and (positions.min() < 0 or positions.max() >= self.n_items):
            raise AloeError(f"labeled positions out of range 0..{self.n_items - 1}")
        if classes.size and (classes.min() < 0 or classes.max() >= len(class_names)):
            raise AloeError(f"labeled class indices out of range 0..{len(class_names) - 1}")
        attrs = {
            "t": t,
            "class_names": list(class_names),
            "feature_dtype": feature_dtype,
            "provenance": dict(provenance or {}),
            "aloe_version": __version__,
        }
        return StagedWriter(
            self,
            (ROUNDS, round_name(t)),
            {"features": (feature_dim, np.dtype(feature_dtype)), "logits": (len(class_names), np.dtype("float32"))},
            {"labeled_positions": positions, "labeled_classes": classes},
            attrs,
            max(1, min(chunk_rows, self.n_items)),
            resume,
            resume_token,
        )

    def discard_incomplete(self, t: int) -> None:
        """Remove the staged leftovers of round ``t`` (what a crashed writer left)."""
        self._need_writable()
        staging = self.backend.staging_path(self.path, ROUNDS, round_name(t))
        _remove(staging)
        _remove(_progress_path(staging))

    def publish(self, parts: tuple[str, ...], staging: Path) -> None:
        """Move a finished staged node into place (one rename)."""
        target = self.backend.node_path(self.path, *parts)
        self.backend.prepare_parent(self.path, *parts)
        if target.exists():
            raise AloeError(f"{self.path}: {'/'.join(parts)} already exists")
        os.rename(staging, target)

    # selections ---------------------------------------------------------------------------

    def selections(self, t: int) -> list[str]:
        """Names of the selections recorded for round ``t``."""
        return self.backend.list_nodes(self.path, SELECTIONS, round_name(t))

    def write_selection(
        self,
        t: int,
        name: str,
        attrs: dict[str, Any],
        arrays: dict[str, np.ndarray],
        overwrite: bool = False,
    ) -> None:
        """Record a selection for complete round ``t`` (never touches the round's own arrays)."""
        self._need_writable()
        check_name(name, "selection")
        if t not in self.rounds():
            self.round(t)  # raises the precise error
        parts = (SELECTIONS, round_name(t), name)
        target = self.backend.node_path(self.path, *parts)
        if target.exists() and not overwrite:
            raise AloeError(f"round {t} already has a selection named {name!r} (use --overwrite or a new --name)")
        staging = self.backend.staging_path(self.path, *parts)
        _remove(staging)
        node = self.backend.new_node(staging)
        for key, values in arrays.items():
            values = np.asarray(values)
            node.create_array(key, values.shape, str if values.dtype.kind in "UT" else values.dtype)
            if values.size:
                node.write_rows(key, 0, values)
        node.set_attrs({**attrs, "t": t, "name": name, "recorded_at": time.time()})
        node.close()
        if target.exists():
            trash = staging.with_name(staging.name + ".old")
            _remove(trash)
            os.rename(target, trash)
            self.publish(parts, staging)
            _remove(trash)
        else:
            self.publish(parts, staging)

    def read_selection(self, t: int, name: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The attributes and arrays of a recorded selection."""
        if name not in self.selections(t):
            known = ", ".join(self.selections(t)) or "none"
            raise AloeError(f"{self.path}: round {t} has no selection {name!r} (recorded: {known})")
        node = self.backend.open_node(self.backend.node_path(self.path, SELECTIONS, round_name(t), name))
        try:
            return node.attrs(), {key: node.read(key) for key in node.array_names()}
        finally:
            node.close()

    # frozen-feature caches ----------------------------------------------------------------

    def cached_features(self, key: str) -> RowReader | None:
        """The cached pool features under ``key`` (e.g. a backbone hash), or ``None``."""
        check_name(key, "cache")
        if key not in self.backend.list_nodes(self.path, CACHE):
            return None
        node = self.backend.open_node(self.backend.node_path(self.path, CACHE, key))
        return RowReader(node, f"{self.path} cache {key}")

    def begin_cache(
        self,
        key: str,
        *,
        feature_dim: int,
        meta: dict[str, Any] | None = None,
        feature_dtype: str = "float16",
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        resume: bool = True,
    ) -> StagedWriter:
        """Start (or resume) writing the pool's features under cache ``key``; takes ``(features,)`` blocks."""
        self._need_writable()
        check_name(key, "cache")
        if key in self.backend.list_nodes(self.path, CACHE):
            raise AloeError(f"{self.path}: cache {key!r} already exists")
        return StagedWriter(
            self,
            (CACHE, key),
            {"features": (feature_dim, np.dtype(feature_dtype))},
            {},
            {"key": key, "meta": dict(meta or {}), "feature_dtype": feature_dtype},
            max(1, min(chunk_rows, self.n_items)),
            resume,
        )

    # inspection ---------------------------------------------------------------------------

    def disk_bytes(self, *parts: str) -> int:
        """Bytes on disk of the whole store, or of one node."""
        if parts:
            return _disk_bytes(self.backend.node_path(self.path, *parts))
        return sum(_disk_bytes(p) for p in self.backend.disk_paths(self.path) if p.exists())


def create_store(
    path: str | Path,
    ids: Sequence[str] | np.ndarray,
    meta: dict[str, Any] | None = None,
    backend: str | None = None,
) -> Store:
    """Create a new, empty store for a pool with the given item ids (unique strings)."""
    path = Path(path)
    chosen = backend_for(path, backend)
    ids = np.asarray([str(i) for i in ids], dtype=str)
    if len(ids) == 0:
        raise AloeError("a pool needs at least one item")
    if len(np.unique(ids)) != len(ids):
        raise AloeError("pool ids must be unique")
    if any(p.exists() for p in chosen.disk_paths(path)):
        raise AloeError(f"{path} already exists")
    staging = path.with_name(path.name + ".creating")
    _remove(staging)
    node = chosen.new_node(staging)
    node.create_array("ids", ids.shape, str, chunk_rows=65536)
    node.write_rows("ids", 0, ids)
    node.set_attrs(
        {
            "kind": STORE_KIND,
            "schema_version": SCHEMA_VERSION,
            "n_items": len(ids),
            "fingerprint": fingerprint(ids),
            "meta": dict(meta or {}),
            "created_by": f"aloe-al {__version__}",
        }
    )
    node.close()
    os.rename(staging, path)
    return Store(path, chosen, writable=True)


def open_store(path: str | Path, mode: str = "r", backend: str | None = None) -> Store:
    """Open an existing store, ``mode`` ``"r"`` (read-only) or ``"a"`` (may add rounds/selections)."""
    path = Path(path)
    if mode not in ("r", "a"):
        raise ValueError("mode must be 'r' or 'a'")
    if not path.exists():
        raise AloeError(f"no store at {path}")
    return Store(path, backend_for(path, backend), writable=mode == "a")
