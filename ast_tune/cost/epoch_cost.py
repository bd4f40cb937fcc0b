"""Seconds per epoch for the cost estimate: timed by :func:`probe` here, from the spec's ``cost`` figures, or
from the dense baseline a sweep times anyway (:func:`from_baseline`).

A cost is kept per image: training seconds per training image and validation seconds per
validation image, on one worker. An epoch of a run on ``workers`` workers is then
``(train_images · train_s + val_images · val_s) / workers``. :func:`probe` times a few hundred
training steps of the dense baseline and a validation pass on one worker of this machine, and the
training loader alone with the workload's ``num_workers``: a training image costs the slower of the
two (the probe says which binds). It also times the checkpoint write of its last epoch. From
``cost.images_per_second`` (training images/s per GPU) validation is taken at three times that
rate (a forward pass without the backward). The other workload's cost (the promoted run's, or the
sweep's when only ``cost.promote`` is given) is scaled by its pixels, ``(image_size / image_size')²``.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ast_tune.config.cost_spec import WorkloadCost
from ast_tune.config.spec import SpecError
from ast_tune.config.sweep_spec import SweepSpec, Workload
from ast_tune.core.engine import default_device, fit
from ast_tune.cost.estimate import EpochCosts, promoted_epochs
from ast_tune.data.inventory import image_counts
from ast_tune.data.loaders import make_loader
from ast_tune.data.sources import Datasets, ImageList, TensorImageDataset, load_datasets

PROBE_STEPS = 200  # training steps --probe times by default (two epochs of half that, the second timed)
VALIDATION_SPEED = 3.0  # validation images/s per training image/s, when only a throughput is given


@dataclasses.dataclass(frozen=True)
class PerImage:
    """Seconds per image on one worker at ``image_size`` px."""

    train: float
    val: float
    image_size: int
    source: str

    def scaled(self, image_size: int) -> PerImage:
        """The same cost at ``image_size`` px, proportional to the pixels."""
        ratio = (image_size / self.image_size) ** 2
        return PerImage(self.train * ratio, self.val * ratio, image_size,
                        f"{self.source}, scaled by pixels to {image_size} px")


def _repeated(dataset, count: int):
    """The first ``count`` items of ``dataset``, wrapping around."""
    order = [i % len(dataset) for i in range(count)]
    if isinstance(dataset, TensorImageDataset):
        index = torch.as_tensor(order)
        return TensorImageDataset(dataset.images[index], dataset.labels[index])
    return ImageList([dataset.samples[i] for i in order], dataset.transform, dataset.loader)


@dataclasses.dataclass(frozen=True)
class Probe:
    """What :func:`probe` measured: seconds per image, which of the step and the loader binds, a checkpoint."""

    per_image: PerImage
    binds: str  # "loader" or "compute": the slower of the training loader alone and the step
    checkpoint: float  # s: one checkpoint write, with the report of its epoch


def _loader_seconds(dataset, run, device) -> float:
    """Seconds the training loader alone takes to deliver ``dataset`` with the run's ``num_workers``."""
    start = time.perf_counter()
    for _ in make_loader(dataset, batch_size=run.batch_size, train=True, seed=run.seed,
                         num_workers=run.data.num_workers, pin_memory=device.type == "cuda", device=device):
        pass
    return time.perf_counter() - start


def probe(spec: SweepSpec, *, steps: int = PROBE_STEPS) -> Probe:
    """Time ``steps`` training steps of the dense baseline, a validation pass and the loader alone, on one worker here.

    Two epochs of ``steps / 2`` steps each, the second one timed (the first warms up allocators
    and kernels), with the workload's torch threads; then the training loader alone over the same
    images. The second epoch's checkpoint goes to a temporary directory; nothing else is written.
    """
    run = dataclasses.replace(spec.baseline_spec(), epochs=2, warmup_epochs=0, checkpoint_every=2)
    data = load_datasets(run.data)
    half = max(1, steps // 2) * run.batch_size
    val = min(len(data.val), half)
    probe_data = Datasets(train=_repeated(data.train, half), val=_repeated(data.val, val),
                          num_classes=data.num_classes, in_channels=data.in_channels, class_names=data.class_names)
    stamps: list[tuple[float, dict]] = []
    device = default_device()
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, round(spec.workload.cpus_per_worker)))
    try:
        fit(run, datasets=probe_data, device=device,
            report=lambda record, _dir: stamps.append((time.perf_counter(), record)))
        loader = _loader_seconds(probe_data.train, run, device)
    finally:
        torch.set_num_threads(threads)
    (first, _), (second, record) = stamps
    step = record["train_seconds"] - record["data_seconds"]
    binds = "loader" if loader > step else "compute"
    per_image = PerImage(max(record["train_seconds"], loader) / half, record["val_seconds"] / val,
                         run.data.image_size, f"--probe: {steps} steps on {device.type}, the {binds} binds "
                         f"(step {half / step:.0f} images/s, loader alone {half / loader:.0f} images/s)")
    checkpoint = max(second - first - record["train_seconds"] - record["val_seconds"], 0.0)
    return Probe(per_image, binds, checkpoint)


