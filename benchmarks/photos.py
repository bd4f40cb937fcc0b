"""Realistic JPEGs for the loader benchmarks: crops of the two photos scikit-learn ships (640×427 px).

:func:`write_photo` writes a seeded crop scaled down (never up) to a given size and JPEG quality;
:func:`drawn_photo` draws an ImageNet-like size and quality; :func:`write_tree` writes an ImageFolder
tree of drawn photos.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images

PHOTO = (500, 375)  # px, width × height: ImageNet's commonest size
LONG_SIDES = (200, 640)  # px, the range of the long sides drawn
QUALITIES = (75, 95)  # JPEG quality range drawn


@functools.cache
def sample_photos() -> tuple[Image.Image, ...]:
    """scikit-learn's two sample photos (china.jpg, flower.jpg), 640×427 px."""
    return tuple(Image.fromarray(pixels) for pixels in load_sample_images().images)


def write_photo(path: Path, seed: int, size: tuple[int, int] = PHOTO, quality: int = 90) -> None:
    """A JPEG of ``size`` px (w, h): a seeded crop of a sample photo, scaled down (never up) to ``size``."""
    rng = np.random.default_rng(seed)
    photo = sample_photos()[seed % 2]
    aspect = size[0] / size[1]
    widest = min(photo.width, photo.height * aspect)  # the largest crop of this aspect, px wide
    if size[0] > widest + 0.5:  # half a pixel: the rounding of an aspect ratio
        raise ValueError(f"{size} px would upscale a crop of a {photo.width}×{photo.height} photo")
    width = rng.uniform(min(max(size[0], 0.6 * widest), widest), widest)
    height = width / aspect
    left, top = rng.uniform(0, photo.width - width), rng.uniform(0, photo.height - height)
    crop = photo.resize(size, Image.Resampling.LANCZOS, box=(left, top, left + width, top + height))
    path.parent.mkdir(parents=True, exist_ok=True)
    crop.save(path, format="JPEG", quality=quality)


def drawn_photo(seed: int) -> tuple[tuple[int, int], int]:
    """An ImageNet-like ``((width, height) px, JPEG quality)`` for image ``seed``: landscape, 4:3 or 3:2; the
    long side 500 px (ImageNet's commonest) for half of them, drawn from :data:`LONG_SIDES` for the rest,
    and no larger than a crop of the photo (which is never upscaled); the quality drawn from :data:`QUALITIES`."""
    rng = np.random.default_rng([seed, 1])
    aspect = (4 / 3, 3 / 2)[rng.integers(2)]
    long_side = PHOTO[0] if rng.random() < 0.5 else int(rng.integers(LONG_SIDES[0], LONG_SIDES[1] + 1))
    height = sample_photos()[seed % 2].height
    long_side = min(long_side, int(height * aspect))  # a crop of the photo, never upscaled
    return (long_side, round(long_side / aspect)), int(rng.integers(QUALITIES[0], QUALITIES[1] + 1))


def write_tree(root: Path, *, classes: int, per_class: int) -> Path:
    """An ImageFolder tree of drawn photos: ``per_class`` per class in train, one per class in val."""
    paths = [root / "train" / f"c{label}" / f"{i}.jpg" for label in range(classes) for i in range(per_class)]
    paths += [root / "val" / f"c{label}" / "0.jpg" for label in range(classes)]
    for seed, path in enumerate(paths):
        write_photo(path, seed, *drawn_photo(seed))
    return root
