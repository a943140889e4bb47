"""A labeling batch and the annotator's answers to it: reading both, checking, merging into the ledger.

The batch is the CSV that ``aloe-select`` writes (``id,rank,cluster,ood_score,flagged``). The answers
are an ``id,label`` CSV or a Label Studio export (JSON, JSON-MIN or CSV). An import is all-or-nothing:
every problem is reported with its line (or task) number and nothing is merged until the file is clean.
A new class typed in Label Studio that matches a known class up to case is that class.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from aloe.batchfile import read_batch
from aloe.errors import AloeError
from aloe.internal.csvfile import read_csv_rows
from aloe.loop.labelstudio.exports import Annotation, is_csv_export, read_csv_export, read_json_export
from aloe.loop.ledger import Ledger


def read_answers_csv(path: Path) -> list[Annotation]:
    """``id,label`` rows with their line numbers (empty labels kept, for the check to report)."""
    _, rows = read_csv_rows(path, ("id", "label"))
    return [
        Annotation((row["id"] or "").strip(), (row["label"] or "").strip(), f"line {line}")
        for line, row in rows
    ]


def _csv_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return next(csv.reader(handle), [])
    except (UnicodeDecodeError, csv.Error):
        return []  # the full read reports it


def read_answers(path: str | Path) -> tuple[list[Annotation], int]:
    """Annotations from an ``id,label`` CSV or a Label Studio export (JSON, JSON-MIN or CSV).

    JSON by the ``.json`` suffix; a CSV with an ``aloe_id`` column is Label Studio's. Returns the
    annotations and the number of Label Studio tasks not yet annotated (0 for an ``id,label`` CSV).
    """
    path = Path(path)
    if not path.is_file():
        raise AloeError(f"labels file not found: {path}")
    if path.suffix.lower() == ".json":
        return read_json_export(path)
    if is_csv_export(_csv_header(path)):
        return read_csv_export(path)
    return read_answers_csv(path), 0


def resolve_typed_names(answers: list[Annotation], known: set[str]) -> tuple[list[Annotation], list[str]]:
    """Typed new-class names matched to known classes (or an earlier spelling) up to case.

    ``known`` is the ledger's classes; the classes chosen in these answers count as known too.
    Returns the answers with the matched spellings and one note per typed name that was matched.
    """
    chosen = {a.label for a in answers if a.label and not a.typed}
    spelled = {name.casefold(): name for name in sorted(known | chosen)}
    known_keys = set(spelled)
    resolved, notes = [], []
    for a in answers:
        if not a.typed:
            resolved.append(a)
            continue
        key = a.label.casefold()
        name = spelled.setdefault(key, a.label)
        if key in known_keys:
            notes.append(f"{a.where}: typed {a.label!r}, the known class {name!r}")
        elif name != a.label:
            notes.append(f"{a.where}: typed {a.label!r}, taken as {name!r} (typed before)")
        resolved.append(Annotation(a.id, name, a.where, typed=True))
    return resolved, notes


def _summarize(kind: str, annotations: list[Annotation]) -> str:
    shown = ", ".join(f"{a.where} ({a.id!r})" for a in annotations[:5])
    more = f" and {len(annotations) - 5} more" if len(annotations) > 5 else ""
    return f"{kind}: {shown}{more}"


def check_answers(
    answers: list[Annotation], batch_ids: set[str], labeled: dict[str, str]
) -> dict[str, str]:
    """The new labels, after checking every answer; raises :class:`AloeError` listing all problems.

    Problems: empty labels (or ids), ids outside the batch, ids already labeled with a different
    label, and ids answered twice with different labels. Answers that repeat a ledger label are fine
    and not new.
    """
    empty, outside, relabeled, twice = [], [], [], []
    given: dict[str, str] = {}
    for a in answers:
        if not a.id or not a.label:
            empty.append(a)
        elif a.id not in batch_ids:
            outside.append(a)
        elif a.id in labeled and labeled[a.id] != a.label:
            relabeled.append(a)
        elif given.setdefault(a.id, a.label) != a.label:
            twice.append(a)
    problems = [
        _summarize(kind, found)
        for kind, found in (
            ("empty labels", empty),
            ("ids outside the batch", outside),
            ("ids already labeled with a different label", relabeled),
            ("ids given two different labels", twice),
        )
        if found
    ]
    if problems:
        raise AloeError("nothing merged; " + "; ".join(problems))
    return {item: label for item, label in given.items() if item not in labeled}


@dataclass(frozen=True)
class ImportResult:
    """What an import did."""

    added: int
    round: int
    new_classes: list[str]
    unannotated_tasks: int
    batch_size: int
    batch_labeled: int
    notes: list[str] = field(default_factory=list)


def merge_answers(ledger: Ledger, answers: list[Annotation], unannotated: int, batch_ids: set[str],
                  round: int, source: str) -> ImportResult:
    """Merge checked answers for the batch into the ledger as ``round`` (all or nothing)."""
    labeled = ledger.labels()
    known_classes = set(labeled.values())
    answers, notes = resolve_typed_names(answers, known_classes)
    new = check_answers(answers, batch_ids, labeled)
    added = ledger.append(new, round, source)
    now_labeled = ledger.labels()
    return ImportResult(
        added=added,
        round=round,
        new_classes=sorted(set(new.values()) - known_classes),
        unannotated_tasks=unannotated,
        batch_size=len(batch_ids),
        batch_labeled=sum(1 for item in batch_ids if item in now_labeled),
        notes=notes,
    )


def import_answers(ledger: Ledger, answers_path: str | Path, batch_path: str | Path,
                   round: int, source: str | None = None) -> ImportResult:
    """Merge an annotator's labels file for the batch into the ledger as ``round`` (all or nothing)."""
    batch_ids = {row["id"] for row in read_batch(batch_path)}
    answers, unannotated = read_answers(answers_path)
    return merge_answers(ledger, answers, unannotated, batch_ids, round, source or Path(answers_path).name)
