"""A simulation pool from an ``aloe-embed`` config: its dataset, labels as the oracle, in its mode.

``linear`` (``aloe demo``, and ``aloe simulate --config`` for a linear config): the config's backbone
embeds the config's dataset once into ``DIR/features.zarr`` (the store's frozen-feature cache, as
``aloe-embed`` makes it), and every simulated round trains a linear head on those features;
unreadable images are left out of the pool. ``finetune``: the images themselves, every round
fine-tuning the backbone (:mod:`aloe.loop.finetune_run`).

When the config names a ``test:`` dataset (the benchmark's own test split: CIFAR-100's test set, the
published ImageNet-LT / Places365-LT test lists), its frozen features go to ``DIR/test-features.zarr``
and the metrics use it; the whole pool stays in play. Without one, a stratified share of the pool is
carved out (:func:`aloe.loop.oracle.make_oracle_pool`). ``pool.description["test_split"]`` says which.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from aloe.config import load_config
from aloe.errors import AloeError
from aloe.loop.oracle import OracleLabels, make_oracle_pool

FEATURES_STORE = "features.zarr"
TEST_FEATURES_STORE = "test-features.zarr"


def labeled_source(data_cfg, config_path: Path, role: str):
    """The :class:`~aloe.data.sources.ImageSource` of a dataset config, which must carry labels."""
    from aloe.data.sources import build_source

    source = build_source(data_cfg)
    if source.labels is None:
        raise AloeError(f"{config_path}: the {role} dataset {source.name} has no labels for the oracle")
    return source


def config_test_source(cfg, config_path: str | Path):
    """The config's ``test:`` dataset as a labeled image source, or ``None`` when it names none.

    For callers that embed the test split themselves (e.g. with a fine-tuned backbone each round).
    """
    return None if cfg.test is None else labeled_source(cfg.test, Path(config_path), "test")


def describe_test_split(test_source) -> str:
    """How the records and the report name a benchmark test split (no paths: a moved dataset still resumes)."""
    split = test_source.meta.get("split")
    return f"{test_source.name} ({split}), the benchmark's own" if split else f"{test_source.name}, the benchmark's own"


def check_test_classes(test_labels: np.ndarray, pool_labels: np.ndarray, test_name: str, config_path: Path) -> None:
    """:class:`AloeError` when the test split has classes the pool lacks (they could never be found)."""
    foreign = sorted(set(np.asarray(test_labels).tolist()) - set(np.asarray(pool_labels).tolist()))
    if foreign:
        raise AloeError(f"{config_path}: the test split {test_name} has classes the pool lacks: "
                        f"{', '.join(map(repr, foreign[:3]))}{'...' if len(foreign) > 3 else ''}")


def readable_features(store_path: Path, source, backbone, cfg, device, quiet: bool) -> dict[str, Any]:
    """The frozen features of ``source``'s readable items, cached in the store at ``store_path``.

    Returns ``ids``, ``features`` (float32), ``labels`` of the readable items, the number of
    unreadable ones and the cache key.
    """
    from aloe.embedder.round import frozen_cache, frozen_key, open_or_create_store

    store = open_or_create_store(store_path, source)
    cache, skipped, _ = frozen_cache(store, backbone, source, cfg, device, quiet)
    keep = np.setdiff1d(np.arange(len(source)), np.fromiter(skipped, dtype=np.int64, count=len(skipped)))
    return {
        "ids": np.asarray(source.ids)[keep],
        "features": np.asarray(cache.features(keep), dtype=np.float32),
        "labels": np.asarray(source.labels)[keep],
        "unreadable": len(skipped),
        "key": frozen_key(backbone, cfg, device),
    }


def load_config_pool(config_path: str | Path, out: str | Path, quiet: bool = False,
                     mode: str | None = None) -> tuple[OracleLabels, dict]:
    """The simulation pool of an ``aloe-embed`` config and the simulation settings it brings.

    ``mode`` overrides the config's. ``linear``: an :class:`OraclePool` of frozen features and
    ``{"head": the config's linear-head settings}``; ``finetune``: an
    :class:`~aloe.loop.finetune_run.ImagePool` and ``{"mode": "finetune"}``. Raises
    :class:`AloeError` for a dataset without labels or a test split with classes the pool lacks.
    """
    from aloe.embedder.backbones import build_backbone
    from aloe.embedder.config import EmbedConfig
    from aloe.embedder.device import resolve_device

    config_path = Path(config_path)
    cfg = load_config(EmbedConfig, config_path)
    if (mode or cfg.mode) == "finetune":
        from aloe.loop.finetune_run import image_pool

        return image_pool(cfg.model_copy(update={"mode": "finetune"}), config_path), {"mode": "finetune"}
    source = labeled_source(cfg.data, config_path, "pool")
    test_source = config_test_source(cfg, config_path)
    backbone = build_backbone(cfg.backbone)
    device = resolve_device(cfg.device)
    pool = readable_features(Path(out) / FEATURES_STORE, source, backbone, cfg, device, quiet)
    description = {
        "config": str(config_path),
        "dataset": source.name,
        "feature_cache": pool["key"],
        "unreadable_items": pool["unreadable"],
    }
    test: dict[str, Any] = {"features": None, "labels": None}
    if test_source is not None:
        test = readable_features(Path(out) / TEST_FEATURES_STORE, test_source, backbone, cfg, device, quiet)
        check_test_classes(test["labels"], pool["labels"], test_source.name, config_path)
        description.update(test_dataset=test_source.name, test_unreadable_items=test["unreadable"],
                           test_split=describe_test_split(test_source))
    oracle = make_oracle_pool(pool["ids"], pool["features"], pool["labels"], test["features"], test["labels"],
                              split_seed=cfg.seed, description=description, source=str(config_path))
    return oracle, {"head": cfg.linear.model_dump()}
