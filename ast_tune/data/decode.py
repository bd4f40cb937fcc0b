"""Image-file decoders (``data.decoder``), and decoding a batch of JPEGs on the GPU.

- ``pil``: PIL opens and decodes the file, torchvision's transforms crop and normalise the PIL image
  in the DataLoader workers. The CPU default.
- ``torchvision``: ``torchvision.io`` decodes the file into a uint8 tensor ``[3, H, W]`` and the same
  transforms run on the tensor. On the CPU this happens in the workers. When the loader is given a CUDA
  device (:func:`ast_tune.data.loaders.make_loader`), the workers only read the files' bytes. The batch is
  then decoded on that device by nvJPEG (``torchvision.io.decode_jpeg``) and transformed there.

Either way the loader reads only the samples it is asked for, so ``skip`` still loads only the samples
it trains on, and batches stay ``(x, y, idx)``. An unreadable file is dropped from its batch with a
warning that names it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.datasets.folder import default_loader
from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file

log = logging.getLogger(__name__)

Batch = tuple[Tensor, Tensor, Tensor]


def read_decoded(path: str) -> Tensor:
    """The image at ``path`` as uint8 RGB ``[3, H, W]``, decoded on the CPU by torchvision.io."""
    try:
        return decode_image(read_file(path), mode=ImageReadMode.RGB)
    except RuntimeError as err:  # torchvision.io's error for a missing, corrupt or unknown file
        raise OSError(f"cannot decode {path}: {err}") from None


def reader(decoder: str) -> Callable[[str], Any]:
    """What turns a path into an image for ``decoder`` (``DataSpec.decoder``): a PIL image or a tensor."""
    return default_loader if decoder == "pil" else read_decoded


def to_float(decoder: str) -> Callable[[Any], Tensor]:
    """The transform that ends a pipeline: the decoded image as float32 ``[C, H, W]`` in [0, 1]."""
    return transforms.ToTensor() if decoder == "pil" else transforms.ConvertImageDtype(torch.float32)


def decodes_on_device(dataset: Dataset, device: torch.device | None) -> bool:
    """Whether ``dataset`` holds files for the torchvision decoder and ``device`` is a GPU to decode on."""
    return device is not None and device.type == "cuda" and getattr(dataset, "loader", None) is read_decoded


class EncodedFiles(Dataset):
    """Item ``i`` is ``(bytes of file i as uint8 [n], label)``; ``samples`` is a list of ``(path, label)``."""

    def __init__(self, samples: list[tuple[str, int]]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[index]
        try:
            return read_file(path), label
        except RuntimeError as err:
            raise OSError(f"cannot read {path}: {err}") from None


def collate_encoded(items: list[tuple[Tensor, int, int] | None]) -> tuple[list[Tensor], Tensor, Tensor]:
    """``(list of encoded files, labels, indices)`` of the items that could be read (None: unreadable)."""
    kept = [item for item in items if item is not None]
    return ([data for data, _, _ in kept], torch.tensor([y for _, y, _ in kept], dtype=torch.int64),
            torch.tensor([i for _, _, i in kept], dtype=torch.int64))


class DeviceBatches:
    """Batches of encoded files from ``loader``, decoded on ``device`` and put through ``transform`` there.

    Yields ``(x float32 [B, 3, S, S] on device, y int64, idx int64)``; ``len()`` is the loader's.
    """

    def __init__(self, loader: Iterable[tuple[list[Tensor], Tensor, Tensor]], *,
                 transform: Callable[[Tensor], Tensor], device: torch.device,
                 samples: list[tuple[str, int]]) -> None:
        self.loader = loader
        self.transform = transform
        self.device = device
        self.samples = samples  # for the names in warnings

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Batch]:
        for encoded, y, idx in self.loader:
            images, kept = self._decode(encoded, idx)
            if not images:
                yield torch.empty(0), y[:0], idx[:0]
                continue
            x = torch.stack([self.transform(image) for image in images])
            keep = torch.tensor(kept, dtype=torch.long)
            yield x, y[keep], idx[keep]

    def _decode(self, encoded: list[Tensor], idx: Tensor) -> tuple[list[Tensor], list[int]]:
        """The decoded images on the device, and the positions in the batch they come from."""
        try:
            return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self.device), list(range(len(encoded)))
        except RuntimeError:  # a file nvJPEG cannot decode (not a JPEG, or corrupt): one at a time
            pass
        images, kept = [], []
        for position, data in enumerate(encoded):
            try:
                image = decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device)
            except RuntimeError:
                try:  # PNG, GIF, CMYK JPEG…: the CPU decoder, then onto the device
                    image = decode_image(data, mode=ImageReadMode.RGB).to(self.device)
                except RuntimeError as err:
                    log.warning("skipping unreadable image %s: %s", self.samples[int(idx[position])][0], err)
                    continue
            images.append(image)
            kept.append(position)
        return images, kept
