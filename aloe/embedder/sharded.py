"""Several ranks writing one store node: each its chunk-aligned rows, rank 0 publishing.

The store's writer lets one process stage a node and others join it, each filling a disjoint range of
whole chunks with its own progress file (so a killed rank resumes its own range). These helpers
follow that contract under ``torchrun``; in one process they are the plain writer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from aloe.data.npz import npz_digest
from aloe.errors import AloeError
from aloe.internal.dist import Comm
from aloe.store.store import backend_for, open_store


def file_digest(path: str | Path) -> str | None:
    """A file's content hash (:func:`~aloe.data.npz.npz_digest`), ``None`` when it cannot be read."""
    try:
        return npz_digest(path)
    except OSError:
        return None


def _store_identity(path: Path) -> str:
    """The store at ``path`` as a rank sees it: its absolute path, pool fingerprint and complete rounds."""
    where = str(path.resolve())
    if not path.exists():
        return f"{where} (absent)"
    try:
        store = open_store(path)
        return f"{where} (pool {store.fingerprint}, rounds {store.rounds()})"
    except (AloeError, OSError):
        return f"{where} (unreadable)"


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``settings`` with nested dicts spread out under dotted keys (``finetune.lr``)."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_same_request(comm: Comm, store_path: str | Path, settings: dict[str, Any]) -> None:
    """Raise :class:`AloeError` on every rank unless all ranks got the same ``settings`` and see the
    same store at ``store_path``; call it before any other collective or any write.

    ``settings`` describes a rank's request (nested dicts allowed; hash file contents first, e.g. with
    :func:`file_digest`). The error names the first setting where a rank differs from rank 0.
    """
    if not comm.sharded:
        return
    mine = _flat({**settings, "store": _store_identity(Path(store_path))})
    everyone = comm.gather_objects(mine)
    for rank, theirs in enumerate(everyone[1:], start=1):
        for key in [*everyone[0], *(key for key in theirs if key not in everyone[0])]:
            if everyone[0].get(key) != theirs.get(key):
                raise AloeError(
                    f"the ranks were started with different settings: {key} is {everyone[0].get(key)!r} on "
                    f"rank 0 but {theirs.get(key)!r} on rank {rank}; start every rank with the same command "
                    "line and files, on one store (a shared filesystem)"
                )


def run_agreed(comm: Comm, action: Callable[[], Any]) -> Any:
    """Run ``action``; if it raises :class:`AloeError` on any rank, raise on every rank."""
    error, result = None, None
    try:
        result = action()
    except AloeError as exc:
        error = exc
    comm.agree(error)
    return result


def open_shard_writer(comm: Comm, begin: Callable[..., Any], n_items: int, chunk_rows: int) -> Any:
    """This rank's writer of one node (``begin(**kwargs)`` opens it), or ``None`` for an empty share.

    Rank 0 stages the node (fresh or resumed) for its rows; after a barrier the other ranks join it
    for theirs. Rows are shared out in whole chunks of ``min(chunk_rows, n_items)`` rows.
    """
    if not comm.sharded:
        return begin()
    start, stop = comm.row_range(n_items, max(1, min(chunk_rows, n_items)))
    first = run_agreed(comm, lambda: begin(row_range=(start, stop)) if comm.is_root else None)
    joined = run_agreed(
        comm, lambda: begin(row_range=(start, stop), join=True) if not comm.is_root and stop > start else None
    )
    return first if comm.is_root else joined


def publish_shards(comm: Comm, writer: Any, extra_attrs: dict[str, Any] | None = None) -> None:
    """Finish every rank's rows, then (after a barrier) rank 0 checks they cover the node and publishes."""
    if not comm.sharded:
        writer.commit(extra_attrs)
        return
    run_agreed(comm, lambda: writer.finish() if writer is not None else None)
    run_agreed(comm, lambda: writer.commit(extra_attrs) if comm.is_root else None)


def open_store_on_ranks(comm: Comm, path: Path, open_here: Callable[[], Any]) -> Any:
    """``open_here()`` on rank 0 first (it may create the store), then on the other ranks, which refuse
    a store they do not see (no shared filesystem) rather than create their own.

    Several ranks write one round only into a Zarr store: an HDF5 one is refused here, before any work.
    """
    backend = backend_for(path)
    if comm.sharded and not backend.shared_writes:
        raise AloeError(f"{path}: a round written by {comm.world} ranks needs a Zarr store (*.zarr); "
                        f"an {backend.name} store takes one writer")

    def join() -> Any:
        if not path.exists():
            raise AloeError(f"{path}: rank {comm.rank} does not see the store rank 0 opened; every rank needs "
                            "the same store, on a shared filesystem")
        return open_here()

    first = run_agreed(comm, lambda: open_here() if comm.is_root else None)
    return run_agreed(comm, lambda: first if comm.is_root else join())


def round_to_write(comm: Comm, path: Path, t: int | None) -> int:
    """The round every rank writes into the store at ``path``: ``t``, by default the next one (one past
    the newest complete round, 0 for a store not created yet). Rank 0 decides before anything is written.

    Raises :class:`AloeError` on every rank for a round that exists or is not the next one (rounds are
    numbered 0, 1, 2, ... with no gaps).
    """

    def choose() -> int | None:
        if not comm.is_root:
            return None
        store = open_store(path) if path.exists() else None
        rounds, following = (store.rounds(), store.next_round()) if store else ([], 0)
        if t is None or t == following:
            return following
        if t in rounds:
            raise AloeError(f"{path}: round {t} already exists (rounds are immutable); use --round {following} "
                            f"or omit --round, or to write round {t} again: {store.round_way_out(t)}")
        newest = f"the newest complete round is {rounds[-1]}" if rounds else "it has no complete round yet"
        raise AloeError(f"{path}: the next round is {following} ({newest}), not {t}: rounds are numbered "
                        f"0, 1, 2, ... with no gaps; use --round {following} or omit --round")

    return comm.broadcast(run_agreed(comm, choose))
