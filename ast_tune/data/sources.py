"""Datasets: digits (the embedded default), ImageFolder trees and ImageNet's Kaggle layout.

:func:`load_datasets` turns a :class:`~ast_tune.config.run_spec.DataSpec` into train and val datasets whose items
are ``(image, label)``: a tensor ``[C, H, W]`` and an int. Image files give a uint8 crop (0–255), which the
training process converts per batch (:mod:`ast_tune.data.normalise`); the digits are float32, normalised
once when loaded. Batching lives in :mod:`ast_tune.data.loaders`.

Bad data on disk raises a one-line :class:`~ast_tune.config.spec.SpecError` naming ``data.root``. An image
that cannot be read while loading is replaced by the next readable one (:mod:`ast_tune.data.loaders`)
with a logged warning that names the file.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes
from torchvision.transforms import v2

from ast_tune.config.run_spec import DataSpec, SubsetSpec
from ast_tune.config.spec import SpecError
from ast_tune.data.decode import chosen_decoder, read_pil, reader
from ast_tune.data.subsets import chosen_labels, kept_indices

log = logging.getLogger(__name__)

_ROOT = "data.root"  # the spec key that every data-on-disk error names
VAL_SOLUTION = "LOC_val_solution.csv"  # Kaggle layout: the val labels, beside ILSVRC/
SYNSET_MAPPING = "LOC_synset_mapping.txt"  # Kaggle layout: the class names (optional)


@dataclasses.dataclass(frozen=True)
class Datasets:
    """The two splits of one data source.

    Attributes:
        train: item ``i`` is ``(image tensor [C, H, W], int label)``: uint8 for image files, float32 for digits.
        val: same item format, same label numbering as ``train``.
        num_classes: number of labels, ``0 .. num_classes - 1``.
        in_channels: 1 for digits, 3 for photos.
        class_names: one per label; ImageNet wnids, or short human names when the Kaggle
            ``LOC_synset_mapping.txt`` exists.
    """

    train: Dataset
    val: Dataset
    num_classes: int
    in_channels: int
    class_names: tuple[str, ...]


class TensorImageDataset(Dataset):
    """Images held in memory: ``images`` float32 ``[N, C, H, W]`` and ``labels`` int64 ``[N]``."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels.to(torch.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])


class ImageList(Dataset):
    """Labelled image files: ``samples`` is a list of ``(path, label)``, read by ``loader`` (uint8 RGB tensors)."""

    def __init__(self, samples: list[tuple[str, int]], transform: Callable[[Tensor], Tensor],
                 loader: Callable[[str], Tensor] = read_pil) -> None:
        self.samples = samples
        self.targets = [label for _, label in samples]
        self.transform = transform
        self.loader = loader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[index]
        return self.transform(self.loader(path)), label


def load_datasets(spec: DataSpec) -> Datasets:
    """The train and val splits that ``spec`` describes (``spec.kind``: digits, imagefolder, imagenet).

    Raises:
        SpecError: a missing folder or file, or val labels that train does not have.
    """
    sources = {"digits": _digits, "imagefolder": _imagefolder, "imagenet": _imagenet_kaggle}
    data = sources[spec.kind](spec)
    return data if spec.subset is None else take_subset(data, spec.subset)


def photo_transform(image_size: int, *, train: bool) -> Callable[[Tensor], Tensor]:
    """torchvision's ImageNet crops of a uint8 image ``[3, H, W]``, as uint8 ``[3, image_size, image_size]``.

    Train: RandomResizedCrop (bilinear, antialiased) and a horizontal flip; val: a resize to
    :func:`val_short_side` and the centre crop. The float conversion and ImageNet's normalisation follow
    per batch, on the training device (:func:`ast_tune.data.normalise.normalised`).
    """
    if train:
        return v2.Compose([v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip()])
    return v2.Compose([v2.Resize(val_short_side(image_size), antialias=True), v2.CenterCrop(image_size)])


def val_short_side(image_size: int) -> int:
    """px: the short side validation resizes an image to before its centre crop of ``image_size`` px."""
    return round(image_size / 0.875)


# --- proxy subsets -----------------------------------------------------------------------------


