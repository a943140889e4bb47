"""The store's schema: version, names and on-disk layout rules shared by both backends.

Logical layout (the same for Zarr and HDF5)::

    root            attrs: kind, schema_version, n_items, fingerprint, meta; array ``ids`` (N,) str
    rounds/NNNN     one node per complete round: ``features`` (N x D), ``logits`` (N x C),
                    ``labeled_positions`` (L,), ``labeled_classes`` (L,); attrs: class_names,
                    provenance, ...
    selections/NNNN/NAME   one node per recorded selection of round NNNN
    cache/KEY       frozen-backbone pool features (N x D), reused by ``linear`` rounds

Every node is written in a staging area and published by one atomic rename, so a reader never
sees half a node and a killed writer leaves only a staged node behind.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from aloe.errors import AloeError

STORE_KIND = "aloe-store"
SCHEMA_VERSION = 1
ATTRS_KEY = "aloe"
ROUNDS, SELECTIONS, CACHE = "rounds", "selections", "cache"
ROUND_ARRAYS = ("features", "logits", "labeled_positions", "labeled_classes")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def round_name(t: int) -> str:
    """Node name of round ``t`` (zero-padded so names sort like numbers)."""
    return f"{t:04d}"


def parse_round_name(name: str) -> int | None:
    """Round number of a node name, or ``None`` if it is not one."""
    return int(name) if name.isdigit() else None


def check_name(name: str, what: str) -> str:
    """Validate a selection or cache name: letters, digits, '.', '_', '-'; raise AloeError if not."""
    if not _NAME.match(name):
        raise AloeError(f"invalid {what} name {name!r}: use letters, digits, '.', '_' and '-'")
    return name


def fingerprint(ids: Iterable[str]) -> str:
    """A short, stable hash of the pool's ids in order."""
    digest = hashlib.sha256()
    for item in ids:
        digest.update(str(item).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]
