"""Image locations of batch items for annotation tools: a URL prefix plus the manifest path or id."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from aloe.data.sources import manifest_source
from aloe.errors import AloeError


def image_locations(ids: Iterable[str], manifest: str | Path | None, prefix: str) -> dict[str, str]:
    """``prefix`` + each id's image path in the ``id,path`` manifest, or ``prefix`` + the id."""
    ids = list(ids)
    if manifest is None:
        return {item: prefix + item for item in ids}
    source = manifest_source(Path(manifest))
    paths = dict(zip(source.ids, source.paths, strict=True))
    missing = [item for item in ids if item not in paths]
    if missing:
        raise AloeError(f"{manifest}: {len(missing)} batch ids not in the manifest, e.g. {missing[:3]}")
    return {item: prefix + paths[item].as_posix() for item in ids}
