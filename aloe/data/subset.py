"""A part of an image source: the pool or the evaluation split carved out of one dataset."""

from __future__ import annotations

import numpy as np
from PIL import Image

from aloe.data.sources import ImageSource


class SubsetSource(ImageSource):
    """The items of ``base`` at ``positions`` (in that order), under their own ids and labels."""

    def __init__(self, base: ImageSource, positions: np.ndarray, part: str) -> None:
        positions = np.asarray(positions, dtype=np.int64)
        ids = [base.ids[p] for p in positions.tolist()]
        labels = None if base.labels is None else [base.labels[p] for p in positions.tolist()]
        super().__init__(f"{base.name} ({part})", ids, labels, {"part": part, "of": base.describe()})
        self.base, self.positions = base, positions

    def load(self, index: int) -> Image.Image:
        """The image of the base source's item behind ``index``."""
        return self.base.load(int(self.positions[index]))
