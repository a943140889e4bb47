"""The fine-tuned weights of a round in progress, kept beside the store until the round commits.

A killed ``finetune`` round then resumes without training again, and its pool pass continues from
the last complete chunk even where training is not bit-reproducible (GPUs). The file lives in
``<store>.embed-work/`` (the store itself holds only complete rounds) and is removed on commit.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aloe.embedder.backbones import Backbone
from aloe.embedder.finetune import new_head


def checkpoint_path(store_path: Path, t: int) -> Path:
    """Where round ``t``'s fine-tuned weights wait for the pool pass."""
    return store_path.with_name(store_path.name + ".embed-work") / f"round-{t:04d}.pt"


def training_key(backbone: Backbone, positions: np.ndarray, classes: np.ndarray, class_names: list[str],
                 settings: dict[str, Any], seed: int) -> str:
    """A hash of everything that shapes the fine-tuned weights (16 hex digits)."""
    digest = hashlib.sha256(json.dumps([backbone.checkpoint_hash, class_names, settings, seed]).encode())
    digest.update(np.asarray(positions, dtype=np.int64).tobytes())
    digest.update(np.asarray(classes, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def save_trained(path: Path, key: str, backbone: Backbone, head: nn.Linear, stats: dict[str, Any]) -> None:
    """Write the trained backbone and head atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"key": key, "backbone": backbone.module.state_dict(), "head": head.state_dict(), "stats": stats},
               tmp)
    os.replace(tmp, path)


def load_trained(path: Path, key: str, backbone: Backbone, n_classes: int,
                 device: torch.device) -> tuple[nn.Linear, dict[str, Any]] | None:
    """Load saved weights into ``backbone`` and a new head if ``path`` holds them for ``key``."""
    if not path.is_file():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved.get("key") != key:
        return None
    backbone.module.load_state_dict(saved["backbone"])
    backbone.module.to(device).eval()
    head = new_head(backbone.feature_dim, n_classes, 0)
    head.load_state_dict(saved["head"])
    return head.to(device).eval(), {**saved["stats"], "from_checkpoint": True}


def discard(path: Path) -> None:
    """Remove a round's checkpoint, and its folder once empty."""
    path.unlink(missing_ok=True)
    if path.parent.is_dir() and not any(path.parent.iterdir()):
        path.parent.rmdir()
