"""What the network sees of a batch of photos: float32 normalised by ImageNet's mean and std.

The loaders of image files stop at a uint8 crop (:func:`ast_tune.data.sources.photo_transform`): what
crosses from a loader process to the training process, and from the host to the GPU, is a quarter of the
bytes of a float batch, and the conversion runs once per batch on the training device
(:meth:`ast_tune.core.run_state.RunState.to_device`) instead of once per image in a loader process.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalised(x: Tensor) -> Tensor:
    """A uint8 batch ``[B, 3, H, W]`` (0–255) as float32 ``(x / 255 - mean) / std`` per channel, on its device
    and in its memory format; a float batch (the digits, normalised when loaded) is returned as it is."""
    if x.is_floating_point():
        return x
    scale, shift = _scale_and_shift(x.device)
    return x.to(torch.float32).mul_(scale).add_(shift)


@functools.cache
def _scale_and_shift(device: torch.device) -> tuple[Tensor, Tensor]:
    """``1 / (255 std)`` and ``-mean / std`` as ``[3, 1, 1]`` on ``device``, made once per device: building them
    per batch (as torchvision's ``normalize`` does) would copy them to a GPU and wait for it every batch."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(-1, 1, 1), torch.tensor(IMAGENET_STD).view(-1, 1, 1)
    return (1 / (255 * std)).to(device), (-mean / std).to(device)
