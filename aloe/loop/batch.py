"""A labeling batch and the annotator's answers to it: reading both, checking, merging into the ledger.

The batch is the CSV that ``aloe-select`` writes (``id,rank,cluster,ood_score,flagged``). The answers
are an ``id,label`` CSV or a Label Studio export (JSON, JSON-MIN or CSV). An import is all-or-nothing:
every problem is reported with its line (or task) number and nothing is merged until the file is clean.
A typed label (an ``id,label`` CSV's, or a new class typed in Label Studio) that matches a known class
up to case is that class. Answers that repeat the ledger's label are not new; outside the batch (a
Label Studio project reused across rounds exports the earlier rounds' tasks too) they are skipped.
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aloe.batchfile import read_batch
from aloe.errors import AloeError
from aloe.internal.csvfile import read_csv_rows
from aloe.loop.labelstudio.exports import Annotation, is_csv_export, read_csv_export, read_json_export
from aloe.loop.ledger import Ledger


def read_answers_csv(path: Path) -> list[Annotation]:
    """``id,label`` rows with their line numbers, as typed labels (empty labels kept, for the check to report)."""
    _, rows = read_csv_rows(path, ("id", "label"))
    return [
        Annotation((row["id"] or "").strip(), (row["label"] or "").strip(), f"line {line}", typed=True)
        for line, row in rows
    ]


def _csv_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return next(csv.reader(handle), [])
    except (UnicodeDecodeError, csv.Error):
        return []  # the full read reports it


def read_answers(path: str | Path) -> tuple[list[Annotation], list[str]]:
    """Annotations from an ``id,label`` CSV or a Label Studio export (JSON, JSON-MIN or CSV).

    JSON by the ``.json`` suffix; a CSV with an ``aloe_id`` column is Label Studio's. Returns the
    annotations and the ids of the Label Studio tasks not yet annotated (none for an ``id,label`` CSV).
    """
    path = Path(path)
    if not path.is_file():
        raise AloeError(f"labels file not found: {path}")
    if path.suffix.lower() == ".json":
        return read_json_export(path)
    if is_csv_export(_csv_header(path)):
        return read_csv_export(path)
    return read_answers_csv(path), []


def resolve_typed_names(answers: list[Annotation], known: set[str]) -> tuple[list[Annotation], list[str]]:
    """Typed names matched to known classes (or an earlier spelling) up to case.

    ``known`` is the ledger's classes; the classes chosen in these answers count as known too, and a
    typed name equal to one of them is that class. Returns the answers with the matched spellings and
    one note per typed name whose spelling was changed.
    """
    names = known | {a.label for a in answers if a.label and not a.typed}
    spelled = {name.casefold(): name for name in sorted(names)}
    known_keys = set(spelled)
    resolved, notes = [], []
    for a in answers:
        if not a.typed or a.label in names:
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


def repeats_ledger(answer: Annotation, labeled: Mapping[str, str]) -> bool:
    """Whether an answer gives its id's label in the ledger again (a typed one: up to case)."""
    held = labeled.get(answer.id)
    if held is None:
        return False
    return held == answer.label or answer.typed and held.casefold() == answer.label.casefold()


def check_answers(answers: list[Annotation], batch_ids: set[str], labeled: dict[str, str]) -> dict[str, str]:
    """The new labels, after checking every answer; raises :class:`AloeError` listing all problems.

    ``answers`` leave out those that repeat the ledger (:func:`repeats_ledger`). Problems: empty
    labels (or ids), ids already labeled (so with a different label), ids outside the batch, and ids
    answered twice with different labels.
    """
    empty, outside, relabeled, twice = [], [], [], []
    given: dict[str, str] = {}
    for a in answers:
        if not a.id or not a.label:
            empty.append(a)
        elif a.id in labeled:
            relabeled.append(a)
        elif a.id not in batch_ids:
            outside.append(a)
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
    return given


@dataclass(frozen=True)
class ImportResult:
    """What an import did."""

    added: int
    round: int
    new_classes: list[str]
    unannotated_tasks: int  # batch items still unlabeled whose task waits for an annotation
    batch_size: int
    batch_labeled: int
    skipped_outside: int  # answers outside the batch that repeat the ledger
    notes: list[str] = field(default_factory=list)


def merge_answers(ledger: Ledger, answers: list[Annotation], unannotated: Collection[str], batch_ids: set[str],
                  round: int, source: str) -> ImportResult:
    """Merge checked answers for the batch into the ledger as ``round`` (all or nothing).

    ``unannotated`` is the ids of the tasks that have no annotation yet.
    """
    labeled = ledger.labels()
    known_classes = set(labeled.values())
    fresh: list[Annotation] = []
    repeats: list[Annotation] = []
    for a in answers:
        (repeats if repeats_ledger(a, labeled) else fresh).append(a)
    fresh, notes = resolve_typed_names(fresh, known_classes)
    new = check_answers(fresh, batch_ids, labeled)
    added = ledger.append(new, round, source)
    now_labeled = ledger.labels()
    return ImportResult(
        added=added,
        round=round,
        new_classes=sorted(set(new.values()) - known_classes),
        unannotated_tasks=len(batch_ids.intersection(unannotated) - now_labeled.keys()),
        batch_size=len(batch_ids),
        batch_labeled=sum(1 for item in batch_ids if item in now_labeled),
        skipped_outside=sum(1 for a in repeats if a.id not in batch_ids),
        notes=notes,
    )


def import_answers(ledger: Ledger, answers_path: str | Path, batch_path: str | Path,
                   round: int, source: str | None = None) -> ImportResult:
    """Merge an annotator's labels file for the batch into the ledger as ``round`` (all or nothing)."""
    batch_ids = {row["id"] for row in read_batch(batch_path)}
    answers, unannotated = read_answers(answers_path)
    return merge_answers(ledger, answers, unannotated, batch_ids, round, source or Path(answers_path).name)
