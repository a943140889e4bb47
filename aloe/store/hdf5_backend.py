"""HDF5 backend: the root node is ``path.h5``; every other node is its own file in ``path.h5.d/``.

One file per node keeps HDF5's weak spots away from the data: a writer killed mid-round can only
damage its own staged file (never ``path.h5`` or a published round), and readers never meet
HDF5's file lock because no file is written after it is published. Chunked datasets carry
HDF5's Fletcher-32 checksum, so a garbled chunk is an error, not a silent wrong value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from aloe.store.backend import Backend, DamagedNode, NodeReader, NodeWriter, describe
from aloe.store.schema import ATTRS_KEY

SUFFIX = ".h5"
STAGING = ".staging"


class Hdf5NodeWriter(NodeWriter):
    """Writes datasets of one HDF5 file."""

    def __init__(self, handle: h5py.File) -> None:
        self._file = handle

    def create_array(self, name, shape, dtype, chunk_rows=None):
        string = dtype is str
        chunks = None
        if chunk_rows and all(shape) and not string:  # HDF5 chunks need every dimension > 0
            chunks = (min(chunk_rows, shape[0]),) + tuple(shape[1:])
        self._file.create_dataset(
            name, shape=shape, dtype=h5py.string_dtype() if string else dtype, chunks=chunks,
            fletcher32=chunks is not None,
        )

    def write_rows(self, name, start, block):
        if block.dtype.kind in "UT":
            block = block.astype(object)
        self._file[name][start : start + len(block)] = block

    def set_attrs(self, attrs):
        self._file.attrs[ATTRS_KEY] = json.dumps(attrs)

    def flush(self):
        self._file.flush()

    def close(self):
        self._file.close()


class Hdf5NodeReader(NodeReader):
    """Reads datasets of one HDF5 file; unreadable content is :class:`DamagedNode`."""

    def __init__(self, handle: h5py.File, path: Path) -> None:
        self._file = handle
        self._path = path

    def attrs(self) -> dict[str, Any]:
        with self._guard("attributes"):
            raw = self._file.attrs.get(ATTRS_KEY)
            attrs = json.loads(raw) if raw is not None else {}
        if not isinstance(attrs, dict):
            raise self.damaged("attributes are not a mapping")
        return attrs

    def array_names(self) -> list[str]:
        with self._guard("array list"):
            return sorted(self._file.keys())

    def info(self, name):
        with self._guard(f"array '{name}'"):
            data = self._file[name]
            string = h5py.check_string_dtype(data.dtype) is not None
            rows = data.chunks[0] if data.chunks else max(1, data.shape[0])
            return tuple(data.shape), np.dtype(str) if string else data.dtype, rows

    def _decode(self, name: str, values: np.ndarray) -> np.ndarray:
        if h5py.check_string_dtype(self._file[name].dtype) is not None:
            return np.array([v.decode() if isinstance(v, bytes) else v for v in values], dtype=str)
        return values

    def read(self, name, start=0, stop=None):
        with self._guard(f"array '{name}'"):
            return self._decode(name, self._file[name][start:stop])

    def gather(self, name, rows):
        with self._guard(f"array '{name}'"):
            return self._decode(name, self._file[name][np.asarray(rows)])

    def close(self):
        self._file.close()


class Hdf5Backend(Backend):
    """Store = ``path.h5`` + ``path.h5.d/``; node ``("rounds", "0003")`` = ``path.h5.d/rounds/0003.h5``."""

    name = "hdf5"
    suffixes = (".h5", ".hdf5")

    @staticmethod
    def _folder(root: Path) -> Path:
        return root.with_name(root.name + ".d")

    def node_path(self, root: Path, *parts: str) -> Path:
        if not parts:
            return root
        return self._folder(root).joinpath(*parts[:-1], parts[-1] + SUFFIX)

    def staging_path(self, root: Path, *parts: str) -> Path:
        return self._folder(root) / STAGING / ("~".join(parts) + SUFFIX)

    def list_nodes(self, root: Path, *parts: str) -> list[str]:
        folder = self._folder(root).joinpath(*parts)
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*" + SUFFIX) if p.is_file())

    def list_staged(self, root: Path) -> list[tuple[str, ...]]:
        folder = self._folder(root) / STAGING
        if not folder.is_dir():
            return []
        return sorted(tuple(p.stem.split("~")) for p in folder.glob("*" + SUFFIX))

    def new_node(self, path: Path) -> NodeWriter:
        path.parent.mkdir(parents=True, exist_ok=True)
        return Hdf5NodeWriter(h5py.File(path, "w-"))

    def append_node(self, path: Path) -> NodeWriter:
        return Hdf5NodeWriter(h5py.File(path, "r+"))

    def open_node(self, path: Path) -> NodeReader:
        if not path.is_file():
            raise DamagedNode(path, "the file is missing")
        try:
            return Hdf5NodeReader(h5py.File(path, "r"), path)
        except Exception as exc:  # truncated or garbage files: OSError from HDF5
            raise DamagedNode(path, f"not a readable HDF5 file ({describe(exc)})") from None

    def prepare_parent(self, root: Path, *parts: str) -> None:
        self.node_path(root, *parts).parent.mkdir(parents=True, exist_ok=True)

    def disk_paths(self, root: Path) -> list[Path]:
        return [root, self._folder(root)]
