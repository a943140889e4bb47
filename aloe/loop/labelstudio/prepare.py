"""A batch made ready for Label Studio: its images placed and each task's image URL decided.

Three ways to point at the images:

- ``images`` (with the pool from a ``manifest`` or an ``aloe-embed`` ``config``): the images are
  written into that folder and served by Label Studio as local files, relative to
  ``document_root`` (default: the folder's parent); or, with a ``prefix``, from a hosted copy of
  the folder (``prefix`` + file name);
- ``manifest`` without ``images``: ``prefix`` + each item's path in the manifest;
- ``prefix`` alone: ``prefix`` + the id (images hosted under their ids).

Paths in URLs are URL-encoded, so spaces and ``#`` survive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aloe.data.sources import ImageSource, build_source, manifest_source
from aloe.errors import AloeError
from aloe.batchfile import read_batch
from aloe.loop.labelstudio.images import hosted_url, local_files_url, write_images
from aloe.loop.labelstudio.tasks import make_tasks


@dataclass(frozen=True)
class PreparedBatch:
    """The batch's tasks, where its images were written (``None`` when not written) and each id's file."""

    tasks: list[dict]
    images: Path | None
    document_root: Path | None
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def local_folder(self) -> Path | None:
        """The folder a Local Files storage must cover (images served as local files), or ``None``."""
        return self.images if self.document_root is not None else None


def pool_source(manifest: Path | None, config: Path | None) -> ImageSource | None:
    """The pool's images from an ``id,path`` manifest or an ``aloe-embed`` config's dataset."""
    if manifest is not None and config is not None:
        raise AloeError("give the pool once: --manifest or --config, not both")
    if manifest is not None:
        return manifest_source(manifest)
    if config is not None:
        from aloe.config import load_config
        from aloe.embedder.config import EmbedConfig

        return build_source(load_config(EmbedConfig, config).data)
    return None


def _written(ids: list[str], source: ImageSource, images: Path, document_root: Path | None, prefix: str,
             upload: bool) -> tuple[dict[str, str], Path | None, dict[str, Path]]:
    """Write the images into ``images``; each id's URL, the document root (local files) and each id's file."""
    if (prefix or upload) and document_root is not None:
        raise AloeError("--document-root is for local files, not for hosted (--prefix) or uploaded images")
    if prefix and upload:
        raise AloeError("--prefix (hosted images) or --upload, not both")
    root = None
    if not (prefix or upload):
        root = document_root if document_root is not None else images.resolve().parent
        if images.resolve() == root.resolve():
            raise AloeError(f"--images {images} must be a folder inside the document root {root}, not the "
                            "root itself (Label Studio refuses a storage at its document root)")
        local_files_url(images / "probe", root)  # fails early when the folder is outside the root
    files = write_images(ids, source, images)
    if root is not None:
        urls = {item: local_files_url(path, root) for item, path in files.items()}
    else:  # an upload replaces the file name with the server's URL
        urls = {item: hosted_url(prefix, path.name) for item, path in files.items()}
    return urls, root, files


def _listed_urls(ids: list[str], manifest: Path | None, prefix: str) -> dict[str, str]:
    if manifest is None:
        return {item: hosted_url(prefix, item) for item in ids}
    source = manifest_source(manifest)
    paths = dict(zip(source.ids, source.paths, strict=True))
    missing = [item for item in ids if item not in paths]
    if missing:
        raise AloeError(f"{len(missing)} batch ids not in the manifest, e.g. {missing[:3]}")
    return {item: hosted_url(prefix, paths[item].as_posix()) for item in ids}


def prepare_batch(batch_path: Path, *, manifest: Path | None = None, config: Path | None = None,
                  images: Path | None = None, document_root: Path | None = None,
                  prefix: str = "", upload: bool = False) -> PreparedBatch:
    """Label Studio tasks for the batch in ``batch_path``, with their images placed (see the module).

    ``upload``: the images are written for uploading to the server (``push --upload``); each task's
    image is its file name until the upload gives it the server's URL.
    """
    rows = read_batch(batch_path)
    ids = [row["id"] for row in rows]
    if images is None and (config is not None or document_root is not None or upload):
        raise AloeError("--config, --document-root and --upload go with --images DIR (where to write the images)")
    if images is None and manifest is None and not prefix:
        raise AloeError("say where the images are: --images DIR with --manifest or --config (written for "
                        "Label Studio's local files), --manifest with --prefix, or --prefix URL")
    if images is None:
        return PreparedBatch(make_tasks(rows, _listed_urls(ids, manifest, prefix)), None, None)
    source = pool_source(manifest, config)
    if source is None:
        raise AloeError("--images needs the pool's images: --manifest id,path CSV or --config embed.yaml")
    urls, root, files = _written(ids, source, images, document_root, prefix, upload)
    return PreparedBatch(make_tasks(rows, urls), images, root, files)