def take_subset(data: Datasets, subset: SubsetSpec) -> Datasets:
    """The classes ``subset`` keeps, renumbered ``0 .. classes - 1``; ``per_class`` train images of each."""
    keep = chosen_labels(data.num_classes, subset)
    new_label = {old: new for new, old in enumerate(keep)}
    return Datasets(train=_restricted(data.train, new_label, per_class=subset.per_class, seed=subset.seed),
                    val=_restricted(data.val, new_label, per_class=None, seed=subset.seed),
                    num_classes=len(keep), in_channels=data.in_channels,
                    class_names=tuple(data.class_names[label] for label in keep))


def _restricted(dataset: Dataset, new_label: dict[int, int], *, per_class: int | None, seed: int) -> Dataset:
    """``dataset``'s items of the labels in ``new_label``, relabelled; at most ``per_class`` of each (seeded)."""
    labels = dataset.labels.tolist() if isinstance(dataset, TensorImageDataset) else list(dataset.targets)
    kept = kept_indices(labels, new_label, per_class=per_class, seed=seed)
    if isinstance(dataset, TensorImageDataset):
        index = torch.as_tensor(kept, dtype=torch.int64)
        relabel = torch.as_tensor([new_label[labels[i]] for i in kept], dtype=torch.int64)
        return TensorImageDataset(dataset.images[index].contiguous(), relabel)
    samples = dataset.samples
    return ImageList([(samples[i][0], new_label[labels[i]]) for i in kept], dataset.transform, dataset.loader)


# --- sources ---------------------------------------------------------------------------------


