"""The train loader's throughput on realistic JPEGs, original vs prepared: ``python benchmarks/loader_bench.py``.

Writes ``--images`` JPEGs as a 4-class ImageFolder tree (plus one val image per class): crops of the two
photos scikit-learn ships (640×427), scaled down to ImageNet-like sizes (long side 500 px for half of
them, anywhere in 200–640 px for the rest, 4:3 or 3:2) at JPEG qualities 75–95. It then makes, with the
project's own ``prepare`` (one worker, timed), a copy for each ``--image-sizes`` px at the default short
side (what validation resizes to: 183 px for 160, 256 for 224), and times full passes of the project's
own train loader (``make_loader`` over ``load_datasets``: decode, RandomResizedCrop, flip, normalise,
collate) for each image size × tree (original, prepared) × decoder × ``--workers`` N:

- ``pil`` and ``torchvision`` are the ``data.decoder`` values (``pil`` is the default);
- ``pil draft`` exists in this script only: PIL decodes a JPEG at 1/2, 1/4 or 1/8 scale where the crop
  RandomResizedCrop chose still spans at least the output size in px at that scale (so the crop is never
  upsampled more than it is from the full decode), then crops and resizes as ``pil`` does.

Images per CPU-second count the CPU time of this process and, with N > 0, of its N loader processes: the
per-core figure, which holds on a loaded machine. Images/s are per wall-clock second. With N > 0 the
processes are started by an untimed pass first (a steady state, as over an epoch of ImageNet). One torch
thread per process. The configurations are interleaved within each repeat; reported: median and min–max
over ``--repeats`` passes. ``prepare``'s images per CPU-second and per second are timed on the same JPEGs.
With a CUDA device, ``torchvision`` is also timed decoding on it (nvJPEG), which is not a per-core figure.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from machine import Snapshot, command_line
from PIL import Image
from sklearn.datasets import load_sample_images
from torch.utils.data import Dataset
from torchvision import transforms

from ast_tune.config.run_spec import DECODERS, DataSpec
from ast_tune.data.loaders import make_loader
from ast_tune.data.prepare import Settings, list_source, prepare
from ast_tune.data.sources import load_datasets, val_short_side
from ast_tune.prepare import DEFAULT_QUALITY

PHOTO = (500, 375)  # px, width × height: ImageNet's commonest size
LONG_SIDES = (200, 640)  # px, the range of the long sides drawn
QUALITIES = (75, 95)  # JPEG quality range drawn
CLASSES = 4
DEFAULT_DECODER = DataSpec().decoder
DRAFT = "pil draft"  # measured by this script only
NVJPEG = "torchvision, nvJPEG"
_DATA_DECODER = {DRAFT: "pil", NVJPEG: "torchvision"}  # the data.decoder each row's dataset is made with
TARGETS = {160: 3.0, 224: 2.0}  # wanted prepared ÷ original, images per CPU-second, default decoder


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
    if size[0] > widest:
        raise ValueError(f"{size} px would upscale a crop of a {photo.width}×{photo.height} photo")
    width = rng.uniform(max(size[0], 0.6 * widest), widest)
    height = width / aspect
    left, top = rng.uniform(0, photo.width - width), rng.uniform(0, photo.height - height)
    crop = photo.resize(size, Image.Resampling.LANCZOS, box=(left, top, left + width, top + height))
    path.parent.mkdir(parents=True, exist_ok=True)
    crop.save(path, format="JPEG", quality=quality)


def drawn_photo(seed: int) -> tuple[tuple[int, int], int]:
    """An ImageNet-like ``((width, height) px, JPEG quality)`` for image ``seed``; see the module docstring."""
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


def prepare_seconds(root: Path, dst: Path, *, short_side: int) -> tuple[float, float]:
    """(wall-clock, CPU) seconds of ``prepare`` with one worker: a copy of ``root`` at ``dst``."""
    settings = Settings(source=str(root.resolve()), kind="imagefolder", short_side=short_side,
                        quality=DEFAULT_QUALITY)
    wall, cpu = time.perf_counter(), time.process_time()
    prepare(dst, settings, list_source(settings), workers=1)
    return time.perf_counter() - wall, time.process_time() - cpu


class DraftCrop(transforms.RandomResizedCrop):
    """RandomResizedCrop of a lazily opened PIL image that a JPEG's draft mode decodes at a reduced scale
    where the chosen crop still spans at least ``size`` px (other formats: decoded in full)."""

    def forward(self, image: Image.Image) -> Image.Image:
        top, left, height, width = self.get_params(image, self.scale, self.ratio)
        full = image.size
        scale = 1
        while scale < 8 and min(height, width) >= 2 * scale * max(self.size):
            scale *= 2
        if scale > 1:
            image.draft("RGB", (full[0] // scale, full[1] // scale))
        image = image.convert("RGB")
        sx, sy = image.width / full[0], image.height / full[1]
        box = (left * sx, top * sy, (left + width) * sx, (top + height) * sy)
        return image.resize(self.size[::-1], Image.Resampling.BILINEAR, box=box)


def train_set(root: Path, decoder: str, image_size: int) -> Dataset:
    """The project's train dataset of ``root``; ``pil draft``: the ``pil`` one with :class:`DraftCrop`."""
    dataset = load_datasets(DataSpec(kind="imagefolder", root=str(root), image_size=image_size,
                                     decoder=_DATA_DECODER.get(decoder, decoder))).train
    if decoder == DRAFT:
        dataset.loader = Image.open  # lazy: DraftCrop decodes
        dataset.transform.transforms[0] = DraftCrop(image_size)
    return dataset


