"""``aloe labels push`` and ``pull``: a batch into a Label Studio project, its answers back out.

Push finds the project by title (or creates it) with the open-world labeling interface, connects a
Local Files storage to the folder of the batch's images (when they are served as local files) and
imports the batch's tasks that the project does not hold yet, so pushing twice adds nothing. For a
server that cannot see this machine's disk, the images are uploaded instead, one task per image. Pull
reads the project's JSON export and keeps the tasks of the batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aloe.errors import AloeError
from aloe.loop.labelstudio.client import LabelStudio
from aloe.loop.labelstudio.exports import Annotation, parse_json_export
from aloe.loop.labelstudio.tasks import ID_KEY, IMAGE_KEY

STORAGE_TITLE = "aloe batch images"


@dataclass(frozen=True)
class PushResult:
    """What a push did."""

    project_id: int
    created: bool
    storage: str
    imported: int
    already_there: int


def _project_tasks(client: LabelStudio, project_id: int) -> list[dict]:
    try:
        tasks = json.loads(client.export(project_id, "JSON"))
    except json.JSONDecodeError:
        raise AloeError(f"Label Studio project {project_id}: its JSON export is not JSON") from None
    if not isinstance(tasks, list):
        raise AloeError(f"Label Studio project {project_id}: its JSON export is not a list of tasks")
    return tasks


def _aloe_id(task: object) -> str | None:
    data = task.get("data") if isinstance(task, dict) else None
    value = data.get(ID_KEY) if isinstance(data, dict) else None
    return str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else None


def _connect_storage(client: LabelStudio, project_id: int, folder: Path) -> str:
    folder = folder.resolve()
    storages = client.request("GET", "/api/storages/localfiles", {"project": project_id}) or []
    if any(Path(s.get("path") or "").resolve() == folder for s in storages):
        return f"Local Files storage {folder} already connected"
    client.request("POST", "/api/storages/localfiles", body={
        "project": project_id, "path": str(folder), "title": STORAGE_TITLE, "use_blob_urls": False,
    })
    return f"connected Local Files storage {folder}"


def _upload(client: LabelStudio, project_id: int, tasks: Sequence[dict], files: Mapping[str, Path]) -> None:
    """Upload each task's image as a new task, then give that task the batch's data and meta."""
    for task in tasks:
        item = task["data"][ID_KEY]
        for task_id in client.upload(project_id, files[item]):
            created = client.request("GET", f"/api/tasks/{task_id}")
            data = {**task["data"], IMAGE_KEY: created["data"][IMAGE_KEY]}
            client.request("PATCH", f"/api/tasks/{task_id}", body={"data": data, "meta": task["meta"]})


def push_batch(client: LabelStudio, title: str, tasks: Sequence[dict], label_config: str,
               local_folder: Path | None, upload: Mapping[str, Path] | None = None) -> PushResult:
    """Put the tasks into the project ``title`` (created if missing; its interface updated).

    ``local_folder`` is the folder of the images when they are served as local files: a Local
    Files storage is connected to it unless one already is. ``upload`` (each id's image file)
    uploads the images to the server instead.
    """
    if len(title.strip()) < 3:
        raise AloeError(f"the project title must have at least 3 characters, got {title!r}")
    project = client.project_named(title)
    created = project is None
    if project is None:
        project = client.request("POST", "/api/projects", body={"title": title, "label_config": label_config})
    elif project.get("label_config") != label_config:
        client.request("PATCH", f"/api/projects/{project['id']}", body={"label_config": label_config})
    project_id = int(project["id"])
    storage = "images uploaded" if upload else "no storage needed"
    if local_folder is not None:
        storage = _connect_storage(client, project_id, local_folder)
    present = {_aloe_id(task) for task in _project_tasks(client, project_id)}
    new = [task for task in tasks if task["data"][ID_KEY] not in present]
    if new and upload:
        _upload(client, project_id, new, upload)
    elif new:
        client.request("POST", f"/api/projects/{project_id}/import", body=new)
    return PushResult(project_id, created, storage, len(new), len(tasks) - len(new))


@dataclass(frozen=True)
class PullResult:
    """The batch's answers in a project and the batch items still waiting for one."""

    project_id: int
    annotations: list[Annotation]
    unfinished: list[str]


def pull_batch(client: LabelStudio, title: str, batch_ids: set[str]) -> PullResult:
    """The finished annotations of the batch's tasks in project ``title``.

    Tasks of other batches in the project are left out; batch items with no task or no
    annotation are ``unfinished``. Raises :class:`AloeError` for a missing project or a malformed task.
    """
    project = client.project_named(title)
    if project is None:
        raise AloeError(f"Label Studio has no project titled {title!r} (push the batch first)")
    project_id = int(project["id"])
    tasks = [task for task in _project_tasks(client, project_id) if _aloe_id(task) in batch_ids]
    annotations, _ = parse_json_export(tasks, f"Label Studio project {title!r}")
    answered = {a.id for a in annotations}
    return PullResult(project_id, annotations, sorted(batch_ids - answered))
