"""Preprocessing for a backbone on the loader side: resize/crop (and augment) to uint8 tensors.

Normalisation happens on the model's device (:meth:`aloe.embedder.backbones.Backbone.normalize`):
uint8 batches are a quarter of the bytes to move, and the CPU workers skip the float arithmetic.
"""

from __future__ import annotations

from typing import Literal

from torchvision import transforms as T

from aloe.embedder.backbones import Backbone

Augment = Literal["none", "crop", "crop_flip"]
CROP_SCALE = (0.7, 1.0)  # the random resized crop keeps 70-100% of the image area


def eval_transform(backbone: Backbone) -> T.Compose:
    """Resize the short side to the backbone's size, centre-crop, to a uint8 ``(3, S, S)`` tensor."""
    size = backbone.image_size
    return T.Compose([
        T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(size),
        T.PILToTensor(),
    ])


def train_transform(backbone: Backbone, augment: Augment) -> T.Compose:
    """The training transform: ``none`` is :func:`eval_transform`; ``crop`` adds a random resized
    crop (scale 0.7-1); ``crop_flip`` also flips horizontally at random."""
    if augment == "none":
        return eval_transform(backbone)
    size = backbone.image_size
    steps = [T.RandomResizedCrop(size, scale=CROP_SCALE, interpolation=T.InterpolationMode.BICUBIC)]
    if augment == "crop_flip":
        steps.append(T.RandomHorizontalFlip())
    return T.Compose([*steps, T.PILToTensor()])
