"""Fixtures for embedder tests: a tiny open_clip backbone config and a generated image pool."""

from __future__ import annotations

from pathlib import Path

import pytest
from embed_helpers import TINY_VIT, write_pool


@pytest.fixture
def tiny_clip() -> dict:
    """An ``open_clip`` backbone config: a two-layer ViT on 32 x 32 images, random init (seeded)."""
    return {"kind": "open_clip", "model": "ViT-B-32", "pretrained": None, "architecture": TINY_VIT, "init_seed": 0}


@pytest.fixture
def pool_manifest(tmp_path) -> Path:
    """24 generated images in three colour classes."""
    return write_pool(tmp_path / "images")
