"""Rounds made from fixed features: train a linear head, stream features + logits into the store.

Two entry points:

- :func:`write_linear_round`: for any feature source (a frozen-backbone cache, a round reader, an
  in-memory array wrapped in :class:`ArrayFeatures`), train the head on the labeled rows and write a
  normal round. The ``linear`` embed mode calls it.
- :func:`embed_from_features`: ``aloe-embed --from-features pool.npz --labels labels.csv --store PATH``;
  user-supplied features go into the store's feature cache (keyed by the npz's content hash) and a
  round is written from them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from aloe.data.npz import load_features_npz, npz_digest
from aloe.embedder.head import LinearHeadConfig, head_logits, train_linear_head
from aloe.embedder.sharded import (
    check_same_request,
    file_digest,
    open_shard_writer,
    open_store_on_ranks,
    publish_shards,
    round_to_write,
    run_agreed,
)
from aloe.errors import AloeError
from aloe.internal.arrays import BLOCK_ROWS
from aloe.internal.dist import Comm
from aloe.labels import LabeledSet, check_known_ids, read_labels
from aloe.store.store import DEFAULT_CHUNK_ROWS
from aloe.store.writer import fits


class FeatureSource(Protocol):
    """Anything with row-gathering and block iteration over ``(N, D)`` features.

    ``features(rows)`` returns the rows in the order asked, repeats included (the store's readers
    and :class:`ArrayFeatures` both do).
    """

    def features(self, rows: np.ndarray | None = None) -> np.ndarray: ...

    def iter_blocks(self, *, start: int = 0, stop: int | None = None) -> Iterator[tuple]: ...


class ArrayFeatures:
    """An in-memory ``(N, D)`` array behind the :class:`FeatureSource` interface."""

    def __init__(self, features: np.ndarray, block_rows: int = BLOCK_ROWS) -> None:
        self._features = features
        self._block_rows = block_rows

    def features(self, rows: np.ndarray | None = None) -> np.ndarray:
        """All rows, or the rows at ``rows``, as float32."""
        data = self._features if rows is None else self._features[rows]
        return np.asarray(data, dtype=np.float32)

    def iter_blocks(self, *, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, block)`` of float32 rows over rows ``[start, stop)`` (default: all)."""
        stop = len(self._features) if stop is None else stop
        for first in range(start, stop, self._block_rows):
            yield first, np.asarray(self._features[first : min(first + self._block_rows, stop)], dtype=np.float32)


def write_linear_round(
    store: Any,
    t: int,
    feature_reader: FeatureSource,
    labeled: LabeledSet,
    *,
    head: LinearHeadConfig | None = None,
    device: str = "cpu",
    provenance: dict[str, Any] | None = None,
    feature_dtype: str = "float16",
    chunk_rows: int | None = None,
    comm: Comm | None = None,
) -> None:
    """Train a linear head on the labeled rows of ``feature_reader`` and write round ``t``.

    Under ``torchrun`` (``comm`` with several ranks) rank 0 fits the head and sends it to the
    others, each rank writes its chunk-aligned share of the rows, and rank 0 publishes the round.

    Parameters
    ----------
    store
        An open, writable store (:func:`aloe.store.open_store` with ``mode="a"``).
    t
        Round number to write. A partially written round ``t`` is resumed.
    feature_reader
        Feature source: ``.features(rows)`` and ``.iter_blocks()`` yielding ``(start, features, ...)``.
    labeled
        The labeled items' pool positions and classes; the head has one output per known class.
    head, device
        Head settings (default :class:`~aloe.embedder.head.LinearHeadConfig`) and the torch device
        to fit it on (see :func:`aloe.embedder.head.train_linear_head`).
    provenance
        Extra provenance merged over what this function records (mode, head settings, the fit's
        iterations / convergence / objective, timings).
    feature_dtype, chunk_rows
        Passed to ``store.begin_round``.
    comm
        The ranks (default: this process alone).
    """
    comm = comm or Comm()
    positions = np.asarray(labeled.positions, dtype=np.int64)
    classes = np.asarray(labeled.classes, dtype=np.int64)
    class_names = labeled.names
    if positions.shape != classes.shape:
        raise AloeError(f"{len(positions)} labeled positions but {len(classes)} labeled classes")
    n_items = int(store.n_items)
    if len(positions) and (positions.min() < 0 or positions.max() >= n_items):
        raise AloeError(f"labeled positions must lie in [0, {n_items})")

    started = time.perf_counter()
    head = head or LinearHeadConfig()
    fitted = None
    if comm.is_root:
        fit = train_linear_head(
            np.asarray(feature_reader.features(positions), dtype=np.float32), classes, len(class_names),
            config=head, device=device,
        )
        fitted = (fit.head.cpu(), fit.summary())
    head_model, fit_summary = comm.broadcast(fitted)
    record = {
        "mode": "linear",
        "head": head.model_dump(),
        "head_fit": fit_summary,
        "device": device,
        "timings_s": {"train_head": time.perf_counter() - started},
        **(provenance or {}),
    }
    write_head_round(store, t, feature_reader, head_model, labeled, record, feature_dtype=feature_dtype,
                     chunk_rows=chunk_rows, comm=comm)


