"""The batch CSV, ``id,rank,cluster,ood_score,flagged``: ``aloe-select`` writes it, ``aloe labels`` reads it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from aloe.errors import AloeError
from aloe.internal.csvfile import read_csv_rows

BATCH_COLUMNS = ("id", "rank", "cluster", "ood_score", "flagged")


def write_batch_csv(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a recorded selection's batch as ``id,rank,cluster,ood_score,flagged`` (rank from 1).

    ``arrays`` are the selection record's ``chosen_ids``, ``chosen_cluster``, ``chosen_score`` and
    ``chosen_flagged``. ``cluster`` is empty when the strategy did not cluster, ``ood_score`` when
    there was no score.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
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


def read_batch(path: str | Path) -> list[dict[str, str]]:
    """The batch rows in file order; raises :class:`AloeError` for a missing, foreign or empty file."""
    path = Path(path)
    if not path.is_file():
        raise AloeError(f"batch file not found: {path}")
    try:
        _, rows = read_csv_rows(path, BATCH_COLUMNS)
    except AloeError:
        raise AloeError(f"{path}: not a batch file from aloe-select (columns {', '.join(BATCH_COLUMNS)})") from None
    if not rows:
        raise AloeError(f"{path}: the batch is empty")
    return [row for _, row in rows]
