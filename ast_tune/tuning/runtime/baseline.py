"""The dense baseline a sweep's speedups divide by: timed once per setup, cached in ``baseline.json``.

A trial's ``speedup`` is the baseline's median train seconds per epoch over the trial's own, so
the baseline runs on the trials' hardware: a slot with one training worker's resources
(:func:`probe_device` names it), the same world size, and on CPUs as many copies side by side as
trials run at once. The cache is keyed by :func:`baseline_fingerprint`; any change times it again,
and so does a cache file that :func:`~ast_tune.results.baseline_file.read_baseline` rejects, except in a
resumed sweep, which keeps the baseline it started with (and warns when the setup has changed) so
that its trials all divide by one baseline; ``stored="retime"`` times a new one whatever is stored.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import platform
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ray
import torch

from ast_tune.config.run_spec import RunSpec
from ast_tune.config.spec import SpecError, to_dict
from ast_tune.config.sweep_spec import SweepSpec, Workload
from ast_tune.promotion.choice import Promotion
from ast_tune.results.baseline_file import BASELINE_FILE, make_baseline, read_baseline, write_baseline
from ast_tune.tuning.runtime.session import in_threads
from ast_tune.tuning.runtime.worker import run_training

log = logging.getLogger(__name__)


def device_name() -> str:
    """The accelerator this process trains on: the CUDA device's name, else the CPU model."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    return f"cpu: {model}"


def probe_device(workload: Workload) -> str:
    """:func:`device_name` as seen from a slot with one training worker's resources."""
    probe = ray.remote(device_name).options(num_cpus=min(workload.cpus_per_worker, 1),
                                            num_gpus=workload.gpus_per_worker)
    return ray.get(probe.remote())


def baseline_fingerprint(sweep: SweepSpec, device: str, *, runs_at_once: int = 1) -> dict[str, Any]:
    """What the baseline's timing and accuracy depend on; a different fingerprint means timing it again.

    That is the dense RunSpec it trains (every field but the inert ``sparsity`` and ``checkpoint_every``,
    and the data's loader ``num_workers``; so also its epochs, LR schedule and seed: the baseline's
    accuracy curve is the time-to-accuracy reference) and the hardware it runs on.
    """
    spec, workload = sweep.baseline_spec(), sweep.workload
    run = {key: value for key, value in to_dict(spec).items() if key not in ("sparsity", "checkpoint_every")}
    run["data"] = {key: value for key, value in run["data"].items() if key != "num_workers"}
    return {**run, "world_size": workload.workers, "cpus_per_worker": workload.cpus_per_worker,
            "gpus_per_worker": workload.gpus_per_worker, "device": device, "runs_at_once": runs_at_once}


STORED = ("match", "keep", "retime")  # what ensure_baseline does with a stored baseline


def ensure_baseline(sweep: SweepSpec, path: Path, *, storage_path: Path, runs_at_once: int = 1,
                    stored: str = "match") -> dict[str, Any]:
    """The cached dense baseline at ``path`` (``baseline.json``), or a newly timed one.

    ``stored`` (one of :data:`STORED`): ``match`` reuses the stored baseline if its fingerprint
    matches, else times it again; ``keep`` (a resumed sweep) reuses any readable stored one, with a
    warning naming what differs; ``retime`` always times a new one.

    The baseline trains ``sweep.baseline_spec()`` (base preset + workload, dense) for the workload's
    epochs through :func:`run_training`, on the trials' hardware. CPU trials that run side by side
    share the machine's cores and memory, so ``runs_at_once`` copies are timed side by side too.
    ``epoch_seconds`` is the median ``train_seconds`` over all their epochs; a trial's ``speedup``
    is that over its own epoch time. ``epochs`` holds the first copy's epoch records.
    """
    fingerprint = baseline_fingerprint(sweep, probe_device(sweep.workload), runs_at_once=runs_at_once)
    cached = None if stored == "retime" else _cached(path, fingerprint, keep=stored == "keep")
    if cached is not None:
        return cached
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:12]
    if stored == "retime":  # a fresh Train run: the same name would continue the old one
        digest += "_" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    spec = sweep.baseline_spec()
    runs = in_threads([functools.partial(_time_run, spec, sweep.workload, storage_path / f"baseline_{digest}_{i}")
                       for i in range(runs_at_once)])
    baseline = make_baseline(fingerprint, to_dict(spec), runs)
    write_baseline(path, baseline)
    return baseline


def _cached(path: Path, fingerprint: dict[str, Any], *, keep: bool = False) -> dict[str, Any] | None:
    """The baseline cached at ``path``, if timed for ``fingerprint`` (or at all, with ``keep``); else None.

    A file :func:`read_baseline` rejects (not JSON, numbers missing) is logged, naming it, and treated
    as stale, so the sweep times the baseline again instead of failing.
    """
    try:
        cached = read_baseline(path)
    except SpecError as err:
        log.warning("baseline: %s; timing the dense baseline again", err)
        return None
    if cached is None:
        return None
    if cached.get("fingerprint") != fingerprint:
        old = cached.get("fingerprint") or {}
        changed = ", ".join(f"{key} {old.get(key)!r} -> {value!r}" for key, value in fingerprint.items()
                            if old.get(key) != value)
        if keep:
            log.warning("baseline: %s was timed for another setup (%s); this resumed sweep keeps it, so that all "
                        "its trials divide by one baseline (time a new one with --new-baseline, or use a new "
                        "--name)", path, changed)
            return cached
        log.warning("baseline: %s was timed for another setup (%s); timing the dense baseline again", path, changed)
        return None
    return cached


def _time_run(spec: RunSpec, workload: Workload, run_dir: Path) -> list[dict]:
    """Every epoch record of Train run ``run_dir`` (continued from its checkpoint if it has one)."""
    return run_training(spec, workload=workload, name=run_dir.name, storage_path=run_dir.parent)["records"]


def with_full_baseline(promotion: Promotion, say: Callable[[str], None]) -> Promotion:
    """``promotion`` with the dense baseline of its own workload, timed (or reused) when ``promote.workload`` asks.

    The baseline is cached in ``promoted/baseline.json``, keyed like the sweep's, and its Train runs go to
    ``promoted/train``. Unchanged when the run trains on the sweep's workload or ``baseline`` is ``none``.
    """
    if promotion.full_sweep is None or promotion.full_sweep.promote.workload.baseline == "none":
        return promotion
    say(f"timing the dense baseline on the promoted workload ({promotion.run_spec.epochs} epochs; "
        f"reused from {promotion.out / BASELINE_FILE} when it was timed for this setup)")
    baseline = ensure_baseline(promotion.full_sweep, promotion.out / BASELINE_FILE,
                               storage_path=promotion.out / "train")
    say(f"promoted-workload baseline: {baseline['epoch_seconds']:.3f} s per epoch, top1 {baseline['val_top1']:.2f}%")
    return dataclasses.replace(promotion, full_baseline=baseline)
