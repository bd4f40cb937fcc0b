"""Data sources and loaders, on tiny trees written under tmp_path and on the embedded digits."""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from ast_tune.config.run_spec import DataSpec
from ast_tune.config.spec import SpecError
from ast_tune.data.loaders import make_loader
from ast_tune.data.sources import TensorImageDataset, load_datasets

WNIDS = ("n01440764", "n01443537", "n01484850")
SYNSETS = {"n01440764": "tench, Tinca tinca", "n01443537": "goldfish, Carassius auratus",
           "n01484850": "great white shark, white shark"}


def _jpeg(path: Path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (shade, shade, shade)).save(path, format="JPEG")


@pytest.fixture
def folder_tree(tmp_path: Path) -> Path:
    """train: cat ×3, dog ×2; val: dog ×1 only (a subset of train's classes)."""
    for name, count in (("cat", 3), ("dog", 2)):
        for i in range(count):
            _jpeg(tmp_path / "train" / name / f"{i}.jpg", 40 * i)
    _jpeg(tmp_path / "val" / "dog" / "0.jpg", 200)
    return tmp_path


@pytest.fixture
def kaggle_tree(tmp_path: Path) -> Path:
    """Kaggle's ImageNet layout: 2 train images per wnid, 4 flat val images labelled by the CSV."""
    images = tmp_path / "ILSVRC" / "Data" / "CLS-LOC"
    for wnid in WNIDS:
        for i in range(2):
            _jpeg(images / "train" / wnid / f"{wnid}_{i}.JPEG", 60 * i)
    val_labels = {"ILSVRC2012_val_00000001": WNIDS[2], "ILSVRC2012_val_00000002": WNIDS[0],
                  "ILSVRC2012_val_00000003": WNIDS[2], "ILSVRC2012_val_00000004": WNIDS[1]}
    rows = ["ImageId,PredictionString"]
    for image_id, wnid in val_labels.items():
        _jpeg(images / "val" / f"{image_id}.JPEG", 100)
        rows.append(f"{image_id},{wnid} 48 19 337 290 {wnid} 12 30 200 211 ")
    (tmp_path / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "LOC_synset_mapping.txt").write_text("".join(f"{w} {n}\n" for w, n in SYNSETS.items()))
    return tmp_path


def _load(kind: str, root: Path, image_size: int = 16):
    return load_datasets(DataSpec(kind=kind, root=str(root), image_size=image_size))


def test_imagefolder_numbers_val_labels_like_train(folder_tree: Path) -> None:
    data = _load("imagefolder", folder_tree)
    assert (len(data.train), len(data.val)) == (5, 1)
    assert data.class_names == ("cat", "dog") and data.num_classes == 2 and data.in_channels == 3
    image, label = data.val[0]
    assert label == 1  # dog is 1 in train, though it is val's only class
    assert image.shape == (3, 16, 16) and image.dtype == torch.uint8  # the crop; normalised per batch


def test_kaggle_imagenet_labels_val_from_csv_and_names_from_synsets(kaggle_tree: Path) -> None:
    data = _load("imagenet", kaggle_tree)
    assert (len(data.train), len(data.val), data.num_classes) == (6, 4, 3)
    assert data.class_names == ("tench", "goldfish", "great white shark")
    assert [label for _, label in data.val] == [2, 0, 2, 1]  # val_00000001 .. 04
    assert data.train[0][0].shape == (3, 16, 16)


def test_kaggle_imagenet_class_names_are_wnids_without_mapping(kaggle_tree: Path) -> None:
    (kaggle_tree / "LOC_synset_mapping.txt").unlink()
    assert _load("imagenet", kaggle_tree).class_names == WNIDS


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()


@pytest.mark.parametrize(("damage", "message"), [
    (lambda r: _remove(r), "no such directory"),
    (lambda r: _remove(r / "train"), "no such directory"),
    (lambda r: _remove(r / "val"), "no such directory"),
    (lambda r: _jpeg(r / "val" / "bird" / "0.jpg", 0), "val class bird is not among the train classes"),
])
def test_imagefolder_problems_are_one_line_spec_errors_naming_data_root(folder_tree, damage, message) -> None:
    damage(folder_tree)
    with pytest.raises(SpecError, match=message) as info:
        _load("imagefolder", folder_tree)
    assert str(info.value).startswith("data.root: ") and "\n" not in str(info.value)


VAL = Path("ILSVRC/Data/CLS-LOC/val")


@pytest.mark.parametrize(("damage", "message"), [
    (lambda r: _remove(r), "no such directory"),
    (lambda r: _remove(r / "ILSVRC/Data/CLS-LOC/train"), "no such directory"),
    (lambda r: _remove(r / VAL), "no such directory"),
    (lambda r: _remove(r / "LOC_val_solution.csv"), "LOC_val_solution.csv not found in"),
    (lambda r: _remove(r / VAL / "ILSVRC2012_val_00000003.JPEG"), "ILSVRC2012_val_00000003.JPEG, line 4"),
    (lambda r: _remove(r / "ILSVRC/Data/CLS-LOC/train" / WNIDS[1]),
     f"val class {WNIDS[1]} is not among the train classes"),
])
def test_kaggle_problems_are_one_line_spec_errors_naming_data_root(kaggle_tree, damage, message) -> None:
    damage(kaggle_tree)
    with pytest.raises(SpecError, match=message) as info:
        _load("imagenet", kaggle_tree)
    assert str(info.value).startswith("data.root: ") and "\n" not in str(info.value)


