"""The DDP helpers of the engine, in one place: rank and world size, all-reduces and an all-gather, each the
identity when no ``torch.distributed`` group is initialised (a one-process run).

Ray Train's TorchTrainer initialises the group on every rank; the engine never starts one itself.
The data side keeps none: the loaders take ``rank`` and ``world_size`` as arguments.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def initialised() -> bool:
    """Whether a ``torch.distributed`` process group is up."""
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the initialised torch.distributed group, or (0, 1)."""
    if initialised():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_(tensor: torch.Tensor, *, op: str = "sum") -> torch.Tensor:
    """Reduce ``tensor`` in place over all ranks (``op``: ``"sum"`` or ``"max"``); returns it."""
    if initialised():
        dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return tensor


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum ``values`` over all ranks (identity without torch.distributed)."""
    if not initialised():
        return values
    return all_reduce_(torch.tensor(values, dtype=torch.float64, device=device)).tolist()


def all_gather_objects(value: object) -> list[object]:
    """Every rank's ``value`` (picklable, small), in rank order; ``[value]`` without torch.distributed."""
    if not initialised():
        return [value]
    gathered: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered
