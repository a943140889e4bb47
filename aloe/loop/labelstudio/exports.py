"""Labels from Label Studio's exports of aloe's tasks: JSON, JSON-MIN and CSV.

- **JSON**: a list of tasks, each with ``data`` (our ``aloe_id`` among it) and ``annotations``, each
  annotation with a ``result`` list of ``{"type", "from_name", "value"}`` items.
- **JSON-MIN**: a list of flat objects, one per annotated task: the data fields (``aloe_id``) and one
  field per control (``label``, ``new_class``), with Label Studio's own task ``id`` beside them.
- **CSV**: the same flat fields as columns.

A task's answer is its latest annotation that was not cancelled: the chosen class, or, when no class
was chosen, the name typed into the new-class box (trimmed). Anything malformed stops the read with
one line naming the task: nothing is imported from a file that is not clean.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aloe.errors import AloeError
from aloe.internal.textfile import read_text
from aloe.loop.labelstudio.tasks import CHOICES_NAME, ID_KEY, NEW_CLASS_NAME

ANNOTATION_ID_KEY = "annotation_id"


@dataclass(frozen=True)
class Annotation:
    """One label given by an annotator, where it was found, and whether it was typed (not chosen from a list)."""

    id: str
    label: str
    where: str
    typed: bool = False


class ExportError(AloeError):
    """A malformed task; the message names it, and the reader adds the file."""


def _texts(value: object, what: str, where: str, one_text_ok: bool = False) -> list[str]:
    """The trimmed, non-empty strings of a list of strings (or of one string, if ``one_text_ok``)."""
    items = [value] if one_text_ok and isinstance(value, str) else value
    if not isinstance(items, list):
        raise ExportError(f"{where}: {what} is {type(value).__name__}, expected a list of text")
    bad = [item for item in items if not isinstance(item, str)]
    if bad:
        raise ExportError(f"{where}: {what} holds {bad[0]!r}, not text")
    return [item.strip() for item in items if item.strip()]


def _one(values: list[str], what: str, where: str) -> str:
    if len(values) > 1:
        raise ExportError(f"{where}: {len(values)} {what} given ({', '.join(map(repr, values))}); one per image")
    return values[0] if values else ""


def _answer(item: str, choice: str, typed: str, where: str) -> Annotation:
    """The annotation for a choice and a typed new-class name (at most one of them, or the same)."""
    if choice and typed and choice.casefold() != typed.casefold():
        raise ExportError(f"{where}: both the class {choice!r} and the new class {typed!r} given; keep one")
    if choice:
        return Annotation(item, choice, where)
    return Annotation(item, typed, where, typed=bool(typed))


def _task_id(task: Mapping, where: str) -> str:
    label_studio_id = task.get("id")
    return f"{where} (Label Studio id {label_studio_id})" if label_studio_id not in (None, "") else where


def _aloe_id(value: object, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ExportError(f"{where}: {ID_KEY} is {type(value).__name__}, expected text")
    return str(value).strip()


def _latest(annotations: object, where: str) -> dict | None:
    if annotations is None:
        return None
    if not isinstance(annotations, list):
        raise ExportError(f"{where}: 'annotations' is {type(annotations).__name__}, expected a list")
    kept = []
    for annotation in annotations:
        if not isinstance(annotation, dict):
            raise ExportError(f"{where}: an annotation is {type(annotation).__name__}, expected an object")
        if not annotation.get("was_cancelled"):
            kept.append(annotation)
    return kept[-1] if kept else None


def _from_results(item: str, results: object, where: str) -> Annotation:
    if results is None:
        results = []
    if not isinstance(results, list):
        raise ExportError(f"{where}: 'result' is {type(results).__name__}, expected a list")
    choices: list[str] = []
    typed: list[str] = []
    for result in results:
        if not isinstance(result, dict):
            raise ExportError(f"{where}: a result is {type(result).__name__}, expected an object")
        kind = result.get("type")
        if kind not in ("choices", "textarea"):
            continue
        value = result.get("value")
        if not isinstance(value, dict):
            raise ExportError(f"{where}: a {kind} result's 'value' is {type(value).__name__}, expected an object")
        if kind == "choices":
            choices += _texts(value.get("choices", []), "'choices'", where)
        else:
            typed += _texts(value.get("text", []), "'text'", where)
    return _answer(item, _one(choices, "classes", where), _one(typed, "new class names", where), where)


def _from_full_task(task: dict, where: str) -> tuple[str, Annotation | None]:
    data = task["data"]
    if not isinstance(data, dict) or ID_KEY not in data:
        raise ExportError(f"{where}: no data.{ID_KEY} (was the task made by aloe labels export-batch?)")
    item = _aloe_id(data[ID_KEY], where)
    annotation = _latest(task.get("annotations"), where)
    return item, None if annotation is None else _from_results(item, annotation.get("result"), where)


def _flat_value(value: object, key: str, where: str, from_csv: bool) -> list[str]:
    """A JSON-MIN or CSV control field: text, a list of text, or ``{"choices"|"text": [...]}``."""
    if from_csv and isinstance(value, str) and value.lstrip().startswith(("{", "[")):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    if isinstance(value, dict):
        value = value.get("choices", value.get("text", []))
    if value is None:
        return []
    return _texts(value, repr(key), where, one_text_ok=True)


def _from_flat_task(task: Mapping, where: str, from_csv: bool) -> tuple[str, Annotation | None]:
    if ID_KEY not in task:
        raise ExportError(f"{where}: no {ID_KEY} (was the task made by aloe labels export-batch?)")
    item = _aloe_id(task[ID_KEY], where)
    present = [key for key in (ANNOTATION_ID_KEY, CHOICES_NAME, NEW_CLASS_NAME) if task.get(key) not in (None, "")]
    if not present:
        return item, None  # exported without an annotation
    choice = _one(_flat_value(task.get(CHOICES_NAME), CHOICES_NAME, where, from_csv), "classes", where)
    typed = _one(_flat_value(task.get(NEW_CLASS_NAME), NEW_CLASS_NAME, where, from_csv), "new class names", where)
    return item, _answer(item, choice, typed, where)


def _split(found: Iterable[tuple[str, Annotation | None]]) -> tuple[list[Annotation], list[str]]:
    """The annotations, and the ids of the tasks that have none."""
    annotations: list[Annotation] = []
    waiting: list[str] = []
    for item, annotation in found:
        if annotation is None:
            waiting.append(item)
        else:
            annotations.append(annotation)
    return annotations, waiting


def _json_task(number: int, task: object) -> tuple[str, Annotation | None]:
    if not isinstance(task, dict):
        raise ExportError(f"task {number} is {type(task).__name__}, expected an object")
    where = _task_id(task, f"task {number}")
    return _from_full_task(task, where) if "data" in task else _from_flat_task(task, where, False)


def parse_json_export(tasks: object, origin: str) -> tuple[list[Annotation], list[str]]:
    """Annotations from a loaded JSON or JSON-MIN export, and the ids of the tasks without one.

    ``origin`` (a file name or URL) starts every error message.
    """
    if not isinstance(tasks, list):
        raise AloeError(f"{origin}: expected a JSON list of tasks (Label Studio's JSON or JSON-MIN export)")
    try:
        return _split(_json_task(number, task) for number, task in enumerate(tasks, start=1))
    except ExportError as exc:
        raise AloeError(f"{origin}: {exc}") from None


def read_json_export(path: str | Path) -> tuple[list[Annotation], list[str]]:
    """Annotations from a JSON or JSON-MIN export file, and the ids of the tasks without one."""
    path = Path(path)
    try:
        tasks = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise AloeError(f"{path}: not a readable Label Studio JSON export ({exc})") from None
    return parse_json_export(tasks, str(path))


def is_csv_export(fields: Iterable[str]) -> bool:
    """Whether a CSV header is Label Studio's export of aloe's tasks (it has ``aloe_id``)."""
    return ID_KEY in fields


def read_csv_export(path: str | Path) -> tuple[list[Annotation], list[str]]:
    """Annotations from Label Studio's CSV export, and the ids of the rows without one."""
    path = Path(path)
    try:
        rows = enumerate(csv.DictReader(io.StringIO(read_text(path), newline="")), start=2)
        return _split(_from_flat_task(row, _task_id(row, f"line {line}"), True) for line, row in rows)
    except ExportError as exc:
        raise AloeError(f"{path}: {exc}") from None
    except csv.Error as exc:
        raise AloeError(f"{path}: not a readable Label Studio CSV export ({exc})") from None
