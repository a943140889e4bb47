"""One embedding round: labels in, a complete round (features + logits + provenance) in the store.

``finetune``: reset the backbone, fine-tune it end to end with a new head on the labels so far, then
the pool pass writes features and logits. The trained weights wait beside the store until the round
commits, so a killed round resumes without training again (:mod:`aloe.embedder.checkpoint`).

``linear``: the frozen backbone's pool features are cached in the store once (keyed by the backbone's
hash and preprocessing) and a linear head trained on them writes the round
(:func:`aloe.embedder.linear_round.write_linear_round`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from aloe import __version__
from aloe.data.images import PoolImages
from aloe.data.sources import ImageSource, build_source
from aloe.embedder.backbones import Backbone, build_backbone, state_hash
from aloe.embedder.batches import resolve_preprocess
from aloe.embedder.checkpoint import checkpoint_path, discard, load_trained, save_trained, training_key
from aloe.embedder.config import EmbedConfig
from aloe.embedder.device import resolve_device
from aloe.embedder.finetune import finetune
from aloe.embedder.linear_round import note_rebuilt, write_linear_round
from aloe.embedder.poolpass import PassReport, model_encoder, run_pool_pass
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
from aloe.internal.dist import Comm
from aloe.internal.versions import package_versions
from aloe.labels import LabeledSet, check_known_ids, read_labels
from aloe.store import Store, create_store, open_store


@dataclass
class RoundSummary:
    """What :func:`embed_round` did, for the CLI's closing report."""

    t: int
    mode: str
    n_items: int
    n_labeled: int
    n_classes: int
    skipped: dict[int, str] = field(default_factory=dict)
    pass_items_per_s: float = 0.0
    resumed_from: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)
    ranks: int = 1


def versions() -> dict[str, str]:
    """Versions of Python and of the libraries that shape the features (``absent`` if not installed)."""
    return {"aloe-al": __version__,
            **package_versions(("torch", "torchvision", "open_clip_torch", "timm", "pillow"), absent="absent")}


def open_or_create_store(path: Path, source: ImageSource) -> Store:
    """Open the store at ``path`` (its pool must be ``source``'s ids) or create it for ``source``."""
    if not path.exists():
        return create_store(path, source.ids, meta={"dataset": source.describe(), "created_by": "aloe-embed"})
    store = open_store(path, mode="a")
    if store.n_items != len(source) or store.ids.tolist() != list(source.ids):
        raise AloeError(f"{path} holds a different pool ({store.n_items} items) than the dataset "
                        f"{source.name} ({len(source)} items); use a new --store")
    return store


def cache_key(backbone: Backbone, preprocess: str = "loader") -> str:
    """Feature-cache key: the backbone's weights hash and its preprocessing (where it runs too, when that
    is the device: its resampling differs slightly from the loader's)."""
    settings = [backbone.name, backbone.image_size, backbone.mean, backbone.std]
    prep = json.dumps(settings if preprocess == "loader" else [*settings, preprocess])
    return f"frozen-{backbone.checkpoint_hash}-{hashlib.sha256(prep.encode()).hexdigest()[:8]}"


def frozen_key(backbone: Backbone, cfg: EmbedConfig, device: torch.device) -> str:
    """The cache key of ``backbone``'s frozen features as ``cfg`` computes them on ``device``."""
    return cache_key(backbone, resolve_preprocess(cfg.pool.preprocess, device))


def _nothing(image) -> torch.Tensor:
    return torch.zeros(3, 0, 0)


def scan_unreadable(source: ImageSource, stop: int, workers: int, start: int = 0) -> dict[int, str]:
    """Unreadable items among positions ``start .. stop-1`` (re-found when a pass resumes)."""
    found: dict[int, str] = {}
    loader = DataLoader(PoolImages(source, _nothing, range(start, stop), 0), batch_size=256, num_workers=workers)
    for positions, _, errors in loader:
        found.update((p, e) for p, e in zip(positions.tolist(), errors, strict=True) if e)
    return found


def _skipped_record(source: ImageSource, skipped: dict[int, str]) -> dict[str, Any]:
    positions = sorted(skipped)
    return {"count": len(positions), "positions": positions, "ids": [source.ids[p] for p in positions],
            "errors": [skipped[p] for p in positions]}


