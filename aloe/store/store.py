"""The :class:`Store` facade: one API over the Zarr and HDF5 backends (see :mod:`aloe.store.schema`).

Reading goes through :mod:`aloe.store.readers`, writing through :mod:`aloe.store.writer`.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aloe import __version__
from aloe.errors import AloeError
from aloe.labels import positions_in
from aloe.store.backend import Backend, DamagedNode, NodeReader
from aloe.store.hdf5_backend import Hdf5Backend
from aloe.store.readers import RoundReader, RowReader
from aloe.store.schema import (
    CACHE,
    ROUNDS,
    SCHEMA_VERSION,
    SELECTIONS,
    STORE_KIND,
    check_name,
    fingerprint,
    parse_round_name,
    round_name,
)
from aloe.store.writer import (
    StagedWriter,
    aside_path,
    recover_replace,
    remove_path,
    staged_node,
    write_arrays,
)
from aloe.store.zarr_backend import ZarrBackend

BACKENDS: dict[str, Backend] = {b.name: b for b in (ZarrBackend(), Hdf5Backend())}
DEFAULT_CHUNK_ROWS = 8192
TRASH = "dropped"  # a node taken out of the store waits in the staging area as dropped-PID-HEX until deleted
CACHE_WAY_OUT = "it is derived data: the next aloe-embed that needs it removes it and computes it again"


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
    endings = " or ".join(f"{'/'.join(b.suffixes)} ({b.name})" for b in BACKENDS.values())
    raise AloeError(f"cannot tell the store backend from {str(path)!r}: give a store path ending in {endings}")


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
        except DamagedNode as exc:
            raise AloeError(f"{path}: not an aloe store ({exc.reason})") from None
        try:
            attrs = root.attrs()
            if attrs.get("kind") != STORE_KIND:
                raise AloeError(f"{path}: not an aloe store (no '{STORE_KIND}' marker)")
            version = attrs.get("schema_version")
            if not isinstance(version, int) or isinstance(version, bool) or version < 1:
                raise DamagedNode(path, f"schema_version {version!r} is not a version number")
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
            raise DamagedNode(path, "the pool ids do not match the store's fingerprint")
        self._positions: dict[str, int] | None = None
        if writable:
            for t, name in self._replaced_selections():
                parts = (SELECTIONS, round_name(t), name)
                recover_replace(self.backend.staging_path(path, *parts), self.backend.node_path(path, *parts))

    @property
    def n_items(self) -> int:
        """Pool size ``N``."""
        return len(self.ids)

    def _need_writable(self) -> None:
        if not self.writable:
            raise AloeError(f"{self.path}: store opened read-only")

    def _open(self, path: Path, way_out: str) -> NodeReader:
        """Open the node at ``path``; its damage messages end with ``way_out``."""
        try:
            node = self.backend.open_node(path)
        except DamagedNode as exc:
            raise DamagedNode(exc.path, exc.reason, way_out) from None
        node.way_out = way_out
        return node

    def discard(self, path: Path) -> None:
        """Take the node at ``path`` out of the store with one rename, then delete it; a kill in between
        leaves it in the staging area, where the next discard removes it."""
        trash = self.backend.staging_path(self.path, TRASH).parent
        for leftover in trash.glob(f"{TRASH}-*"):
            _remove_if_dead(leftover)
        if not path.exists():
            return
        trash.mkdir(parents=True, exist_ok=True)
        aside = trash / f"{TRASH}-{os.getpid()}-{secrets.token_hex(4)}"
        os.rename(path, aside)
        remove_path(aside)

    def position_of(self, ids: Iterable[str]) -> np.ndarray:
        """Pool positions of ``ids``; :class:`AloeError` naming the first few unknown ids."""
        if self._positions is None:
            self._positions = {item: i for i, item in enumerate(self.ids.tolist())}
        return positions_in(self._positions, ids, f"the pool of {self.path}")

    # rounds -------------------------------------------------------------------------------

    def rounds(self) -> list[int]:
        """Sorted numbers of the complete rounds."""
        names = self.backend.list_nodes(self.path, ROUNDS)
        return sorted(t for t in map(parse_round_name, names) if t is not None)

    def incomplete_rounds(self) -> list[int]:
        """Rounds that a writer began but did not commit (it crashed, or is still writing)."""
        staged = self.backend.list_staged(self.path)
        return sorted(int(parts[1]) for parts in staged if parts[0] == ROUNDS and parts[1].isdigit())

    def incomplete_caches(self) -> list[str]:
        """Feature caches that a writer began but did not commit."""
        staged = self.backend.list_staged(self.path)
        return sorted(parts[1] for parts in staged if parts[0] == CACHE and len(parts) == 2)

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
        path = self.backend.node_path(self.path, ROUNDS, round_name(t))
        return RoundReader(self._open(path, self.round_way_out(t)), t, self.n_items, str(path))

    def round_way_out(self, t: int) -> str:
        """What a user does about a damaged (or unwanted) round ``t``."""
        return (f"'aloe store drop {self.path} --round {t}' removes it and any later round, "
                "then aloe-embed writes it again")

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
        row_range: tuple[int, int] | None = None,
        join: bool = False,
    ) -> StagedWriter:
        """Start (or resume) writing round ``t``; returns a writer taking ``(features, logits)`` blocks.

        A staged round left by a killed writer is resumed when everything that shapes its content
        (classes, labeled set, dtypes, chunking, ``resume_token``) is the same, else restarted.
        ``row_range`` and ``join`` let several processes write one round (see :class:`StagedWriter`).
        """
        self._need_writable()
        if t < 0:
            raise AloeError(f"round numbers start at 0, got {t}")
        if t in self.rounds():
            raise AloeError(f"{self.path}: round {t} already exists (rounds are immutable); {self.round_way_out(t)}")
        positions = np.asarray(labeled_positions, dtype=np.int64)
        classes = np.asarray(labeled_classes, dtype=np.int64)
        if positions.shape != classes.shape or positions.ndim != 1:
            raise AloeError("labeled positions and classes must be 1-D and of equal length")
        if positions.size and (positions.min() < 0 or positions.max() >= self.n_items):
            raise AloeError(f"labeled positions out of range 0..{self.n_items - 1}")
        if classes.size and (classes.min() < 0 or classes.max() >= len(class_names)):
            raise AloeError(f"labeled class indices out of range 0..{len(class_names) - 1}")
        self._check_feature_dim(t, feature_dim)
        attrs = {
            "t": t,
            "class_names": list(class_names),
            "feature_dtype": feature_dtype,
            "provenance": dict(provenance or {}),
            "aloe_version": __version__,
        }
        return StagedWriter(
            self.backend,
            self.path,
            (ROUNDS, round_name(t)),
            self.n_items,
            {"features": (feature_dim, np.dtype(feature_dtype)), "logits": (len(class_names), np.dtype("float32"))},
            {"labeled_positions": positions, "labeled_classes": classes},
            attrs,
            max(1, min(chunk_rows, self.n_items)),
            resume,
            resume_token,
            row_range=row_range,
            join=join,
        )

    def _check_feature_dim(self, t: int, feature_dim: int) -> None:
        """One feature space per store: round ``t`` must have the width of the round before it."""
        earlier = [r for r in self.rounds() if r < t]
        if not earlier:
            return
        reader = self.round(earlier[-1])
        try:
            width = reader.feature_dim
        finally:
            reader.close()
        if width != feature_dim:
            raise AloeError(
                f"{self.path}: round {t} would have {feature_dim}-wide features but round "
                f"{earlier[-1]} has {width}; a store holds one feature space (use a new store "
                "for a different backbone)"
            )

    # selections ---------------------------------------------------------------------------

    def selections(self, t: int) -> list[str]:
        """Names of the selections recorded for round ``t``."""
        names = set(self.backend.list_nodes(self.path, SELECTIONS, round_name(t)))
        names.update(name for r, name in self._replaced_selections() if r == t)
        return sorted(names)

    def _replaced_selections(self) -> list[tuple[int, str]]:
        """``(t, name)`` of selections whose ``--overwrite`` stopped between its two renames."""
        pattern = aside_path(self.backend.staging_path(self.path, SELECTIONS, "@", "*"))
        prefix, suffix = pattern.name.split("*")
        head, tail = prefix.split("@")
        found = []
        for path in pattern.parent.glob(pattern.name.replace("@", "*")):
            middle = path.name[len(head) : len(path.name) - len(suffix)]
            t, _, name = middle.partition(tail)
            if t.isdigit() and name:
                found.append((int(t), name))
        return found

    def _selection_path(self, t: int, name: str) -> Path:
        """Where selection ``name`` of round ``t`` lives, also mid-``--overwrite`` (read-only)."""
        parts = (SELECTIONS, round_name(t), name)
        target = self.backend.node_path(self.path, *parts)
        staging = self.backend.staging_path(self.path, *parts)
        if target.exists() or not aside_path(staging).exists():
            return target
        return staging if staging.exists() else aside_path(staging)

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
        staging = self.backend.staging_path(self.path, *parts)
        recover_replace(staging, target)
        if target.exists() and not overwrite:
            raise AloeError(f"round {t} already has a selection named {name!r} (use --overwrite or a new --name)")
        self.backend.prepare_parent(self.path, *parts)
        with staged_node(self.backend, staging, target, replace=overwrite) as node:
            write_arrays(node, arrays)
            node.set_attrs({**attrs, "t": t, "name": name, "recorded_at": time.time()})

    def read_selection(self, t: int, name: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The attributes and arrays of a recorded selection."""
        if name not in self.selections(t):
            known = ", ".join(self.selections(t)) or "none"
            raise AloeError(f"{self.path}: round {t} has no selection {name!r} (recorded: {known})")
        way_out = f"aloe-select --round {t} with another --name records it again; {self.round_way_out(t)}"
        node = self._open(self._selection_path(t, name), way_out)
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
        path = self.backend.node_path(self.path, CACHE, key)
        return RowReader(self._open(path, CACHE_WAY_OUT), str(path))

    def drop_damaged_cache(self, key: str) -> str | None:
        """Read cache ``key`` back in full (every chunk and its checksum); a damaged one is derived data:
        remove it (the caller computes it again) and return a note saying so. ``None``: absent or sound."""
        self._need_writable()
        try:
            reader = self.cached_features(key)
            if reader is None:
                return None
            try:
                for _ in reader.iter_blocks(dtype=None):
                    pass
            finally:
                reader.close()
        except DamagedNode as exc:
            self.discard(self.backend.node_path(self.path, CACHE, key))
            return f"{exc.path} is damaged ({exc.reason}); it is derived data: removed it, computing it again"
        return None

    def begin_cache(
        self,
        key: str,
        *,
        feature_dim: int,
        meta: dict[str, Any] | None = None,
        feature_dtype: str = "float16",
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        resume: bool = True,
        row_range: tuple[int, int] | None = None,
        join: bool = False,
    ) -> StagedWriter:
        """Start (or resume) writing the pool's features under cache ``key``; takes ``(features,)`` blocks.

        ``row_range`` and ``join`` let several processes write one cache (see :class:`StagedWriter`).
        """
        self._need_writable()
        check_name(key, "cache")
        if key in self.backend.list_nodes(self.path, CACHE):
            raise AloeError(f"{self.path}: cache {key!r} already exists")
        return StagedWriter(
            self.backend,
            self.path,
            (CACHE, key),
            self.n_items,
            {"features": (feature_dim, np.dtype(feature_dtype))},
            {},
            {"key": key, "meta": dict(meta or {}), "feature_dtype": feature_dtype},
            max(1, min(chunk_rows, self.n_items)),
            resume,
            row_range=row_range,
            join=join,
        )

    # inspection ---------------------------------------------------------------------------

    def disk_bytes(self, *parts: str) -> int:
        """Bytes on disk of the whole store, or of one node."""
        if parts:
            return _disk_bytes(self.backend.node_path(self.path, *parts))
        return sum(_disk_bytes(p) for p in self.backend.disk_paths(self.path) if p.exists())


