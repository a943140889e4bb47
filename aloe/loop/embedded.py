"""An oracle pool from images: the embedder's frozen-backbone features, computed once and cached.

``aloe simulate --config`` and ``aloe demo`` run the embedder's ``linear`` mode: the config's backbone
embeds the config's dataset once into ``DIR/features.zarr`` (the store's frozen-feature cache, as
``aloe-embed`` makes it), and every simulated round trains a linear head on those features. The
dataset's labels are the oracle; unreadable images are left out of the pool.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aloe.config import load_config
from aloe.errors import AloeError
from aloe.loop.oracle import OraclePool, make_oracle_pool

FEATURES_STORE = "features.zarr"


def load_config_pool(config_path: str | Path, out: str | Path, quiet: bool = False) -> tuple[OraclePool, dict]:
    """The oracle pool of an ``aloe-embed`` config in ``linear`` mode, and its linear-head settings.

    Raises :class:`AloeError` for a config in another mode or a dataset without labels.
    """
    from aloe.data.sources import build_source
    from aloe.embedder.backbones import build_backbone
    from aloe.embedder.config import EmbedConfig
    from aloe.embedder.device import resolve_device
    from aloe.embedder.round import cache_key, frozen_cache, open_or_create_store

    config_path = Path(config_path)
    cfg = load_config(EmbedConfig, config_path)
    if cfg.mode != "linear":
        raise AloeError(
            f"{config_path}: simulate runs the linear mode (frozen features computed once), "
            f"not {cfg.mode!r}; set mode: linear"
        )
    source = build_source(cfg.data)
    if source.labels is None:
        raise AloeError(f"{config_path}: the dataset {source.name} has no labels for the oracle")
    backbone = build_backbone(cfg.backbone)
    store = open_or_create_store(Path(out) / FEATURES_STORE, source)
    cache, skipped, _ = frozen_cache(store, backbone, source, cfg, resolve_device(cfg.device), quiet)
    keep = np.setdiff1d(np.arange(len(source)), np.fromiter(skipped, dtype=np.int64, count=len(skipped)))
    pool = make_oracle_pool(
        np.asarray(source.ids)[keep],
        np.asarray(cache.features(keep), dtype=np.float32),
        np.asarray(source.labels)[keep],
        split_seed=cfg.seed,
        description={
            "config": str(config_path),
            "dataset": source.name,
            "feature_cache": cache_key(backbone),
            "unreadable_items": len(skipped),
        },
        source=str(config_path),
    )
    return pool, cfg.linear.model_dump()