def write_head_round(
    store: Any,
    t: int,
    feature_reader: FeatureSource,
    head_model: torch.nn.Linear,
    labeled: LabeledSet,
    provenance: dict[str, Any],
    *,
    feature_dtype: str = "float16",
    chunk_rows: int | None = None,
    comm: Comm | None = None,
) -> None:
    """Write round ``t``: every row of ``feature_reader`` with its logits under a trained head.

    :func:`write_linear_round` trains the head and calls this; the simulation calls it with the head
    it already trained. A partially written round ``t`` is resumed. Parameters as in
    :func:`write_linear_round`; ``provenance`` is recorded as given. Under ``torchrun`` (``comm``)
    each rank writes its chunk-aligned share and rank 0 publishes.
    """
    comm = comm or Comm()
    n_items = int(store.n_items)
    begin = {
        "feature_dim": head_model.in_features,
        "class_names": list(labeled.names),
        "labeled_positions": np.asarray(labeled.positions, dtype=np.int64),
        "labeled_classes": np.asarray(labeled.classes, dtype=np.int64),
        "provenance": provenance,
        "feature_dtype": feature_dtype,
    }
    if chunk_rows is not None:
        begin["chunk_rows"] = chunk_rows
    rows = chunk_rows if chunk_rows is not None else DEFAULT_CHUNK_ROWS
    writer = open_shard_writer(comm, lambda **shard: store.begin_round(t, **begin, **shard), n_items, rows)
    if writer is not None:
        done, stop = int(writer.rows_done), writer.row_range[1]
        for start, block, *_ in feature_reader.iter_blocks(start=done, stop=stop):
            block = np.asarray(block, dtype=np.float32)
            writer.write(block, head_logits(head_model, block))
            done = start + len(block)
        if done != stop:
            writer.abort()
            raise AloeError(f"feature source gave {done} rows, the store holds {n_items}")
    publish_shards(comm, writer)


def storage_dtype(features: np.ndarray) -> str:
    """``float16`` (half the disk) when every feature fits in it, else ``float32``."""
    return "float16" if fits(features, "float16") else "float32"


def note_rebuilt(note: str | None) -> None:
    """Print the note of :meth:`~aloe.store.Store.drop_damaged_cache` (a damaged cache is computed again)."""
    if note:
        print(f"note: {note}", file=sys.stderr)


