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
import json
import statistics
import tempfile
import time
from pathlib import Path

import psutil
import torch
from machine import Snapshot, command_line
from photos import QUALITIES, write_tree
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

from ast_tune.config.run_spec import DECODERS, DataSpec
from ast_tune.data.loaders import make_loader
from ast_tune.data.prepare import Settings, list_source, prepare
from ast_tune.data.sources import load_datasets, val_short_side
from ast_tune.prepare import DEFAULT_QUALITY

CLASSES = 4
DEFAULT_DECODER = DataSpec().decoder
DRAFT = "pil draft"  # measured by this script only
NVJPEG = "torchvision, nvJPEG"
_DATA_DECODER = {DRAFT: "pil", NVJPEG: "torchvision"}  # the data.decoder each row's dataset is made with
TARGETS = {160: 3.0, 224: 2.0}  # wanted prepared ÷ original, images per CPU-second, default decoder


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


STAGES = ("decode", "crop and resize", "flip, to tensor, normalise")


def stage_seconds(dataset: Dataset) -> list[float]:
    """CPU seconds of one pass over ``dataset``'s files in this process, per stage (:data:`STAGES`): its
    loader, its transform's first step (RandomResizedCrop), the rest of its transform."""
    crop, *rest = dataset.transform.transforms
    finish = transforms.Compose(rest)
    totals = [0.0] * len(STAGES)
    for path, _ in dataset.samples:
        start = time.process_time()
        image = dataset.loader(path)
        decoded = time.process_time()
        image = crop(image)
        cropped = time.process_time()
        finish(image)
        totals[0] += decoded - start
        totals[1] += cropped - decoded
        totals[2] += time.process_time() - cropped
    return totals


def stages(trees: dict[str, Path], *, repeats: int, image_sizes: list[int]) -> list[dict]:
    """Per image size × tree, the default decoder's CPU µs per image in each of :data:`STAGES` (median)."""
    setups = [(size, tree) for size in image_sizes for tree in ("original", f"prepared for {size}")]
    datasets = {s: train_set(trees[s[1]], DEFAULT_DECODER, s[0]) for s in setups}
    seconds: dict[tuple, list[list[float]]] = {s: [] for s in setups}
    for _ in range(repeats):
        for setup, values in seconds.items():
            values.append(stage_seconds(datasets[setup]))
    return [{"image_size": size, "tree": tree, "microseconds": {
        stage: statistics.median(1e6 * run[i] / len(datasets[size, tree]) for run in seconds[size, tree])
        for i, stage in enumerate(STAGES)}} for size, tree in setups]


def stages_markdown(stage_rows: list[dict], rows: list[dict]) -> str:
    """CPU µs per image by stage, and what the loader pass (N = the first count) adds to them."""
    n = next(iter(rows[0]["workers"]))
    per_second = {(r["image_size"], r["tree"]): r["workers"][n]["images_per_cpu_second"]["median"] for r in rows
                  if r["decoder"] == DEFAULT_DECODER}
    lines = [f"| image size | tree | {' | '.join(STAGES)} | the rest of the loader pass, N={n} | loader pass, N={n} |",
             "|" + "---|" * (len(STAGES) + 4)]
    for r in stage_rows:
        whole = 1e6 / per_second[r["image_size"], r["tree"]]
        parts = list(r["microseconds"].values())
        cells = [f"{r['image_size']} px", r["tree"], *(f"{part:.0f}" for part in parts),
                 f"{whole - sum(parts):.0f}", f"{whole:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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


def train_files(root: Path) -> tuple[list[tuple[int, int]], float]:
    """The (width, height) px of ``root``'s train JPEGs, and their mean size in KiB."""
    files = sorted((root / "train").rglob("*.jpg"))
    sizes = []
    for path in files:
        with Image.open(path) as image:
            sizes.append(image.size)
    return sizes, statistics.fmean(path.stat().st_size for path in files) / 1024


def describe(trees: dict[str, Path], *, images: int, image_sizes: list[int], batch: int) -> str:
    """The setup line: the original JPEGs' sizes, the prepared copies', the loader."""
    sizes, kib = train_files(trees["original"])
    width, height = (statistics.fmean(side) for side in zip(*sizes, strict=True))
    copies = []
    for size in image_sizes:
        copy, copy_kib = train_files(trees[f"prepared for {size}"])
        copies.append(f"{val_short_side(size)} px for {size} (mean {_kilopixels(copy)} k px, {copy_kib:.0f} KiB)")
    return (f"{images} train JPEGs: crops of scikit-learn's 2 sample photos scaled down to long sides "
            f"{min(map(max, sizes))}–{max(map(max, sizes))} px (mean {width:.0f}×{height:.0f} px, "
            f"{_kilopixels(sizes)} k px, {kib:.0f} KiB), JPEG qualities {QUALITIES[0]}–{QUALITIES[1]}. Prepared "
            f"copies, short side: {', '.join(copies)}; quality {DEFAULT_QUALITY}. Train loader: RandomResizedCrop "
            f"to the image size + flip + normalise, batch {batch}, 1 torch thread per process; N loader processes, "
            f"their CPU time included.")


def _kilopixels(sizes: list[tuple[int, int]]) -> str:
    return f"{statistics.fmean(w * h for w, h in sizes) / 1e3:.0f}"


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    machine = Snapshot.take()
    torch.set_num_threads(1)
    per_class = -(-args.images // CLASSES)
    images = CLASSES * per_class
    with tempfile.TemporaryDirectory(prefix="loader_bench_") as tmp:
        trees, timings = make_trees(Path(tmp), per_class=per_class, image_sizes=args.image_sizes,
                                    repeats=args.repeats)
        setup = describe(trees, images=images, image_sizes=args.image_sizes, batch=args.batch)
        rows = measure(trees, images=images, repeats=args.repeats, image_sizes=args.image_sizes,
                       workers=args.workers, batch=args.batch)
        stage_rows = stages(trees, repeats=args.repeats, image_sizes=args.image_sizes)
    prepared = images + CLASSES  # prepare copies val too
    command = command_line("benchmarks/loader_bench.py", argv)
    if args.json:
        prepare_rates = {side: {"images_per_cpu_second": spread([prepared / cpu for _, cpu in values]),
                                "images_per_second": spread([prepared / wall for wall, _ in values])}
                         for side, values in timings.items()}
        print(json.dumps({**machine.as_dict(command), "setup": setup, "results": rows, "prepare": prepare_rates,
                          "stages_us_per_image": stage_rows, "summary": summary(rows)}, indent=2))
    else:
        print("\n\n".join([machine.header(command), setup, markdown(rows), summary(rows),
                           stages_markdown(stage_rows, rows), prepare_markdown(timings, prepared)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
