"""Fixtures shared by the test modules: a local Ray cluster and tiny image-dataset trees.

``ray_cluster`` starts a 2-CPU Ray the way the sweep does (:func:`ast_tune.tuning.runtime.session.ray_session`:
a short temp dir of its own, loopback only, token auth, and a dashboard on 127.0.0.1 whose state API
Ray Train's placement-group cleaner asks, even while other Rays run on the machine), and always
shuts it down. ``kaggle_tree_factory(root, ...)``
writes ImageNet's Kaggle layout with a few solid-colour JPEGs per class, so that a model can tell
the classes apart within an epoch or two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

TINY_WNIDS = ("n01440764", "n01443537", "n01484850")
_COLOURS = ((220, 40, 40), (40, 200, 60), (50, 60, 220), (200, 200, 40), (160, 60, 200))


@pytest.fixture
def ray_cluster() -> Iterator[None]:
    from ast_tune.tuning.runtime.session import ray_session

    with ray_session(verbose=False, num_cpus=2):
        yield


def write_kaggle_tree(root: Path, *, wnids: tuple[str, ...] = TINY_WNIDS, train_per_class: int = 4,
                      val_per_class: int = 2, size: int = 8) -> Path:
    """ImageNet's Kaggle layout under ``root``: ``ILSVRC/Data/CLS-LOC/{train/<wnid>,val}`` JPEGs of
    ``size`` px (class ``i`` a solid colour, lighter per image), ``LOC_val_solution.csv`` and
    ``LOC_synset_mapping.txt``. Returns ``root``.
    """
    images = root / "ILSVRC" / "Data" / "CLS-LOC"
    rows = ["ImageId,PredictionString"]
    for label, wnid in enumerate(wnids):
        colour = _COLOURS[label % len(_COLOURS)]
        for i in range(train_per_class):
            _jpeg(images / "train" / wnid / f"{wnid}_{i}.JPEG", colour, shift=5 * i, size=size)
        for i in range(val_per_class):
            image_id = f"ILSVRC2012_val_{label * val_per_class + i + 1:08d}"
            _jpeg(images / "val" / f"{image_id}.JPEG", colour, shift=3 * i, size=size)
            rows.append(f"{image_id},{wnid} 0 0 {size - 1} {size - 1} ")
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} class {i}\n" for i, w in enumerate(wnids)))
    return root


def _jpeg(path: Path, colour: tuple[int, int, int], *, shift: int, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), tuple(min(255, c + shift) for c in colour)).save(path, format="JPEG")


@pytest.fixture
def kaggle_tree_factory() -> Callable[..., Path]:
    """:func:`write_kaggle_tree`, for tests that want a Kaggle-layout tree of their own size."""
    return write_kaggle_tree