def import_features_npz(store: Any, npz_path: str | Path, digest: str | None = None,
                        loaded: tuple[np.ndarray, np.ndarray] | None = None, verify: bool = True) -> Any:
    """Put an npz's features into a store's feature cache (once) and return the cache reader.

    ``store`` is an open writable store or the path of one. The cache key is ``npz-<content hash>``
    (``digest``, the file's :func:`~aloe.data.npz.npz_digest`, when the caller has it already), so
    importing the same file again reuses the cache, and an import killed mid-way resumes. The
    features are stored as float16 when they fit, else as float32 (:func:`storage_dtype`).
    ``loaded`` is the npz's checked ``(ids, features)`` when the caller has read them already. Raises
    :class:`AloeError` when the npz's ids differ from the store's pool. With ``verify`` the cache is read
    back in full first: a damaged one is derived data, imported again with a note on stderr.
    """
    if isinstance(store, (str, Path)):
        from aloe.store import open_store

        store = open_store(store, mode="a")
    key = f"npz-{digest or npz_digest(npz_path)}"
    if verify:
        note_rebuilt(store.drop_damaged_cache(key))
    cached = store.cached_features(key)
    if cached is not None:
        return cached
    ids, features = loaded if loaded is not None else load_features_npz(npz_path)
    if len(ids) != store.n_items or not np.array_equal(ids, np.asarray(store.ids).astype(str)):
        raise AloeError(f"{npz_path}: its ids are not the store's pool ids (in the same order)")
    writer = store.begin_cache(key, feature_dim=features.shape[1], meta={"source": str(npz_path)},
                               feature_dtype=storage_dtype(features))
    for start in range(writer.rows_done, len(features), BLOCK_ROWS):  # a resumed import
        writer.write(features[start : start + BLOCK_ROWS])
    writer.commit()
    return store.cached_features(key)


def embed_from_features(
    npz_path: str | Path,
    labels_csv: str | Path,
    store_path: str | Path,
    round: int | None = None,
    head: LinearHeadConfig | None = None,
    comm: Comm | None = None,
) -> int:
    """``aloe-embed --from-features``: write a round from user-supplied features; return its number.

    Parameters
    ----------
    npz_path
        npz with ``ids`` (N,) and ``features`` (N, D); an optional ``labels`` array (ground truth for
        simulation) is left to the simulation tools and not read here.
    labels_csv
        ``id,label`` file of the items labeled so far; every id must be in the npz.
    store_path
        Store to write into; created (backend from the suffix) when absent.
    round
        Round number, which must be the next one; default one past the latest complete round (0 for a new
        store).
    head
        The head's settings (default :class:`~aloe.embedder.head.LinearHeadConfig`).
    comm
        The ranks under ``torchrun`` (default: this process alone): rank 0 imports the features,
        every rank writes its share of the round (a Zarr store is needed).
    """
    from aloe.store import create_store, open_store

    comm = comm or Comm()
    # hashed once per rank: the ranks' check, the cache key and the provenance
    digest = npz_digest(npz_path) if Path(npz_path).is_file() else None
    check_same_request(comm, store_path, {"features file content": digest, "labels file content":
                                          file_digest(labels_csv), "round": round,
                                          "head": head.model_dump() if head else None})
    labels = read_labels(labels_csv)
    if digest is None:
        raise AloeError(f"features file not found: {npz_path}")
    store_path = Path(store_path)
    arrays: tuple[np.ndarray, np.ndarray] | None = None  # the npz, when checking it read it already

    def open_here() -> Any:
        nonlocal arrays
        if store_path.exists():
            store = open_store(store_path, mode="a")
        else:  # check the whole input first: a failed first run must not leave an empty store behind
            arrays = load_features_npz(npz_path)
            ids = arrays[0]
            check_known_ids(labels, ids, str(labels_csv))
            store = create_store(store_path, ids, meta={"source": "features", "npz": Path(npz_path).name})
        check_known_ids(labels, store.ids, str(labels_csv))
        return store

    round = round_to_write(comm, store_path, round)
    store = open_store_on_ranks(comm, store_path, open_here)
    cache = run_agreed(comm, lambda: import_features_npz(store, npz_path, digest, arrays) if comm.is_root else None)
    cache = cache if comm.is_root else import_features_npz(store, npz_path, digest, verify=False)  # rank 0 did
    labeled = LabeledSet.from_labels(labels, store)
    write_linear_round(
        store,
        round,
        cache,
        labeled,
        head=head,
        provenance={"source": "features", "npz": str(npz_path), "npz_sha256_16": digest,
                    "ranks": comm.world},
        feature_dtype=cache.attrs.get("feature_dtype", "float16"),
        comm=comm,
    )
    return round
