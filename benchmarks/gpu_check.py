"""One-shot GPU check: ``python benchmarks/gpu_check.py [--out gpu_check]``; a few minutes on one GPU.

Trains ResNet-50 with the project's own engine (``RunState`` + ``train_one_epoch``) on ``--images``
224-px samples, batch 256, and writes ``<out>/gpu_check.json`` and ``<out>/gpu_check.md`` (under its
command, date and machine: :mod:`machine`) with:

- dense images/s in fp32 without channels_last (the plan's "unoptimised baseline") and in bf16 with
  channels_last, on synthetic data already on the GPU (compute only);
- ``inline`` and ``skip`` at r = 0.4 and 0.2 in bf16 + channels_last, on that synthetic data and with
  the real loader over 500×375 JPEGs this script writes (each ``data.decoder``);
- for the real loader, the seconds of one pass of the loader alone (data) beside the synthetic run's
  epoch seconds (compute);
- NVML joules per epoch, and against dense on the same data; peak memory;
- the stacked speedup against the unoptimised baseline, factor by factor, every factor measured;
- a 2-rank NCCL all-reduce check when 2 GPUs are present.

The activation of inline and skip is pinned to r (see :func:`spec_of`). Every configuration trains
one untimed dense epoch first (cuDNN autotuning, the skip table fills), then ``--repeats`` timed
epochs (median). ``--smoke`` runs the same at a toy scale (small_resnet, 16 px, 16 images; fp32 on a
CPU, whose bf16 is emulated): a test of this script, not a measurement.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from ast_tune.atomic import write_text
from ast_tune.config.run_spec import DECODERS, DataSpec, OptimSpec, RunSpec, SparsitySpec
from ast_tune.core.engine import default_device, phase_of, train_one_epoch
from ast_tune.core.metrics import Stopwatch, max_memory_mb, reset_peak_memory
from ast_tune.core.run_state import RunState
from ast_tune.data.loaders import make_loader
from ast_tune.data.sources import Datasets, TensorImageDataset, load_datasets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collective_check import collective_check  # noqa: E402  (sibling scripts)
from machine import Snapshot, command_line  # noqa: E402
from photos import write_photo  # noqa: E402

CLASSES = 8
RATES = (0.4, 0.2)
SYNTHETIC = "synthetic"


@dataclasses.dataclass(frozen=True)
class Scale:
    model: str
    image_size: int  # px, network input
    images: int  # training samples, as JPEGs and as synthetic tensors
    batch: int
    photo: tuple[int, int]  # px of the written JPEGs
    workers: int  # DataLoader workers of the real loader; -1 = auto
    precision: str = "bf16"  # of the optimised configurations


FULL = Scale("resnet50", 224, 4096, 256, (500, 375), workers=-1)
# bf16 without native CPU support is ~15x slower than fp32: the CPU smoke keeps fp32 throughout
SMOKE = Scale("small_resnet", 16, 16, 8, (40, 30), workers=0,
              precision="bf16" if torch.cuda.is_available() else "fp32")


@dataclasses.dataclass(frozen=True)
class Config:
    data: str  # SYNTHETIC or a data.decoder
    precision: str
    channels_last: bool
    mode: str
    rate: float = 1.0  # target activation

    @property
    def name(self) -> str:
        layout = "+channels_last" if self.channels_last else ""
        rate = f" r={self.rate}" if self.mode != "dense" else ""
        return f"{self.data} {self.precision}{layout} {self.mode}{rate}"


def configurations(decoders: tuple[str, ...], precision: str = "bf16") -> list[Config]:
    """The unoptimised baseline, then dense, inline and skip (``precision`` + channels_last) per data source."""
    configs = [Config(SYNTHETIC, "fp32", False, "dense")]
    for data in (SYNTHETIC, *decoders):
        configs.append(Config(data, precision, True, "dense"))
        configs += [Config(data, precision, True, mode, rate) for rate in RATES for mode in ("inline", "skip")]
    return configs


def spec_of(config: Config, scale: Scale, root: Path) -> RunSpec:
    """The RunSpec of ``config``, its activation pinned to r (a speed check, not a selection check).

    The threshold sits at its ceiling with the controller still (kp = ki = 0), so ``inline`` trains the
    top ``min_keep_fraction`` = r of every batch and ``skip`` loads a random ``refresh_fraction`` = r
    of the samples each epoch (plus the rare sample above 10 nats).
    """
    decoder = "pil" if config.data == SYNTHETIC else config.data
    sparsity = SparsitySpec(mode=config.mode, target_activation=config.rate, initial_threshold=10.0,
                            threshold_max=10.0, kp=0.0, ki=0.0, min_keep_fraction=config.rate,
                            refresh_fraction=config.rate)
    return RunSpec(data=DataSpec(kind="imagefolder", root=str(root), image_size=scale.image_size,
                                 num_workers=scale.workers, decoder=decoder),
                   model=scale.model, batch_size=scale.batch, epochs=100, warmup_epochs=1,
                   precision=config.precision, channels_last=config.channels_last, sparsity=sparsity,
                   optim=OptimSpec(schedule="constant", lr=0.02))


def write_photos(root: Path, scale: Scale) -> Path:
    """``scale.images`` JPEGs (crops of real photos: :func:`photos.write_photo`) as an ImageFolder tree
    of CLASSES classes (one val image each)."""
    paths = [root / "train" / f"c{i % CLASSES}" / f"{i}.jpg" for i in range(scale.images)]
    paths += [root / "val" / f"c{c}" / "0.jpg" for c in range(CLASSES)]
    with ProcessPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) - 1)) as pool:
        list(pool.map(write_photo, paths, range(len(paths)), [scale.photo] * len(paths), chunksize=64))
    return root


def synthetic(scale: Scale, device: torch.device) -> Datasets:
    """Random normalised images and labels, already on ``device``: the loader costs nothing."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(scale.images, 3, scale.image_size, scale.image_size, generator=generator)
    labels = torch.randint(0, CLASSES, (scale.images,), generator=generator)
    data = TensorImageDataset(images.to(device), labels.to(device))
    return Datasets(train=data, val=data, num_classes=CLASSES, in_channels=3,
                    class_names=tuple(f"c{c}" for c in range(CLASSES)))


