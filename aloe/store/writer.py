"""Writing nodes: the stage -> write -> rename protocol and the resumable :class:`StagedWriter`.

Every node is written under a staging path and published by one rename (:func:`publish`), so a
reader sees a whole node or none. Small nodes written in one go (the store root, a selection) use
:func:`staged_node`; N-row nodes streamed over a long pass (rounds, feature caches) use
:class:`StagedWriter`, which saves its progress after every whole chunk and resumes after a kill.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from aloe.errors import AloeError
from aloe.store.backend import Backend, NodeWriter


def remove_path(path: Path) -> None:
    """Delete a file or a directory tree; nothing if it is absent."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_json_atomic(path: Path, data: dict[str, Any], indent: int | None = None) -> None:
    """Write ``data`` as JSON (``indent`` as :func:`json.dumps`) through a temporary file and a rename
    (never half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=indent))
    os.replace(tmp, path)


def aside_path(staging: Path) -> Path:
    """Where :func:`publish` moves the node it replaces until the new one is in place."""
    return staging.with_name(staging.name + ".old")


def publish(staging: Path, target: Path, *, replace: bool = False) -> None:
    """Move the finished node ``staging`` to ``target`` atomically.

    Without ``replace`` an existing ``target`` is never overwritten (two racing writers: the
    second gets :class:`FileExistsError`). With ``replace`` the old node is first moved aside
    (:func:`aside_path`); :func:`recover_replace` finishes the swap if the process dies between
    the two renames.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if replace and target.exists():
        aside = aside_path(staging)
        remove_path(aside)
        os.rename(target, aside)
        os.rename(staging, target)
        remove_path(aside)
        return
    if staging.is_dir():
        try:
            os.rename(staging, target)  # a directory never replaces a non-empty one
        except OSError as exc:
            if target.exists():
                raise FileExistsError(str(target)) from exc
            raise
    else:
        try:
            os.link(staging, target)  # fails if target exists, unlike rename
        except FileExistsError:
            raise
        except OSError:  # a filesystem without hard links
            if target.exists():
                raise FileExistsError(str(target)) from None
            os.rename(staging, target)
            return
        staging.unlink()


def recover_replace(staging: Path, target: Path) -> None:
    """Finish a :func:`publish` with ``replace`` that was killed between its two renames.

    If the old node was moved aside and the finished new one is still staged, the new one is
    published; if only the old one is left, it is put back.
    """
    aside = aside_path(staging)
    if not aside.exists():
        return
    if target.exists():
        remove_path(aside)
    elif staging.exists():
        os.rename(staging, target)
        remove_path(aside)
    else:
        os.rename(aside, target)


@contextmanager
def staged_node(
    backend: Backend, staging: Path, target: Path, *, replace: bool = False
) -> Iterator[NodeWriter]:
    """Stage a small node, let the caller fill it, then publish it (nothing is left on error)."""
    remove_path(staging)
    node = backend.new_node(staging)
    try:
        yield node
    except BaseException:
        node.close()
        remove_path(staging)
        raise
    node.close()
    try:
        publish(staging, target, replace=replace)
    except BaseException:
        remove_path(staging)
        raise


def write_arrays(node: NodeWriter, arrays: dict[str, np.ndarray]) -> None:
    """Create and fill one array per entry (strings stored as strings)."""
    for key, values in arrays.items():
        values = np.asarray(values)
        node.create_array(key, values.shape, str if values.dtype.kind in "UT" else values.dtype)
        if values.size:
            node.write_rows(key, 0, values)


_HELD_LOCKS: dict[Path, int] = {}  # lock file -> descriptor, for the staged nodes this process writes


