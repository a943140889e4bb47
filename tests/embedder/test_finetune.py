"""Fine-tuning a tiny open_clip tower end to end on generated images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from embed_helpers import write_pool

from aloe.data.sources import manifest_source
from aloe.embedder.backbones import OpenClipConfig, build_backbone, state_hash
from aloe.embedder.batches import ImageBatches
from aloe.embedder.finetune import Classifier, FinetuneConfig, finetune, new_head, train_step, validation_sums

CPU = torch.device("cpu")


def _labeled(source):
    names = sorted(set(source.labels))
    positions = np.arange(len(source))
    classes = np.array([names.index(label) for label in source.labels])
    return positions, classes, len(names)


PLAIN = {"epochs": 2, "lr": 1e-3, "batch_size": 8, "augment": "crop_flip", "schedule": "constant",
         "warmup_steps": 0, "label_smoothing": 0.0, "mixup": 0.0, "grad_clip": None, "early_stop_patience": 0}


def _train(backbone, source, seed=0, **settings):
    """Fine-tune on every item; the recipe's extras are off unless ``settings`` turn them on."""
    positions, classes, n = _labeled(source)
    cfg = FinetuneConfig(**{**PLAIN, **settings})
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


def _recipe_run(tiny_clip, source, **settings):
    backbone = build_backbone(OpenClipConfig(**tiny_clip))
    head, stats = _train(backbone, source, **settings)
    return state_hash({**backbone.module.state_dict(), **head.state_dict()}), stats


def test_schedule_sets_each_epochs_learning_rate(tiny_clip, pool_manifest):
    source = manifest_source(pool_manifest)
    _, warm = _recipe_run(tiny_clip, source, epochs=2, schedule="constant", warmup_steps=4)
    assert warm["lrs"] == pytest.approx([1e-3 * 3 / 4, 1e-3])  # 3 steps an epoch: step 3 of 4 ends epoch 1
    _, cosine = _recipe_run(tiny_clip, source, epochs=2, schedule="cosine", warmup_steps=0)
    assert cosine["lrs"] == pytest.approx([1e-3 * 0.5 * (1 + math.cos(math.pi * s / 6)) for s in (2, 5)])


@pytest.mark.parametrize("setting", [{"label_smoothing": 0.2}, {"mixup": 0.4}])
def test_label_smoothing_and_mixup_change_the_training(tiny_clip, pool_manifest, setting):
    source = manifest_source(pool_manifest)
    plain_hash, plain = _recipe_run(tiny_clip, source, epochs=1)
    changed_hash, changed = _recipe_run(tiny_clip, source, epochs=1, **setting)
    assert changed_hash != plain_hash and changed["losses"][0] != pytest.approx(plain["losses"][0])


def test_gradients_are_clipped_in_the_loop(tiny_clip, pool_manifest):
    source = manifest_source(pool_manifest)
    clipped_hash, clipped = _recipe_run(tiny_clip, source, epochs=1, grad_clip=1e-3)
    free_hash, free = _recipe_run(tiny_clip, source, epochs=1)
    assert clipped["grad_norm_max"] > 1e-3 and free["grad_norm_max"] is None
    assert clipped_hash != free_hash


def test_train_step_leaves_gradients_within_the_clip(tiny_clip):
    backbone = build_backbone(OpenClipConfig(**tiny_clip))
    head = new_head(backbone.feature_dim, 3, 0)
    optimizer = torch.optim.AdamW([*backbone.module.parameters(), *head.parameters()], lr=1e-3)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    cfg = FinetuneConfig(grad_clip=0.01, mixup=0.0)
    _, norm = train_step(Classifier(backbone, head), optimizer, images, torch.tensor([0, 1, 2] * 2), cfg,
                         np.random.default_rng(0), CPU)
    grads = [p.grad for p in [*backbone.module.parameters(), *head.parameters()] if p.grad is not None]
    after = torch.sqrt(sum((g.float() ** 2).sum() for g in grads))
    assert norm.item() > 0.01 and after.item() == pytest.approx(0.01, rel=1e-3)


def test_early_stopping_on_the_training_loss_when_labels_are_few(tiny_clip, pool_manifest):
    source = manifest_source(pool_manifest)
    _, stats = _recipe_run(tiny_clip, source, epochs=8, lr=1e-9, augment="none", early_stop_patience=2)
    record = stats["early_stop"]
    assert record["monitor"] == "train_loss" and record["n_validation"] == 0
    assert record["stopped_early"] and record["epochs_run"] == 3 and record["best_epoch"] == 0
    assert stats["steps"] == 3 * 3


def test_early_stopping_on_a_held_out_share_when_classes_have_enough_labels(tiny_clip, pool_manifest):
    source = manifest_source(pool_manifest)  # 8 labels in each of 3 classes
    _, stats = _recipe_run(tiny_clip, source, epochs=3, early_stop_patience=5, val_min_per_class=8,
                           val_share=0.25)
    record = stats["early_stop"]
    assert record["monitor"] == "validation_loss" and record["n_validation"] == 6 and record["n_train"] == 18
    assert len(stats["val_losses"]) == 3 and not record["stopped_early"]
    assert stats["steps"] == 3 * 3  # 18 training images, batch 8


def test_validation_sums_over_rank_slices_add_up_to_the_whole_split(tiny_clip, pool_manifest):
    """Under torchrun each rank scores its slice ``[rank::world]`` of the validation split and the
    sums are all-reduced: the slices' sums must be the whole split's."""
    source = manifest_source(pool_manifest)
    backbone = build_backbone(OpenClipConfig(**tiny_clip))
    positions, classes, n = _labeled(source)
    head = new_head(backbone.feature_dim, n, 0)
    class_of = dict(zip(positions.tolist(), classes.tolist(), strict=True))

    def sums(part):
        batches = ImageBatches(source, part, backbone, device=CPU, batch_size=5, workers=0)
        return validation_sums(backbone, head, batches, class_of, 0.1, CPU)

    whole = sums(positions.tolist())
    world = 3
    sliced = sum(sums(positions.tolist()[rank::world]) for rank in range(world))
    assert whole[1].item() == len(positions) and whole[0].item() > 0
    np.testing.assert_allclose(sliced.numpy(), whole.numpy(), rtol=1e-5)
    assert validation_sums(backbone, head, None, class_of, 0.1, CPU).tolist() == [0.0, 0.0]
