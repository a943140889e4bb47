"""Zarr v3 backend: the store is a directory; each node is a Zarr group (a directory)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from aloe.store.backend import Backend, NodeReader, NodeWriter
from aloe.store.schema import ATTRS_KEY

STAGING = ".staging"


class ZarrNodeWriter(NodeWriter):
    """Writes arrays of one Zarr group; chunks are uncompressed (features barely compress)."""

    def __init__(self, group: zarr.Group) -> None:
        self._group = group

    def create_array(self, name, shape, dtype, chunk_rows=None):
        chunks = (max(1, min(chunk_rows or shape[0] or 1, shape[0] or 1)),) + tuple(shape[1:])
        self._group.create_array(name, shape=shape, dtype=dtype, chunks=chunks, compressors=None)

    def write_rows(self, name, start, block):
        self._group[name][start : start + len(block)] = block

    def set_attrs(self, attrs):
        self._group.attrs.put({ATTRS_KEY: attrs})

    def flush(self):
        """Nothing to do: Zarr writes each chunk to its own file as it is assigned."""

    def close(self):
        self._group = None


def _plain(values: np.ndarray) -> np.ndarray:
    """Zarr returns numpy's variable-width StringDType for strings; hand out plain ``str`` arrays."""
    values = np.asarray(values)
    return np.array(values.tolist(), dtype=str) if values.dtype.kind == "T" else values


class ZarrNodeReader(NodeReader):
    """Reads arrays of one Zarr group."""

    def __init__(self, group: zarr.Group, path: Path) -> None:
        self._group = group
        self._path = path

    def attrs(self) -> dict[str, Any]:
        return dict(self._group.attrs.get(ATTRS_KEY, {}))

    def array_names(self) -> list[str]:
        """Arrays found on disk (zarr's own member listing warns about the staging folder)."""
        names = []
        for meta in self._path.glob("*/zarr.json"):
            if json.loads(meta.read_text()).get("node_type") == "array":
                names.append(meta.parent.name)
        return sorted(names)

    def info(self, name):
        array = self._group[name]
        dtype = np.dtype(str) if array.dtype.kind == "T" else np.dtype(array.dtype)
        return tuple(array.shape), dtype, array.chunks[0]

    def read(self, name, start=0, stop=None):
        return _plain(self._group[name][start:stop])

    def gather(self, name, rows):
        return _plain(self._group[name].oindex[rows])

    def close(self):
        self._group = None


class ZarrBackend(Backend):
    """Store = ``path.zarr/``; node ``("rounds", "0003")`` = ``path.zarr/rounds/0003/``."""

    name = "zarr"
    suffixes = (".zarr",)
    shared_writes = True  # one file per chunk

    def node_path(self, root: Path, *parts: str) -> Path:
        return root.joinpath(*parts)

    def staging_path(self, root: Path, *parts: str) -> Path:
        return root / STAGING / "~".join(parts)

    def list_nodes(self, root: Path, *parts: str) -> list[str]:
        folder = root.joinpath(*parts)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if (p / "zarr.json").is_file())

    def list_staged(self, root: Path) -> list[tuple[str, ...]]:
        folder = root / STAGING
        if not folder.is_dir():
            return []
        return sorted(tuple(p.name.split("~")) for p in folder.iterdir() if p.is_dir())

    def new_node(self, path: Path) -> NodeWriter:
        path.parent.mkdir(parents=True, exist_ok=True)
        return ZarrNodeWriter(zarr.open_group(path, mode="w-"))

    def append_node(self, path: Path) -> NodeWriter:
        if not (path / "zarr.json").is_file():
            raise OSError(f"no Zarr group at {path}")
        return ZarrNodeWriter(zarr.open_group(path, mode="r+"))

    def open_node(self, path: Path) -> NodeReader:
        if not (path / "zarr.json").is_file():
            raise OSError(f"no Zarr group at {path}")
        return ZarrNodeReader(zarr.open_group(path, mode="r"), path)

    def prepare_parent(self, root: Path, *parts: str) -> None:
        for depth in range(1, len(parts)):
            folder = root.joinpath(*parts[:depth])
            if not (folder / "zarr.json").is_file():
                zarr.open_group(folder, mode="a")

    def disk_paths(self, root: Path) -> list[Path]:
        return [root]