def from_baseline(spec: SweepSpec, baseline: Mapping[str, Any]) -> PerImage:
    """Seconds per image from the dense baseline the sweep timed (``baseline.json``): its median training
    seconds per epoch and its median validation seconds (validation at three times the training rate in a
    ``baseline.json`` whose records lack them), per image of the sweep's workload."""
    train_images, val_images = image_counts(spec.workload.data)
    workers = spec.workload.workers
    train = float(baseline["epoch_seconds"]) * workers / train_images
    timed = [r["val_seconds"] for r in baseline.get("epochs") or [] if isinstance(r.get("val_seconds"), int | float)]
    val = statistics.median(timed) * workers / val_images if timed else train / VALIDATION_SPEED
    return PerImage(train, val, spec.workload.data.image_size,
                    f"the dense baseline this sweep timed ({baseline.get('epochs_timed', '?')} epochs"
                    f"{'' if timed else '; validation at 3x its training rate'})")


def _counts(cost: WorkloadCost, workload: Workload, key: str) -> tuple[int, int]:
    if cost.train_images is not None and cost.val_images is not None:
        return cost.train_images, cost.val_images
    data = workload.data
    if data.root is not None and not Path(data.root).is_dir():
        raise SpecError(f"{key}.train_images", f"needed, with {key}.val_images: {data.root} is not here to "
                                               "count the images")
    train, val = image_counts(data)
    return cost.train_images or train, cost.val_images or val


def _given(cost: WorkloadCost, image_size: int, key: str) -> PerImage | None:
    if cost.images_per_second is None:
        return None
    train = 1 / cost.images_per_second
    return PerImage(train, train / VALIDATION_SPEED, image_size, f"{key}.images_per_second")


def _epoch(per_image: PerImage, cost: WorkloadCost, workload: Workload, key: str) -> float:
    train, val = _counts(cost, workload, key)
    return (train * per_image.train + val * per_image.val) / workload.workers


def epoch_costs(spec: SweepSpec, probed: PerImage | None = None) -> EpochCosts:
    """Seconds per epoch on the sweep's and the promoted workload (see the module docstring for the order).

    Raises:
        SpecError: no figure to start from (no ``--probe``, no ``cost.epoch_seconds`` or
            ``images_per_second``), or image counts needed and the data is not here to count.
    """
    cost, sweep_w = spec.cost, spec.workload
    full_w = spec.promoted_sweep(promoted_epochs(spec)).workload
    sweep_px, full_px = sweep_w.data.image_size, full_w.data.image_size
    base = probed or _given(cost, sweep_px, "cost") or _given(cost.promote, full_px, "cost.promote")
    if base is None and cost.epoch_seconds is None:
        raise SpecError("cost", "give cost.epoch_seconds or cost.images_per_second (or cost.promote."
                                "images_per_second), or pass --probe to time a few hundred steps here")
    if probed is None and cost.epoch_seconds is not None:
        sweep_s, source = cost.epoch_seconds, "cost.epoch_seconds"
    else:
        sweep_image = base if base.image_size == sweep_px else base.scaled(sweep_px)
        sweep_s, source = _epoch(sweep_image, cost, sweep_w, "cost"), sweep_image.source
    if not spec.promote.enabled:
        return EpochCosts(sweep_s, None, source)
    if cost.promote.epoch_seconds is not None:
        return EpochCosts(sweep_s, cost.promote.epoch_seconds, f"{source}; promoted: cost.promote.epoch_seconds")
    if spec.promote.workload is None:
        return EpochCosts(sweep_s, sweep_s, source)
    if base is None:
        raise SpecError("cost.promote", "give cost.promote.epoch_seconds or images_per_second: the sweep's "
                                        "cost.epoch_seconds does not scale to another workload")
    full_image = _given(cost.promote, full_px, "cost.promote") or base.scaled(full_px)
    return EpochCosts(sweep_s, _epoch(full_image, cost.promote, full_w, "cost.promote"),
                      f"{source}; promoted: {full_image.source}")
