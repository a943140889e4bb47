"""Reading user-supplied npz files (``allow_pickle=False``), hashing them for cache keys, and saving
npz files atomically."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np

from aloe.errors import AloeError
from aloe.labels import check_pool_ids


def npz_digest(path: str | Path) -> str:
    """Content hash of a file (sha256, first 16 hex digits): the feature-cache key of an npz."""
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()[:16]


def read_npz(path: str | Path, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of an npz (every array when ``None``); members load lazily.

    Raises :class:`AloeError` for a missing or unreadable file and for missing keys (naming what
    the file holds). Pickled object arrays are refused.
    """
    path = Path(path)
    if not path.is_file():
        raise AloeError(f"features file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise AloeError(f"{path}: not an npz file (numpy.savez writes one: a zip archive of .npy arrays)")
    try:
        with np.load(path, allow_pickle=False) as data:
            wanted = tuple(data.files) if keys is None else keys
            missing = [key for key in wanted if key not in data.files]
            if missing:
                raise AloeError(f"{path}: missing array(s) {missing}; it holds {sorted(data.files)}")
            return {key: np.asarray(data[key]) for key in wanted}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise AloeError(f"{path}: not a readable npz file ({exc})") from None


def load_features_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and check ``ids`` and ``features`` from an npz; return ``(ids as str, features float32)``."""
    arrays = read_npz(path, ("ids", "features"))
    ids, features = arrays["ids"].astype(str), arrays["features"].astype(np.float32, copy=False)
    if ids.ndim != 1 or features.ndim != 2 or len(ids) != len(features):
        shapes = f"{ids.shape} and {features.shape}"
        raise AloeError(f"{path}: need ids (N,) and features (N, D), got {shapes}")
    if len(np.unique(ids)) != len(ids):
        raise AloeError(f"{path}: ids are not unique")
    check_pool_ids(ids.tolist(), str(path))
    bad = ~np.isfinite(features).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        raise AloeError(f"{path}: {int(bad.sum())} feature rows hold NaN or inf (first: row {first})")
    return ids, features


def save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    """Save ``arrays`` as an npz at ``path`` (its folder made) through a temporary file and a rename:
    a reader never meets half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as handle:
        np.savez(handle, **arrays)
    os.replace(temporary, path)
