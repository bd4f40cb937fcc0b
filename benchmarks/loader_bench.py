"""The train loader's throughput on realistic JPEGs, original vs prepared: ``python benchmarks/loader_bench.py``.

Writes ``--images`` JPEGs as a 4-class ImageFolder tree (plus one val image per class): crops of the two
photos scikit-learn ships (640×427), scaled down to ImageNet-like sizes (long side 500 px for half of
them, anywhere in 200–640 px for the rest, 4:3 or 3:2) at JPEG qualities 75–95. It then makes, with the
project's own ``prepare`` (one worker, timed), a copy for each ``--image-sizes`` px at the default short
side (what validation resizes to: 183 px for 160, 256 for 224), and times full passes of the project's
own train loader (``make_loader`` over ``load_datasets``: decode, RandomResizedCrop and flip on uint8,
collate; the loader ends at a uint8 batch) for each image size × tree (original, prepared) × decoder ×
``--workers`` N:

- ``pil`` and ``torchvision`` are the decoders ``data.decoder`` names; the default, ``auto``, is
  ``torchvision`` on a prepared copy and ``pil`` on the originals (marked "auto" in the table);
- ``pil draft`` exists in this script only: PIL decodes a JPEG at 1/2, 1/4 or 1/8 scale where the crop
  RandomResizedCrop chose still spans at least the output size in px at that scale (so the crop is never
  upsampled more than it is from the full decode), then crops and resizes with PIL.

Images per CPU-second count the CPU time of this process and, with N > 0, of its N loader processes: the
per-core figure, which holds on a loaded machine. Images/s are per wall-clock second. With N > 0 the
processes are started by an untimed pass first (a steady state, as over an epoch of ImageNet). One torch
thread per process. The conversion of each batch to float32 and its normalisation, which the training
process does on the training device (``RunState.to_device``), is timed apart within the same pass, here on
the CPU, and left out of the pass's figures. Also timed: the default decoder's stages one image at a time
in this process (decode, crop and resize, flip), and ``prepare``'s images per CPU-second and per second.
Every configuration runs once untimed, then ``--repeats`` times, interleaved within each repeat; reported:
median and min–max over the repeats, ratios taken within each repeat. Tables: :mod:`loader_tables`.
With a CUDA device, ``torchvision`` is also timed decoding on it (nvJPEG), which is not a per-core figure.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import torch
from loader_tables import AUTO, CONVERSION, STAGES, loader_table, prepare_table, spread, stage_table, summary
from machine import Snapshot, command_line
from photos import QUALITIES, write_tree
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.transforms.v2.functional import pil_to_tensor

from ast_tune.config.run_spec import DECODERS, DataSpec
from ast_tune.data.decode import WORKERS_TORCHVISION, chosen_decoder
from ast_tune.data.loaders import make_loader
from ast_tune.data.normalise import normalised
from ast_tune.data.prepare import Settings, list_source, prepare
from ast_tune.data.sources import load_datasets, val_short_side
from ast_tune.prepare import DEFAULT_QUALITY

CLASSES = 4
DRAFT = "pil draft"  # measured by this script only
NVJPEG = "torchvision, nvJPEG"
_DATA_DECODER = {DRAFT: "pil", NVJPEG: "torchvision"}  # the data.decoder each row's dataset is made with


def prepare_seconds(root: Path, dst: Path, *, short_side: int) -> tuple[float, float]:
    """(wall-clock, CPU) seconds of ``prepare`` with one worker: a copy of ``root`` at ``dst``."""
    settings = Settings(source=str(root.resolve()), kind="imagefolder", short_side=short_side,
                        quality=DEFAULT_QUALITY)
    wall, cpu = time.perf_counter(), time.process_time()
    prepare(dst, settings, list_source(settings), workers=1)
    return time.perf_counter() - wall, time.process_time() - cpu


class DraftCrop(transforms.RandomResizedCrop):
    """RandomResizedCrop of a lazily opened PIL image that a JPEG's draft mode decodes at a reduced scale
    where the chosen crop still spans at least ``size`` px (other formats: decoded in full); uint8 ``[3, H, W]``."""

    def forward(self, image: Image.Image) -> torch.Tensor:
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
        return pil_to_tensor(image.resize(self.size[::-1], Image.Resampling.BILINEAR, box=box))


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
                 device: torch.device | None = None) -> tuple[float, float, float]:
    """(wall-clock, CPU, conversion CPU) seconds of one pass of the train loader over ``dataset`` with
    ``workers`` processes.

    The loader's processes persist across its passes: an untimed pass starts them, so the timed one
    measures the steady state, and its CPU seconds include theirs. The conversion (each batch to float32,
    normalised: the training process's work, on its device) is timed apart and left out of the other two.
    """
    loader = make_loader(dataset, batch_size=batch, train=True, num_workers=workers, device=device)
    for _ in range(2 if workers else 1):
        wall, cpu, conversion = time.perf_counter(), cpu_seconds(), 0.0
        for x, _, _ in loader:
            x[(-1,) * x.dim()].item()  # the batch exists (on a GPU, its work is done); summing uint8 is slow
            start = time.process_time()
            normalised(x)
            conversion += time.process_time() - start
        seconds = time.perf_counter() - wall - conversion, cpu_seconds() - cpu - conversion, conversion
    return seconds


def stage_seconds(dataset: Dataset) -> list[float]:
    """CPU seconds of one pass over ``dataset``'s files in this process, per stage (:data:`STAGES`): its
    loader, its transform's first step (RandomResizedCrop), the rest of its transform (the flip)."""
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


def default_decoders(trees: dict[str, Path]) -> dict[str, str]:
    """The decoder the default ``data.decoder`` (``auto``) reads each tree with (torchvision.io in the
    workers is the ``torchvision`` row: this benchmark decodes in the loader on the CPU)."""
    chosen = {tree: chosen_decoder(AUTO, root) for tree, root in trees.items()}
    return {tree: "torchvision" if decoder == WORKERS_TORCHVISION else decoder for tree, decoder in chosen.items()}


def measure(trees: dict[str, Path], *, images: int, repeats: int, image_sizes: list[int], workers: list[int],
            batch: int) -> tuple[list[dict], list[dict]]:
    """Loader rows (image size × decoder × tree) and stage rows (image size × tree, its default decoder).

    Every timing runs once untimed (warm caches), then ``repeats`` times, interleaved: drift on a
    loaded machine hits every configuration alike, and the ratios are taken within a repeat.
    """
    decoders = [*DECODERS, DRAFT] + ([NVJPEG] if torch.cuda.is_available() else [])
    defaults = default_decoders(trees)
    jobs: dict[tuple, Callable[[], object]] = {}
    for size in image_sizes:
        pair = ("original", f"prepared for {size}")
        data = {(decoder, tree): train_set(trees[tree], decoder, size) for decoder in decoders for tree in pair}
        for tree in pair:
            jobs["stages", size, tree] = functools.partial(stage_seconds, data[defaults[tree], tree])
        for n, decoder, tree in itertools.product(workers, decoders, pair):
            jobs["pass", size, decoder, tree, n] = functools.partial(
                pass_seconds, data[decoder, tree], workers=n, batch=batch,
                device=torch.device("cuda") if decoder == NVJPEG else None)
    results: dict[tuple, list] = {key: [] for key in jobs}
    for job in jobs.values():
        job()
    for _ in range(repeats):
        for key, job in jobs.items():
            results[key].append(job())
    passes = {key[1:]: values for key, values in results.items() if key[0] == "pass"}
    stages = {key[1:]: values for key, values in results.items() if key[0] == "stages"}
    return (loader_rows(passes, images, workers, defaults),
            stage_rows(stages, passes, images, workers[0], defaults))


def loader_rows(passes: dict[tuple, list], images: int, workers: list[int], defaults: dict[str, str]) -> list[dict]:
    """A row per image size × decoder × tree from ``passes``: ``(wall, CPU, conversion CPU)`` seconds per
    repeat, keyed by (image size, decoder, tree, N). ``defaults``: each tree's default decoder
    (:func:`default_decoders`); the ratios divide by the default decoder's pass on the originals, in the
    same repeat, and ``vs_original_converting`` counts the conversion in on both sides (a CPU run)."""
    def rates(key: tuple) -> dict[str, dict[str, float]]:
        return {"images_per_cpu_second": spread([images / cpu for _, cpu, _ in passes[key]]),
                "images_per_second": spread([images / wall for wall, _, _ in passes[key]])}

    def ratios(key: tuple, base: tuple, *, converting: bool) -> dict[str, float]:
        return spread([(b[1] + converting * b[2]) / (p[1] + converting * p[2])
                       for b, p in zip(passes[base], passes[key], strict=True)])

    rows = []
    for size, decoder, tree, n in passes:
        if n == workers[0]:
            key, base = (size, decoder, tree, n), (size, defaults["original"], "original", n)
            rows.append({"image_size": size, "decoder": decoder, "tree": tree, "default": decoder == defaults[tree],
                         "vs_original": ratios(key, base, converting=False),
                         "vs_original_converting": ratios(key, base, converting=True),
                         "workers": {m: rates((size, decoder, tree, m)) for m in workers}})
    return rows


def stage_rows(stages: dict[tuple, list], passes: dict[tuple, list], images: int, n: int,
               defaults: dict[str, str]) -> list[dict]:
    """Per (image size, tree) of ``stages``, with the tree's default decoder (``defaults``): CPU µs per image
    of each stage, of the rest of the loader pass with N = ``n`` (that pass in the same repeat, less the
    stages), of the pass, and of the conversion of its batches (:data:`CONVERSION`)."""
    rows = []
    for (size, tree), runs in stages.items():
        timed = passes[size, defaults[tree], tree, n]
        whole = [1e6 * cpu / images for _, cpu, _ in timed]
        parts = [[1e6 * seconds / images for seconds in run] for run in runs]
        columns = [*zip(*parts, strict=True), [w - sum(run) for w, run in zip(whole, parts, strict=True)], whole,
                   [1e6 * conversion / images for _, _, conversion in timed]]
        names = (*STAGES, "rest of the loader pass", "loader pass", CONVERSION)
        rows.append({"image_size": size, "tree": tree, "decoder": defaults[tree], "workers": n,
                     "microseconds": dict(zip(names, map(statistics.median, columns), strict=True))})
    return rows


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


def make_trees(tmp: Path, *, per_class: int, image_sizes: list[int], repeats: int) -> tuple[dict[str, Path], list]:
    """The original tree and a prepared copy per image size, ``prepare`` timed ``repeats`` times each:
    ``({tree name: root}, a prepare row per short side)``."""
    trees = {"original": write_tree(tmp / "original", classes=CLASSES, per_class=per_class)}
    images = CLASSES * (per_class + 1)  # prepare copies val too
    prepare_rows = []
    for size in image_sizes:
        side, seconds = val_short_side(size), []
        for repeat in range(repeats):
            trees[f"prepared for {size}"] = copy = tmp / f"prepared_{side}_{repeat}"
            seconds.append(prepare_seconds(trees["original"], copy, short_side=side))
        prepare_rows.append({"short_side": side, "n": repeats,
                             "images_per_cpu_second": spread([images / cpu for _, cpu in seconds]),
                             "images_per_second": spread([images / wall for wall, _ in seconds])})
    return trees, prepare_rows


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
            f"to the image size + flip, uint8, batch {batch}, 1 torch thread per process; N loader processes, their "
            f"CPU time included; each batch's conversion to float32 and normalisation timed apart.")


def _kilopixels(sizes: list[tuple[int, int]]) -> str:
    return f"{statistics.fmean(w * h for w, h in sizes) / 1e3:.0f}"


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    machine = Snapshot.take()
    torch.set_num_threads(1)
    per_class = -(-args.images // CLASSES)
    images = CLASSES * per_class
    with tempfile.TemporaryDirectory(prefix="loader_bench_") as tmp:
        trees, prepare_rows = make_trees(Path(tmp), per_class=per_class, image_sizes=args.image_sizes,
                                         repeats=args.repeats)
        setup = describe(trees, images=images, image_sizes=args.image_sizes, batch=args.batch)
        rows, stages = measure(trees, images=images, repeats=args.repeats, image_sizes=args.image_sizes,
                               workers=args.workers, batch=args.batch)
    command = command_line("benchmarks/loader_bench.py", argv)
    if args.json:
        print(json.dumps({**machine.as_dict(command), "setup": setup, "loader": rows, "summary": summary(rows),
                          "stages_us_per_image": stages, "prepare": prepare_rows}, indent=2))
    else:
        print("\n\n".join([machine.header(command), setup, loader_table(rows), summary(rows), stage_table(stages),
                           prepare_table(prepare_rows)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