def _pass(encoder, source, backbone, writer, cfg: EmbedConfig, device, desc, quiet, comm: Comm) -> PassReport:
    """This rank's pool pass into ``writer`` (none for a rank without rows), then every rank's report."""
    report = PassReport()
    if writer is not None:
        first, resumed_from = writer.row_range[0], int(writer.rows_done)
        report = run_pool_pass(encoder, source, writer, backbone=backbone, batch_size=cfg.pool.batch_size,
                               workers=cfg.pool.workers, device=device, preprocess=cfg.pool.preprocess,
                               desc=desc, quiet=quiet)
        if resumed_from > first:
            report.skipped.update(scan_unreadable(source, resumed_from, cfg.pool.workers, start=first))
    if not comm.sharded:
        return report
    parts = comm.gather_objects((report.rows, report.seconds, report.skipped))
    return PassReport(rows=sum(rows for rows, _, _ in parts), seconds=max(seconds for _, seconds, _ in parts),
                      skipped={p: e for _, _, skipped in parts for p, e in skipped.items()})


def frozen_cache(store: Store, backbone: Backbone, source: ImageSource, cfg: EmbedConfig,
                 device: torch.device, quiet: bool,
                 comm: Comm | None = None) -> tuple[Any, dict[int, str], PassReport | None]:
    """The frozen backbone's pool features from the store's cache, computing them once if absent (or
    again, with a note on stderr, if the cache is damaged: it is derived data).

    Under ``torchrun`` (``comm``) each rank computes its share of the rows. Returns the cache reader,
    its unreadable items, and the pass report (``None`` when reused).
    """
    comm = comm or Comm()
    key = frozen_key(backbone, cfg, device)
    run_agreed(comm, lambda: note_rebuilt(store.drop_damaged_cache(key)) if comm.is_root else None)
    cached = store.cached_features(key)
    report = None
    if cached is None:
        backbone.reset()
        backbone.module.to(device)
        writer = open_shard_writer(
            comm,
            lambda **shard: store.begin_cache(key, feature_dim=backbone.feature_dim,
                                              meta={"backbone": backbone.describe()},
                                              feature_dtype=cfg.pool.feature_dtype, chunk_rows=cfg.pool.chunk_rows,
                                              **shard),
            store.n_items, cfg.pool.chunk_rows,
        )
        report = _pass(model_encoder(backbone, None, device), source, backbone, writer, cfg, device,
                       "frozen features", quiet, comm)
        publish_shards(comm, writer, {"skipped": [[p, e] for p, e in sorted(report.skipped.items())]})
        cached = store.cached_features(key)
    skipped = {int(p): str(e) for p, e in cached.attrs.get("skipped", [])}
    return cached, skipped, report


def embed_round(cfg: EmbedConfig, store_path: str | Path, labels_path: str | Path, t: int | None = None,
                quiet: bool = False, *, source: ImageSource | None = None,
                on_trained: Callable[[Backbone, torch.nn.Module, torch.device], None] | None = None,
                comm: Comm | None = None) -> RoundSummary:
    """Write round ``t`` (default: one past the latest) of the store at ``store_path``.

    Bad labels (unknown ids, an id with two labels) raise :class:`AloeError` before anything is
    written. A round killed mid-pass is resumed from its last complete chunk by the same call.
    ``source`` is the pool (default: the config's dataset). In ``finetune`` mode, ``on_trained`` is
    called with the trained (or, on resume, reloaded) backbone, head and device before the pool pass.
    Under ``torchrun`` (``comm`` with several ranks, a Zarr store) each rank embeds a chunk-aligned
    share of the pool into the same staged round, and rank 0 publishes it.
    """
    comm = comm or Comm()
    check_same_request(comm, store_path, {"config": cfg.model_dump(mode="json"), "round": t,
                                          "labels file content": file_digest(labels_path)})
    started = time.perf_counter()
    labels = read_labels(labels_path)
    source = build_source(cfg.data) if source is None else source
    check_known_ids(labels, source.ids, str(labels_path))
    t = round_to_write(comm, Path(store_path), t)
    device = comm.device if comm.device.type == "cuda" else resolve_device(cfg.device)
    backbone = build_backbone(cfg.backbone)
    store = open_store_on_ranks(comm, Path(store_path), lambda: open_or_create_store(Path(store_path), source))
    labeled = LabeledSet.from_labels(labels, store)
    provenance: dict[str, Any] = {
        "mode": cfg.mode, "backbone": backbone.describe(), "dataset": source.describe(), "seed": cfg.seed,
        "device": str(device), "pool": cfg.pool.model_dump(), "n_labeled": len(labels),
        "versions": versions(), "config": cfg.model_dump(mode="json"),
    }
    provenance["ranks"] = comm.world
    summary = RoundSummary(t, cfg.mode, store.n_items, len(labeled), len(labeled.names), ranks=comm.world)
    summary.timings_s["setup"] = time.perf_counter() - started

    if cfg.mode == "linear":
        _linear_round(cfg, store, source, backbone, t, labeled, device, provenance, summary, quiet, comm)
    else:
        _finetune_round(cfg, store, Path(store_path), source, backbone, t, labeled, device, provenance, summary,
                        quiet, comm, on_trained)
    summary.timings_s["total"] = time.perf_counter() - started
    return summary


def _linear_round(cfg: EmbedConfig, store: Store, source: ImageSource, backbone: Backbone,
                  t: int, labeled: LabeledSet, device: torch.device, provenance: dict[str, Any],
                  summary: RoundSummary, quiet: bool, comm: Comm) -> None:
    """Frozen pool features (cached once), a linear head on them, the round written."""
    cache, skipped, report = frozen_cache(store, backbone, source, cfg, device, quiet, comm)
    summary.timings_s["frozen_features"] = report.seconds if report else 0.0
    lin = cfg.linear
    provenance.update(linear_head=lin.model_dump(), feature_cache=frozen_key(backbone, cfg, device),
                      skipped=_skipped_record(source, skipped))
    mark = time.perf_counter()
    write_linear_round(store, t, cache, labeled, head=lin,
                       device=str(device), provenance=provenance, feature_dtype=cfg.pool.feature_dtype,
                       chunk_rows=cfg.pool.chunk_rows, comm=comm)
    summary.timings_s["head_and_write"] = time.perf_counter() - mark
    summary.skipped = skipped
    summary.pass_items_per_s = report.items_per_s if report else 0.0


def _finetune_round(cfg: EmbedConfig, store: Store, store_path: Path, source: ImageSource, backbone: Backbone,
                    t: int, labeled: LabeledSet, device: torch.device,
                    provenance: dict[str, Any], summary: RoundSummary, quiet: bool, comm: Comm,
                    on_trained: Callable[[Backbone, torch.nn.Module, torch.device], None] | None = None) -> None:
    """Fine-tune backbone + head (or reload them after a crash), then the pool pass into round ``t``.

    Under ``torchrun`` the fine-tuning runs with DistributedDataParallel and each rank embeds its
    share of the pool; rank 0 keeps the checkpoint and publishes the round.
    """
    mark = time.perf_counter()
    positions, classes, names = labeled.positions, labeled.classes, labeled.names
    key = training_key(backbone, positions, classes, names, cfg.finetune.model_dump(), cfg.seed)
    checkpoint = checkpoint_path(store_path, t)
    loaded = load_trained(checkpoint, key, backbone, len(names), device)
    if loaded is None:
        head, stats = finetune(backbone, source, positions, classes, len(names), cfg.finetune, device=device,
                               seed=cfg.seed, workers=cfg.pool.workers, preprocess=cfg.pool.preprocess,
                               quiet=quiet, comm=comm)
        if stats["trained"] and comm.is_root:
            save_trained(checkpoint, key, backbone, head, stats)
        comm.barrier()
    else:
        head, stats = loaded
    summary.timings_s["finetune"] = time.perf_counter() - mark
    if on_trained is not None:
        on_trained(backbone, head, device)
    trained = state_hash({**{f"backbone.{k}": v for k, v in backbone.module.state_dict().items()},
                          **{f"head.{k}": v for k, v in head.state_dict().items()}})
    writer = open_shard_writer(
        comm,
        lambda **shard: store.begin_round(t, feature_dim=backbone.feature_dim, class_names=names,
                                          labeled_positions=positions, labeled_classes=classes,
                                          provenance=provenance, feature_dtype=cfg.pool.feature_dtype,
                                          chunk_rows=cfg.pool.chunk_rows, resume_token=trained, **shard),
        store.n_items, cfg.pool.chunk_rows,
    )
    done_here = int(writer.rows_done) - writer.row_range[0] if writer is not None else 0
    summary.resumed_from = sum(comm.gather_objects(done_here))
    report = _pass(model_encoder(backbone, head, device), source, backbone, writer, cfg, device,
                   f"round {t} pool pass", quiet, comm)
    summary.timings_s["pool_pass"] = report.seconds
    provenance.update(finetune=cfg.finetune.model_dump(), training=stats, resumed_from=summary.resumed_from,
                      trained_hash=trained, skipped=_skipped_record(source, report.skipped),
                      timings_s=dict(summary.timings_s), pass_items_per_s=report.items_per_s)
    publish_shards(comm, writer, {"provenance": provenance})
    if comm.is_root:
        discard(checkpoint)
    summary.skipped = report.skipped
    summary.pass_items_per_s = report.items_per_s
