"""Models by name, their output shapes, and loading local pretrained weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18

from ast_tune.config.spec import SpecError
from ast_tune.core.models import build_model


@pytest.mark.parametrize("name", ["small_resnet", "resnet18", "resnet50"])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_models_map_images_to_one_logit_per_class(name: str, in_channels: int) -> None:
    model = build_model(name, num_classes=7, in_channels=in_channels).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, in_channels, 32, 32))
    assert logits.shape == (2, 7)


def test_small_resnet_halves_32px_in_its_stem_and_keeps_its_parameter_budget() -> None:
    model = build_model("small_resnet", num_classes=10, in_channels=1)
    assert sum(p.numel() for p in model.parameters()) == 308_074
    assert model.conv1(torch.zeros(1, 1, 32, 32)).shape == (1, 32, 16, 16)


def test_unknown_model_name_lists_the_allowed_ones() -> None:
    allowed = r"^model: must be one of small_resnet, resnet18, resnet50; got 'vgg'"
    with pytest.raises(SpecError, match=allowed):
        build_model("vgg", num_classes=10)


def test_pretrained_weights_load_and_a_head_of_another_size_stays_fresh(tmp_path: Path) -> None:
    source = resnet18(weights=None, num_classes=5)
    torch.save(source.state_dict(), tmp_path / "r18.pt")
    model = build_model("resnet18", num_classes=7, pretrained=str(tmp_path / "r18.pt"))
    assert torch.equal(model.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert torch.equal(model.bn1.running_var, source.bn1.running_var)
    assert model.fc.weight.shape == (7, 512)


def test_pretrained_rgb_stem_is_summed_for_one_channel_input(tmp_path: Path) -> None:
    source = resnet18(weights=None, num_classes=10)
    torch.save(source.state_dict(), tmp_path / "r18.pt")
    model = build_model("resnet18", num_classes=10, in_channels=1, pretrained=str(tmp_path / "r18.pt"))
    assert torch.allclose(model.conv1.weight, source.conv1.weight.sum(dim=1, keepdim=True))
    assert torch.equal(model.fc.weight, source.fc.weight)


def test_missing_pretrained_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"^pretrained: no such file .*absent\.pt"):
        build_model("resnet18", num_classes=10, pretrained=str(tmp_path / "absent.pt"))


def test_pretrained_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    torch.save(build_model("small_resnet", num_classes=10).state_dict(), tmp_path / "small.pt")
    with pytest.raises(SpecError, match=r"^pretrained: .*small\.pt"):
        build_model("resnet18", num_classes=10, pretrained=str(tmp_path / "small.pt"))


def test_unreadable_pretrained_file_is_a_spec_error(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SpecError, match=r"^pretrained: cannot read .*junk\.pt"):
        build_model("resnet18", num_classes=10, pretrained=str(tmp_path / "junk.pt"))
