"""The ``data.decoder`` choice on the CPU (torchvision.io, PIL, auto), the uint8 crops every decoder ends at and
their conversion per batch, and the batch decoder of the GPU path.

The GPU path itself (nvJPEG on a CUDA device) is tested in tests/test_cuda.py, skipped on CPU. Here
:class:`DeviceBatches` runs with ``device=cpu``, which exercises its batching, fallback and skipping.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.io import read_file

from ast_tune.config.run_spec import DataSpec, RunSpec, SubsetSpec
from ast_tune.config.spec import SpecError, build
from ast_tune.data import decode
from ast_tune.data.decode import MANIFEST, DeviceBatches, chosen_decoder, decodes_on_device
from ast_tune.data.loaders import make_loader
from ast_tune.data.normalise import IMAGENET_MEAN, IMAGENET_STD, normalised
from ast_tune.data.sources import load_datasets

COLOURS = {"cat": (200, 40, 90), "dog": (30, 160, 220)}


def _solid(path: Path, colour: tuple[int, int, int], fmt: str = "JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), colour).save(path, format=fmt, quality=100)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """train: cat ×3, dog ×3 (one dog a PNG); val: one of each. Each class one solid colour."""
    for split, count in (("train", 3), ("val", 1)):
        for name, colour in COLOURS.items():
            for i in range(count):
                _solid(tmp_path / split / name / f"{i}.jpg", colour)
    _solid(tmp_path / "train" / "dog" / "3.png", COLOURS["dog"], fmt="PNG")
    return tmp_path


def _data(root: Path, decoder: str, size: int = 16):
    return load_datasets(DataSpec(kind="imagefolder", root=str(root), image_size=size, decoder=decoder))


def _normalised(colour: tuple[int, int, int]) -> torch.Tensor:
    """What the transforms make of a solid ``colour``: per channel (c/255 - mean)/std."""
    return torch.tensor([(c / 255 - m) / s for c, m, s in zip(colour, IMAGENET_MEAN, IMAGENET_STD, strict=True)])


@pytest.mark.parametrize("decoder", ["auto", "pil", "torchvision"])
def test_each_decoder_gives_a_uint8_crop_that_normalises_to_the_colour(tree: Path, decoder: str) -> None:
    data = _data(tree, decoder)
    for dataset in (data.train, data.val):
        for index, (path, label) in enumerate(dataset.samples):
            x, y = dataset[index]
            assert y == label and x.shape == (3, 16, 16) and x.dtype == torch.uint8
            expected = _normalised(COLOURS[data.class_names[label]])
            # JPEG may move a solid colour by a level or two: 3/255 over the smallest std
            assert torch.allclose(normalised(x[None])[0].mean(dim=(1, 2)), expected, atol=3 / 255 / 0.224), path


def test_normalised_scales_uint8_by_255_and_imagenets_mean_and_std_and_passes_float_batches() -> None:
    x = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2).expand(2, 3, 2, 2).contiguous()
    out = normalised(x.contiguous(memory_format=torch.channels_last))
    assert out.dtype == torch.float32 and out.is_contiguous(memory_format=torch.channels_last)
    # red: (0 - 0.485) / 0.229 = -2.1179, (1 - 0.485) / 0.229 = 2.2489; blue: -0.406 / 0.225, 0.594 / 0.225
    assert out[1, 0, 0].tolist() == pytest.approx([-2.1179, 2.2489], abs=1e-4)
    assert out[0, 2, 1].tolist() == pytest.approx([-1.8044, 2.64], abs=1e-4)
    digits = torch.randn(2, 1, 4, 4)
    assert normalised(digits) is digits


def _photo_like(path: Path, seed: int) -> None:
    """A JPEG with detail at every scale (a gradient plus noise), 120×90 px."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, 120)[None, :, None] + np.linspace(0, 50, 90)[:, None, None]
    pixels = np.clip(ramp + rng.normal(0, 25, (90, 120, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)


@pytest.mark.parametrize("decoder", ["pil", "torchvision"])
@pytest.mark.parametrize("train", [True, False])
def test_uint8_crop_normalised_per_batch_is_the_float_pipeline_within_a_level(tmp_path: Path, decoder: str,
                                                                               train: bool) -> None:
    """The float pipeline: PIL, torchvision's crops on the PIL image, ToTensor and Normalize, per image."""
    paths = [tmp_path / split / name / f"{i}.jpg" for split in ("train", "val") for name in "ab" for i in range(3)]
    for seed, path in enumerate(paths):
        _photo_like(path, seed)
    data = _data(tmp_path, decoder, size=48)
    dataset = data.train if train else data.val
    float_path = transforms.Compose(
        [transforms.RandomResizedCrop(48), transforms.RandomHorizontalFlip()] if train
        else [transforms.Resize(55), transforms.CenterCrop(48)])  # 55 = round(48 / 0.875)
    to_float = transforms.Compose([transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    for index, (path, _) in enumerate(dataset.samples):
        torch.manual_seed(index)
        new = normalised(dataset[index][0][None])[0]
        torch.manual_seed(index)
        with Image.open(path) as image:
            old = to_float(float_path(image.convert("RGB")))
        level = 1 / 255 / min(IMAGENET_STD)  # one uint8 level, normalised
        assert (new - old).abs().max() <= 1.01 * level and (new - old).abs().mean() < 0.05 * level, path


def test_auto_decoder_is_torchvision_in_the_workers_on_a_prepared_copy_and_pil_elsewhere(tree: Path) -> None:
    assert chosen_decoder("auto", tree) == "pil" and chosen_decoder("auto", None) == "pil"
    assert _data(tree, "auto").train.loader is decode.read_pil
    (tree / MANIFEST).write_text("{}")
    assert chosen_decoder("auto", tree) == decode.WORKERS_TORCHVISION and chosen_decoder("pil", tree) == "pil"
    data = _data(tree, "auto")
    assert data.train.loader is decode.read_decoded_in_workers is data.val.loader
    assert not decode.decodes_on_device(data.train, torch.device("cuda"))  # never handed to nvJPEG
    assert decode.decodes_on_device(_data(tree, "torchvision").train, torch.device("cuda"))


def test_a_class_subset_reads_its_files_with_the_decoder_of_the_whole_set(tree: Path) -> None:
    spec = DataSpec(kind="imagefolder", root=str(tree), image_size=16, decoder="torchvision",
                    subset=SubsetSpec(classes=1))
    data = load_datasets(spec)
    assert data.train.loader is decode.read_decoded and data.val.loader is decode.read_decoded
    assert decodes_on_device(data.train, torch.device("cuda"))  # so a GPU still decodes the subset's batches


def test_torchvision_decoder_reads_a_format_torchvision_io_does_not_with_pil(tree: Path) -> None:
    bmp = tree / "train" / "cat" / "9.bmp"
    _solid(bmp, COLOURS["cat"], fmt="BMP")
    image = decode.read_decoded(str(bmp))
    assert image.dtype == torch.uint8 and image.shape == (3, 30, 40)
    assert image[:, 0, 0].tolist() == list(COLOURS["cat"])


def test_torchvision_decoder_decodes_with_torchvision_io(tree: Path) -> None:
    data = _data(tree, "torchvision")
    assert data.train.loader is decode.read_decoded and data.val.loader is decode.read_decoded
    image = data.train.loader(data.train.samples[0][0])
    assert image.dtype == torch.uint8 and image.shape == (3, 30, 40)
    assert decodes_on_device(data.train, torch.device("cuda"))
    assert not decodes_on_device(data.train, torch.device("cpu")) and not decodes_on_device(data.train, None)
    assert not decodes_on_device(_data(tree, "pil").train, torch.device("cuda"))


def test_torchvision_decoder_reads_only_the_chosen_samples(tree: Path, monkeypatch) -> None:
    data = _data(tree, "torchvision")
    read: list[str] = []
    real = decode.read_file
    monkeypatch.setattr(decode, "read_file", lambda path: read.append(path) or real(path))
    batches = list(make_loader(data.train, batch_size=2, train=True, indices=[1, 4, 6], num_workers=0))
    idx = torch.cat([b[2] for b in batches]).tolist()
    assert sorted(idx) == [1, 4, 6]
    assert sorted(read) == sorted(data.train.samples[i][0] for i in (1, 4, 6))
    assert [y for b in batches for y in b[1].tolist()] == [data.train.targets[i] for i in idx]


def test_corrupt_file_is_replaced_by_the_next_sample_with_a_warning_naming_it(tree: Path, caplog) -> None:
    """As with PIL (data.loaders): the batch keeps its size, so every DDP rank steps together."""
    broken = tree / "train" / "cat" / "1.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    data = _data(tree, "torchvision")
    bad = [path for path, _ in data.train.samples].index(str(broken))
    with caplog.at_level(logging.WARNING):
        (x, y, idx), = list(make_loader(data.train, batch_size=7, train=False, num_workers=0))
    expected = [bad + 1 if i == bad else i for i in range(7)]
    assert idx.tolist() == expected and len(x) == len(y) == 7
    assert str(broken) in caplog.text and "replaced by the next sample" in caplog.text


def _encoded_batch(dataset, positions: list[int]):
    """One batch as the GPU path's workers make it: the files' bytes, labels, indices."""
    return ([read_file(dataset.samples[i][0]) for i in positions],
            torch.tensor([dataset.targets[i] for i in positions]), torch.tensor(positions))


def test_batch_decoder_decodes_jpegs_together_and_falls_back_for_others(tree: Path, caplog) -> None:
    data = _data(tree, "torchvision")
    broken = tree / "train" / "cat" / "0.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    png = [path for path, _ in data.train.samples].index(str(tree / "train" / "dog" / "3.png"))
    bad = [path for path, _ in data.train.samples].index(str(broken))
    positions = [bad, 1, png, 4]
    batches = DeviceBatches([_encoded_batch(data.train, positions)], transform=data.train.transform,
                            device=torch.device("cpu"), samples=data.train.samples)
    with caplog.at_level(logging.WARNING):
        (x, y, idx), = list(batches)
    assert idx.tolist() == [1, png, 4] and y.tolist() == [data.train.targets[i] for i in (1, png, 4)]
    assert x.shape == (3, 3, 16, 16) and x.dtype == torch.uint8 and str(broken) in caplog.text
    for image, label in zip(normalised(x), y.tolist(), strict=True):
        expected = _normalised(COLOURS[data.class_names[label]])
        assert torch.allclose(image.mean(dim=(1, 2)), expected, atol=3 / 255 / 0.224)


def test_batch_decoder_gives_an_empty_batch_when_nothing_decodes(tree: Path) -> None:
    data = _data(tree, "torchvision")
    path = data.train.samples[0][0]
    Path(path).write_bytes(b"garbage")
    batches = DeviceBatches([_encoded_batch(data.train, [0])], transform=data.train.transform,
                            device=torch.device("cpu"), samples=data.train.samples)
    (x, y, idx), = list(batches)
    assert len(x) == len(y) == len(idx) == 0 and len(batches) == 1


def test_unknown_decoder_is_a_spec_error_naming_the_key_and_choices() -> None:
    with pytest.raises(SpecError, match=r"^data\.decoder: must be one of auto, pil, torchvision; got 'dali'$"):
        build(RunSpec, {"data": {"kind": "digits", "decoder": "dali"}})
