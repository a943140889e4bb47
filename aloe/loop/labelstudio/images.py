"""The batch's images as files Label Studio can show, and the URLs that point at them.

Label Studio serves files from its own disk as *local files*: started with
``LOCAL_FILES_SERVING_ENABLED=true`` and ``LOCAL_FILES_DOCUMENT_ROOT=ROOT``, it answers
``/data/local-files/?d=REL`` (REL relative to ROOT, URL-encoded) for a project that has a Local
Files storage connected to a folder holding the file. :func:`write_images` puts the batch's images
in such a folder: file pools are hard-linked (copied across file systems), array pools (MNIST,
CIFAR) are written as PNG.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

from aloe.data.sources import FileImageSource, ImageSource
from aloe.errors import AloeError

LOCAL_FILES_URL = "/data/local-files/?d="
SERVING_VARIABLE = "LOCAL_FILES_SERVING_ENABLED"
ROOT_VARIABLE = "LOCAL_FILES_DOCUMENT_ROOT"


def file_name(item: str, suffix: str) -> str:
    """A file name for a pool id: the id when it is a plain name, else a cleaned id and its hash."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", item).strip("._") or "item"
    if clean != item:
        clean += "-" + hashlib.sha1(item.encode()).hexdigest()[:8]
    return clean + suffix


def _place(source_file: Path, target: Path) -> None:
    if target.exists():
        target.unlink()
    try:
        os.link(source_file, target)
    except OSError:
        shutil.copyfile(source_file, target)


def write_images(ids: Iterable[str], source: ImageSource, folder: Path) -> dict[str, Path]:
    """Write the images of ``ids`` into ``folder``; returns each id's file.

    Raises :class:`AloeError` for an id that is not in the pool or an image that cannot be read.
    """
    ids = list(ids)
    position = {item: index for index, item in enumerate(source.ids)}
    missing = [item for item in ids if item not in position]
    if missing:
        raise AloeError(f"{len(missing)} batch ids are not in the pool {source.name}, e.g. {missing[:3]}")
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for item in ids:
        index = position[item]
        try:
            if isinstance(source, FileImageSource):
                original = source.paths[index]
                target = folder / file_name(item, original.suffix.lower())
                _place(original, target)
            else:
                target = folder / file_name(item, ".png")
                source.load(index).save(target, format="PNG")
        except (OSError, ValueError) as exc:
            raise AloeError(f"cannot write the image of {item!r} ({exc})") from None
        written[item] = target
    return written


def local_files_url(path: Path, document_root: Path) -> str:
    """Label Studio's local-files URL of ``path``: REL relative to ``document_root``, URL-encoded."""
    try:
        relative = path.resolve().relative_to(document_root.resolve())
    except ValueError:
        raise AloeError(f"{path} is not under the document root {document_root}") from None
    return LOCAL_FILES_URL + quote(relative.as_posix(), safe="/")


def hosted_url(prefix: str, relative: str) -> str:
    """``prefix`` followed by the URL-encoded relative path (a hosted copy of the images)."""
    return prefix + quote(relative, safe="/")


def serving_instructions(folder: Path, document_root: Path) -> str:
    """What Label Studio needs to show the images in ``folder``, as lines for the user."""
    return "\n".join([
        "Label Studio shows these images when started with",
        f"  {SERVING_VARIABLE}=true {ROOT_VARIABLE}={document_root.resolve()}",
        f"and the project has a Local Files storage (Settings > Cloud Storage > Add Source Storage) "
        f"with the absolute local path {folder.resolve()} (aloe labels push connects it for you).",
    ])
