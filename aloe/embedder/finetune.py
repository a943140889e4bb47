"""End-to-end fine-tuning of a backbone with a new linear head on the labeled items (``finetune`` mode).

The recipe (:class:`FinetuneConfig`; its defaults are LabelBench's CLIP ViT-B/32 fine-tune recipe,
which the ALOE paper says it follows): AdamW on backbone and head, a per-step learning-rate schedule
with linear warm-up, label-smoothed cross entropy, mixup on the device, gradient-norm clipping and
early stopping. What early stopping monitors depends on the labeled set (see
:func:`aloe.embedder.recipe.validation_split`) and is recorded in the returned statistics.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from aloe.config import StrictModel
from aloe.data.sources import ImageSource
from aloe.embedder.backbones import Backbone
from aloe.embedder.batches import ImageBatches
from aloe.embedder.device import autocast_for
from aloe.embedder.recipe import (
    EarlyStopping,
    Schedule,
    clip_gradients,
    make_scheduler,
    mixup,
    mixup_loss,
    validation_split,
)
from aloe.embedder.transforms import Augment
from aloe.internal.dist import Comm


class FinetuneConfig(StrictModel):
    """The fine-tuning recipe: AdamW on backbone and head together.

    Defaults are LabelBench's CLIP ViT-B/32 fine-tune recipe (its
    ``configs/trainer/*/passive/clip_ViTB32_finetune.json``); the paper gives no values of its own.
    """

    lr: float = Field(3e-5, gt=0, description="peak learning rate (after warm-up)")
    head_lr: float | None = Field(None, gt=0, description="head learning rate; default: lr")
    weight_decay: float = Field(1e-4, ge=0)
    batch_size: int = Field(400, ge=1)
    epochs: int = Field(20, ge=1, description="at most this many epochs (early stopping may end sooner)")
    schedule: Schedule = Field("cosine", description="after warm-up: cosine decay to 0, or constant")
    warmup_steps: int = Field(500, ge=0, description="optimisation steps of linear warm-up")
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    mixup: float = Field(0.1, ge=0, description="Beta(a, a) of the mixing weight; 0 turns mixup off")
    grad_clip: float | None = Field(1.0, gt=0, description="max total gradient L2 norm; null: no clipping")
    early_stop_patience: int = Field(3, ge=0, description="epochs without improvement; 0: off")
    val_share: float = Field(0.1, ge=0, lt=1, description="share of a class's labels held out to monitor")
    val_min_per_class: int = Field(10, ge=2, description="labels a class needs to give some to validation")
    augment: Augment = "crop_flip"


def new_head(feature_dim: int, n_classes: int, seed: int) -> nn.Linear:
    """A freshly initialised linear head over the known classes: weights and bias uniform in
    ``+-1/sqrt(feature_dim)`` (PyTorch's default range), drawn from ``seed``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        head = nn.Linear(feature_dim, n_classes)
    generator = torch.Generator().manual_seed(seed)
    bound = 1.0 / max(feature_dim, 1) ** 0.5
    with torch.no_grad():
        head.weight.uniform_(-bound, bound, generator=generator)
        head.bias.uniform_(-bound, bound, generator=generator)
    return head


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, targets: torch.Tensor,
               cfg: FinetuneConfig, rng: np.random.Generator, device: torch.device,
               weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One optimisation step on a batch already on ``device``: mixup, forward, smoothed loss,
    backward, clipping, AdamW. Returns the loss and the gradient norm before clipping (device tensors).

    ``model`` is a :class:`Classifier` (images -> logits), or DistributedDataParallel around one;
    its parameters are the ones clipped. ``weight`` scales the loss (0: a step that only keeps the
    ranks in step).
    """
    mixed = mixup(images, targets, cfg.mixup, rng)
    optimizer.zero_grad(set_to_none=True)
    with autocast_for(device):
        logits = model(mixed.images)
    loss = mixup_loss(logits.float(), mixed, cfg.label_smoothing)
    (loss * weight).backward()
    norm = clip_gradients(model.parameters(), cfg.grad_clip)
    optimizer.step()
    return loss.detach(), norm


@torch.inference_mode()
def validation_sums(backbone: Backbone, head: nn.Linear, batches: ImageBatches | None, class_of: dict[int, int],
                    label_smoothing: float, device: torch.device) -> torch.Tensor:
    """``[summed loss, items]`` (float64) of the label-smoothed cross entropy over the readable items of
    ``batches`` (eval mode, no augmentation); zeros for ``None``. Summed over the ranks' slices of
    the validation split, they give the loss over the whole split."""
    total, count = torch.zeros((), device=device), 0
    if batches is not None:
        backbone.module.eval()
        head.eval()
        for positions, images, errors in batches:
            keep = [i for i, error in enumerate(errors) if not error]
            if not keep:
                continue
            targets = torch.tensor([class_of[p] for p in positions[keep].tolist()], device=device)
            with autocast_for(device):
                logits = head(backbone(images[keep]).float())
            total += nn.functional.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing,
                                                 reduction="sum")
            count += len(keep)
        backbone.module.train()
        head.train()
    return torch.stack([total.double(), torch.tensor(float(count), dtype=torch.float64, device=device)])


def finetune(
    backbone: Backbone,
    source: ImageSource,
    positions: np.ndarray,
    classes: np.ndarray,
    n_classes: int,
    cfg: FinetuneConfig,
    *,
    device: torch.device,
    seed: int,
    workers: int,
    preprocess: str = "loader",
    quiet: bool = False,
    comm: Comm | None = None,
) -> tuple[nn.Linear, dict[str, Any]]:
    """Reset ``backbone``, train it end to end with a new head on ``(positions, classes)``.

    Images are preprocessed by the loader workers or on ``device`` (``preprocess``, see
    :class:`aloe.embedder.batches.ImageBatches`). Unreadable labeled images are left out of training.
    With fewer than two known classes there is nothing to discriminate: the backbone stays pretrained
    and the head untrained. Returns the head (the backbone is trained in place; both end on ``device``
    in eval mode) and training statistics: ``steps``, per-epoch ``losses`` (and ``val_losses``),
    ``lrs`` (the backbone's rate in each epoch's last step), ``grad_norm_max`` (before clipping) and
    ``early_stop`` (monitor, validation size, best epoch, epochs run, whether it stopped early).

    Under ``torchrun`` (``comm`` with several ranks) training runs with DistributedDataParallel:
    each rank takes its share of every epoch's shuffled items (``batch_size / world`` per step),
    gradients are averaged, and the monitored loss is averaged over the ranks, so every rank
    stops at the same epoch with the same weights.
    """
    comm = comm or Comm()
    backbone.reset()
    head = new_head(backbone.feature_dim, n_classes, seed)
    module = backbone.module.to(device)
    head = head.to(device)
    stats: dict[str, Any] = {"steps": 0, "trained": False, "losses": [], "skipped_labeled": []}
    if n_classes < 2 or len(positions) == 0:
        return head.eval(), stats


    positions, classes = np.asarray(positions), np.asarray(classes)
    class_of = dict(zip(positions.tolist(), classes.tolist(), strict=True))
    held = validation_split(classes, cfg.val_share, cfg.val_min_per_class, seed) \
        if cfg.early_stop_patience > 0 else np.zeros(0, dtype=np.int64)
    train_positions = sorted(np.delete(positions, held).tolist())
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    loader = ImageBatches(source, train_positions, backbone, device=device,
                          batch_size=-(-cfg.batch_size // comm.world), workers=workers, preprocess=preprocess,
                          train=True, augment=cfg.augment, shuffle=True, seed=seed,
                          shard=(comm.rank, comm.world) if comm.sharded else None)
    model: nn.Module = Classifier(backbone, head)
    if comm.sharded:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    val_here = sorted(positions[held].tolist())[comm.rank :: comm.world]  # this rank's slice of validation
    val_loader = ImageBatches(source, val_here, backbone, device=device, batch_size=cfg.batch_size,
                              workers=workers, preprocess=preprocess) if val_here else None
    optimizer = torch.optim.AdamW(
        [{"params": module.parameters(), "lr": cfg.lr}, {"params": head.parameters(), "lr": cfg.head_lr or cfg.lr}],
        weight_decay=cfg.weight_decay,
    )
    scheduler = make_scheduler(optimizer, cfg.epochs * len(loader), cfg.warmup_steps, cfg.schedule)
    stopper = EarlyStopping(cfg.early_stop_patience) if cfg.early_stop_patience > 0 else None
    monitor = "off" if stopper is None else "validation_loss" if len(held) else "train_loss"
    stats.update(lrs=[], val_losses=[])
    skipped: set[int] = set()
    grad_norm_max = torch.zeros((), device=device)
    started = time.perf_counter()
    module.train()
    head.train()
    stopped_early, last_lr = False, cfg.lr
    with tqdm(total=cfg.epochs * len(train_positions), desc="fine-tune", unit="img", disable=quiet,
              dynamic_ncols=True) as bar:
        for epoch in range(cfg.epochs):
            loader.set_epoch(epoch)
            total, count = torch.zeros((), device=device), 0
            for batch_positions, images, errors in loader:
                keep = [i for i, error in enumerate(errors) if not error]
                skipped.update(p for p, e in zip(batch_positions.tolist(), errors, strict=True) if e)
                bar.update(len(images))
                if not keep and not comm.sharded:  # sharded: every rank steps, to keep DDP in step
                    continue
                if keep and len(keep) < len(images):
                    batch_positions, images = batch_positions[keep], images[keep]
                targets = torch.tensor([class_of[p] for p in batch_positions.tolist()], device=device)
                loss, norm = train_step(model, optimizer, images, targets, cfg, rng, device,
                                        weight=1.0 if keep else 0.0)
                last_lr = optimizer.param_groups[0]["lr"]
                scheduler.step()
                if norm is not None:
                    grad_norm_max = torch.maximum(grad_norm_max, norm.float())
                stats["steps"] += 1
                total += loss * len(keep)
                count += len(keep)
            summed = comm.all_reduce(torch.stack([total.float(), torch.tensor(float(count), device=device)]))
            stats["losses"].append((summed[0] / summed[1].clamp_min(1)).item())
            stats["lrs"].append(last_lr)
            bar.set_postfix(loss=f"{stats['losses'][-1]:.3f}")
            if stopper is None:
                continue
            watched = stats["losses"][-1]
            if len(held):
                sums = comm.all_reduce(validation_sums(backbone, head, val_loader, class_of, cfg.label_smoothing,
                                                       device))
                watched = (sums[0] / sums[1].clamp_min(1)).item()
                stats["val_losses"].append(watched)
            if stopper.update(epoch, watched, {"backbone": module, "head": head}):
                stopped_early = True
                break
    if stopper is not None:
        stopper.restore({"backbone": module, "head": head})
    module.eval()
    skipped = {p for part in comm.gather_objects(sorted(skipped)) for p in part}
    comm.all_reduce(grad_norm_max, "max")
    stats.update(
        trained=True, seconds=time.perf_counter() - started, skipped_labeled=sorted(skipped), ranks=comm.world,
        grad_norm_max=grad_norm_max.item() if cfg.grad_clip is not None else None,
        early_stop={"monitor": monitor, "n_validation": int(len(held)), "n_train": len(train_positions),
                    "best_epoch": stopper.best_epoch if stopper else None,
                    "epochs_run": len(stats["losses"]), "stopped_early": stopped_early},
    )
    return head.eval(), stats


class Classifier(nn.Module):
    """Backbone and head as one module (what DistributedDataParallel wraps): uint8 images -> logits."""

    def __init__(self, backbone: Backbone, head: nn.Linear) -> None:
        super().__init__()
        self.backbone, self.module, self.head = backbone, backbone.module, head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of uint8 images."""
        return self.head(self.backbone(images).float())