def cpu_seconds() -> float:
    """CPU seconds of this process and of its live child processes (the loader's)."""
    children = psutil.Process().children(recursive=True)
    return time.process_time() + sum(t.user + t.system for t in (child.cpu_times() for child in children))


def pass_seconds(dataset: Dataset, *, workers: int, batch: int,
                 device: torch.device | None = None) -> tuple[float, float]:
    """(wall-clock, CPU) seconds of one pass of the train loader over ``dataset`` with ``workers`` processes.

    The loader's processes persist across its passes: an untimed pass starts them, so the timed one
    measures the steady state, and its CPU seconds include theirs.
    """
    loader = make_loader(dataset, batch_size=batch, train=True, num_workers=workers, device=device)
    for _ in range(2 if workers else 1):
        wall, cpu = time.perf_counter(), cpu_seconds()
        for x, _, _ in loader:
            x.sum().item()  # the batch exists (and, on a GPU, its work is done)
        seconds = time.perf_counter() - wall, cpu_seconds() - cpu
    return seconds


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure(trees: dict[str, Path], *, images: int, repeats: int, image_sizes: list[int], workers: list[int],
            batch: int) -> list[dict]:
    """One row per image size × decoder × tree: images per CPU-second and per second, per worker count."""
    decoders = [*DECODERS, DRAFT] + ([NVJPEG] if torch.cuda.is_available() else [])
    setups = [(size, decoder, tree) for size in image_sizes for decoder in decoders
              for tree in ("original", f"prepared for {size}")]
    datasets = {s: train_set(trees[s[2]], s[1], s[0]) for s in setups}
    device = {decoder: torch.device("cuda") if decoder == NVJPEG else None for decoder in decoders}
    seconds: dict[tuple, list[tuple[float, float]]] = {(*s, n): [] for s in setups for n in workers}
    for key in seconds:
        pass_seconds(datasets[key[:3]], workers=key[3], batch=batch, device=device[key[1]])  # warm the page cache
    for _ in range(repeats):
        for key, values in seconds.items():  # interleaved: drift on a loaded machine hits every setup alike
            values.append(pass_seconds(datasets[key[:3]], workers=key[3], batch=batch, device=device[key[1]]))
    rows = []
    for size, decoder, tree in setups:
        rows.append({"image_size": size, "decoder": decoder, "tree": tree, "n": repeats, "workers": {
            n: {"images_per_cpu_second": spread([images / cpu for _, cpu in seconds[size, decoder, tree, n]]),
                "images_per_second": spread([images / wall for wall, _ in seconds[size, decoder, tree, n]])}
            for n in workers}})
    return rows


def speedups(rows: list[dict]) -> dict[tuple[int, str, str], float]:
    """Each row's images per CPU-second (first worker count, medians) ÷ the default decoder's on the originals."""
    def median(row: dict) -> float:
        return next(iter(row["workers"].values()))["images_per_cpu_second"]["median"]

    base = {r["image_size"]: median(r) for r in rows if r["decoder"] == DEFAULT_DECODER and r["tree"] == "original"}
    return {(r["image_size"], r["decoder"], r["tree"]): median(r) / base[r["image_size"]] for r in rows}


def _cell(figures: dict[str, float]) -> str:
    return f"{figures['median']:.0f} ({figures['min']:.0f}–{figures['max']:.0f})"


