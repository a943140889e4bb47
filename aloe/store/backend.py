"""What a storage backend provides: nodes, each a group of arrays plus one JSON attribute dict.

The store logic in :mod:`aloe.store.store` is written once against these classes;
:mod:`aloe.store.zarr_backend` and :mod:`aloe.store.hdf5_backend` implement them. A node is a
directory (Zarr group) or a file (HDF5), so publishing one is a single atomic rename.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from aloe.errors import AloeError


class DamagedNode(AloeError):
    """A node on disk that cannot be read back as written (missing, truncated or garbled files)."""

    def __init__(self, path: Path, reason: str, way_out: str = "") -> None:
        super().__init__(f"{path} is damaged: {reason}" + (f"; {way_out}" if way_out else ""))
        self.path = path
        self.reason = reason


def describe(exc: BaseException) -> str:
    """A one-line account of a storage library's exception."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


@contextmanager
def damage_guard(path: Path, what: str, way_out: str = "") -> Iterator[None]:
    """Re-raise whatever a storage library raises while reading ``what`` of the node at ``path``
    (they raise many types for bad bytes) as one :class:`DamagedNode` naming the node (and ``way_out``)."""
    try:
        yield
    except DamagedNode:
        raise
    except Exception as exc:
        raise DamagedNode(path, f"{what}: {describe(exc)}", way_out) from None


class NodeWriter(abc.ABC):
    """A node being written."""

    @abc.abstractmethod
    def create_array(
        self, name: str, shape: tuple[int, ...], dtype: Any, chunk_rows: int | None = None
    ) -> None:
        """Create an array, row-chunked when ``chunk_rows`` is given; ``dtype=str`` for strings."""

    @abc.abstractmethod
    def write_rows(self, name: str, start: int, block: np.ndarray) -> None:
        """Write ``block`` into rows ``start : start + len(block)``."""

    @abc.abstractmethod
    def set_attrs(self, attrs: dict[str, Any]) -> None:
        """Replace the node's attribute dict (JSON-serialisable values)."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Make everything written so far reach the operating system (survives a killed process)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush and release the node."""


class NodeReader(abc.ABC):
    """A published node opened read-only; unreadable content raises :class:`DamagedNode`.

    Subclasses set ``_path``, the node on disk that damage messages name; the store sets
    ``way_out``, what a user can do about damage to this node, which the messages end with.
    """

    _path: Path
    way_out: str = ""

    def damaged(self, reason: str) -> DamagedNode:
        """A :class:`DamagedNode` for this node, ending with its way out."""
        return DamagedNode(self._path, reason, self.way_out)

    def _guard(self, what: str) -> AbstractContextManager[None]:
        """:func:`damage_guard` for this node."""
        return damage_guard(self._path, what, self.way_out)

    @abc.abstractmethod
    def attrs(self) -> dict[str, Any]:
        """The node's attribute dict."""

    @abc.abstractmethod
    def array_names(self) -> list[str]:
        """Names of the node's arrays."""

    @abc.abstractmethod
    def info(self, name: str) -> tuple[tuple[int, ...], np.dtype, int]:
        """Shape, dtype and rows per chunk of an array."""

    @abc.abstractmethod
    def read(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``start:stop`` of an array."""

    @abc.abstractmethod
    def gather(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Rows at sorted, unique positions ``rows``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the node."""


class Backend(abc.ABC):
    """Where nodes live on disk and how they are opened."""

    name: str
    suffixes: tuple[str, ...]
    #: whether several processes may write disjoint chunks of one staged node at once
    shared_writes: bool = False

    @abc.abstractmethod
    def node_path(self, root: Path, *parts: str) -> Path:
        """Path of the published node ``parts`` (e.g. ``("rounds", "0003")``)."""

    @abc.abstractmethod
    def staging_path(self, root: Path, *parts: str) -> Path:
        """Path of node ``parts`` while it is being written."""

    @abc.abstractmethod
    def list_nodes(self, root: Path, *parts: str) -> list[str]:
        """Names of the published nodes directly under ``parts`` (damaged ones included)."""

    @abc.abstractmethod
    def list_staged(self, root: Path) -> list[tuple[str, ...]]:
        """The ``parts`` of every staged (unpublished) node."""

    @abc.abstractmethod
    def new_node(self, path: Path) -> NodeWriter:
        """Create an empty node at ``path``; the path must not exist."""

    @abc.abstractmethod
    def append_node(self, path: Path) -> NodeWriter:
        """Reopen a staged node for more writes; raise ``OSError`` if it is unreadable."""

    @abc.abstractmethod
    def open_node(self, path: Path) -> NodeReader:
        """Open a node read-only; :class:`DamagedNode` if it is missing or unreadable."""

    @abc.abstractmethod
    def prepare_parent(self, root: Path, *parts: str) -> None:
        """Make sure the container of published node ``parts`` exists."""

    @abc.abstractmethod
    def disk_paths(self, root: Path) -> list[Path]:
        """Every file or directory that belongs to the store at ``root``."""
