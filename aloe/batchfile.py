"""The batch CSV, ``id,rank,cluster,ood_score,flagged``: ``aloe-select`` writes it, ``aloe labels`` reads it."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from aloe.errors import AloeError
from aloe.internal.csvfile import read_csv_rows

BATCH_COLUMNS = ("id", "rank", "cluster", "ood_score", "flagged")
HEADER_BYTES = 256


def is_batch_file(path: Path) -> bool:
    """Whether ``path`` is a file whose first line is the batch's header (only that line is read)."""
    try:
        with path.open("rb") as handle:
            first = handle.readline(HEADER_BYTES).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return False
    return tuple(next(csv.reader([first]), None) or ()) == BATCH_COLUMNS


def check_batch_out(path: Path) -> None:
    """Refuse a batch destination that would destroy something; call it before any work.

    A directory, an existing file that is not a batch CSV (a ledger, a labels file, a store, any
    other data) and a parent that is a file raise :class:`AloeError`. An earlier batch may be replaced.
    """
    if path.is_dir():
        raise AloeError(f"--out {path} is a directory; give the batch CSV's file name, e.g. {path / 'batch.csv'}")
    if path.exists() and not is_batch_file(path):
        raise AloeError(
            f"--out {path} exists and is not a batch CSV from aloe-select (columns {','.join(BATCH_COLUMNS)}); "
            f"refusing to overwrite it: choose another file name"
        )
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise AloeError(f"--out {path}: {parent} is a file, not a folder")
            break


def write_batch_csv(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a recorded selection's batch as ``id,rank,cluster,ood_score,flagged`` (rank from 1).

    ``arrays`` are the selection record's ``chosen_ids``, ``chosen_cluster``, ``chosen_score`` and
    ``chosen_flagged``. ``cluster`` is empty when the strategy did not cluster, ``ood_score`` when
    there was no score. ``path`` must pass :func:`check_batch_out`; the file is replaced atomically.
    """
    path = Path(path)
    check_batch_out(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(BATCH_COLUMNS)
        rows = zip(
            arrays["chosen_ids"], arrays["chosen_cluster"], arrays["chosen_score"], arrays["chosen_flagged"],
            strict=True,
        )
        for rank, (item, cluster, score, flag) in enumerate(rows, start=1):
            writer.writerow(
                [
                    str(item),
                    rank,
                    "" if cluster < 0 else int(cluster),
                    "" if np.isnan(score) else f"{float(score):.6g}",
                    int(flag),
                ]
            )
    os.replace(temporary, path)


def read_batch(path: str | Path) -> list[dict[str, str]]:
    """The batch rows in file order; raises :class:`AloeError` for a missing, unreadable, non-UTF-8,
    foreign or empty file, each with its own message."""
    path = Path(path)
    if not path.is_file():
        raise AloeError(f"batch file not found: {path}")
    fields, rows = read_csv_rows(path, ())  # an unreadable or non-UTF-8 file says so itself
    if any(column not in fields for column in BATCH_COLUMNS):
        raise AloeError(f"{path}: not a batch file from aloe-select (columns {', '.join(BATCH_COLUMNS)})")
    if not rows:
        raise AloeError(f"{path}: the batch is empty")
    return [row for _, row in rows]
