"""Helpers shared by the embedder tests: a tiny open_clip architecture and a generated image pool."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

TINY_VIT = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}
COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}


def write_pool(folder: Path, per_class: int = 8, seed: int = 0, broken: int = 0) -> Path:
    """Noisy solid-colour PNGs, ``per_class`` per colour, plus ``broken`` unreadable files; returns the
    manifest ``id,path,label``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["id,path,label"]
    for name, colour in COLOURS.items():
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}{i}.png")
            rows.append(f"{name}-{i},{name}{i}.png,{name}")
    for i in range(broken):
        (folder / f"broken{i}.png").write_bytes(b"\x89PNG truncated")
        rows.append(f"broken-{i},broken{i}.png,red")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest
