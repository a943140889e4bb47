"""Label Studio I/O: a batch as image-classification tasks, and the labels from its JSON export.

Each task carries the pool id in ``data.aloe_id`` next to the image (``data.image``), and the
selector's per-item facts (rank, cluster, OOD score, flag) in ``meta``. Label Studio keeps ``data``
in its export, so the labels come back keyed by the same ids. The labeling interface is a single
``Choices`` control over the image (:func:`label_config`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

from aloe.errors import AloeError

ID_KEY = "aloe_id"


@dataclass(frozen=True)
class Annotation:
    """One label given by an annotator, with where it was found (for error messages)."""

    id: str
    label: str
    where: str


def make_tasks(batch: Sequence[Mapping[str, object]], image_of: Mapping[str, str]) -> list[dict]:
    """Label Studio tasks for the batch rows (dicts with at least ``id``), in batch order."""
    tasks = []
    for row in batch:
        item = str(row["id"])
        meta = {key: value for key, value in row.items() if key != "id"}
        tasks.append({"data": {"image": image_of[item], ID_KEY: item}, "meta": meta})
    return tasks


def label_config(class_names: Iterable[str]) -> str:
    """A Label Studio labeling interface: the image and one single-choice list of class names."""
    choices = "\n".join(f"    <Choice value={quoteattr(name)}/>" for name in class_names)
    return (
        "<View>\n"
        '  <Image name="image" value="$image"/>\n'
        '  <Choices name="label" toName="image" choice="single" showInline="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def _latest_annotation(task: dict) -> dict | None:
    kept = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    return kept[-1] if kept else None


def _choice(annotation: dict) -> str:
    for result in annotation.get("result") or []:
        if result.get("type") == "choices":
            picked = (result.get("value") or {}).get("choices") or []
            return str(picked[0]).strip() if picked else ""
    return ""


def read_export(path: str | Path) -> tuple[list[Annotation], int]:
    """Annotations from a Label Studio JSON export, and the number of tasks not yet annotated.

    A task's label is the first choice of its latest non-cancelled annotation; an annotation
    without a choice gives an empty label (which the import reports). Raises :class:`AloeError`
    for a file that is not a Label Studio JSON export or a task without ``data.aloe_id``.
    """
    path = Path(path)
    try:
        tasks = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AloeError(f"{path}: not a readable Label Studio JSON export ({exc})") from None
    if not isinstance(tasks, list):
        raise AloeError(f"{path}: expected a JSON list of tasks (Label Studio's JSON export)")
    annotations: list[Annotation] = []
    unannotated = 0
    for number, task in enumerate(tasks, start=1):
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict) or ID_KEY not in data:
            raise AloeError(f"{path}: task {number} has no data.{ID_KEY} (was it exported by aloe?)")
        annotation = _latest_annotation(task)
        if annotation is None:
            unannotated += 1
            continue
        where = f"task {number} (Label Studio id {task.get('id', '?')})"
        annotations.append(Annotation(str(data[ID_KEY]).strip(), _choice(annotation), where))
    return annotations, unannotated


def write_json(path: str | Path, payload: object) -> None:
    """Write ``payload`` as indented JSON, creating the parent directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
