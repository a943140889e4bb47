"""``aloe store check``: read every published node of a store back and list what is wrong."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from aloe.errors import AloeError
from aloe.store.schema import CACHE, ROUNDS, SELECTIONS, parse_round_name, round_name
from aloe.store.store import Store, open_store


def check_round(store: Store, t: int) -> None:
    """Read round ``t`` back in full and check it against the pool; :class:`AloeError` when it is not sound."""
    reader = store.round(t)
    try:
        reader.verify()
        stored, recorded = str(reader.stored_dtype()), reader.attrs.get("feature_dtype")
        if recorded is not None and stored != recorded:
            raise AloeError(f"features are {stored}, the round records {recorded}")
        if reader.attrs.get("t") not in (None, t):
            raise AloeError(f"the node records itself as round {reader.attrs.get('t')}")
        positions, classes = reader.labeled_positions, reader.labeled_classes
        if positions.size and (positions.min() < 0 or positions.max() >= store.n_items):
            raise AloeError("labeled_positions point outside the pool")
        if len(np.unique(positions)) != len(positions):
            raise AloeError("labeled_positions repeat an item")
        if classes.size and (classes.min() < 0 or classes.max() >= reader.n_classes):
            raise AloeError("labeled_classes point outside the round's classes")
    finally:
        reader.close()


def _check_selection(store: Store, t: int, name: str) -> None:
    attrs, arrays = store.read_selection(t, name)
    if attrs.get("t") not in (None, t) or attrs.get("name") not in (None, name):
        raise AloeError(f"the record names round {attrs.get('t')} selection {attrs.get('name')!r}")
    positions = arrays.get("chosen_positions")
    if positions is not None and positions.size and (positions.min() < 0 or positions.max() >= store.n_items):
        raise AloeError("chosen_positions point outside the pool")


def _check_cache(store: Store, key: str) -> None:
    reader = store.cached_features(key)
    if reader is None:
        raise AloeError("listed but not readable")
    try:
        reader.verify()
        if reader.n_items != store.n_items:
            raise AloeError(f"features have {reader.n_items} rows, the pool has {store.n_items}")
    finally:
        reader.close()


def _fail(message: str) -> None:
    raise AloeError(message)


def _checks(store: Store) -> Iterator[tuple[str, Callable[[], None]]]:
    """``(node label, check)`` for every published node of ``store``."""
    rounds = []
    for name in store.backend.list_nodes(store.path, ROUNDS):
        t = parse_round_name(name)
        if t is None:
            yield f"{ROUNDS}/{name}", lambda: _fail("not a round number")
            continue
        rounds.append(t)
        yield f"{ROUNDS}/{name}", lambda t=t: check_round(store, t)
    # a deleted round leaves no node to list, but its selection records remain: rounds are numbered
    # from 0, so probing every number up to one past the last round finds the first gap
    for t in sorted(set(range(max(rounds, default=-1) + 2)) - set(rounds)):
        if store.selections(t):
            yield f"{SELECTIONS}/{round_name(t)}", lambda t=t: _fail(
                f"selections are recorded for round {t}, but {ROUNDS}/{round_name(t)} is missing (deleted?); "
                + store.round_way_out(t)
            )
    for t in rounds:
        for name in store.selections(t):
            yield f"{SELECTIONS}/{round_name(t)}/{name}", lambda t=t, name=name: _check_selection(store, t, name)
    for key in store.backend.list_nodes(store.path, CACHE):
        yield f"{CACHE}/{key}", lambda key=key: _check_cache(store, key)


def check_store(path: str | Path) -> tuple[list[str], list[str]]:
    """Verify every published node of the store at ``path``: shapes, dtypes, every chunk (missing,
    truncated, checksum), the pool's fingerprint, labeled and chosen positions.

    Returns
    -------
    problems
        One line per damaged or inconsistent node (empty when the store is sound).
    checked
        The nodes read back in full.
    """
    try:
        store = open_store(path, "r")
    except AloeError as exc:
        return [str(exc)], []
    problems, checked = [], []
    for label, check in _checks(store):
        try:
            check()
            checked.append(label)
        except AloeError as exc:
            message = " ".join(str(exc).split())
            problems.append(message if str(store.path) in message else f"{store.path} {label}: {message}")
    return problems, checked
