"""A batch as Label Studio image-classification tasks, and the open-world labeling interface.

Each task carries the pool id in ``data.aloe_id`` next to the image URL (``data.image``), and the
selector's per-item facts (rank, cluster, OOD score, flag) in ``meta``. Label Studio keeps the data
fields in every export, so the labels come back keyed by the same ids.

The interface (:func:`label_config`) shows the image, the known classes as a single-choice list
named ``label``, and a one-line text box named ``new_class`` for a class nobody has named yet.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from xml.sax.saxutils import quoteattr

ID_KEY = "aloe_id"
IMAGE_KEY = "image"
CHOICES_NAME = "label"
NEW_CLASS_NAME = "new_class"


def make_tasks(batch: Sequence[Mapping[str, object]], image_of: Mapping[str, str]) -> list[dict]:
    """Label Studio tasks for the batch rows (dicts with at least ``id``), in batch order."""
    tasks = []
    for row in batch:
        item = str(row["id"])
        meta = {key: value for key, value in row.items() if key != "id"}
        tasks.append({"data": {IMAGE_KEY: image_of[item], ID_KEY: item}, "meta": meta})
    return tasks


def label_config(class_names: Iterable[str]) -> str:
    """The labeling interface: the image, the known classes (if any) and a new-class text box."""
    names = list(class_names)
    lines = ["<View>", f'  <Image name="{IMAGE_KEY}" value="${IMAGE_KEY}" zoom="true"/>']
    if names:
        lines += [
            '  <Header value="Class"/>',
            f'  <Choices name="{CHOICES_NAME}" toName="{IMAGE_KEY}" choice="single" showInline="true">',
            *(f"    <Choice value={quoteattr(name)}/>" for name in names),
            "  </Choices>",
        ]
    prompt = "New class: type its name when no class above fits" if names else "Class: type its name (none known yet)"
    lines += [
        f'  <Header value="{prompt}"/>',
        f'  <TextArea name="{NEW_CLASS_NAME}" toName="{IMAGE_KEY}" maxSubmissions="1" rows="1"'
        ' editable="true" placeholder="new class name"/>',
        "</View>",
    ]
    return "\n".join(lines) + "\n"


def write_json(path: str | Path, payload: object) -> None:
    """Write ``payload`` as indented JSON, creating the parent directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