def loader_seconds(run: RunState, epoch: int) -> float:
    """One pass of epoch ``epoch``'s train loader alone (the samples that epoch will load), in s."""
    spec, indices = run.spec, None
    if spec.sparsity.mode == "skip" and phase_of(spec, epoch) == "ast":
        indices, _ = run.table.plan_epoch(run.controller.threshold, run.epoch_generator(epoch))
    loader = make_loader(run.data.train, batch_size=spec.batch_size, train=True, seed=spec.seed, epoch=epoch,
                         indices=indices, num_workers=spec.data.num_workers,
                         pin_memory=run.device.type == "cuda", device=run.device)
    clock = Stopwatch(run.device)
    clock.start()
    for x, _, _ in loader:
        run.to_device(x)
    return clock.stop()


def finite(value: float | None) -> float | None:
    """JSON has no NaN: an unmeasured figure is null."""
    return value if value is not None and math.isfinite(value) else None


def measure(config: Config, spec: RunSpec, data: Datasets, device: torch.device, repeats: int) -> dict:
    """Train one untimed epoch, then ``repeats`` timed ones; the medians and the peak memory."""
    run = RunState.create(spec, data, device)
    train_one_epoch(run, 0)
    data_seconds = loader_seconds(run, 1) if config.data != SYNTHETIC else None
    reset_peak_memory(device)
    stats = [train_one_epoch(run, 1 + e) for e in range(repeats)]
    seconds = statistics.median(s["train_seconds"] for s in stats)
    return {"name": config.name, **dataclasses.asdict(config), "channels_last": run.channels_last,
            "activation": statistics.median(s["activation_rate"] for s in stats), "seconds": seconds,
            "images_per_second": len(data.train) / seconds, "data_seconds": data_seconds,
            "joules": finite(statistics.median(s["energy_j"] for s in stats)), "peak_mib": max_memory_mb(device)}


def compare(rows: list[dict]) -> None:
    """Add to each row: its synthetic twin's seconds (compute), J against dense, × against the baseline."""
    base = rows[0]["seconds"]
    twins = {(r["data"], r["mode"], r["rate"]): r for r in rows[1:]}
    for row in rows:
        twin = twins.get((SYNTHETIC, row["mode"], row["rate"]))
        row["compute_seconds"] = twin["seconds"] if twin and row["data"] != SYNTHETIC else None
        dense = twins[(row["data"], "dense", 1.0)]
        row["joules_vs_dense"] = row["joules"] / dense["joules"] if row["joules"] and dense["joules"] else None
        row["speedup_vs_unoptimised"] = base / row["seconds"]


def stacked(rows: list[dict], decoders: tuple[str, ...]) -> list[dict]:
    """Per AST mode at the lowest rate: baseline → bf16 + channels_last → the mode → each real loader."""
    base, fast = rows[0], {(r["data"], r["mode"], r["rate"]): r for r in rows[1:]}
    dense, rate, out = fast[(SYNTHETIC, "dense", 1.0)], min(RATES), []
    for mode in ("inline", "skip"):
        chain = [(f"{base['name']} (unoptimised baseline)", base["seconds"]),
                 (f"+ {dense['precision']} + channels_last", dense["seconds"]),
                 (f"+ {mode} r={rate}", fast[(SYNTHETIC, mode, rate)]["seconds"])]
        steps = [{"step": chain[0][0], "factor": 1.0, "cumulative": 1.0}]
        for (_, before), (label, after) in zip(chain, chain[1:], strict=False):
            steps.append({"step": label, "factor": before / after, "cumulative": base["seconds"] / after})
        for decoder in decoders:  # each an alternative last step: the same mode fed by a real loader
            real = fast[(decoder, mode, rate)]["seconds"]
            steps.append({"step": f"or: the real loader ({decoder}) instead of synthetic data",
                          "factor": chain[-1][1] / real, "cumulative": base["seconds"] / real})
        out.append({"mode": mode, "rate": rate, "steps": steps})
    return out


