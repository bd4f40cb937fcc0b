"""What a sweep will cost before it runs: expected trial-epochs, wall time, device-hours and USD.

**Trial-epochs** come from :func:`ast_tune.cost.rungs.expected_schedule`: what the spec's scheduler is
expected to let through (a model checked against the scheduler classes; docs/benchmarks.md, "Rung model").

**Seconds** come from :class:`EpochCosts` (one epoch's training and validation: ``--probe``'s timing, the
spec's ``cost:`` figures, or the dense baseline the sweep times; :mod:`ast_tune.cost.epoch_cost`) and
:class:`~ast_tune.cost.overheads.Overheads` (Ray's start, each trial's start-up, the time between epochs,
checkpoint writes). :func:`estimate` adds the dense baseline(s) and the promotion to the trials: the trials
run ``min(search.max_concurrent, search.num_trials)`` at once, the rest one after another.

**Device-hours** are *held*: the GPUs (on a CPU sweep, the CPUs) the running trials reserve, over the wall
time, as the actuals count them (:func:`held_hours`). USD is GPU-hours at ``cost.usd_per_gpu_hour``.
:func:`estimate_lines` prints an estimate as Markdown.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from ast_tune.config.presets import get_preset
from ast_tune.config.sweep_spec import SweepSpec, Workload
from ast_tune.cost.overheads import Overheads
from ast_tune.cost.rungs import Schedule, expected_schedule
from ast_tune.cost.rungs import milestones as milestones  # the schedulers read the rungs here


@dataclasses.dataclass(frozen=True)
class EpochCosts:
    """Seconds of one epoch (training + validation) of one run, on the sweep's and on the promoted workload."""

    sweep: float
    promoted: float | None  # None: nothing is promoted
    source: str  # where the figures come from, one phrase


@dataclasses.dataclass(frozen=True)
class Part:
    """One row of the estimate: ``runs`` runs of ``epochs`` epochs in all, and its wall time."""

    name: str
    runs: int
    epochs: float  # epochs in all, over the runs
    seconds_per_epoch: float  # training + validation
    wall_seconds: float  # with its fixed costs
    devices: float  # what the sweep holds meanwhile (GPUs, or CPUs on a CPU sweep)


def device_of(workload: Workload) -> str:
    """``GPU`` when the trials train on GPUs, else ``CPU``: the unit of the held device-hours."""
    return "GPU" if workload.gpus_per_worker else "CPU"


def run_devices(workload: Workload) -> float:
    """The GPUs (on a CPU workload, the CPUs) one run of ``workload`` reserves for its workers."""
    return workload.workers * (workload.gpus_per_worker or workload.cpus_per_worker)


def held_hours(workload: Workload, *, trials_at_once: int, wall_seconds: float) -> float:
    """Device-hours held: ``trials_at_once`` trials' devices (:func:`run_devices`) over ``wall_seconds``."""
    return wall_seconds * trials_at_once * run_devices(workload) / 3600


def price(workload: Workload, usd_per_gpu_hour: float | None, device_hours: float) -> float | None:
    """USD of ``device_hours`` GPU-hours of ``workload`` at ``usd_per_gpu_hour`` (``cost.usd_per_gpu_hour``);
    None without a price or on a CPU workload."""
    return None if usd_per_gpu_hour is None or device_of(workload) != "GPU" else device_hours * usd_per_gpu_hour


def schedule(spec: SweepSpec) -> Schedule:
    """The rungs and trial-epochs ``spec``'s scheduler is expected to let through."""
    s = spec.scheduler
    return expected_schedule(s.kind, trials=spec.search.num_trials, grace_period=s.grace_period,
                             reduction_factor=s.reduction_factor, max_t=spec.workload.epochs,
                             objectives=len(spec.rung_objectives) if s.kind == "moasha" else 1)


def _writes(epochs: int, every: int) -> int:
    """Checkpoint writes of a run that ends after ``epochs`` epochs: every ``every`` epochs, and at its end."""
    return epochs // every + (epochs % every != 0)


