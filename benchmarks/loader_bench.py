"""Loader throughput per CPU core, per ``data.decoder``: ``python benchmarks/loader_bench.py``.

Writes ``--images`` generated 500×375 JPEGs (a typical ImageNet size: a smooth random picture plus
grain, quality 90) as an ImageFolder tree, then times a full pass of the project's own train loader
(``make_loader`` over ``load_datasets``: decode, 224-px RandomResizedCrop, flip, normalise, collate)
for each decoder. The loading runs in this process (no workers) on one torch thread, so images/s is
per core: per wall-clock second, and per second of this process's CPU time (what one core delivers
even on a machine that others load). The decoders are interleaved within each repeat; reported:
median and min–max over repeats.
With a CUDA device, ``torchvision`` is also timed decoding on it (nvJPEG), which is not a per-core figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import Snapshot, command_line
from PIL import Image

from ast_tune.config.run_spec import DECODERS, DataSpec
from ast_tune.data.loaders import make_loader
from ast_tune.data.sources import load_datasets

PHOTO = (500, 375)  # px, width × height


def write_photo(path: Path, seed: int, size: tuple[int, int] = PHOTO) -> None:
    """One generated JPEG of ``size`` px: a bicubic-upsampled random 16×12 field plus grain."""
    rng = np.random.default_rng(seed)
    field = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
    pixels = np.asarray(field, dtype=np.float32) + rng.normal(0, 8, (size[1], size[0], 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, format="JPEG", quality=90)


def write_tree(root: Path, *, classes: int, per_class: int, size: tuple[int, int] = PHOTO) -> Path:
    """An ImageFolder tree of generated JPEGs: ``per_class`` per class in train, one per class in val."""
    for label in range(classes):
        for i in range(per_class):
            write_photo(root / "train" / f"c{label}" / f"{i}.jpg", seed=label * 100_003 + i, size=size)
        write_photo(root / "val" / f"c{label}" / "0.jpg", seed=10**9 + label, size=size)
    return root


def pass_seconds(root: Path, decoder: str, *, image_size: int, batch: int,
                 device: torch.device | None = None) -> tuple[float, float]:
    """(wall-clock, this process's CPU) seconds of one pass of the train loader over the whole tree."""
    data = load_datasets(DataSpec(kind="imagefolder", root=str(root), image_size=image_size, decoder=decoder))
    wall, cpu = time.perf_counter(), time.process_time()
    for x, _, _ in make_loader(data.train, batch_size=batch, train=True, num_workers=0, device=device):
        x.sum().item()  # the batch exists (and, on a GPU, its work is done)
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(root: Path, *, images: int, repeats: int, image_size: int, batch: int) -> list[dict]:
    """One row per decoder (and per device): images/s (wall, CPU) median and range over ``repeats`` passes."""
    setups = [(d, None) for d in DECODERS]
    if torch.cuda.is_available():
        setups.append(("torchvision", torch.device("cuda")))
    seconds: dict[tuple, list[tuple[float, float]]] = {s: [] for s in setups}
    for s in setups:
        pass_seconds(root, s[0], image_size=image_size, batch=batch, device=s[1])  # warm the page cache
    for _ in range(repeats):
        for s in setups:  # interleaved: drift on a loaded machine hits every decoder alike
            seconds[s].append(pass_seconds(root, s[0], image_size=image_size, batch=batch, device=s[1]))
    rows = []
    for (decoder, device), values in seconds.items():
        rates = [images / wall for wall, _ in values]
        per_cpu = [images / cpu for _, cpu in values]
        rows.append({"decoder": decoder, "decode_on": "cuda (nvJPEG)" if device else "cpu, 1 core",
                     "images_per_second": statistics.median(rates), "min": min(rates), "max": max(rates),
                     "images_per_cpu_second": statistics.median(per_cpu), "cpu_min": min(per_cpu),
                     "cpu_max": max(per_cpu), "n": len(rates)})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| decoder | decodes on | images per CPU-second (median, min–max) | images/s wall-clock (median, min–max) "
             "| n |", "|---|---|---|---|---|"]
    lines += [f"| {r['decoder']} | {r['decode_on']} | {r['images_per_cpu_second']:.0f} "
              f"({r['cpu_min']:.0f}–{r['cpu_max']:.0f}) | {r['images_per_second']:.0f} "
              f"({r['min']:.0f}–{r['max']:.0f}) | {r['n']} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/loader_bench.py", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="generated JPEGs (default 256)")
    parser.add_argument("--repeats", type=int, default=5, help="passes per decoder (default 5)")
    parser.add_argument("--image-size", type=int, default=224, help="RandomResizedCrop side, px")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    args = parser.parse_args(argv)
    if min(args.images, args.repeats, args.batch) < 1 or args.image_size < 8:
        parser.error("--images, --repeats and --batch must be >= 1, --image-size >= 8")
    machine = Snapshot.take()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="loader_bench_") as tmp:
        root = write_tree(Path(tmp), classes=4, per_class=-(-args.images // 4))
        images = 4 * -(-args.images // 4)
        sizes = [p.stat().st_size for p in (root / "train").rglob("*.jpg")]
        rows = measure(root, images=images, repeats=args.repeats, image_size=args.image_size, batch=args.batch)
    setup = (f"{images} JPEGs of {PHOTO[0]}×{PHOTO[1]} px (mean {statistics.fmean(sizes) / 1024:.0f} KiB), "
             f"{args.image_size}-px RandomResizedCrop + flip + normalise, batch {args.batch}, 1 torch thread")
    command = command_line("benchmarks/loader_bench.py", argv)
    if args.json:
        print(json.dumps({**machine.as_dict(command), "setup": setup, "results": rows}, indent=2))
    else:
        print(f"{machine.header(command)}\n\n{setup}\n\n{markdown(rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
