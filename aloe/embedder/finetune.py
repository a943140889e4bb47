"""End-to-end fine-tuning of a backbone with a new linear head on the labeled items (``finetune`` mode)."""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from aloe.config import StrictModel
from aloe.data.images import PoolImages
from aloe.data.sources import ImageSource
from aloe.embedder.backbones import Backbone
from aloe.embedder.device import autocast_for
from aloe.embedder.transforms import Augment, train_transform


class FinetuneConfig(StrictModel):
    """AdamW on backbone and head together (the paper: lr 1e-5, 20 epochs, batch 128)."""

    epochs: int = Field(20, ge=0)
    lr: float = Field(1e-5, gt=0)
    head_lr: float | None = Field(None, gt=0, description="head learning rate; default: lr")
    weight_decay: float = Field(0.01, ge=0)
    batch_size: int = Field(128, ge=1)
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
    quiet: bool = False,
) -> tuple[nn.Linear, dict[str, Any]]:
    """Reset ``backbone``, train it end to end with a new head on ``(positions, classes)``.

    Unreadable labeled images are left out of training. With fewer than two known classes there is
    nothing to discriminate: the backbone stays pretrained and the head untrained. Returns the head
    (the backbone is trained in place; both end on ``device`` in eval mode) and training statistics.
    """
    backbone.reset()
    head = new_head(backbone.feature_dim, n_classes, seed)
    module = backbone.module.to(device)
    head = head.to(device)
    stats: dict[str, Any] = {"steps": 0, "trained": False, "losses": [], "skipped_labeled": []}
    if n_classes < 2 or len(positions) == 0 or cfg.epochs == 0:
        return head.eval(), stats

    class_of = dict(zip(np.asarray(positions).tolist(), np.asarray(classes).tolist(), strict=True))
    torch.manual_seed(seed)
    dataset = PoolImages(source, train_transform(backbone, cfg.augment), sorted(class_of), backbone.image_size)
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=False,
    )
    head_lr = cfg.head_lr or cfg.lr
    optimizer = torch.optim.AdamW(
        [{"params": module.parameters(), "lr": cfg.lr}, {"params": head.parameters(), "lr": head_lr}],
        weight_decay=cfg.weight_decay,
    )
    loss_fn = nn.CrossEntropyLoss()
    skipped: set[int] = set()
    started = time.perf_counter()
    module.train()
    head.train()
    with tqdm(total=cfg.epochs * len(dataset), desc="fine-tune", unit="img", disable=quiet,
              dynamic_ncols=True) as bar:
        for _ in range(cfg.epochs):
            total, count = torch.zeros((), device=device), 0
            for batch_positions, images, errors in loader:
                keep = [i for i, error in enumerate(errors) if not error]
                skipped.update(p for p, e in zip(batch_positions.tolist(), errors, strict=True) if e)
                bar.update(len(images))
                if not keep:
                    continue
                if len(keep) < len(images):
                    batch_positions, images = batch_positions[keep], images[keep]
                targets = torch.tensor([class_of[p] for p in batch_positions.tolist()], device=device)
                optimizer.zero_grad(set_to_none=True)
                with autocast_for(device):
                    logits = head(backbone(images.to(device, non_blocking=True)).float())
                loss = loss_fn(logits.float(), targets)
                loss.backward()
                optimizer.step()
                stats["steps"] += 1
                total += loss.detach() * len(keep)
                count += len(keep)
            stats["losses"].append(total.item() / max(count, 1))
            bar.set_postfix(loss=f"{stats['losses'][-1]:.3f}")
    module.eval()
    stats.update(trained=True, seconds=time.perf_counter() - started, skipped_labeled=sorted(skipped))
    return head.eval(), stats
