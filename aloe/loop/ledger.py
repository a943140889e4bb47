"""The labels ledger: one append-only ``id,label,round,source`` CSV per run.

Every label a run has ever received is one row: the item id, its class name, the round whose batch it
answered (0 for the initial set) and where it came from (``oracle``, ``initial``, the imported file).
Rows are never changed or removed; the file is validated in full on every read, so a hand edit that
breaks it is caught with its line number. The ledger is also a valid ``id,label`` labels file, so
``aloe-embed --labels`` reads it directly; and a plain ``id,label`` file (the starting labels of
the README's loop) is read as round 0 from source ``initial`` and upgraded on the first append.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from aloe.errors import AloeError
from aloe.internal.textfile import read_text

COLUMNS = ("id", "label", "round", "source")
PLAIN_COLUMNS = ("id", "label")
LEDGER_NAME = "ledger.csv"


def ledger_path_for(store_path: str | Path) -> Path:
    """The default ledger of a run: ``ledger.csv`` in the directory that holds its store."""
    return Path(store_path).parent / LEDGER_NAME


@dataclass(frozen=True)
class LedgerEntry:
    """One labeled item."""

    id: str
    label: str
    round: int
    source: str


def _parse_round(text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value >= 0 else None


class Ledger:
    """An append-only CSV of labels; :meth:`entries` reads and validates the whole file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def entries(self) -> list[LedgerEntry]:
        """All rows in file order; ``[]`` when the file does not exist yet.

        Raises :class:`AloeError` naming the line of a wrong header, an empty field, a round that is
        not a non-negative integer or is lower than the row before it, or an id labeled twice.
        """
        if not self.path.exists():
            return []
        reader = self._rows()
        header = tuple(next(reader, None) or ())
        if header not in (COLUMNS, PLAIN_COLUMNS):
            expected = f"{','.join(COLUMNS)} or {','.join(PLAIN_COLUMNS)}"
            raise AloeError(f"{self.path}: line 1: expected the header {expected}")
        entries: list[LedgerEntry] = []
        first_line: dict[str, int] = {}
        for line, row in enumerate(reader, start=2):
            if header == PLAIN_COLUMNS and len(row) == len(PLAIN_COLUMNS):
                row = [*row, "0", "initial"]
            entries.append(self._check_row(row, line, entries, first_line))
        return entries

    def _rows(self) -> Iterator[list[str]]:
        """The file's CSV rows (UTF-8, a byte-order mark dropped; other bytes: :class:`AloeError`)."""
        return csv.reader(io.StringIO(read_text(self.path), newline=""))

    def is_plain(self) -> bool:
        """Whether the file is a plain ``id,label`` CSV (not yet upgraded to the ledger's columns)."""
        return tuple(next(self._rows(), None) or ()) == PLAIN_COLUMNS

    def _check_row(
        self, row: list[str], line: int, before: list[LedgerEntry], first_line: dict[str, int]
    ) -> LedgerEntry:
        where = f"{self.path}: line {line}"
        if len(row) != len(COLUMNS):
            raise AloeError(f"{where}: expected {len(COLUMNS)} fields, got {len(row)}")
        item, label, round_text, source = (field.strip() for field in row)
        if not item or not label or not source:
            raise AloeError(f"{where}: empty id, label or source")
        round_ = _parse_round(round_text)
        if round_ is None:
            raise AloeError(f"{where}: round {round_text!r} is not a non-negative integer")
        if before and round_ < before[-1].round:
            raise AloeError(f"{where}: round {round_} after round {before[-1].round} (append-only)")
        if item in first_line:
            raise AloeError(f"{where}: id {item!r} already labeled at line {first_line[item]}")
        first_line[item] = line
        return LedgerEntry(item, label, round_, source)

    def labels(self, up_to_round: int | None = None) -> dict[str, str]:
        """``{id: label}`` for every row, or for rows of rounds ``<= up_to_round``."""
        return {
            e.id: e.label
            for e in self.entries()
            if up_to_round is None or e.round <= up_to_round
        }

    def last_round(self) -> int | None:
        """The highest round with labels, ``None`` for an empty ledger."""
        entries = self.entries()
        return entries[-1].round if entries else None

    def append(self, labels: Mapping[str, str], round: int, source: str) -> int:
        """Add ``labels`` for ``round``; ids already present with the same label are skipped.

        Returns the number of rows added. Raises :class:`AloeError` (and adds nothing) for an id
        already labeled differently, an empty label, or a round lower than the ledger's last. The
        file is replaced atomically, so a crash leaves either the old or the new ledger.
        """
        entries = self.entries()
        known = {e.id: e.label for e in entries}
        if entries and round < entries[-1].round:
            raise AloeError(f"{self.path}: cannot add round {round} after round {entries[-1].round}")
        if not source.strip():
            raise AloeError("the source of a label must not be empty")
        conflicts = [i for i, label in labels.items() if i in known and known[i] != label]
        if conflicts:
            raise AloeError(f"{self.path}: ids already labeled differently: {conflicts[:3]}")
        empty = [i for i, label in labels.items() if not str(i).strip() or not str(label).strip()]
        if empty:
            raise AloeError(f"empty id or label for {empty[:3]}")
        new = [(i, label) for i, label in labels.items() if i not in known]
        if not new:
            return 0
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        plain = self.path.exists() and self.is_plain()
        if plain or not self.path.exists():
            writer.writerow(COLUMNS)
        if plain:
            writer.writerows((e.id, e.label, e.round, e.source) for e in entries)
        writer.writerows((i, label, round, source) for i, label in new)
        self._write_atomically(buffer.getvalue(), keep_head=not plain)
        return len(new)

    def _write_atomically(self, tail: str, keep_head: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        head = read_text(self.path) if keep_head and self.path.exists() else ""
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("w", newline="") as handle:
            handle.write(head + tail)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
