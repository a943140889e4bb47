"""Reading and validating ``id,label`` files, pool ids that labels can name, and the labeled set."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from aloe.errors import AloeError
from aloe.internal.csvfile import read_csv_rows


def _first_few(items: Iterable[str], n: int = 3) -> str:
    items = list(items)
    shown = ", ".join(repr(i) for i in items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def read_labels(path: str | Path) -> dict[str, str]:
    """Read an ``id,label`` CSV (header required) into ``{id: label}``.

    Raises :class:`AloeError` for a missing file or header, empty ids or labels, or one id given two
    different labels (naming the first few offenders). Repeating an id with the same label is fine.
    """
    path = Path(path)
    if not path.is_file():
        raise AloeError(f"labels file not found: {path}")
    _, rows = read_csv_rows(path, ("id", "label"))
    labels: dict[str, str] = {}
    empty: list[str] = []
    conflicts: list[str] = []
    for line, row in rows:
        item, label = (row["id"] or "").strip(), (row["label"] or "").strip()
        if not item or not label:
            empty.append(f"line {line}")
            continue
        if labels.setdefault(item, label) != label:
            conflicts.append(item)
    if empty:
        raise AloeError(f"{path}: empty id or label at {_first_few(empty)}")
    if conflicts:
        raise AloeError(f"{path}: ids with two different labels: {_first_few(conflicts)}")
    return labels


def check_pool_ids(ids: Iterable[str], source: str) -> None:
    """Refuse pool ids that no labels file can name: empty, or with leading or trailing whitespace.

    Labels files, answers and ledgers strip their fields, so such an item could never be labeled.
    Raises :class:`AloeError` naming the first few.
    """
    bad = [item for item in ids if not item or item != item.strip()]
    if bad:
        raise AloeError(
            f"{source}: {len(bad)} ids are empty or start or end with whitespace, which labels files "
            f"cannot name: {_first_few(bad)}; strip them when making the pool"
        )


def check_known_ids(labels: dict[str, str], pool_ids: Iterable[str], source: str) -> None:
    """Raise :class:`AloeError` naming the first few label ids that are not in the pool."""
    known = set(pool_ids)
    unknown = [item for item in labels if item not in known]
    if unknown:
        raise AloeError(f"{source}: {len(unknown)} ids not in the pool: {_first_few(unknown)}")


def class_indices(labels: Iterable[str]) -> tuple[list[str], np.ndarray]:
    """Known class names (sorted, so the order is stable across runs) and each label's index."""
    labels = list(labels)
    names = sorted(set(labels))
    index = {name: i for i, name in enumerate(names)}
    return names, np.array([index[label] for label in labels], dtype=np.int64)


class PoolIndex(Protocol):
    """Anything that maps pool ids to positions (a :class:`~aloe.store.Store`, a simulation pool)."""

    def position_of(self, ids: Iterable[str]) -> np.ndarray: ...


def positions_in(index: Mapping[str, int], ids: Iterable[str], pool: str) -> np.ndarray:
    """The positions ``index`` (id -> pool position) gives ``ids``, as int64: what a :class:`PoolIndex`
    answers. :class:`AloeError` names the first few ids outside it (``pool``: how to name the pool)."""
    ids = list(ids)
    missing = [item for item in ids if item not in index]
    if missing:
        raise AloeError(f"{len(missing)} ids are not in {pool}: {_first_few(missing)}")
    return np.array([index[item] for item in ids], dtype=np.int64)


@dataclass(frozen=True)
class LabeledSet:
    """The items labeled so far as a round uses them: known classes, each item's class and position.

    ``names`` are the known classes ``K_t`` (sorted); ``classes[i]`` indexes ``names`` and
    ``positions[i]`` is the pool position of the ``i``-th labeled item.
    """

    names: list[str]
    classes: np.ndarray
    positions: np.ndarray

    @classmethod
    def from_labels(cls, labels: Mapping[str, str], pool: PoolIndex) -> LabeledSet:
        """Build it from ``{id: label}``; ``pool.position_of`` raises for ids outside the pool."""
        names, classes = class_indices(labels.values())
        return cls(names, classes, pool.position_of(list(labels)))

    def __len__(self) -> int:
        return len(self.positions)