def take_lock(staging: Path, what: str) -> Path:
    """Hold ``<staging>.lock`` (the staged node's writer lock); :class:`AloeError` naming ``what`` when
    another process holds it. A writer abandoned in this process (a test's simulated kill) hands it over.
    """
    staging.parent.mkdir(parents=True, exist_ok=True)
    path = staging.with_name(staging.name + ".lock")
    if path not in _HELD_LOCKS:
        handle = os.open(path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            raise AloeError(f"{what} is being written by another process; wait for it to finish") from None
        _HELD_LOCKS[path] = handle
    return path


def release_lock(path: Path) -> None:
    """Drop the lock :func:`take_lock` took (nothing if this process does not hold it)."""
    if path in _HELD_LOCKS:
        os.close(_HELD_LOCKS.pop(path))  # closing the descriptor drops the lock


def fits(values: np.ndarray, dtype: Any) -> bool:
    """Whether the finite ``values`` stay finite in ``dtype`` (1e5 does not in float16)."""
    dtype = np.dtype(dtype)
    if dtype.kind != "f" or values.dtype.kind != "f" or values.size == 0:
        return True
    finite = values if np.isfinite(values).all() else values[np.isfinite(values)]
    return finite.size == 0 or max(float(finite.max()), -float(finite.min())) <= float(np.finfo(dtype).max)


def check_representable(name: str, values: np.ndarray, dtype: Any) -> None:
    """:class:`AloeError` naming the largest value when finite ``values`` overflow ``dtype``."""
    if not fits(values, dtype):
        finite = values[np.isfinite(values)]
        largest = max(float(finite.max()), -float(finite.min()))
        limit = float(np.finfo(np.dtype(dtype)).max)
        raise AloeError(
            f"{name} reach {largest:.3g}, beyond the {np.dtype(dtype).name} range (+-{limit:.6g}): "
            "rescale them or store them as float32"
        )


def progress_path(staging: Path, rows: tuple[int, int] | None = None) -> Path:
    """Where a :class:`StagedWriter` of the whole node (or of rows ``[a, b)``) records how far it got."""
    suffix = "" if rows is None else f".{rows[0]}-{rows[1]}"
    return staging.with_name(f"{staging.name}.progress{suffix}.json")


def staged_progress_files(staging: Path) -> list[Path]:
    """Every progress file of the staged node ``staging`` (whole-node and per-row-range)."""
    return sorted(staging.parent.glob(f"{staging.name}.progress*.json"))


class Progress(NamedTuple):
    """What a progress file says: the next row to write and the writer's rows ``[a, b)``."""

    rows_done: int
    rows: tuple[int, int] | None  # None: the file gives no such pair


def read_progress(path: Path, signature: str) -> Progress | None:
    """The progress file at ``path`` when it parses and carries ``signature``; ``None`` when it is
    missing, unreadable or another writer's."""
    try:
        progress = json.loads(path.read_text())
        done = int(progress["rows_done"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if progress.get("signature") != signature:
        return None
    try:
        start, stop = progress["rows"]
    except (KeyError, ValueError, TypeError):
        return Progress(done, None)
    return Progress(done, (start, stop))


class StagedWriter:
    """Streams N-row arrays into a staged node, a chunk at a time, then publishes it atomically.

    Progress is saved after every full chunk, so a writer killed mid-way can be resumed from
    ``rows_done`` by a later writer with the same signature (the same parts, arrays, static
    arrays, structural attributes and ``resume_token``); ``commit`` renames the staged node into
    place in one step, so readers see the whole node or nothing.

    Parameters
    ----------
    backend, root, parts
        Where the node lives: ``backend.node_path(root, *parts)`` once published.
    n_items
        Rows of every row array (the pool size).
    row_arrays
        ``name -> (width, dtype)`` of the ``(n_items, width)`` arrays that :meth:`write` fills.
    static_arrays
        Small arrays written whole when the node is staged.
    attrs
        The node's attributes (``provenance`` is left out of the signature).
    chunk_rows
        Rows per chunk; progress is saved at chunk boundaries.
    resume
        Continue a matching staged node instead of starting afresh.
    resume_token
        Anything else that shapes the content (e.g. a checkpoint hash); part of the signature.
    row_range
        Rows ``[a, b)`` this writer fills (default: all). ``a`` must lie on a chunk boundary and
        ``b`` too, unless it is ``n_items``.
    join
        Write into a node that another writer (with the same signature) staged, never create it.

    Notes
    -----
    Several writers of one node (one process per rank), the contract:

    1. One writer stages the node: ``StagedWriter(..., row_range=(a0, b0))`` creates it (or
       resumes it when the signature matches) before anyone joins.
    2. The others join it: ``StagedWriter(..., row_range=(a_r, b_r), join=True)``; each resumes
       from its own progress file (``progress_path(staging, (a, b))``) after a kill.
    3. Each writer writes its rows in order from ``rows_done`` and calls :meth:`finish`.
    4. Once all have finished (a barrier), one writer calls :meth:`commit`: it checks that the
       finished ranges cover every row, sets the attributes and publishes the node.

    Rows are written in whole chunks and each chunk by one writer, so on Zarr (one file per
    chunk) writers of disjoint chunk-aligned ranges never share a file. An HDF5 node is one file
    and takes exactly one writer: a partial ``row_range`` there is an :class:`AloeError`.
    """

    def __init__(
        self,
        backend: Backend,
        root: Path,
        parts: tuple[str, ...],
        n_items: int,
        row_arrays: dict[str, tuple[int, np.dtype]],
        static_arrays: dict[str, np.ndarray],
        attrs: dict[str, Any],
        chunk_rows: int,
        resume: bool,
        resume_token: str = "",
        row_range: tuple[int, int] | None = None,
        join: bool = False,
    ) -> None:
        self._backend = backend
        self._root = root
        self._parts = parts
        self.n_items = n_items
        self._row_arrays = row_arrays
        self._attrs = attrs
        self.chunk_rows = chunk_rows
        self.row_range = self._check_range(row_range)
        whole = self.row_range == (0, n_items)
        self._staging = backend.staging_path(root, *parts)
        self._target = backend.node_path(root, *parts)
        self._progress = progress_path(self._staging, None if whole else self.row_range)
        self._signature = self._sign(row_arrays, static_arrays, chunk_rows, resume_token)
        self._pending: list[list[np.ndarray]] = [[] for _ in row_arrays]
        self._pending_rows = 0
        self._lock = None if join else self._take_lock()
        self._durable = self._try_resume() if resume or join else None
        if self._durable is None:
            if join:
                self._node = self._join()
            else:
                self._node = self._start(static_arrays)
            self._durable = self.row_range[0]
            self._save_progress()
        self.resumed_from = self._durable

    def _take_lock(self) -> Path:
        """Hold the staged node's lock while writing: a writer in another process gets a clear error."""
        return take_lock(self._staging, "/".join(self._parts))

    def _release(self) -> None:
        if self._lock is not None:
            release_lock(self._lock)
        self._lock = None

    def _check_range(self, row_range: tuple[int, int] | None) -> tuple[int, int]:
        if row_range is None:
            return 0, self.n_items
        start, stop = int(row_range[0]), int(row_range[1])
        if not 0 <= start < stop <= self.n_items:
            raise AloeError(f"row range [{start}, {stop}) is not inside the pool's {self.n_items} rows")
        if start % self.chunk_rows or (stop % self.chunk_rows and stop != self.n_items):
            raise AloeError(f"row range [{start}, {stop}) is not aligned to {self.chunk_rows}-row chunks")
        if (start, stop) != (0, self.n_items) and not self._backend.shared_writes:
            raise AloeError(
                f"a {self._backend.name} node takes one writer; write several row ranges to a Zarr store"
            )
        return start, stop

    def _sign(
        self,
        row_arrays: dict[str, tuple[int, np.dtype]],
        static_arrays: dict[str, np.ndarray],
        chunk_rows: int,
        token: str,
    ) -> str:
        digest = hashlib.sha256(json.dumps([self._parts, chunk_rows, token]).encode())
        for name, (width, dtype) in row_arrays.items():
            digest.update(f"{name}:{width}:{np.dtype(dtype).str}".encode())
        for name, values in static_arrays.items():
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(values).tobytes())
        structural = {k: v for k, v in self._attrs.items() if k != "provenance"}
        digest.update(json.dumps(structural, sort_keys=True, default=str).encode())
        return digest.hexdigest()

    def _try_resume(self) -> int | None:
        """The next row to write, from a matching progress file; ``None`` when there is none."""
        progress = read_progress(self._progress, self._signature)
        if progress is None or not self.row_range[0] < progress.rows_done <= self.row_range[1]:
            return None
        try:
            self._node = self._backend.append_node(self._staging)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return progress.rows_done

    def _join(self) -> NodeWriter:
        try:
            return self._backend.append_node(self._staging)
        except OSError:
            raise AloeError(f"{'/'.join(self._parts)}: no staged node to join (stage it first)") from None

    def _start(self, static_arrays: dict[str, np.ndarray]) -> NodeWriter:
        remove_path(self._staging)
        for path in staged_progress_files(self._staging):
            remove_path(path)
        node = self._backend.new_node(self._staging)
        for name, (width, dtype) in self._row_arrays.items():
            node.create_array(name, (self.n_items, width), dtype, chunk_rows=self.chunk_rows)
        write_arrays(node, static_arrays)
        node.set_attrs(self._attrs)
        node.flush()
        return node

    def _save_progress(self) -> None:
        write_json_atomic(
            self._progress,
            {"signature": self._signature, "rows": list(self.row_range), "rows_done": self._durable},
        )

    @property
    def rows_done(self) -> int:
        """The next row to write: rows before it are accepted (on a resumed writer: continue here)."""
        return self._durable + self._pending_rows

    def write(self, *blocks: np.ndarray) -> None:
        """Append one block per row array (same row count each, in the order they were declared)."""
        if len(blocks) != len(self._row_arrays):
            raise ValueError(f"expected {len(self._row_arrays)} blocks, got {len(blocks)}")
        rows = len(blocks[0])
        for block, (name, (width, _)) in zip(blocks, self._row_arrays.items(), strict=True):
            if block.ndim != 2 or block.shape != (rows, width):
                raise ValueError(f"{name} block has shape {block.shape}, expected ({rows}, {width})")
        if self.rows_done + rows > self.row_range[1]:
            if self.row_range[1] == self.n_items:
                raise ValueError(f"writing past the pool's {self.n_items} rows")
            raise ValueError(f"writing past row {self.row_range[1]}, the end of this writer's range")
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
            source = np.concatenate(self._pending[index])
            with np.errstate(over="ignore"):  # overflow is checked just below
                joined = source.astype(dtype, copy=False)
            if joined is not source and not np.isfinite(joined[:rows]).all():
                self._refuse_overflow(name, source[:rows], np.dtype(dtype))
            self._node.write_rows(name, self._durable, joined[:rows])
            self._pending[index] = [joined[rows:]] if rows < len(joined) else []
        self._node.flush()
        self._durable += rows
        self._pending_rows -= rows
        self._save_progress()

    def _refuse_overflow(self, name: str, values: np.ndarray, dtype: np.dtype) -> None:
        """Finite values that overflow ``dtype``: drop the staged node and raise :class:`AloeError`."""
        try:
            check_representable(name, values, dtype)
        except AloeError:
            self.abort()
            raise

    def finish(self) -> None:
        """Write what is buffered and check this writer's rows are all there (does not publish)."""
        self._flush(whole_chunks_only=False)
        if self._durable != self.row_range[1]:
            start, stop = self.row_range
            raise ValueError(f"only {self._durable - start} of {stop - start} rows were written")

    def _check_covered(self) -> None:
        """Every row of the node is in a finished range with this writer's signature."""
        covered = np.zeros(self.n_items, dtype=bool)
        for path in staged_progress_files(self._staging):
            progress = read_progress(path, self._signature)
            if progress is not None and progress.rows is not None:
                covered[progress.rows[0] : progress.rows_done] = True
        if not covered.all():
            missing = int((~covered).sum())
            raise AloeError(f"{'/'.join(self._parts)}: {missing} rows are not written yet")

    def commit(self, extra_attrs: dict[str, Any] | None = None) -> None:
        """Finish this writer's rows, check every row of the node is there, and publish it."""
        self.finish()
        if self.row_range != (0, self.n_items):
            self._check_covered()
        self._node.set_attrs({**self._attrs, **(extra_attrs or {}), "committed_at": time.time()})
        self._node.close()
        self._backend.prepare_parent(self._root, *self._parts)
        try:
            publish(self._staging, self._target)
        except FileExistsError:
            raise AloeError(f"{'/'.join(self._parts)} already exists (another writer finished first)") from None
        for path in staged_progress_files(self._staging):
            remove_path(path)
        self._release()

    def abort(self) -> None:
        """Drop the staged node and its progress."""
        self._node.close()
        remove_path(self._staging)
        for path in staged_progress_files(self._staging):
            remove_path(path)
        self._release()