def _disk_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _remove_if_dead(leftover: Path) -> None:
    """Remove ``leftover`` (named ``...-PID-HEX``) when the process that made it is gone."""
    pid = leftover.name.rsplit("-", 2)[-2]
    if pid.isdigit() and not _alive(int(pid)):
        remove_path(leftover)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    for leftover in path.parent.glob(f"{path.name}.creating-*"):  # what killed create_store calls left
        _remove_if_dead(leftover)
    staging = path.with_name(f"{path.name}.creating-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with staged_node(chosen, staging, path) as node:
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
    except FileExistsError:  # another process created it first: use theirs if it is this pool
        store = Store(path, chosen, writable=True)
        if store.fingerprint != fingerprint(ids):
            raise AloeError(f"{path} was just created by another process for a different pool") from None
        return store
    return Store(path, chosen, writable=True)


def open_store(path: str | Path, mode: str = "r", backend: str | None = None) -> Store:
    """Open an existing store, ``mode`` ``"r"`` (read-only) or ``"a"`` (may add rounds/selections)."""
    path = Path(path)
    if mode not in ("r", "a"):
        raise ValueError("mode must be 'r' or 'a'")
    if not path.exists():
        raise AloeError(f"no store at {path}")
    return Store(path, backend_for(path, backend), writable=mode == "a")
