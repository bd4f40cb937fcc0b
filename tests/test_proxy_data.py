"""Proxy subsets (``data.subset``) on ImageFolder and Kaggle-layout trees the tests write, and on digits."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from PIL import Image

from ast_tune.config.run_spec import DataSpec, SubsetSpec
from ast_tune.config.spec import SpecError
from ast_tune.config.sweep_spec import load_sweep
from ast_tune.data.inventory import image_counts, subset_classes
from ast_tune.data.sources import load_datasets
from ast_tune.data.subsets import chosen_labels, kept_indices
from tests.conftest import write_kaggle_tree

ROOT = Path(__file__).resolve().parents[1]
CLASSES = tuple(f"c{i}" for i in range(6))
WNIDS = tuple(f"n0000000{i}" for i in range(6))


@pytest.fixture
def folder_tree(tmp_path: Path) -> Path:
    """6 classes; class i has i + 2 train images and 2 val images."""
    for label, name in enumerate(CLASSES):
        for split, count in (("train", label + 2), ("val", 2)):
            for i in range(count):
                path = tmp_path / split / name / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (8, 8), (40 * label, 10 * i, 0)).save(path)
    return tmp_path


def _names(dataset, class_names) -> set[str]:
    return {class_names[label] for _, label in dataset.samples}


def test_chosen_labels_are_a_seeded_choice_that_repeats_and_changes_with_the_seed():
    first = chosen_labels(100, SubsetSpec(classes=10, seed=0))
    assert first == chosen_labels(100, SubsetSpec(classes=10, seed=0))
    assert first == sorted(set(first)) and len(first) == 10 and all(0 <= label < 100 for label in first)
    assert first != chosen_labels(100, SubsetSpec(classes=10, seed=1))
    with pytest.raises(SpecError, match=r"data.subset.classes: must be <= 6, the classes the data has; got 7"):
        chosen_labels(6, SubsetSpec(classes=7))


def test_kept_indices_take_per_class_of_each_kept_label_and_all_without_a_cap():
    labels = [0, 1, 0, 2, 0, 1, 2, 2]
    assert kept_indices(labels, [0, 2], per_class=None, seed=0) == [0, 2, 3, 4, 6, 7]
    two = kept_indices(labels, [0, 2], per_class=2, seed=0)
    assert len(two) == 4 and sorted(labels[i] for i in two) == [0, 0, 2, 2]
    assert two == kept_indices(labels, [0, 2], per_class=2, seed=0)


def test_imagefolder_subset_is_deterministic_and_val_has_the_train_classes(folder_tree: Path):
    spec = DataSpec(kind="imagefolder", root=str(folder_tree), image_size=8,
                    subset=SubsetSpec(classes=3, per_class=2, seed=0))
    data, again = load_datasets(spec), load_datasets(spec)
    assert data.num_classes == 3 and len(data.class_names) == 3
    assert data.class_names == again.class_names and data.train.samples == again.train.samples
    assert list(data.class_names) == subset_classes(spec)
    assert _names(data.train, data.class_names) == _names(data.val, data.class_names) == set(data.class_names)
    assert len(data.train) == 3 * 2 and len(data.val) == 3 * 2  # per_class train images, every val image
    for path, label in [*data.train.samples, *data.val.samples]:  # the label is the folder's class
        assert Path(path).parent.name == data.class_names[label]
    assert image_counts(spec) == (6, 6)
    every = load_datasets(dataclasses.replace(spec, subset=SubsetSpec(classes=3, seed=0)))
    assert every.class_names == data.class_names
    assert len(every.train) == sum(CLASSES.index(name) + 2 for name in data.class_names)


def test_kaggle_subset_keeps_the_val_images_of_the_chosen_wnids_only(tmp_path: Path):
    root = write_kaggle_tree(tmp_path, wnids=WNIDS, train_per_class=3, val_per_class=2)
    spec = DataSpec(kind="imagenet", root=str(root), image_size=8, subset=SubsetSpec(classes=2, seed=3))
    data = load_datasets(spec)
    wnids = subset_classes(spec)
    assert len(wnids) == 2 and set(wnids) <= set(WNIDS)
    train_wnids = {Path(path).parent.name for path, _ in data.train.samples}
    assert train_wnids == set(wnids) and len(data.train) == 6 and len(data.val) == 4
    val_ids = {f"ILSVRC2012_val_{WNIDS.index(w) * 2 + i + 1:08d}.JPEG" for w in wnids for i in range(2)}
    assert {Path(path).name for path, _ in data.val.samples} == val_ids
    by_wnid = {Path(path).parent.name: label for path, label in data.train.samples}
    for path, label in data.val.samples:  # val image k of class w is labelled like train's w
        index = int(Path(path).stem.split("_")[-1]) - 1
        assert label == by_wnid[WNIDS[index // 2]]
    assert image_counts(spec) == (6, 4)


def test_digits_subset_relabels_the_kept_digits():
    spec = DataSpec(subset=SubsetSpec(classes=3, per_class=5, seed=0))
    data = load_datasets(spec)
    assert data.num_classes == 3 and len(data.train) == 15 and set(data.train.labels.tolist()) == {0, 1, 2}
    assert torch.bincount(data.train.labels).tolist() == [5, 5, 5]
    full = load_datasets(DataSpec())
    assert len(data.val) == sum(int((full.val.labels == int(d)).sum()) for d in data.class_names)


def test_the_baseline_fingerprint_changes_with_the_subset():
    from ast_tune.tuning.runtime.baseline import baseline_fingerprint

    def fingerprint(*overrides: str) -> dict:
        return baseline_fingerprint(load_sweep(ROOT / "search_spaces" / "quickstart.yaml", overrides), "cpu")

    plain = fingerprint()
    subset = fingerprint("workload.data.subset={classes: 5}")
    assert plain != subset and subset == fingerprint("workload.data.subset={classes: 5}")
    assert subset != fingerprint("workload.data.subset={classes: 5, seed: 1}")
    assert subset != fingerprint("workload.data.subset={classes: 5, per_class: 10}")
