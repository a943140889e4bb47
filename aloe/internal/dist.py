"""Ranks launched by ``torchrun``: a small facade over :mod:`torch.distributed`.

Both stages run the same code in one process and under ``torchrun``: :func:`launch` reads the
launcher's environment (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``...), starts the process group when
there is more than one rank (NCCL when every rank has a GPU, gloo otherwise) and returns a
:class:`Comm`. In one process every collective is the identity, so callers never branch on it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from aloe.errors import AloeError

_OPS = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}


def world_size_from_env() -> int:
    """``WORLD_SIZE`` as ``torchrun`` sets it (1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass(frozen=True)
class Comm:
    """This process's place among the ranks, and the collectives the stages need.

    ``device`` is where collective tensors live: CUDA for NCCL, the CPU for gloo and one process.
    """

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_root(self) -> bool:
        """True on rank 0, the rank that writes results."""
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """True when more than one rank runs."""
        return self.world > 1

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """Reduce ``tensor`` in place over the ranks (``sum``, ``max`` or ``min``) and return it."""
        if self.sharded:
            moved = tensor.to(self.device)
            dist.all_reduce(moved, op=_OPS[op])
            if moved is not tensor:
                tensor.copy_(moved)
        return tensor

    def all_gather(self, array: np.ndarray) -> list[np.ndarray]:
        """Every rank's ``array`` (same dtype and trailing shape; any length), in rank order."""
        if not self.sharded:
            return [array]
        array = np.ascontiguousarray(array)
        lengths = torch.tensor([len(array)], dtype=torch.int64, device=self.device)
        sizes = [torch.zeros_like(lengths) for _ in range(self.world)]
        dist.all_gather(sizes, lengths)
        longest = max(int(size) for size in sizes)
        padded = np.zeros((longest, *array.shape[1:]), dtype=array.dtype)
        padded[: len(array)] = array
        local = torch.from_numpy(padded.view(np.uint8)).to(self.device)
        parts = [torch.empty_like(local) for _ in range(self.world)]
        dist.all_gather(parts, local)
        return [
            part.cpu().numpy().view(array.dtype).reshape(longest, *array.shape[1:])[: int(size)]
            for part, size in zip(parts, sizes, strict=True)
        ]

    def concat(self, array: np.ndarray) -> np.ndarray:
        """The ranks' arrays concatenated in rank order (the whole pool when each holds its shard)."""
        parts = self.all_gather(array)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def gather_objects(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (any picklable object), in rank order, on every rank."""
        if not self.sharded:
            return [value]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (any picklable object), on every rank."""
        if not self.sharded:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.sharded:
            dist.barrier()

    def agree(self, error: BaseException | None) -> None:
        """Raise on every rank when any rank failed (so no rank waits forever in a collective).

        The failing rank re-raises its own error; the others raise an :class:`AloeError` naming it.
        """
        if not self.sharded:
            if error is not None:
                raise error
            return
        failed = torch.tensor([self.rank if error is not None else self.world], device=self.device)
        first = int(self.all_reduce(failed, "min"))
        if error is not None:
            raise error
        if first < self.world:
            raise AloeError(f"rank {first} failed (its message is above)")

    def row_range(self, n_rows: int, align: int = 1) -> tuple[int, int]:
        """This rank's contiguous share ``[start, stop)`` of ``n_rows``, in whole ``align``-row chunks.

        Chunks are dealt as evenly as possible, lower ranks taking the extra ones.
        """
        chunks = -(-n_rows // align)
        base, extra = divmod(chunks, self.world)
        first = self.rank * base + min(self.rank, extra)
        count = base + (1 if self.rank < extra else 0)
        return min(first * align, n_rows), min((first + count) * align, n_rows)


@contextmanager
def launch() -> Iterator[Comm]:
    """The :class:`Comm` of this process; under ``torchrun`` with several ranks, a live process group.

    The group uses NCCL when CUDA is available (each rank on GPU ``LOCAL_RANK``) and gloo otherwise,
    and is destroyed on exit.
    """
    world = world_size_from_env()
    if world <= 1:
        yield Comm()
        return
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    started_here = not dist.is_initialized()
    if started_here:
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    try:
        yield Comm(rank=rank, world=world, device=device)
    finally:
        if started_here:
            dist.destroy_process_group()
