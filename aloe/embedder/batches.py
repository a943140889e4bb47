"""Batches of model inputs on the device, preprocessed by the loader workers or on the device itself.

``loader`` (the CPU default): workers decode, resize and crop to uint8 ``S x S`` tensors
(:mod:`aloe.embedder.transforms`), pinned and copied without waiting. ``device`` (the CUDA default):
workers only read; decoding (JPEG), cropping, resizing and flipping happen on the device
(:mod:`aloe.embedder.device_batches`). Both give ``(positions, images, errors)`` with ``images`` on
the device and ``errors[i]`` non-empty for an item that could not be read (a black image).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import torch
from torch.utils.data import DataLoader, DistributedSampler

from aloe.data.images import PoolImages
from aloe.data.sources import ImageSource
from aloe.embedder.backbones import Backbone
from aloe.embedder.device_batches import DevicePreprocess, RawImages, collate_raw
from aloe.embedder.transforms import Augment, eval_transform, train_transform

Preprocess = Literal["auto", "loader", "device"]


def resolve_preprocess(choice: str, device: torch.device) -> str:
    """``auto`` is ``device`` on CUDA (the CPU workers cannot keep a GPU fed) and ``loader`` elsewhere."""
    if choice == "auto":
        return "device" if device.type == "cuda" else "loader"
    return choice


class ImageBatches:
    """Re-iterable batches of ``positions`` of ``source`` for ``backbone`` (one pass per iteration).

    ``train`` applies ``augment``; ``shuffle`` reorders each pass from ``seed``. ``len`` is the number
    of batches in a pass.
    """

    def __init__(self, source: ImageSource, positions: Sequence[int], backbone: Backbone, *,
                 device: torch.device, batch_size: int, workers: int, preprocess: str = "loader",
                 train: bool = False, augment: Augment = "none", shuffle: bool = False, seed: int = 0,
                 shard: tuple[int, int] | None = None) -> None:
        self.device = device
        self.where = resolve_preprocess(preprocess, device)
        pin = device.type == "cuda"
        options = {"batch_size": batch_size, "num_workers": workers, "pin_memory": pin,
                   "prefetch_factor": 4 if workers > 0 else None, "shuffle": shuffle,
                   "generator": torch.Generator().manual_seed(seed) if shuffle else None}
        if self.where == "device":
            self.prepare = DevicePreprocess(backbone.image_size, device, train=train, augment=augment, seed=seed)
            dataset, extra = RawImages(source, positions), {"collate_fn": collate_raw}
        else:
            transform = train_transform(backbone, augment) if train else eval_transform(backbone)
            dataset, extra = PoolImages(source, transform, positions, backbone.image_size), {}
        self.sampler = None
        if shard is not None:  # (rank, world): this rank's share of each pass (DistributedSampler)
            self.sampler = DistributedSampler(dataset, shard[1], shard[0], shuffle=shuffle, seed=seed)
            options.update(shuffle=False, generator=None, sampler=self.sampler)
        self.loader = DataLoader(dataset, **options, **extra)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle a sharded pass for ``epoch`` (every rank the same way); nothing otherwise."""
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        if self.where == "device":
            for batch in self.loader:
                images, errors = self.prepare(batch)
                yield batch.positions, images, errors
        else:
            for positions, images, errors in self.loader:
                yield positions, images.to(self.device, non_blocking=True), list(errors)