def _cell(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(report: dict) -> str:
    """The report as Markdown: the configurations, the stacked speedups, the collective check."""
    lines = [f"# GPU check on {report['device']}", "", f"{report['header']}", "", f"torch {report['torch']} · "
             f"{report['scale']['model']}, {report['scale']['images']} samples of {report['scale']['image_size']} px, "
             f"batch {report['scale']['batch']} · {report['seconds_total']:.0f} s in all", "",
             "| configuration | measured r | epoch s | images/s | data s (loader alone) | compute s (synthetic) "
             "| J/epoch | J vs dense | peak MiB | × vs unoptimised |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["configs"]:
        lines.append(f"| {r['name']} | {r['activation']:.3f} | {r['seconds']:.3f} | {r['images_per_second']:.1f} "
                     f"| {_cell(r['data_seconds'], 3)} | {_cell(r['compute_seconds'], 3)} | {_cell(r['joules'], 1)} "
                     f"| {_cell(r['joules_vs_dense'])} | {r['peak_mib']:.0f} | {r['speedup_vs_unoptimised']:.2f}× |")
    for chain in report["stacked"]:
        lines += ["", f"## Stacked speedup, {chain['mode']} r={chain['rate']} (every factor measured)", "",
                  "| step | factor | cumulative |", "|---|---|---|"]
        lines += [f"| {s['step']} | {s['factor']:.2f}× | {s['cumulative']:.2f}× |" for s in chain["steps"]]
    check = report["collective"]
    lines += ["", "## 2-rank collective check", "", (
        f"{check['backend']}, {check['ranks']} ranks: sum correct {check['sum_correct']}, {check['mib']:.2f} MiB "
        f"all-reduce in {check['seconds'] * 1e3:.2f} ms, bus {check['bus_gb_s']:.2f} GB/s"
        if check["ran"] else f"not run: {check['reason']}")]
    return "\n".join(lines) + "\n"


def run_check(scale: Scale, decoders: tuple[str, ...], repeats: int, workdir: Path) -> dict:
    """Every configuration, measured in turn (progress on stderr); the report dict without its header."""
    device, start = default_device(), time.perf_counter()
    root = write_photos(workdir / "photos", scale)
    sources = {SYNTHETIC: synthetic(scale, device)}
    rows = []
    for config in configurations(decoders, scale.precision):
        spec = spec_of(config, scale, root)
        if config.data not in sources:
            sources[config.data] = load_datasets(spec.data)
        rows.append(measure(config, spec, sources[config.data], device, repeats))
        print(f"[{time.perf_counter() - start:5.0f} s] {config.name}: {rows[-1]['images_per_second']:.1f} images/s",
              file=sys.stderr, flush=True)
    compare(rows)
    collective = collective_check("nccl") if device.type == "cuda" else {"ran": False, "reason": "no GPU"}
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (smoke: not a GPU figure)",
            "torch": torch.__version__, "scale": dataclasses.asdict(scale), "configs": rows,
            "stacked": stacked(rows, decoders), "collective": collective,
            "seconds_total": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/gpu_check.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check", help="directory for gpu_check.json and gpu_check.md")
    parser.add_argument("--smoke", action="store_true", help="toy scale: a test of this script, not a measurement")
    parser.add_argument("--images", type=int, help=f"training samples (default {FULL.images}; smoke {SMOKE.images})")
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs per configuration (median)")
    parser.add_argument("--decoders", nargs="+", default=list(DECODERS), choices=DECODERS)
    args = parser.parse_args(argv)
    scale = SMOKE if args.smoke else FULL
    if args.images is not None:
        scale = dataclasses.replace(scale, images=args.images)
    if scale.images < scale.batch or args.repeats < 1:
        parser.error(f"--images must be >= the batch ({scale.batch}) and --repeats >= 1")
    out = Path(args.out)
    machine = Snapshot.take()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        report = run_check(scale, tuple(args.decoders), args.repeats, Path(tmp))
    command = command_line("benchmarks/gpu_check.py", argv)
    report = {**machine.as_dict(command), "header": machine.header(command), **report}
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "gpu_check.json", json.dumps(report, indent=2) + "\n")
    write_text(out / "gpu_check.md", markdown(report))
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