def _digits(spec: DataSpec) -> Datasets:
    """sklearn's 1,797 8×8 digits: a fixed stratified split, upscaled once, normalised on train."""
    from sklearn.datasets import load_digits  # imported here: only the digits source needs sklearn
    from sklearn.model_selection import train_test_split

    pixels, labels = load_digits(return_X_y=True)
    try:
        train_idx, val_idx = train_test_split(range(len(labels)), test_size=spec.val_fraction,
                                              stratify=labels, random_state=0)
    except ValueError as err:
        raise SpecError("data.val_fraction", str(err)) from None
    images = torch.as_tensor(pixels, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0  # values 0..16
    images = torch.nn.functional.interpolate(images, size=(spec.image_size, spec.image_size),
                                             mode="bilinear", align_corners=False)
    labels = torch.as_tensor(labels, dtype=torch.int64)
    train_idx, val_idx = torch.as_tensor(sorted(train_idx)), torch.as_tensor(sorted(val_idx))
    mean, std = images[train_idx].mean(), images[train_idx].std()
    images = (images - mean) / std
    return Datasets(train=TensorImageDataset(images[train_idx].contiguous(), labels[train_idx]),
                    val=TensorImageDataset(images[val_idx].contiguous(), labels[val_idx]),
                    num_classes=10, in_channels=1, class_names=tuple(str(d) for d in range(10)))


def _imagefolder(spec: DataSpec) -> Datasets:
    """``root/train/<class>/*`` and ``root/val/<class>/*``; val's classes must be among train's."""
    root = _directory(Path(spec.root))
    train = _image_folder(root / "train", spec, train=True)
    val = _image_folder(root / "val", spec, train=False, class_to_idx=train.class_to_idx)
    return Datasets(train=train, val=val, num_classes=len(train.classes), in_channels=3,
                    class_names=tuple(train.classes))


def _imagenet_kaggle(spec: DataSpec) -> Datasets:
    """Kaggle's ImageNet: class folders for train, a flat val folder labelled by a CSV."""
    root = _directory(Path(spec.root))
    images = root / "ILSVRC" / "Data" / "CLS-LOC"
    train = _image_folder(images / "train", spec, train=True)
    samples = _kaggle_val_samples(root, images / "val", train.class_to_idx)
    val = ImageList(samples, photo_transform(spec.image_size, train=False),
                    loader=reader(chosen_decoder(spec.decoder, spec.root)))
    return Datasets(train=train, val=val, num_classes=len(train.classes), in_channels=3,
                    class_names=_class_names(root / SYNSET_MAPPING, train.classes))


_TRAIN_DIRS = {"imagenet": ("ILSVRC", "Data", "CLS-LOC", "train"), "imagefolder": ("train",)}


def tree_kind(root: Path) -> str | None:
    """``imagenet`` (Kaggle layout) or ``imagefolder``: the kind whose train folder ``root`` holds; None if neither."""
    return next((kind for kind, parts in _TRAIN_DIRS.items() if root.joinpath(*parts).is_dir()), None)


def check_root(spec: DataSpec) -> None:
    """A cheap check before any output is written (digits needs none): the train folder has two or more
    class folders and each holds an image (a listing that stops at each class's first image)."""
    if spec.kind == "digits":
        return
    train = _directory(Path(spec.root)).joinpath(*_TRAIN_DIRS[spec.kind])
    try:
        classes = find_classes(_directory(train))[0]
    except FileNotFoundError:
        classes = []
    if len(classes) < 2:
        raise SpecError(_ROOT, f"{train} must hold two or more class folders; found {len(classes)}")
    for name in classes:
        if not any(_is_image(entry) for entry in os.scandir(train / name)):
            raise SpecError(_ROOT, f"class folder {train / name} holds no image")


def _is_image(entry: os.DirEntry) -> bool:
    return entry.name.lower().endswith(IMG_EXTENSIONS) and entry.is_file()


def _directory(path: Path) -> Path:
    if not path.is_dir():
        raise SpecError(_ROOT, f"no such directory {path}")
    return path


class _ClassFolder(ImageFolder):
    """An ImageFolder numbered by a given ``class_to_idx`` (train's), so val labels match train's."""

    def __init__(self, root: Path, *, class_to_idx: dict[str, int], **kwargs: Any) -> None:
        self._given = class_to_idx
        super().__init__(root, allow_empty=True, **kwargs)

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        return sorted(self._given, key=self._given.__getitem__), dict(self._given)


def _image_folder(path: Path, spec: DataSpec, *, train: bool,
                  class_to_idx: dict[str, int] | None = None) -> ImageFolder:
    _directory(path)
    transform, loader = photo_transform(spec.image_size, train=train), reader(chosen_decoder(spec.decoder, spec.root))
    try:
        if class_to_idx is None:
            return ImageFolder(path, transform=transform, loader=loader)
        for name in find_classes(path)[0]:
            if name not in class_to_idx:
                raise SpecError(_ROOT, f"val class {name} is not among the train classes")
        folder = _ClassFolder(path, class_to_idx=class_to_idx, transform=transform, loader=loader)
    except FileNotFoundError as err:  # torchvision: no class folders, or a class without images
        raise SpecError(_ROOT, str(err).splitlines()[0]) from None
    if not folder.samples:
        raise SpecError(_ROOT, f"no images in {path}")
    if len(folder.classes) < 2:  # one class: loss 0 and top-1 100 % whatever the model does
        raise SpecError(_ROOT, f"{path} must hold two or more class folders; found {len(folder.classes)}")
    return folder


def _kaggle_val_samples(root: Path, val_dir: Path, class_to_idx: dict[str, int]) -> list[tuple[str, int]]:
    """``(path, label)`` of every row of ``LOC_val_solution.csv``; the first wnid of a row is its class."""
    table = root / VAL_SOLUTION
    if not table.is_file():
        raise SpecError(_ROOT, f"{VAL_SOLUTION} not found in {root}")
    present = set(os.listdir(_directory(val_dir)))
    samples = []
    with table.open(newline="") as rows:
        reader = csv.DictReader(rows)
        if not {"ImageId", "PredictionString"} <= set(reader.fieldnames or ()):
            raise SpecError(_ROOT, f"{table.name}: expected the header ImageId,PredictionString")
        for row in reader:
            name, tokens = f"{row['ImageId']}.JPEG", (row["PredictionString"] or "").split()
            if name not in present:
                raise SpecError(_ROOT, f"{name}, line {reader.line_num} of {table.name}, not in {val_dir}")
            if not tokens or tokens[0] not in class_to_idx:
                wnid = tokens[0] if tokens else "(empty)"
                raise SpecError(_ROOT, f"val class {wnid} is not among the train classes")
            samples.append((str(val_dir / name), class_to_idx[tokens[0]]))
    return sorted(samples)


def _class_names(mapping: Path, wnids: Sequence[str]) -> tuple[str, ...]:
    """The first name of each wnid in ``LOC_synset_mapping.txt``, with the wnid added where names repeat."""
    if not mapping.is_file():
        return tuple(wnids)
    names = {}
    for line in mapping.read_text().splitlines():
        wnid, _, text = line.strip().partition(" ")
        names[wnid] = text.split(",")[0].strip() or wnid
    short = [names.get(wnid, wnid) for wnid in wnids]
    repeats = Counter(short)
    return tuple(s if repeats[s] == 1 else f"{s} ({w})" for s, w in zip(short, wnids, strict=True))