def markdown(rows: list[dict]) -> str:
    """The loader table: a row per image size × decoder × tree, two columns per worker count N."""
    workers = list(rows[0]["workers"])
    header = ["image size", "decoder", "tree"]
    for i, n in enumerate(workers):
        header.append(f"images per CPU-second, N={n}")
        if i == 0:
            header.append(f"÷ {DEFAULT_DECODER} on the originals")
        header.append(f"images/s, N={n}")
    ratio = speedups(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [f"{r['image_size']} px", r["decoder"], r["tree"]]
        for i, n in enumerate(workers):
            cells.append(_cell(r["workers"][n]["images_per_cpu_second"]))
            if i == 0:
                cells.append(f"{ratio[r['image_size'], r['decoder'], r['tree']]:.2f}×")
            cells.append(_cell(r["workers"][n]["images_per_second"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def prepare_markdown(timings: dict[int, list[tuple[float, float]]], images: int) -> str:
    """The table of ``prepare`` with one worker: a row per short side."""
    lines = ["| prepare, 1 worker | images per CPU-second (median, min–max) | images/s (median, min–max) | n |",
             "|---|---|---|---|"]
    lines += [f"| short side {side} px | {_cell(spread([images / cpu for _, cpu in values]))} "
              f"| {_cell(spread([images / wall for wall, _ in values]))} | {len(values)} |"
              for side, values in timings.items()]
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    """The line that compares prepared with original for the default decoder, against the targets."""
    ratio = speedups(rows)
    n = next(iter(rows[0]["workers"]))
    parts = []
    for size in dict.fromkeys(r["image_size"] for r in rows):
        value = ratio[size, DEFAULT_DECODER, f"prepared for {size}"]
        target = TARGETS.get(size)
        verdict = "" if target is None else f" (target ≥ {target:g}×: {'met' if value >= target else 'not met'})"
        parts.append(f"{value:.2f}× at {size} px{verdict}")
    return (f"Prepared ÷ original, {DEFAULT_DECODER} (the default decoder), images per CPU-second at N={n}, "
            f"medians: {'; '.join(parts)}.")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python benchmarks/loader_bench.py", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400, help="train JPEGs written (default 400)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per configuration (default 5)")
    parser.add_argument("--image-sizes", type=_ints, default=[160, 224], help="RandomResizedCrop sides, px "
                                                                               "(default 160,224)")
    parser.add_argument("--workers", type=_ints, default=[0, 2], help="loader process counts N (default 0,2)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = parser.parse_args(argv)
    if min(args.images, args.repeats, args.batch) < 1 or min(args.image_sizes) < 8 or min(args.workers) < 0:
        parser.error("--images, --repeats and --batch must be >= 1, --image-sizes >= 8, --workers >= 0")
    return args


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def make_trees(tmp: Path, *, per_class: int, image_sizes: list[int],
               repeats: int) -> tuple[dict[str, Path], dict[int, list[tuple[float, float]]]]:
    """The original tree and a prepared copy per image size (``prepare`` timed ``repeats`` times each):
    ``({tree name: root}, {short side px: [(wall, CPU) seconds]})``."""
    trees = {"original": write_tree(tmp / "original", classes=CLASSES, per_class=per_class)}
    timings: dict[int, list[tuple[float, float]]] = {}
    for size in image_sizes:
        side = val_short_side(size)
        for repeat in range(repeats):
            trees[f"prepared for {size}"] = copy = tmp / f"prepared_{side}_{repeat}"
            timings.setdefault(side, []).append(prepare_seconds(trees["original"], copy, short_side=side))
    return trees, timings


def describe(root: Path, *, images: int, image_sizes: list[int], batch: int) -> str:
    """The setup line: the original JPEGs' sizes, the prepared copies, the loader."""
    files = sorted((root / "train").rglob("*.jpg"))
    sizes = [Image.open(path).size for path in files]
    width, height = (statistics.fmean(side) for side in zip(*sizes, strict=True))
    pixels = statistics.fmean(w * h for w, h in sizes)
    kib = statistics.fmean(path.stat().st_size for path in files) / 1024
    copies = ", ".join(f"{val_short_side(size)} px for {size}" for size in image_sizes)
    return (f"{images} train JPEGs: crops of scikit-learn's 2 sample photos scaled down to long sides "
            f"{min(map(max, sizes))}–{max(map(max, sizes))} px (mean {width:.0f}×{height:.0f} px, "
            f"{pixels / 1e3:.0f} k px, {kib:.0f} KiB), JPEG qualities {QUALITIES[0]}–{QUALITIES[1]}. Prepared "
            f"copies (short side): {copies}; quality {DEFAULT_QUALITY}. Train loader: RandomResizedCrop to the "
            f"image size + flip + normalise, batch {batch}, 1 torch thread per process; N loader processes, "
            f"their CPU time included.")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    machine = Snapshot.take()
    torch.set_num_threads(1)
    per_class = -(-args.images // CLASSES)
    images = CLASSES * per_class
    with tempfile.TemporaryDirectory(prefix="loader_bench_") as tmp:
        trees, timings = make_trees(Path(tmp), per_class=per_class, image_sizes=args.image_sizes,
                                    repeats=args.repeats)
        setup = describe(trees["original"], images=images, image_sizes=args.image_sizes, batch=args.batch)
        rows = measure(trees, images=images, repeats=args.repeats, image_sizes=args.image_sizes,
                       workers=args.workers, batch=args.batch)
    prepared = images + CLASSES  # prepare copies val too
    command = command_line("benchmarks/loader_bench.py", argv)
    if args.json:
        prepare_rates = {side: {"images_per_cpu_second": spread([prepared / cpu for _, cpu in values]),
                                "images_per_second": spread([prepared / wall for wall, _ in values])}
                         for side, values in timings.items()}
        print(json.dumps({**machine.as_dict(command), "setup": setup, "results": rows, "prepare": prepare_rates,
                          "summary": summary(rows)}, indent=2))
    else:
        print(f"{machine.header(command)}\n\n{setup}\n\n{markdown(rows)}\n\n{summary(rows)}\n\n"
              f"{prepare_markdown(timings, prepared)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
