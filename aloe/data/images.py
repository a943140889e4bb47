"""A torch ``Dataset`` over an :class:`~aloe.data.sources.ImageSource`: pixels to model inputs.

An image that cannot be read does not stop the run: its item comes back as a black uint8 image with
the error message, so the caller can skip it in training and list it in the round's provenance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from aloe.data.sources import ImageSource

UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class PoolImages(Dataset):
    """Items ``positions`` of ``source`` as ``(position, tensor, error)``; ``error`` is ``""`` if read."""

    def __init__(
        self,
        source: ImageSource,
        transform: Callable[[Image.Image], torch.Tensor],
        positions: Sequence[int],
        image_size: int,
    ) -> None:
        self.source = source
        self.transform = transform
        self.positions = positions
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, k: int) -> tuple[int, torch.Tensor, str]:
        position = int(self.positions[k])
        try:
            return position, self.transform(self.source.load(position)), ""
        except UNREADABLE as exc:
            blank = torch.zeros(3, self.image_size, self.image_size, dtype=torch.uint8)
            return position, blank, f"{type(exc).__name__}: {exc}"
