"""``aloe store drop``: take round T and every later round out of a store, so aloe-embed can write T again.

Rounds are numbered 0, 1, 2, ... with no gaps, so a round is dropped with every round after it, and with
their selection records and any staged (incomplete) round. Each node leaves the store in one rename,
the newest round first and a round's selections before the round, so a drop killed mid-way leaves a
readable store that a second drop finishes.
"""

from __future__ import annotations

from pathlib import Path

from aloe.errors import AloeError
from aloe.store.check import check_round
from aloe.store.schema import ROUNDS, SELECTIONS, parse_round_name, round_name
from aloe.store.store import Store, open_store
from aloe.store.writer import release_lock, remove_path, take_lock


def _staged_round_number(name: str) -> int | None:
    """The round a staging-area entry belongs to (``rounds~0003.progress.json``, ``selections~0003~b``)."""
    parts = name.split("~")
    if parts[0] not in (ROUNDS, SELECTIONS) or len(parts) < 2:
        return None
    return parse_round_name(parts[1].split(".")[0])


def _state(store: Store, t: int) -> str:
    """Round ``t``: ``sound``, ``damaged: ...``, ``incomplete`` (only staged) or ``missing`` (only its
    selections are left)."""
    if t not in store.rounds():
        return "missing" if t not in store.incomplete_rounds() else "incomplete"
    try:
        check_round(store, t)
    except AloeError as exc:
        return f"damaged: {getattr(exc, 'reason', exc)}"
    return "sound"


def _clear_staged(store: Store, t: int, lock: Path) -> None:
    """Remove what writers staged for round ``t`` (its lock held): progress files first (a staged node
    without one is never resumed), then the nodes and the lock file."""
    entries = [p for p in lock.parent.glob("*") if p != lock and _staged_round_number(p.name) == t]
    for entry in sorted(entries, key=lambda p: ".progress" not in p.name):
        remove_path(entry)
    remove_path(lock)


def drop_rounds(path: str | Path, first: int, force: bool = False) -> list[str]:
    """Remove round ``first`` and every later round of the store at ``path``; one line per round removed.

    Raises :class:`AloeError` (nothing removed) when there is no such round, when one of them is sound
    and ``force`` is not set, or when another process is writing one of them.
    """
    store = open_store(path, "a")
    recorded = map(parse_round_name, store.backend.list_nodes(store.path, SELECTIONS))
    found = [*store.rounds(), *store.incomplete_rounds(), *recorded]
    numbers = sorted({t for t in found if t is not None and t >= first})
    if not numbers:
        rounds = ", ".join(map(str, store.rounds())) or "none"
        raise AloeError(f"{store.path}: no round {first} or later to drop (complete rounds: {rounds})")
    states = {t: _state(store, t) for t in numbers}
    sound = [str(t) for t in numbers if states[t] == "sound"]
    if sound and not force:
        raise AloeError(
            f"{store.path}: round {', '.join(sound)} {'is' if len(sound) == 1 else 'are'} sound; add --force to "
            f"drop {'it' if len(sound) == 1 else 'them'} with {'its' if len(sound) == 1 else 'their'} selections"
        )
    locks: dict[int, Path] = {}
    lines = []
    try:
        for t in numbers:  # a live writer of any of them: refuse before anything is removed
            locks[t] = take_lock(store.backend.staging_path(store.path, ROUNDS, round_name(t)), f"round {t}")
        for t in reversed(numbers):
            selections = store.selections(t)
            _clear_staged(store, t, locks[t])
            # the folder of round t's selection nodes (a name is needed to find it; any will do)
            store.discard(store.backend.node_path(store.path, SELECTIONS, round_name(t), "any").parent)
            store.discard(store.backend.node_path(store.path, ROUNDS, round_name(t)))
            lines.append(f"dropped round {t} ({states[t]}), selections: {', '.join(selections) or 'none'}")
    finally:
        for lock in locks.values():
            release_lock(lock)
    return [*reversed(lines), f"the next aloe-embed writes round {store.next_round()}"]
