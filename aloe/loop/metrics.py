"""Per-round metrics of a simulation and the ``metrics.csv`` that holds them.

Balanced accuracy is the mean recall over every class of the test split; a class the run has not
discovered cannot be predicted, so its recall is zero. The known variant averages over the test
classes the run has discovered.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from aloe.errors import AloeError

COLUMNS = (
    "strategy",
    "seed",
    "round",
    "n_labeled",
    "n_classes_discovered",
    "n_new_classes_in_batch",
    "balanced_accuracy",
    "known_balanced_accuracy",
    "select_seconds",
)
_INTS = ("seed", "round", "n_labeled", "n_classes_discovered", "n_new_classes_in_batch")
_FLOATS = ("balanced_accuracy", "known_balanced_accuracy", "select_seconds")


def balanced_accuracies(
    true: np.ndarray, predicted: np.ndarray, discovered: Iterable[str]
) -> tuple[float, float]:
    """(balanced accuracy over all test classes, over the discovered ones; NaN when none is)."""
    true, predicted = np.asarray(true), np.asarray(predicted)
    classes = np.unique(true)
    recalls = np.array([np.mean(predicted[true == c] == c) for c in classes])
    known = np.isin(classes, list(discovered))
    known_mean = float(recalls[known].mean()) if known.any() else math.nan
    return float(recalls.mean()), known_mean


def predict(logits: np.ndarray, class_names: list[str]) -> np.ndarray:
    """Class names of the arg-max logits."""
    return np.asarray(class_names)[np.asarray(logits).argmax(axis=1)]


def stalls(rows: list[dict], n_classes: int) -> list[int]:
    """Lengths of a run's stalls: runs of consecutive rounds that found no new class while classes
    remained undiscovered. ``rows`` are one run's metrics in round order (round 0 first)."""
    lengths, current = [], 0
    for before, row in zip(rows, rows[1:]):
        if before["n_classes_discovered"] >= n_classes:
            break
        if row["n_classes_discovered"] > before["n_classes_discovered"]:
            if current:
                lengths.append(current)
            current = 0
        else:
            current += 1
    return lengths + ([current] if current else [])


def _format(row: dict) -> dict:
    out = dict(row)
    for key in _FLOATS:
        out[key] = f"{float(row[key]):.6g}"
    return out


def write_metrics(path: str | Path, rows: Iterable[dict]) -> None:
    """Write ``rows`` (dicts with exactly :data:`COLUMNS`) sorted by strategy, seed, round."""
    rows = sorted(rows, key=lambda r: (r["strategy"], int(r["seed"]), int(r["round"])))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(_format(row) for row in rows)
    temporary.replace(path)


def read_metrics(path: str | Path) -> list[dict]:
    """Rows of a ``metrics.csv`` with typed values; :class:`AloeError` for a missing or odd file."""
    path = Path(path)
    if not path.is_file():
        raise AloeError(f"metrics file not found: {path}")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise AloeError(f"{path}: expected the columns {','.join(COLUMNS)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                rows.append(
                    {**row, **{k: int(row[k]) for k in _INTS}, **{k: float(row[k]) for k in _FLOATS}}
                )
            except (TypeError, ValueError):
                raise AloeError(f"{path}: line {line}: a number is missing or malformed") from None
    return rows
