"""A long-tailed pool of generated colour squares and a tiny open_clip tower, for ``--config`` tests."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

TINY_VIT = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}
CLASSES = {"red": ((200, 30, 30), 12), "green": ((30, 200, 30), 6), "blue": ((30, 30, 200), 4)}


def write_colour_pool(root: Path, broken: bool = False) -> Path:
    """Noisy colour squares, :data:`CLASSES` many of each (plus one unreadable 'red' file when
    ``broken``); returns the ``id,path,label`` manifest."""
    rng = np.random.default_rng(0)
    rows = [("id", "path", "label")]
    for name, (colour, count) in CLASSES.items():
        for i in range(count):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"{name}{i}.png")
            rows.append((f"{name}-{i}", f"{name}{i}.png", name))
    if broken:
        (root / "broken.png").write_bytes(b"\x89PNG truncated")
        rows.append(("broken", "broken.png", "red"))
    with (root / "manifest.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return root / "manifest.csv"
