"""Image-file decoders (``data.decoder``), and decoding a batch of JPEGs on the GPU.

Every decoder gives a uint8 RGB tensor ``[3, H, W]``; the transforms that follow
(:func:`~ast_tune.data.sources.photo_transform`) are the same for all of them and end at a uint8 crop.

- ``pil``: PIL opens and decodes the file, in the DataLoader workers.
- ``torchvision``: ``torchvision.io`` decodes the file (PIL a format it does not read: BMP, TIFF, PPM).
  On the CPU this happens in the workers. When the loader is given a CUDA device
  (:func:`ast_tune.data.loaders.make_loader`), the workers only read the files' bytes. The batch is then
  decoded on that device by nvJPEG (``torchvision.io.decode_jpeg``) and transformed there.
- ``auto`` (the default): on a copy ``python -m ast_tune.prepare`` made (its root holds :data:`MANIFEST`),
  ``torchvision.io`` in the workers, also when training on a GPU (the path ``benchmarks/loader_bench.py``
  measures); ``pil`` on any other tree (:func:`chosen_decoder`).

Either way the loader reads only the samples it is asked for, so ``skip`` still loads only the samples
it trains on, and batches stay ``(x, y, idx)``. An unreadable file is dropped from its batch with a
warning that names it.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.datasets.folder import default_loader
from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file
from torchvision.transforms.v2.functional import pil_to_tensor

log = logging.getLogger(__name__)

Batch = tuple[Tensor, Tensor, Tensor]
MANIFEST = "manifest.json"  # what a complete copy made by ``python -m ast_tune.prepare`` holds at its root
UNREADABLE = (OSError, SyntaxError, Image.DecompressionBombError)  # what PIL raises on a bad file


WORKERS_TORCHVISION = "torchvision in the workers"  # what ``auto`` chooses on a prepared copy


def chosen_decoder(decoder: str, root: str | Path | None) -> str:
    """The decoder ``data.decoder`` names for the tree at ``root``: ``auto`` is torchvision.io in the loader
    workers on a prepared copy (``root`` holds :data:`MANIFEST`: files ``prepare`` wrote, small, where
    torchvision.io decodes faster than PIL; :data:`WORKERS_TORCHVISION`) and ``pil`` elsewhere."""
    if decoder != "auto":
        return decoder
    return WORKERS_TORCHVISION if root is not None and Path(root, MANIFEST).is_file() else "pil"


def read_pil(path: str) -> Tensor:
    """The image at ``path`` as uint8 RGB ``[3, H, W]``, decoded by PIL."""
    return pil_to_tensor(default_loader(path))


def decode_bytes(data: Tensor) -> Tensor:
    """An encoded image file (uint8 ``[n]``) as uint8 RGB ``[3, H, W]``, decoded on the CPU by torchvision.io,
    or by PIL where torchvision.io does not read the format.

    Raises:
        OSError, SyntaxError, DecompressionBombError (:data:`UNREADABLE`): neither can decode it.
    """
    try:
        return decode_image(data, mode=ImageReadMode.RGB)
    except RuntimeError:  # torchvision.io's error for a corrupt or unknown file
        with Image.open(io.BytesIO(data.numpy().tobytes())) as image:
            return pil_to_tensor(image.convert("RGB"))


def read_decoded(path: str) -> Tensor:
    """The image at ``path`` as uint8 RGB ``[3, H, W]``: :func:`decode_bytes` of the file."""
    try:
        data = read_file(path)
    except RuntimeError as err:  # torchvision.io's error for a missing or unreadable file
        raise OSError(f"cannot read {path}: {err}") from None
    return decode_bytes(data)


def read_decoded_in_workers(path: str) -> Tensor:
    """:func:`read_decoded`, always in the loader workers: a loader on a GPU does not hand these files to nvJPEG."""
    return read_decoded(path)


def reader(decoder: str) -> Callable[[str], Tensor]:
    """What turns a path into a uint8 RGB tensor ``[3, H, W]`` for a :func:`chosen_decoder` value."""
    return {"pil": read_pil, "torchvision": read_decoded, WORKERS_TORCHVISION: read_decoded_in_workers}[decoder]


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

    Yields ``(x uint8 [B, 3, S, S] on device, y int64, idx int64)``; ``len()`` is the loader's. The training
    process converts ``x`` as it converts every batch of photos (:func:`ast_tune.data.normalise.normalised`).
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
                    image = decode_bytes(data).to(self.device)
                except UNREADABLE as err:
                    log.warning("skipping unreadable image %s: %s", self.samples[int(idx[position])][0], err)
                    continue
            images.append(image)
            kept.append(position)
        return images, kept
