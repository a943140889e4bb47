"""Choosing the torch device and the matching autocast context."""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

from aloe.errors import AloeError

DeviceChoice = Literal["auto", "cpu", "cuda"]


def resolve_device(choice: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU; asking for ``cuda`` without one is an error."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise AloeError("--device cuda asked for, but torch sees no CUDA device (use auto or cpu)")
    if choice not in ("cpu", "cuda"):
        raise AloeError(f"unknown device {choice!r}: use auto, cpu or cuda")
    return torch.device(choice)


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; full precision on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
