"""The pool pass: run every pool image through the model, streaming blocks into a store writer.

Batches come from a ``DataLoader`` (worker processes read, and decode and preprocess unless the
device does: :mod:`aloe.embedder.batches`, while the model runs);
each batch's outputs go straight to the writer, which persists whole chunks, so features are never
all in memory and a killed pass resumes from the writer's ``rows_done``. On CUDA the outputs of
batch k are copied to the host asynchronously and written while batch k+1 runs, so store writes
overlap the model instead of stalling it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from aloe.data.sources import ImageSource
from aloe.embedder.backbones import Backbone
from aloe.embedder.batches import ImageBatches
from aloe.embedder.device import autocast_for

Blocks = Callable[[], tuple[np.ndarray, ...]]
Encoder = Callable[[torch.Tensor], Blocks]


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


class BlocksInMemory:
    """A pool-pass writer that keeps one of the blocks it is given, in memory (small pools, test sets).

    ``keep`` picks which block of each ``write`` call is kept (0: the first, e.g. the features; 1: the
    logits of a ``(features, logits)`` writer); :meth:`array` joins them as float32.
    """

    rows_done = 0

    def __init__(self, n_rows: int, keep: int = 0) -> None:
        self.row_range = (0, n_rows)
        self.keep = keep
        self.blocks: list[np.ndarray] = []

    def write(self, *blocks: np.ndarray) -> None:
        """Keep block ``keep`` of this batch."""
        self.blocks.append(np.asarray(blocks[self.keep], dtype=np.float32))

    def array(self, width: int) -> np.ndarray:
        """Every kept row, ``(n, width)`` float32 (``width`` only shapes an empty result)."""
        return np.concatenate(self.blocks) if self.blocks else np.zeros((0, width), dtype=np.float32)


def run_pool_pass(
    encode: Encoder,
    source: ImageSource,
    writer,
    *,
    backbone: Backbone,
    batch_size: int,
    workers: int,
    device: torch.device,
    preprocess: str = "loader",
    desc: str = "pool pass",
    quiet: bool = False,
) -> PassReport:
    """Encode items ``writer.rows_done`` up to the end of the writer's rows and ``writer.write`` them.

    ``encode`` starts a batch of images (on ``device``, preprocessed for ``backbone`` by the loader or
    on the device: :class:`aloe.embedder.batches.ImageBatches`) and returns a callable giving the
    blocks the writer takes, e.g. ``(features, logits)``; it is called after the next batch has
    started. The writer (of all rows, or of one rank's ``row_range``) is not committed here.
    """
    first, stop = writer.row_range
    start_row = int(writer.rows_done)
    batches = ImageBatches(source, range(start_row, stop), backbone, device=device, batch_size=batch_size,
                           workers=workers, preprocess=preprocess)
    report = PassReport()
    previous: Blocks | None = None
    started = time.perf_counter()
    with tqdm(total=stop - first, initial=start_row - first, desc=desc, unit="img", disable=quiet,
              dynamic_ncols=True) as bar:
        for batch_positions, images, errors in batches:
            for position, error in zip(batch_positions.tolist(), errors, strict=True):
                if error:
                    report.skipped[position] = error
            started_batch = encode(images)
            if previous is not None:
                writer.write(*previous())
            previous = started_batch
            report.rows += len(images)
            bar.update(len(images))
        if previous is not None:
            writer.write(*previous())
    report.seconds = time.perf_counter() - started
    return report


def model_encoder(backbone: Backbone, head: torch.nn.Module | None, device: torch.device) -> Encoder:
    """An :data:`Encoder` of image batches (uint8, or float on the 0-255 scale) giving ``(features,)``,
    or ``(features, logits)`` with ``head``.

    Runs under inference mode with bf16 autocast on CUDA; the blocks are float32 numpy arrays. On CUDA
    the copy to the host is queued without waiting; the returned callable waits for that copy only.
    """
    backbone.module.eval()
    if head is not None:
        head.eval()
    cuda = device.type == "cuda"

    @torch.inference_mode()
    def encode(images: torch.Tensor) -> Blocks:
        with autocast_for(device):
            features = backbone(images).float()
            outputs = [features] if head is None else [features, head(features).float()]
        host = [output.to("cpu", non_blocking=cuda) for output in outputs]
        if not cuda:
            return lambda: tuple(h.numpy() for h in host)
        copied = torch.cuda.Event()
        copied.record()

        def blocks() -> tuple[np.ndarray, ...]:
            copied.synchronize()
            return tuple(h.numpy() for h in host)

        return blocks

    return encode
