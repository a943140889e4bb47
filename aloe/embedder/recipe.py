"""The pieces of the fine-tuning recipe: learning-rate schedule, label-smoothed mixup loss, gradient
clipping, the validation hold-out and early stopping.

Each is a small function or class so that it can be tested on its own; :mod:`aloe.embedder.finetune`
puts them together.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from aloe.internal.split import stratified_sample

Schedule = Literal["cosine", "constant"]
MIN_VALIDATION_CLASSES = 2
IMPROVEMENT = 1e-4  # relative: an epoch improves when its loss < best * (1 - IMPROVEMENT)


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: Schedule) -> float:
    """The multiple of the base learning rate at optimisation step ``step`` (0-based).

    Linear warm-up ``(step + 1) / warmup_steps`` for the first ``warmup_steps`` steps, then ``1``
    (``constant``) or a half cosine from 1 down to 0 at ``total_steps`` (``cosine``), as LabelBench's
    ``customized_CosineLR`` (from WiSE-FT).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(total_steps - warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup_steps, span) / span))


def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                   schedule: Schedule) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step scheduler applying :func:`lr_factor` to every parameter group's base rate."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, warmup_steps, schedule)
    )


@dataclass(frozen=True)
class Mixed:
    """A mixed batch: float images (0-255 scale), both label sets and the mixing weight."""

    images: torch.Tensor
    targets: torch.Tensor
    partners: torch.Tensor
    lam: float


def mixup(images: torch.Tensor, targets: torch.Tensor, alpha: float, rng: np.random.Generator) -> Mixed:
    """Mix each image with the batch in reverse order: ``lam * x + (1 - lam) * x[::-1]``.

    ``lam ~ Beta(alpha, alpha)``, drawn once per batch from ``rng`` (on the host, so the draw is the
    same on every device); ``alpha = 0`` leaves the batch as it is (``lam = 1``). Runs on the images'
    device; uint8 images come back as float on the 0-255 scale (normalisation is affine, so mixing
    before it equals mixing after).
    """
    if alpha <= 0:
        return Mixed(images, targets, targets, 1.0)
    lam = float(rng.beta(alpha, alpha))
    x = images.float()
    return Mixed(x.mul(lam).add_(x.flip(0), alpha=1.0 - lam), targets, targets.flip(0), lam)


def mixup_loss(logits: torch.Tensor, mixed: Mixed, label_smoothing: float) -> torch.Tensor:
    """``lam * CE(targets) + (1 - lam) * CE(partners)``, each label-smoothed, in float32."""
    logits = logits.float()
    loss = F.cross_entropy(logits, mixed.targets, label_smoothing=label_smoothing)
    if mixed.lam == 1.0:
        return loss
    partner = F.cross_entropy(logits, mixed.partners, label_smoothing=label_smoothing)
    return mixed.lam * loss + (1.0 - mixed.lam) * partner


def clip_gradients(parameters: Iterable[torch.nn.Parameter], max_norm: float | None) -> torch.Tensor | None:
    """Clip the parameters' gradients to a total L2 norm of ``max_norm`` (``None``: leave them).

    Returns the total norm before clipping (a device tensor, no host sync), or ``None``.
    """
    if max_norm is None:
        return None
    return torch.nn.utils.clip_grad_norm_(list(parameters), max_norm)


def validation_split(classes: np.ndarray, share: float, min_per_class: int, seed: int) -> np.ndarray:
    """Indices into ``classes`` held out to monitor early stopping (sorted; may be empty).

    Each class with at least ``min_per_class`` labels gives ``round(share * n)`` (at least one) of
    them, drawn with ``seed``; classes with fewer keep all their labels for training. When the held-out
    set would cover fewer than two classes it is empty: the caller then monitors the training loss.
    """
    if share <= 0:
        return np.zeros(0, dtype=np.int64)
    return stratified_sample(classes, lambda n: max(1, round(share * n)) if n >= min_per_class else 0, seed,
                             min_classes=MIN_VALIDATION_CLASSES)


@dataclass
class EarlyStopping:
    """Stop after ``patience`` (>= 1) epochs whose monitored loss does not improve on the best by more
    than :data:`IMPROVEMENT` (relative); :meth:`restore` then brings back the best epoch's weights."""

    patience: int
    best: float = math.inf
    best_epoch: int = -1
    stale: int = 0
    best_state: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)

    def update(self, epoch: int, loss: float, modules: dict[str, torch.nn.Module]) -> bool:
        """Record epoch ``epoch``'s loss (snapshotting ``modules`` when it is the best); ``True`` means stop."""
        if self.best_epoch < 0 or loss < self.best - IMPROVEMENT * abs(self.best):
            self.best, self.best_epoch, self.stale = loss, epoch, 0
            self.best_state = {name: {k: v.detach().clone() for k, v in m.state_dict().items()}
                               for name, m in modules.items()}
            return False
        self.stale += 1
        return self.stale >= self.patience

    def restore(self, modules: dict[str, torch.nn.Module]) -> None:
        """Load the best epoch's weights back into ``modules`` (nothing when no epoch was recorded)."""
        for name, module in modules.items():
            if name in self.best_state:
                module.load_state_dict(self.best_state[name])
