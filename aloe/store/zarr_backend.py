"""Zarr v3 backend: the store is a directory; each node is a Zarr group (a directory).

Every chunk carries a CRC-32C checksum (the ``crc32c`` codec) and every chunk is written, even an
all-zero one, so a reader can tell a truncated or garbled chunk (checksum) and a deleted one (a
missing file; Zarr itself would hand out zeros) from good data.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec

from aloe.store.backend import Backend, DamagedNode, NodeReader, NodeWriter, describe
from aloe.store.schema import ATTRS_KEY

STAGING = ".staging"
METADATA = "zarr.json"
CRC_BYTES = 4  # the crc32c codec appends a 4-byte checksum to every chunk
EVERY_CHUNK = {"write_empty_chunks": True}  # an all-zero chunk is written too: absent means damaged


class ZarrNodeWriter(NodeWriter):
    """Writes arrays of one Zarr group; chunks are checksummed, not compressed (features barely
    compress)."""

    def __init__(self, group: zarr.Group) -> None:
        self._group = group

    def create_array(self, name, shape, dtype, chunk_rows=None):
        chunks = (max(1, min(chunk_rows or shape[0] or 1, shape[0] or 1)),) + tuple(shape[1:])
        self._group.create_array(
            name, shape=shape, dtype=dtype, chunks=chunks, compressors=[Crc32cCodec()], config=EVERY_CHUNK
        )

    def write_rows(self, name, start, block):
        array = self._group[name].with_config(EVERY_CHUNK)  # the setting is not stored with the array
        array[start : start + len(block)] = block

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


def _checksummed(array: zarr.Array) -> bool:
    """Whether ``array`` was written by this backend's writer (checksums, every chunk on disk)."""
    return any(isinstance(codec, Crc32cCodec) for codec in array.metadata.codecs)


class ZarrNodeReader(NodeReader):
    """Reads arrays of one Zarr group; a missing, truncated or garbled chunk is :class:`DamagedNode`."""

    def __init__(self, group: zarr.Group, path: Path) -> None:
        self._group = group
        self._path = path
        self._arrays: dict[str, zarr.Array] = {}

    def attrs(self) -> dict[str, Any]:
        with self._guard("attributes"):
            attrs = self._group.attrs.get(ATTRS_KEY, {})
        if not isinstance(attrs, dict):
            raise self.damaged("attributes are not a mapping")
        return dict(attrs)

    def array_names(self) -> list[str]:
        """Arrays found on disk (zarr's own member listing warns about the staging folder)."""
        names = []
        for meta in self._path.glob(f"*/{METADATA}"):
            with self._guard(f"{meta.parent.name}/{METADATA}"):
                kind = json.loads(meta.read_text()).get("node_type")
            if kind not in ("array", "group"):
                raise self.damaged(f"{meta.parent.name}/{METADATA} names no node type")
            if kind == "array":
                names.append(meta.parent.name)
        return sorted(names)

    def _array(self, name: str) -> zarr.Array:
        """Open array ``name`` once, checking that every one of its chunks is on disk."""
        if name not in self._arrays:
            with self._guard(f"array '{name}'"):
                array = self._group[name]
                if not isinstance(array, zarr.Array):
                    raise self.damaged(f"'{name}' is not an array")
                if _checksummed(array):
                    self._check_chunk_files(name, array)
            self._arrays[name] = array
        return self._arrays[name]

    def _check_chunk_files(self, name: str, array: zarr.Array) -> None:
        """Every chunk file is there, and (fixed-size types) as long as a whole chunk plus its CRC."""
        encoding = array.metadata.chunk_key_encoding
        expected = None
        if array.dtype.kind in "biufc":
            expected = int(np.prod(array.chunks)) * np.dtype(array.dtype).itemsize + CRC_BYTES
        for coords in itertools.product(*map(range, array.cdata_shape)):
            key = encoding.encode_chunk_key(coords)
            chunk = self._path / name / key
            try:
                size = chunk.stat().st_size
            except FileNotFoundError:
                raise self.damaged(f"array '{name}' chunk {key} is missing") from None
            if expected is not None and size != expected:
                raise self.damaged(f"array '{name}' chunk {key} has {size} bytes, not {expected}")

    def info(self, name):
        array = self._array(name)
        dtype = np.dtype(str) if array.dtype.kind == "T" else np.dtype(array.dtype)
        return tuple(array.shape), dtype, array.chunks[0]

    def read(self, name, start=0, stop=None):
        array = self._array(name)
        with self._guard(f"array '{name}' rows {start}:{stop if stop is not None else array.shape[0]}"):
            return _plain(array[start:stop])

    def gather(self, name, rows):
        array = self._array(name)
        with self._guard(f"array '{name}'"):
            return _plain(array.oindex[rows])

    def close(self):
        self._group = None
        self._arrays = {}


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
        """Every directory under ``parts``: one without metadata is a damaged node, not no node."""
        folder = root.joinpath(*parts)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def list_staged(self, root: Path) -> list[tuple[str, ...]]:
        folder = root / STAGING
        if not folder.is_dir():
            return []
        return sorted(tuple(p.name.split("~")) for p in folder.iterdir() if p.is_dir())

    def new_node(self, path: Path) -> NodeWriter:
        path.parent.mkdir(parents=True, exist_ok=True)
        return ZarrNodeWriter(zarr.open_group(path, mode="w-"))

    def append_node(self, path: Path) -> NodeWriter:
        if not (path / METADATA).is_file():
            raise OSError(f"no Zarr group at {path}")
        return ZarrNodeWriter(zarr.open_group(path, mode="r+"))

    def open_node(self, path: Path) -> NodeReader:
        if not (path / METADATA).is_file():
            raise DamagedNode(path, f"its metadata file {METADATA} is missing")
        try:
            return ZarrNodeReader(zarr.open_group(path, mode="r"), path)
        except Exception as exc:  # garbled metadata: json, zarr and type errors alike
            raise DamagedNode(path, f"{METADATA}: {describe(exc)}") from None

    def prepare_parent(self, root: Path, *parts: str) -> None:
        for depth in range(1, len(parts)):
            folder = root.joinpath(*parts[:depth])
            if not (folder / METADATA).is_file():
                zarr.open_group(folder, mode="a")

    def disk_paths(self, root: Path) -> list[Path]:
        return [root]
