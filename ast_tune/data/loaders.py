"""Loaders: ``(x, y, idx)`` batches of one rank's share of a dataset, by dataset index.

``idx`` are the dataset indices of the samples, so ``skip`` mode can keep a score per sample and load
only the samples it trains on. The split across DDP ranks follows ``DistributedSampler``: one
permutation, identical on every rank, padded to equal shares. In-memory data (digits) is batched by
indexing, without a DataLoader: per-batch Python overhead dominates the CPU speed benchmark. An
unreadable image is replaced by the next readable sample, so every batch keeps its size and the
ranks of a DDP run stay in step.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ast_tune.data.decode import UNREADABLE, DeviceBatches, EncodedFiles, collate_encoded, decodes_on_device
from ast_tune.data.sources import TensorImageDataset

log = logging.getLogger(__name__)
REPLACEMENT_TRIES = 64  # unreadable images in a row after which loading fails instead of searching on


def make_loader(dataset: Dataset, *, batch_size: int, train: bool, seed: int = 0, epoch: int = 0,
                indices: Sequence[int] | Tensor | None = None, rank: int = 0, world_size: int = 1,
                num_workers: int = -1, pin_memory: bool = False,
                device: torch.device | None = None) -> Iterable[tuple[Tensor, Tensor, Tensor]]:
    """Batches ``(x, y, idx)`` of this rank's share of ``dataset``; ``idx`` int64 are dataset indices.

    Only the samples in ``indices`` (default: all) are loaded; see :func:`shard_indices` for the order
    and the split across ranks. ``len()`` of the result is its number of batches. An unreadable image
    file is replaced, with a warning, by the next readable sample of the dataset (index + 1, + 2, …,
    wrapping), whose index ``idx`` then names: no batch is empty or smaller than its share says.

    Args:
        batch_size: samples per batch; the last batch of the share may be smaller.
        num_workers: DataLoader worker processes for file data; -1 = min(8, CPUs - 1), at least 1.
            An in-memory :class:`TensorImageDataset` is always batched in this process.
        pin_memory: page-lock the batches (only when CUDA is available).
        device: where training runs. A CUDA device decodes the batches of a ``torchvision``-decoder
            dataset itself (:mod:`ast_tune.data.decode`): they come out already on it.
    """
    order = shard_indices(len(dataset), train=train, seed=seed, epoch=epoch, indices=indices,
                          rank=rank, world_size=world_size)
    if isinstance(dataset, TensorImageDataset):
        return _TensorBatches(dataset, order, batch_size=batch_size, pin_memory=pin_memory)
    workers = _auto_workers() if num_workers < 0 else num_workers
    on_device = decodes_on_device(dataset, device)
    loader = DataLoader(_Indexed(EncodedFiles(dataset.samples) if on_device else dataset), batch_size=batch_size,
                        sampler=order.tolist(), num_workers=workers,
                        collate_fn=collate_encoded if on_device else _collate,
                        pin_memory=pin_memory and not on_device, persistent_workers=workers > 0,
                        generator=seeded_generator(seed, epoch, rank))
    if on_device:
        return DeviceBatches(loader, transform=dataset.transform, device=device, samples=dataset.samples)
    return loader


def shard_indices(size: int, *, train: bool, seed: int = 0, epoch: int = 0,
                  indices: Sequence[int] | Tensor | None = None, rank: int = 0,
                  world_size: int = 1) -> Tensor:
    """The dataset indices, in order, that rank ``rank`` of ``world_size`` loads.

    ``train``: ``indices`` permuted by a generator seeded with (seed, epoch), identical on every rank
    (so ``indices`` must be too), then padded by wrapping around to a multiple of ``world_size`` so
    every rank gets the same number of samples; rank r takes positions r, r + world_size, …
    Otherwise: no shuffle and no padding; rank r takes positions r, r + world_size, …

    Args:
        size: length of the dataset; ``indices`` must lie in ``[0, size)``.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    if indices is None:
        order = torch.arange(size)
    else:
        order = torch.as_tensor(indices).to(device="cpu", dtype=torch.int64, copy=True).flatten()
    if len(order) and (int(order.min()) < 0 or int(order.max()) >= size):
        raise IndexError(f"indices must lie in [0, {size})")
    if not train:
        return order[rank::world_size]
    order = order[torch.randperm(len(order), generator=seeded_generator(seed, epoch))]
    total = math.ceil(len(order) / world_size) * world_size
    if total > len(order) > 0:
        order = order.repeat(math.ceil(total / len(order)))[:total]
    return order[rank:total:world_size]


def seeded_generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded from ``keys`` by numpy's SeedSequence: the one seeding recipe of a run
    (the epoch's shuffle, its DataLoader workers, skip mode's refresh draw), the same on every rank
    and after a resume for the same keys.

    Torch's CPU generator keeps only the low 32 bits of its seed, so the keys are hashed, not packed.
    """
    state = np.random.SeedSequence([key % 2**64 for key in keys]).generate_state(1)
    return torch.Generator().manual_seed(int(state[0]))


def available_cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _auto_workers() -> int:
    return min(8, max(1, available_cpus() - 1))


class _TensorBatches:
    """Batches of a :class:`TensorImageDataset` by indexing: no per-sample ``__getitem__`` or collate.

    The images may already lie on a GPU (compute-only benchmarks); ``idx`` stays on the CPU.
    """

    def __init__(self, dataset: TensorImageDataset, order: Tensor, *, batch_size: int,
                 pin_memory: bool) -> None:
        self.dataset = dataset
        self.order = order
        self.batch_size = batch_size
        self.pin_memory = pin_memory and torch.cuda.is_available() and dataset.images.device.type == "cpu"

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        for idx in self.order.split(self.batch_size):
            at = idx.to(self.dataset.images.device)
            batch = (self.dataset.images.index_select(0, at), self.dataset.labels.index_select(0, at), idx)
            yield tuple(t.pin_memory() for t in batch) if self.pin_memory else batch


class _Indexed(Dataset):
    """Items become ``(x, y, index)``; an unreadable image is replaced by the next readable sample."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        for tried in range(min(REPLACEMENT_TRIES, len(self.dataset))):
            candidate = (index + tried) % len(self.dataset)
            try:
                x, y = self.dataset[candidate]
            except UNREADABLE as err:
                log.warning("unreadable image %s replaced by the next sample: %s", self._name(candidate), err)
                continue
            return x, y, candidate
        raise RuntimeError(f"{REPLACEMENT_TRIES} images in a row from {self._name(index)} on are unreadable")

    def _name(self, index: int) -> str:
        samples = getattr(self.dataset, "samples", None)
        return samples[index][0] if samples is not None else f"sample {index}"


def _collate(items: list[tuple[Tensor, int, int]]) -> tuple[Tensor, Tensor, Tensor]:
    return (torch.stack([x for x, _, _ in items]), torch.tensor([y for _, y, _ in items], dtype=torch.int64),
            torch.tensor([i for _, _, i in items], dtype=torch.int64))
