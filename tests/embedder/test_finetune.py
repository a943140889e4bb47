"""Fine-tuning a tiny open_clip tower end to end on generated images."""

from __future__ import annotations

import numpy as np
import torch
from embed_helpers import write_pool

from aloe.data.sources import manifest_source
from aloe.embedder.backbones import OpenClipConfig, build_backbone, state_hash
from aloe.embedder.finetune import FinetuneConfig, finetune

CPU = torch.device("cpu")


def _labeled(source):
    names = sorted(set(source.labels))
    positions = np.arange(len(source))
    classes = np.array([names.index(label) for label in source.labels])
    return positions, classes, len(names)


def _train(backbone, source, seed=0, **settings):
    positions, classes, n = _labeled(source)
    cfg = FinetuneConfig(**{"epochs": 2, "lr": 1e-3, "batch_size": 8, "augment": "crop_flip", **settings})
    return finetune(backbone, source, positions, classes, n, cfg, device=CPU, seed=seed, workers=0, quiet=True)


def test_finetune_changes_the_tower_and_learns(tiny_clip, pool_manifest):
    source = manifest_source(pool_manifest)
    backbone = build_backbone(OpenClipConfig(**tiny_clip))
    pretrained = backbone.checkpoint_hash
    head, stats = _train(backbone, source, epochs=6)
    assert stats["trained"] and stats["steps"] == 6 * 3
    assert stats["losses"][-1] < stats["losses"][0]
    assert head.out_features == 3 and head.in_features == backbone.feature_dim
    assert state_hash(backbone.module.state_dict()) != pretrained
    backbone.reset()
    assert state_hash(backbone.module.state_dict()) == pretrained


def test_finetune_is_seeded_and_starts_from_the_pretrained_weights(tiny_clip, pool_manifest):
    source = manifest_source(pool_manifest)
    backbone = build_backbone(OpenClipConfig(**tiny_clip))
    hashes = []
    for seed in (0, 0, 1):
        head, _ = _train(backbone, source, seed=seed)
        hashes.append(state_hash({**backbone.module.state_dict(), **head.state_dict()}))
    assert hashes[0] == hashes[1] != hashes[2]


def test_unreadable_labeled_images_are_left_out_of_training(tiny_clip, tmp_path):
    source = manifest_source(write_pool(tmp_path, per_class=2, broken=2))
    backbone = build_backbone(OpenClipConfig(**tiny_clip))
    _, stats = _train(backbone, source, epochs=1, augment="none")
    broken = [i for i, item in enumerate(source.ids) if item.startswith("broken")]
    assert stats["skipped_labeled"] == broken and stats["steps"] == 1


def test_fewer_than_two_classes_trains_nothing(tiny_clip, pool_manifest):
    source = manifest_source(pool_manifest)
    backbone = build_backbone(OpenClipConfig(**tiny_clip))
    cfg = FinetuneConfig(epochs=3)
    head, stats = finetune(backbone, source, np.array([0, 1]), np.array([0, 0]), 1, cfg, device=CPU, seed=0,
                           workers=0, quiet=True)
    assert not stats["trained"] and head.out_features == 1
    assert state_hash(backbone.module.state_dict()) == backbone.checkpoint_hash
