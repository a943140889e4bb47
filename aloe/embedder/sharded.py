"""Several ranks writing one store node: each its chunk-aligned rows, rank 0 publishing.

The store's writer lets one process stage a node and others join it, each filling a disjoint range of
whole chunks with its own progress file (so a killed rank resumes its own range). These helpers
follow that contract under ``torchrun``; in one process they are the plain writer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from aloe.errors import AloeError
from aloe.internal.dist import Comm
from aloe.store.store import backend_for, open_store


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
    """``open_here()`` on rank 0 first (it may create the store), then on the other ranks.

    Several ranks write one round only into a Zarr store: an HDF5 one is refused here, before any work.
    """
    backend = backend_for(path)
    if comm.sharded and not backend.shared_writes:
        raise AloeError(f"{path}: a round written by {comm.world} ranks needs a Zarr store (*.zarr); "
                        f"an {backend.name} store takes one writer")
    first = run_agreed(comm, lambda: open_here() if comm.is_root else None)
    return run_agreed(comm, lambda: first if comm.is_root else open_here())


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
