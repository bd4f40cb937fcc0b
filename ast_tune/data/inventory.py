"""What a data spec holds, counted from the directory tree without decoding an image.

For the results (the class list a proxy subset keeps) and for the cost estimate (images per epoch).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from torchvision.datasets.folder import find_classes

from ast_tune.config.run_spec import DataSpec
from ast_tune.config.spec import SpecError
from ast_tune.data.sources import VAL_SOLUTION, load_datasets
from ast_tune.data.subsets import chosen_labels


def _train_dir(spec: DataSpec) -> Path:
    path = Path(spec.root) / ("train" if spec.kind == "imagefolder" else "ILSVRC/Data/CLS-LOC/train")
    if not path.is_dir():
        raise SpecError("data.root", f"no such directory {path}")
    return path


def subset_classes(spec: DataSpec) -> list[str] | None:
    """The class names (folder names; digits: the digits) that ``spec.subset`` keeps; None without a subset."""
    if spec.subset is None:
        return None
    names = [str(d) for d in range(10)] if spec.kind == "digits" else find_classes(_train_dir(spec))[0]
    return [names[label] for label in chosen_labels(len(names), spec.subset)]


def image_counts(spec: DataSpec) -> tuple[int, int]:
    """(train, val) images of one epoch under ``spec`` (its subset included), counted from the file names."""
    if spec.kind == "digits":
        data = load_datasets(spec)
        return len(data.train), len(data.val)
    train_dir = _train_dir(spec)
    names = find_classes(train_dir)[0]
    keep = [names[label] for label in
            (range(len(names)) if spec.subset is None else chosen_labels(len(names), spec.subset))]
    per_class = spec.subset.per_class if spec.subset else None
    counts = [len(os.listdir(train_dir / name)) for name in keep]
    return sum(min(n, per_class or n) for n in counts), _val_count(spec, set(keep))


def _val_count(spec: DataSpec, keep: set[str]) -> int:
    root = Path(spec.root)
    if spec.kind == "imagefolder":
        return sum(len(os.listdir(root / "val" / name)) for name in keep if (root / "val" / name).is_dir())
    table = root / VAL_SOLUTION
    if not table.is_file():
        raise SpecError("data.root", f"{VAL_SOLUTION} not found in {root}")
    with table.open(newline="") as rows:
        first = ((row["PredictionString"] or "").split()[:1] for row in csv.DictReader(rows))
        return sum(1 for wnid in first if wnid and wnid[0] in keep)
