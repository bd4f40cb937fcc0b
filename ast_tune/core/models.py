"""Image classifiers by name: torchvision's ResNet-18 and ResNet-50, and a small ResNet for 32 px inputs.

Nothing is downloaded. ``pretrained`` is the path of a local torchvision ``state_dict`` file, read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet18, resnet50
from torchvision.models.resnet import BasicBlock

from ast_tune.config.spec import SpecError, check_choice

log = logging.getLogger(__name__)


class SmallResNet(nn.Module):
    """A ResNet for 32 px inputs, the embedded default's model.

    A 3×3 stem (stride 2: digits are 8×8 images upscaled, so 16 px loses nothing), then stages of
    torchvision ``BasicBlock`` modules 32, 64 and 128 channels wide at 16, 8 and 4 px, global average
    pooling and a linear head: 308,074 parameters for 1 channel and 10 classes. It is sized for a
    quickstart sweep of ≥ 8 trials in 10 minutes on a 2-core CPU; its measured step times and
    accuracies are in docs/benchmarks.md ("Step cost per mode (bench)", "Accuracy and activation
    tracking").
    """

    def __init__(self, *, num_classes: int, in_channels: int = 3, widths: tuple[int, ...] = (32, 64, 128),
                 blocks: tuple[int, ...] = (1, 1, 1), stem_stride: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=3, stride=stem_stride, padding=1,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        stages, inplanes = [], widths[0]
        for i, (width, depth) in enumerate(zip(widths, blocks, strict=True)):
            stages.append(_stage(inplanes, width, blocks=depth, stride=1 if i == 0 else 2))
            inplanes = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        for module in self.modules():  # torchvision's ResNet initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]`` of images ``[N, in_channels, H, W]``."""
        x = self.stages(self.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def _stage(inplanes: int, planes: int, *, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
                                   nn.BatchNorm2d(planes))
    layers = [BasicBlock(inplanes, planes, stride=stride, downsample=downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _torchvision(factory: Callable[..., nn.Module], num_classes: int, in_channels: int) -> nn.Module:
    model = factory(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, model.conv1.out_channels, kernel_size=7, stride=2, padding=3,
                                bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


_BUILDERS: dict[str, Callable[[int, int], nn.Module]] = {
    "small_resnet": lambda classes, channels: SmallResNet(num_classes=classes, in_channels=channels),
    "resnet18": lambda classes, channels: _torchvision(resnet18, classes, channels),
    "resnet50": lambda classes, channels: _torchvision(resnet50, classes, channels),
}


def build_model(name: str, *, num_classes: int, in_channels: int = 3,
                pretrained: str | None = None) -> nn.Module:
    """A freshly initialised classifier, optionally loaded from a local state_dict file.

    Args:
        name: small_resnet, resnet18 or resnet50.
        num_classes: outputs of the final linear layer.
        in_channels: image channels (1 for digits); torchvision models get a new ``conv1``.
        pretrained: path of a state_dict saved from the same architecture; see :func:`load_pretrained`.

    Raises:
        SpecError: unknown ``name`` (key ``model``), or an unusable ``pretrained`` file.
    """
    check_choice("model", name, tuple(_BUILDERS))
    model = _BUILDERS[name](num_classes, in_channels)
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model


def load_pretrained(model: nn.Module, path: str | Path) -> None:
    """Copy the weights in state_dict file ``path`` into ``model``.

    The head (``fc.*``) keeps its fresh weights when its shape differs (another ``num_classes``). An RGB
    ``conv1`` loaded into a 1-channel model is summed over its colour channels. Any other missing key,
    extra key or shape difference is an error.

    Raises:
        SpecError: key ``pretrained``; the file is missing, unreadable or does not fit ``model``.
    """
    file = Path(path)
    if not file.is_file():
        raise SpecError("pretrained", f"no such file {file}")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise SpecError("pretrained", f"cannot read {file}: {str(err).splitlines()[0]}") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SpecError("pretrained", f"{file} is not a state_dict of tensors")
    state, own, fresh = dict(state), model.state_dict(), []
    for key in [k for k in state if k in own and state[k].shape != own[k].shape]:
        if key == "conv1.weight" and own[key].shape[1] == 1 and state[key].shape[1] == 3:
            state[key] = state[key].sum(dim=1, keepdim=True)
        elif key.startswith("fc."):
            fresh.append(key)
            del state[key]
        if key in state and state[key].shape != own[key].shape:
            raise SpecError("pretrained", f"{file}: {key} has shape {tuple(state[key].shape)}, "
                                          f"the model needs {tuple(own[key].shape)}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in fresh]
    if missing or unexpected:
        raise SpecError("pretrained", f"{file} does not fit the model: missing keys {missing[:3]}, "
                                      f"unexpected keys {unexpected[:3]}")
    if fresh:
        log.info("pretrained %s: %s have another shape and keep their fresh weights", file, ", ".join(fresh))
