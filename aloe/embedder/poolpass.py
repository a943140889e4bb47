"""The pool pass: run every pool image through the model, streaming blocks into a store writer.

Batches come from a ``DataLoader`` (worker processes decode and preprocess while the model runs);
each batch's outputs go straight to the writer, which persists whole chunks, so features are never
all in memory and a killed pass resumes from the writer's ``rows_done``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from aloe.data.images import PoolImages
from aloe.data.sources import ImageSource
from aloe.embedder.backbones import Backbone
from aloe.embedder.device import autocast_for

Encoder = Callable[[torch.Tensor], tuple[np.ndarray, ...]]


@dataclass
class PassReport:
    """What a pool pass did: rows written this run, unreadable items, seconds, items/s."""

    rows: int = 0
    seconds: float = 0.0
    skipped: dict[int, str] = field(default_factory=dict)

    @property
    def items_per_s(self) -> float:
        """Throughput of this run (0 when nothing was written)."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def loader_for(
    source: ImageSource, transform, positions, image_size: int, batch_size: int, workers: int, pin: bool
) -> DataLoader:
    """An in-order ``DataLoader`` of :class:`PoolImages` over ``positions``."""
    return DataLoader(
        PoolImages(source, transform, positions, image_size),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )


def run_pool_pass(
    encode: Encoder,
    source: ImageSource,
    transform,
    writer,
    *,
    image_size: int,
    batch_size: int,
    workers: int,
    device: torch.device,
    desc: str = "pool pass",
    quiet: bool = False,
) -> PassReport:
    """Encode items ``writer.rows_done .. N-1`` of ``source`` and ``writer.write`` them in order.

    ``encode`` maps a batch of preprocessed images (on ``device``) to the blocks the writer takes,
    e.g. ``(features, logits)``. The writer is not committed here.
    """
    start_row = int(writer.rows_done)
    positions = range(start_row, len(source))
    report = PassReport()
    loader = loader_for(source, transform, positions, image_size, batch_size, workers, device.type == "cuda")
    started = time.perf_counter()
    with tqdm(total=len(source), initial=start_row, desc=desc, unit="img", disable=quiet,
              dynamic_ncols=True) as bar:
        for batch_positions, images, errors in loader:
            for position, error in zip(batch_positions.tolist(), errors, strict=True):
                if error:
                    report.skipped[position] = error
            blocks = encode(images.to(device, non_blocking=True))
            writer.write(*blocks)
            report.rows += len(images)
            bar.update(len(images))
    report.seconds = time.perf_counter() - started
    return report


def model_encoder(backbone: Backbone, head: torch.nn.Module | None, device: torch.device) -> Encoder:
    """An :data:`Encoder` of uint8 batches giving ``(features,)``, or ``(features, logits)`` with ``head``.

    Runs under inference mode with bf16 autocast on CUDA; outputs are float32 numpy arrays.
    """
    backbone.module.eval()
    if head is not None:
        head.eval()

    @torch.inference_mode()
    def encode(images: torch.Tensor) -> tuple[np.ndarray, ...]:
        with autocast_for(device):
            features = backbone(images).float()
            blocks = [features] if head is None else [features, head(features).float()]
        return tuple(b.cpu().numpy() for b in blocks)

    return encode
