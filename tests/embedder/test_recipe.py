"""The fine-tuning recipe's pieces: schedule, mixup, smoothed loss, clipping, hold-out, early stopping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aloe.embedder.recipe import (
    EarlyStopping,
    Mixed,
    clip_gradients,
    lr_factor,
    make_scheduler,
    mixup,
    mixup_loss,
    validation_split,
)


def test_cosine_schedule_warms_up_linearly_then_decays_to_zero():
    factors = [lr_factor(step, 20, 5, "cosine") for step in range(20)]
    assert factors[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert factors[5] == pytest.approx(1.0)
    assert factors[5 + 15 // 2] == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 15)))
    assert all(a >= b for a, b in zip(factors[5:], factors[6:], strict=False))
    assert lr_factor(20, 20, 5, "cosine") == pytest.approx(0.0)


def test_constant_schedule_stays_at_the_peak_after_warm_up():
    assert [lr_factor(s, 10, 2, "constant") for s in range(5)] == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0])
    assert lr_factor(0, 10, 0, "cosine") == pytest.approx(1.0)


def test_scheduler_sets_the_optimizer_rates_per_step():
    weight = torch.nn.Parameter(torch.zeros(2))
    head = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([{"params": [weight], "lr": 1e-3}, {"params": [head], "lr": 1e-2}])
    scheduler = make_scheduler(optimizer, total_steps=8, warmup_steps=4, schedule="cosine")
    seen = []
    for _ in range(8):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    assert seen[0] == pytest.approx([2.5e-4, 2.5e-3])
    assert seen[3] == pytest.approx([1e-3, 1e-2])
    decayed = 0.5 * (1 + math.cos(math.pi * 3 / 4))  # step 7: 3 of the 4 steps after warm-up
    assert seen[7] == pytest.approx([1e-3 * decayed, 1e-2 * decayed])


@settings(max_examples=25, deadline=None)
@given(alpha=st.floats(0.05, 5.0), seed=st.integers(0, 2**16), n=st.integers(2, 6))
def test_mixup_is_a_seeded_convex_mix_with_the_reversed_batch(alpha, seed, n):
    images = torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    targets = torch.arange(n)
    mixed = mixup(images, targets, alpha, np.random.default_rng(seed))
    again = mixup(images, targets, alpha, np.random.default_rng(seed))
    assert 0.0 <= mixed.lam <= 1.0 and mixed.lam == again.lam
    expected = mixed.lam * images.float() + (1 - mixed.lam) * images.float().flip(0)
    assert torch.allclose(mixed.images, expected, atol=1e-3)
    assert torch.equal(mixed.partners, targets.flip(0)) and torch.equal(mixed.targets, targets)


def test_mixup_off_leaves_the_batch_alone():
    images = torch.randint(0, 256, (4, 3, 2, 2), dtype=torch.uint8)
    mixed = mixup(images, torch.arange(4), 0.0, np.random.default_rng(0))
    assert mixed.lam == 1.0 and mixed.images is images


def test_mixup_loss_is_the_weighted_sum_of_two_smoothed_cross_entropies():
    logits = torch.tensor([[4.0, 0.0, -1.0], [0.5, 2.0, 0.0]])
    targets, partners = torch.tensor([0, 1]), torch.tensor([1, 0])
    mixed = mixup(torch.zeros(2, 3, 1, 1), targets, 0.0, np.random.default_rng(0))
    smoothed = mixup_loss(logits, mixed, 0.1)
    log_p = torch.log_softmax(logits, dim=1)
    by_hand = -(0.9 * log_p[[0, 1], targets] + 0.1 * log_p.mean(dim=1)).mean()
    assert smoothed.item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert mixup_loss(logits, mixed, 0.0).item() < smoothed.item()  # a confident fit pays for smoothing

    half = Mixed(mixed.images, targets, partners, 0.3)
    plain = [mixup_loss(logits, Mixed(mixed.images, t, t, 1.0), 0.1) for t in (targets, partners)]
    assert mixup_loss(logits, half, 0.1).item() == pytest.approx(0.3 * plain[0].item() + 0.7 * plain[1].item())


def test_clipping_bounds_the_total_gradient_norm_and_reports_the_norm_before():
    layer = torch.nn.Linear(4, 3)
    (layer(torch.full((2, 4), 10.0)) ** 2).sum().backward()
    before = torch.sqrt(sum((p.grad**2).sum() for p in layer.parameters()))
    norm = clip_gradients(layer.parameters(), 0.5)
    after = torch.sqrt(sum((p.grad**2).sum() for p in layer.parameters()))
    assert norm.item() == pytest.approx(before.item()) and before.item() > 0.5
    assert after.item() == pytest.approx(0.5, rel=1e-4)
    assert clip_gradients(layer.parameters(), None) is None


def test_validation_split_takes_a_share_of_classes_with_enough_labels():
    classes = np.array([0] * 30 + [1] * 10 + [2] * 9 + [3] * 2)
    held = validation_split(classes, 0.1, 10, seed=0)
    counts = np.bincount(classes[held], minlength=4)
    assert counts.tolist() == [3, 1, 0, 0]
    assert np.array_equal(held, validation_split(classes, 0.1, 10, seed=0))
    assert np.array_equal(held, np.sort(held)) and len(np.unique(held)) == len(held)


def test_validation_split_is_empty_when_fewer_than_two_classes_qualify():
    assert len(validation_split(np.array([0] * 50 + [1] * 9), 0.1, 10, seed=0)) == 0
    assert len(validation_split(np.array([0] * 50 + [1] * 50), 0.0, 10, seed=0)) == 0


def test_early_stopping_waits_patience_epochs_and_restores_the_best_weights():
    layer = torch.nn.Linear(2, 1)
    stopper = EarlyStopping(patience=2)
    losses = [1.0, 0.5, 0.49999, 0.7]
    decisions = []
    for epoch, loss in enumerate(losses):
        with torch.no_grad():
            layer.weight.fill_(epoch)
        decisions.append(stopper.update(epoch, loss, {"layer": layer}))
    assert decisions == [False, False, False, True]  # 0.49999 is within the 1e-4 tolerance: no gain
    assert stopper.best_epoch == 1
    stopper.restore({"layer": layer})
    assert torch.all(layer.weight == 1)
