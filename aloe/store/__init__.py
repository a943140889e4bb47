"""The round store: pool ids, per-round features and logits, selections, feature caches.

One API (:class:`Store`) over two backends, a Zarr v3 directory (``*.zarr``, the default) and
HDF5 (``*.h5``); see :mod:`aloe.store.schema` for the layout and ``docs/architecture.md`` for use.
"""

from aloe.store.readers import RoundReader, RowReader
from aloe.store.store import BACKENDS, Store, backend_for, create_store, open_store
from aloe.store.writer import StagedWriter

__all__ = [
    "BACKENDS",
    "RoundReader",
    "RowReader",
    "StagedWriter",
    "Store",
    "backend_for",
    "create_store",
    "open_store",
]