def checkpoint_writes(plan: Schedule, trials: int, every: int) -> float:
    """Expected checkpoint writes of ``trials`` trials under ``plan``: a trial stopped at a rung writes every
    ``every`` epochs until then; one that runs to ``max_t``, also at its end."""
    stopped = sum(n * (math.ceil(m) // every) for m, n in zip(plan.milestones, plan.stopped, strict=True))
    return stopped + (trials - sum(plan.stopped)) * _writes(plan.max_t, every)


def _part(name: str, runs: int, epochs: float, writes: float, seconds: float, fixed: Overheads, *,
          at_once: int, devices: float, startup: float | None = None) -> Part:
    """``runs`` runs of ``epochs`` epochs and ``writes`` checkpoint writes in all, ``at_once`` at a time, each
    started in ``startup`` seconds (default: a trial's)."""
    started = runs * (fixed.trial_startup if startup is None else startup)
    busy = epochs * (seconds + fixed.epoch_overhead) + writes * fixed.checkpoint + started
    return Part(name, runs, epochs, seconds, busy / at_once, devices)


def promoted_epochs(spec: SweepSpec) -> int:
    """Epochs of the promoted run: ``promote.epochs``, else the base preset's."""
    return spec.promote.epochs or get_preset(spec.base).epochs


def estimate(spec: SweepSpec, costs: EpochCosts, fixed: Overheads) -> dict[str, Any]:
    """The expected cost of ``spec``: its parts, totals and the rung table, as a JSON-ready mapping."""
    w, trials = spec.workload, spec.search.num_trials
    plan = schedule(spec)
    at_once = min(spec.search.max_concurrent, trials)
    held = at_once * run_devices(w)
    every = spec.baseline_spec().checkpoint_every
    parts = [Part("Ray's start", 1, 0, 0, fixed.ray_start, held),
             _part(f"trials ({spec.scheduler.kind})", trials, plan.trial_epochs,
                   checkpoint_writes(plan, trials, every), costs.sweep, fixed, at_once=at_once, devices=held)]
    if spec.storage.baseline == "auto":
        parts.append(_part("dense baseline", 1, w.epochs, _writes(w.epochs, every), costs.sweep, fixed, at_once=1,
                           devices=held, startup=fixed.baseline_startup))
    if spec.promote.enabled and costs.promoted is not None:
        epochs = promoted_epochs(spec)
        devices = max(held, run_devices(spec.promoted_sweep(epochs).workload))
        writes = _writes(epochs, spec.promote.checkpoint_every)
        if spec.promote.workload is not None and spec.promote.workload.baseline == "auto":
            parts.append(_part("promoted-workload dense baseline", 1, epochs, writes, costs.promoted, fixed,
                               at_once=1, devices=devices, startup=fixed.baseline_startup))
        seeds = spec.promote.seeds  # side by side only where the cluster has room: counted one after another
        parts.append(_part("promoted run", seeds, seeds * epochs, seeds * writes, costs.promoted, fixed, at_once=1,
                           devices=devices))
    device_hours = sum(p.wall_seconds * p.devices for p in parts) / 3600
    return {
        "source": costs.source, "seconds_per_epoch": {"sweep": costs.sweep, "promoted": costs.promoted},
        "overheads": dataclasses.asdict(fixed), "trials_at_once": at_once, "trial_epochs": plan.trial_epochs,
        "rungs": [{"milestone": m, "reached": r, "stopped": s}
                  for m, r, s in zip(plan.milestones, plan.reached, plan.stopped, strict=True)],
        "parts": [dataclasses.asdict(p) for p in parts],
        "wall_seconds": sum(p.wall_seconds for p in parts), "device": device_of(w), "device_hours": device_hours,
        "usd": price(w, spec.cost.usd_per_gpu_hour, device_hours),
    }


def duration(seconds: float) -> str:
    """``seconds`` for a reader: ``42 s``, ``3.5 min`` or ``2.25 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def usd(value: float | None) -> str:
    """A price in whole dollars, or ``n/a``."""
    return "n/a" if value is None else f"${value:,.0f}"


def estimate_lines(result: dict[str, Any]) -> list[str]:
    """The estimate as Markdown: the rung table, then one row per part and the total."""
    lines = [f"cost estimate (seconds per epoch: {result['source']}; a dense epoch, so AST trials past their "
             "warm-up cost less):"]
    if result["rungs"]:
        lines += ["| rung (epoch) | trials reaching it (expected) | stopped there |", "|---:|---:|---:|"]
        lines += [f"| {r['milestone']:g} | {r['reached']:.2f} | {r['stopped']:.2f} |" for r in result["rungs"]]
    lines += ["| part | runs | epochs | s / epoch | wall |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {p['name']} | {p['runs']} | {p['epochs']:.1f} | {p['seconds_per_epoch']:.2f} | "
              f"{duration(p['wall_seconds'])} |" for p in result["parts"]]
    lines.append(f"| total | | {result['trial_epochs']:.1f} trial-epochs | | {duration(result['wall_seconds'])} |")
    fixed, device = result["overheads"], result["device"]
    lines.append(f"held: {result['device_hours']:.2f} {device}-hours, {usd(result['usd'])} (the {device}s of "
                 f"{result['trials_at_once']} trials at once over the wall time: an upper bound where idle nodes "
                 f"are freed); fixed costs ({fixed['source']}): start {fixed['ray_start']:.3g} s, baseline "
                 f"start-up {fixed['baseline_startup']:.3g} s, {fixed['trial_startup']:.3g} s per trial, "
                 f"{fixed['epoch_overhead']:.3g} s per epoch, {fixed['checkpoint']:.3g} s per checkpoint")
    return lines


def actuals(workload: Workload, *, trial_epochs: int, wall_seconds: float, trials_at_once: int,
            usd_per_gpu_hour: float | None = None) -> dict[str, Any]:
    """What a finished sweep used, to set beside its estimate in ``run.json``: trial-epochs, wall time and
    the device-hours held (the trials' devices over the wall time: an upper bound on use), with their price."""
    hours = held_hours(workload, trials_at_once=trials_at_once, wall_seconds=wall_seconds)
    return {"trial_epochs": trial_epochs, "wall_seconds": wall_seconds, "device": device_of(workload),
            "device_hours": hours, "usd": price(workload, usd_per_gpu_hour, hours)}


def count_trial_epochs(entries: Sequence[dict[str, Any]]) -> int:
    """Distinct (trial, epoch) pairs among a journal's ``epoch`` entries: a re-reported epoch counts once."""
    return len({(e["trial_id"], e["epoch"]) for e in entries
                if e.get("event") == "epoch" and (e.get("epoch") or 0) >= 1})
