"""Reading CSV files that must have a header with certain columns."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from aloe.errors import AloeError
from aloe.internal.textfile import read_text


def read_csv_rows(path: Path, required: Sequence[str]) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header's columns and every row with its line number (the header is line 1).

    The file must be UTF-8 (a byte-order mark is fine). Raises :class:`AloeError` for other bytes
    (see :func:`~aloe.internal.textfile.read_text`) and, naming the expected columns, when one of
    ``required`` is missing.
    """
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    fields = list(reader.fieldnames or [])
    if any(column not in fields for column in required):
        expected = " and ".join(repr(column) for column in required)
        raise AloeError(f"{path}: expected a header with columns {expected}, got {fields}")
    return fields, [(line, row) for line, row in enumerate(reader, start=2)]