@pytest.fixture(scope="module")
def digits():
    return load_datasets(DataSpec(kind="digits", image_size=32, val_fraction=0.2))


def test_digits_split_is_stratified_fixed_and_normalised_on_train(digits) -> None:
    assert (len(digits.train), len(digits.val)) == (1437, 360)  # 1,797 images, 20 % held out
    assert digits.train.images.shape == (1437, 1, 32, 32) and digits.in_channels == 1
    train, val = Counter(digits.train.labels.tolist()), Counter(digits.val.labels.tolist())
    for label in range(10):  # each class ~20 % in val: sklearn has 174..183 per class
        assert abs(val[label] - 0.2 * (train[label] + val[label])) <= 1
    assert abs(float(digits.train.images.mean())) < 1e-4 and abs(float(digits.train.images.std()) - 1) < 1e-4
    again = load_datasets(DataSpec(kind="digits", image_size=32, val_fraction=0.2))
    assert torch.equal(again.val.labels, digits.val.labels)
    assert torch.equal(again.val.images, digits.val.images)


def _numbered(size: int) -> TensorImageDataset:
    """Image i is filled with the value i, so a batch shows which samples it holds."""
    images = torch.arange(size, dtype=torch.float32).view(size, 1, 1, 1).expand(size, 1, 2, 2).contiguous()
    return TensorImageDataset(images, torch.arange(size) % 3)


def _drain(loader) -> tuple[list[int], list[int]]:
    """All idx and y values of a loader, checking that every batch's samples are its idx."""
    seen, labels = [], []
    for x, y, idx in loader:
        assert idx.dtype == torch.int64 and torch.equal(x[:, 0, 0, 0].long(), idx)
        seen += idx.tolist()
        labels += y.tolist()
    return seen, labels


def test_train_shards_are_equal_cover_everything_and_wrap_to_pad() -> None:
    data = _numbered(10)
    shards = [_drain(make_loader(data, batch_size=3, train=True, rank=r, world_size=3))[0] for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]  # ceil(10 / 3) each, 2 padded by wrapping around
    union = Counter(i for s in shards for i in s)
    assert set(union) == set(range(10)) and sum(union.values()) == 12
    assert all(len(make_loader(data, batch_size=3, train=True, rank=r, world_size=3)) == 2 for r in range(3))


def test_train_shards_are_disjoint_when_the_size_divides() -> None:
    shards = [set(_drain(make_loader(_numbered(12), batch_size=5, train=True, rank=r, world_size=3))[0])
              for r in range(3)]
    assert set.union(*shards) == set(range(12)) and sum(len(s) for s in shards) == 12


def test_eval_shards_are_disjoint_in_order_without_padding() -> None:
    shards = [_drain(make_loader(_numbered(10), batch_size=4, train=False, rank=r, world_size=3))[0]
              for r in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]


def test_permutation_depends_on_seed_and_epoch_only() -> None:
    def order(seed: int, epoch: int) -> list[int]:
        return _drain(make_loader(_numbered(50), batch_size=8, train=True, seed=seed, epoch=epoch))[0]

    assert order(0, 3) == order(0, 3)
    assert sorted(order(0, 3)) == list(range(50))
    assert order(0, 3) != order(0, 4) and order(0, 3) != order(1, 3)
    assert order(1, 0) != order(0, 1)  # seed and epoch are not simply added


def test_indices_restrict_what_is_loaded_and_labels_follow_idx() -> None:
    data = _numbered(20)
    chosen = [17, 2, 5, 11, 8]
    seen, labels = _drain(make_loader(data, batch_size=2, train=True, indices=torch.tensor(chosen)))
    assert sorted(seen) == sorted(chosen)
    assert labels == data.labels[seen].tolist()
    assert len(make_loader(data, batch_size=2, train=True, indices=chosen)) == 3


class _Recording(Dataset):
    """A file-like dataset (not in memory) that records which items were read."""

    def __init__(self, size: int) -> None:
        self.size, self.read = size, []

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int):
        self.read.append(index)
        return torch.full((1, 2, 2), float(index)), index % 3


def test_file_loader_reads_only_the_chosen_indices() -> None:
    data = _Recording(30)
    loader = make_loader(data, batch_size=4, train=True, indices=[3, 9, 27, 14, 0], num_workers=0)
    seen, labels = _drain(loader)
    assert sorted(data.read) == sorted(seen) == [0, 3, 9, 14, 27]
    assert labels == [i % 3 for i in seen] and len(loader) == 2


def test_corrupt_jpeg_is_replaced_by_the_next_sample_with_a_warning_naming_it(folder_tree: Path, caplog) -> None:
    broken = folder_tree / "train" / "cat" / "1.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    data = _load("imagefolder", folder_tree)
    bad = [path for path, _ in data.train.samples].index(str(broken))
    with caplog.at_level(logging.WARNING, logger="ast_tune.data.loaders"):
        batches = list(make_loader(data.train, batch_size=5, train=False, num_workers=0))
    (x, y, idx), = batches
    assert idx.tolist() == [bad + 1 if i == bad else i for i in range(5)] and len(x) == len(y) == 5
    assert y.tolist() == [data.train.targets[i] for i in idx.tolist()]
    assert str(broken) in caplog.text
