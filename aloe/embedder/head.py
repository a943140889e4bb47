"""A linear classification head over fixed features: training and blocked logits.

Used by the ``linear`` embed mode and by ``aloe-embed --from-features``: the backbone is frozen (or
absent), so the head is the only thing trained, on the labeled rows' features.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from pydantic import Field
from torch import nn

from aloe.config import StrictModel
from aloe.errors import AloeError


class LinearHeadConfig(StrictModel):
    """``linear`` mode's head training: AdamW over cached frozen features (the settings of
    :func:`fit_linear_head`)."""

    epochs: int = Field(100, ge=0)
    lr: float = Field(1e-2, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    batch_size: int = Field(256, ge=1)


def fit_linear_head(
    features: np.ndarray,
    classes: np.ndarray,
    n_classes: int,
    *,
    epochs: int = 100,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    seed: int = 0,
    device: str = "cpu",
) -> nn.Linear:
    """Train ``nn.Linear(D, n_classes)`` with AdamW and cross-entropy on ``(features, classes)``.

    Parameters
    ----------
    features
        ``(n, D)`` float array of the labeled rows.
    classes
        ``(n,)`` class indices in ``[0, n_classes)``.
    n_classes
        Output width. With fewer than two classes (or no rows) there is nothing to discriminate:
        the freshly initialised head is returned untrained.
    epochs, lr, weight_decay, batch_size
        Optimisation settings (full passes over the rows, shuffled each epoch).
    seed
        Seeds the initialisation and the shuffling; on a CPU the same seed gives the same weights.
    device
        Torch device to train on; the returned head lives on the CPU.

    Returns
    -------
    torch.nn.Linear
        The trained head in eval mode, on the CPU.
    """
    features = np.asarray(features, dtype=np.float32)
    classes = np.asarray(classes, dtype=np.int64)
    if features.ndim != 2:
        raise AloeError(f"features must be 2-D (rows x dim), got shape {features.shape}")
    if classes.shape != (features.shape[0],):
        raise AloeError(f"{features.shape[0]} feature rows but {classes.shape[0]} class indices")
    if n_classes < 0:
        raise AloeError(f"n_classes must be >= 0, got {n_classes}")
    if len(classes) and (classes.min() < 0 or classes.max() >= n_classes):
        raise AloeError(f"class indices must lie in [0, {n_classes}), got {classes.min()}..{classes.max()}")
    if epochs < 0 or batch_size < 1 or lr <= 0:
        raise AloeError("head settings need epochs >= 0, batch_size >= 1 and lr > 0")

    generator = torch.Generator().manual_seed(seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        head = nn.Linear(features.shape[1], n_classes)
    bound = 1.0 / max(features.shape[1], 1) ** 0.5
    with torch.no_grad():
        head.weight.uniform_(-bound, bound, generator=generator)
        head.bias.uniform_(-bound, bound, generator=generator)
    if n_classes < 2 or len(classes) == 0 or epochs == 0:
        return head.eval()

    head = head.to(device).train()
    x = torch.from_numpy(features).to(device)
    y = torch.from_numpy(classes).to(device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator).to(device)
        for start in range(0, len(y), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(head(x[batch]), y[batch]).backward()
            optimizer.step()
    return head.cpu().eval()


@torch.no_grad()
def head_logits(head: nn.Linear, features: np.ndarray, block_rows: int = 65_536) -> np.ndarray:
    """Logits ``head(features)`` as float32 ``(n, C)``, computed ``block_rows`` rows at a time.

    The head and the blocks stay on the head's device; the result is a numpy array.
    """
    features = np.asarray(features)
    device = head.weight.device
    out = np.empty((features.shape[0], head.out_features), dtype=np.float32)
    for start in range(0, features.shape[0], block_rows):
        block = torch.from_numpy(np.ascontiguousarray(features[start : start + block_rows], dtype=np.float32))
        out[start : start + len(block)] = head(block.to(device)).float().cpu().numpy()
    return out
