"""Loader-side transforms give uint8 tensors; on-device normalisation matches torchvision's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from aloe.embedder.backbones import OpenClipConfig, build_backbone
from aloe.embedder.transforms import eval_transform, train_transform


@pytest.fixture
def backbone(tiny_clip):
    return build_backbone(OpenClipConfig(**tiny_clip))


@pytest.fixture
def image():
    pixels = np.random.default_rng(0).integers(0, 256, size=(20, 28, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_eval_transform_gives_uint8_at_the_backbone_size_and_normalises_like_torchvision(backbone, image):
    tensor = eval_transform(backbone)(image)
    assert tensor.dtype == torch.uint8 and tensor.shape == (3, 32, 32)
    reference = T.Normalize(backbone.mean, backbone.std)(tensor.float() / 255)
    assert torch.allclose(backbone.normalize(tensor[None])[0], reference, atol=1e-5)


@pytest.mark.parametrize("augment", ["none", "crop", "crop_flip"])
def test_train_transforms_are_seeded_and_sized(backbone, image, augment):
    transform = train_transform(backbone, augment)
    torch.manual_seed(3)
    first = transform(image)
    torch.manual_seed(3)
    assert torch.equal(first, transform(image)) and first.shape == (3, 32, 32) and first.dtype == torch.uint8
    torch.manual_seed(4)
    assert torch.equal(first, transform(image)) == (augment == "none")
