"""The output folders users name (``--out`` of a simulation or a report)."""

from __future__ import annotations

from pathlib import Path

from aloe.errors import AloeError


def make_out_folder(path: Path) -> None:
    """Create the folder ``path`` (and its parents) unless it exists; :class:`AloeError` when ``path``
    is a file, which nothing must overwrite."""
    if path.exists() and not path.is_dir():
        raise AloeError(f"--out {path} is a file, not a folder")
    path.mkdir(parents=True, exist_ok=True)
