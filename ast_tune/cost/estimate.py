"""What a sweep will cost before it runs: expected trial-epochs, GPU-hours, wall time and USD.

**Trial-epochs.** :func:`rung_table` mirrors the scheduler's rungs (:mod:`ast_tune.tuning.search.schedulers`
builds them with :func:`milestones`): ASHA's as Ray's ``AsyncHyperBandScheduler`` lays out one bracket
(milestones ``grace_period · η^k`` for ``k < int(ln(max_t / grace_period) / ln η + 1)``), or MOASHA's;
a rung at or past ``max_t`` stops no one,
since a trial ends there anyway. Each trial that reaches a rung is judged against the records
already there, its rank among them uniformly random (the expectation over the search):

- ASHA continues a trial whose metric is at least the ``(1 − 1/η)`` percentile (linear
  interpolation) of the ``n`` earlier records: with probability 1 for ``n = 0`` and
  ``(n − (1 − 1/η)(n − 1)) / (n + 1)`` otherwise;
- MOASHA keeps the newcomer if fewer than ``ceil(m / η)`` of the ``m = n + 1`` records beat it
  (always while ``m < η``): probability ``ceil(m / η) / m``.

The expected number reaching the next rung is the sum of those probabilities over the arrivals
(a fractional last arrival counts in proportion). A trial stopped at a rung ran ``ceil(milestone)``
epochs; one that passes every rung runs ``max_t``. ``fifo`` runs every trial to ``max_t``.

**Seconds per epoch** come from :class:`EpochCosts` (:func:`ast_tune.cost.epoch_cost.epoch_costs`:
timed by ``--probe`` or from the spec's ``cost`` section). :func:`estimate` adds the dense baseline(s)
and the promotion to the trials and prices them; :func:`estimate_lines` prints it as Markdown.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ast_tune.config.presets import get_preset
from ast_tune.config.sweep_spec import SweepSpec, Workload


@dataclasses.dataclass(frozen=True)
class Rung:
    """One rung of the expected schedule; counts are expectations (fractional)."""

    milestone: float  # epochs
    reached: float  # trials that reach it
    stopped: float  # of those, trials stopped there


def milestones(kind: str, *, grace_period: float, reduction_factor: float, max_t: float) -> list[float]:
    """The rungs below ``max_t`` of scheduler ``kind``: the schedulers build theirs here (``asha``'s laid out as
    Ray's ``AsyncHyperBandScheduler`` lays out one bracket)."""
    if kind == "fifo":
        return []
    if kind == "asha":
        count = int(np.log(max_t / grace_period) / np.log(reduction_factor) + 1)
    else:
        count = int(math.log(max_t / grace_period, reduction_factor) + 1e-9) + 1
    return [grace_period * reduction_factor**k for k in range(count) if grace_period * reduction_factor**k < max_t]


def pass_probability(kind: str, earlier: int, reduction_factor: float) -> float:
    """The chance that a trial continues at a rung holding ``earlier`` records (see the module docstring)."""
    if kind == "asha":
        if earlier == 0:
            return 1.0
        quantile = 1 - 1 / reduction_factor
        return (earlier - quantile * (earlier - 1)) / (earlier + 1)
    records = earlier + 1
    return 1.0 if records < reduction_factor else math.ceil(records / reduction_factor) / records


def _passing(kind: str, arrivals: float, reduction_factor: float) -> float:
    whole = math.floor(arrivals)
    passed = sum(pass_probability(kind, n, reduction_factor) for n in range(whole))
    return passed + (arrivals - whole) * pass_probability(kind, whole, reduction_factor)


def rung_table(kind: str, *, trials: int, grace_period: float, reduction_factor: float,
               max_t: int) -> tuple[list[Rung], float]:
    """The expected rungs and the expected trial-epochs of ``trials`` trials under scheduler ``kind``."""
    reached, rungs = float(trials), []
    for milestone in milestones(kind, grace_period=grace_period, reduction_factor=reduction_factor, max_t=max_t):
        passed = _passing(kind, reached, reduction_factor)
        rungs.append(Rung(milestone, reached, reached - passed))
        reached = passed
    epochs = sum(r.stopped * math.ceil(r.milestone) for r in rungs) + reached * max_t
    return rungs, epochs


@dataclasses.dataclass(frozen=True)
class EpochCosts:
    """Seconds of one epoch (training + validation) of one run, on the sweep's and on the promoted workload."""

    sweep: float
    promoted: float | None  # None: nothing is promoted
    source: str  # where the figures come from, one phrase


@dataclasses.dataclass(frozen=True)
class Part:
    """One row of the estimate: ``runs`` runs of ``epochs`` epochs each (``epochs`` in all for the trials)."""

    name: str
    runs: int
    epochs: float  # epochs in all, over the runs
    seconds_per_epoch: float
    gpus: float  # GPUs one run holds
    wall_seconds: float

    @property
    def gpu_hours(self) -> float:
        return self.epochs * self.seconds_per_epoch * self.gpus / 3600


def _gpus(workload: Workload) -> float:
    return workload.workers * workload.gpus_per_worker


def promoted_epochs(spec: SweepSpec) -> int:
    """Epochs of the promoted run: ``promote.epochs``, else the base preset's."""
    return spec.promote.epochs or get_preset(spec.base).epochs


def estimate(spec: SweepSpec, costs: EpochCosts) -> dict[str, Any]:
    """The expected cost of ``spec``: its parts, totals and the rung table, as a JSON-ready mapping.

    Trials run ``min(search.max_concurrent, search.num_trials)`` at once; the baselines and the
    promotion's seeds run one after another. USD is GPU-hours at ``cost.usd_per_gpu_hour`` (None without it).
    """
    w, s = spec.workload, spec.scheduler
    rungs, trial_epochs = rung_table(s.kind, trials=spec.search.num_trials, grace_period=s.grace_period,
                                     reduction_factor=s.reduction_factor, max_t=w.epochs)
    at_once = min(spec.search.max_concurrent, spec.search.num_trials)
    parts = [Part(f"trials ({s.kind})", spec.search.num_trials, trial_epochs, costs.sweep, _gpus(w),
                  trial_epochs * costs.sweep / at_once)]
    if spec.storage.baseline == "auto":
        parts.append(Part("dense baseline", 1, w.epochs, costs.sweep, _gpus(w), w.epochs * costs.sweep))
    if spec.promote.enabled and costs.promoted is not None:
        epochs = promoted_epochs(spec)
        full = spec.promoted_sweep(epochs).workload
        if spec.promote.workload is not None and spec.promote.workload.baseline == "auto":
            parts.append(Part("promoted-workload dense baseline", 1, epochs, costs.promoted, _gpus(full),
                              epochs * costs.promoted))
        seeds = spec.promote.seeds  # side by side only where the cluster has room: counted one after another
        parts.append(Part("promoted run", seeds, seeds * epochs, costs.promoted, _gpus(full),
                          seeds * epochs * costs.promoted))
    price = spec.cost.usd_per_gpu_hour
    gpu_hours = sum(p.gpu_hours for p in parts)
    return {
        "source": costs.source, "seconds_per_epoch": {"sweep": costs.sweep, "promoted": costs.promoted},
        "trials_at_once": at_once, "trial_epochs": trial_epochs,
        "rungs": [dataclasses.asdict(r) for r in rungs],
        "parts": [{**dataclasses.asdict(p), "gpu_hours": p.gpu_hours,
                   "usd": None if price is None else p.gpu_hours * price} for p in parts],
        "gpu_hours": gpu_hours, "wall_seconds": sum(p.wall_seconds for p in parts),
        "usd": None if price is None else gpu_hours * price,
    }


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _usd(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def estimate_lines(result: dict[str, Any]) -> list[str]:
    """The estimate as Markdown: the rung table, then one row per part and the total."""
    lines = [f"cost estimate (seconds per epoch: {result['source']}; a dense epoch, so AST trials past their "
             "warm-up cost less):"]
    if result["rungs"]:
        lines += ["| rung (epoch) | trials reaching it (expected) | stopped there |", "|---:|---:|---:|"]
        lines += [f"| {r['milestone']:g} | {r['reached']:.2f} | {r['stopped']:.2f} |" for r in result["rungs"]]
    lines += ["| part | runs | epochs | s / epoch | GPUs per run | GPU-hours | wall | USD |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for p in result["parts"]:
        lines.append(f"| {p['name']} | {p['runs']} | {p['epochs']:.1f} | {p['seconds_per_epoch']:.2f} | "
                     f"{p['gpus']:g} | {p['gpu_hours']:.2f} | {_hours(p['wall_seconds'])} | {_usd(p['usd'])} |")
    lines.append(f"| total | | | | | {result['gpu_hours']:.2f} | {_hours(result['wall_seconds'])} | "
                 f"{_usd(result['usd'])} |")
    lines.append(f"trials at once: {result['trials_at_once']}; wall time excludes Ray's start and per-trial "
                 "start-up")
    return lines


def actuals(*, trial_epochs: int, wall_seconds: float, workload: Workload, trials_at_once: int) -> dict[str, float]:
    """What a finished sweep used, to set beside its estimate in ``run.json``.

    ``gpu_hours`` is the GPUs the trials held at once over the wall time: an upper bound on use.
    """
    return {"trial_epochs": trial_epochs, "wall_seconds": wall_seconds,
            "gpu_hours": wall_seconds * trials_at_once * _gpus(workload) / 3600}


def count_trial_epochs(entries: Sequence[dict[str, Any]]) -> int:
    """Distinct (trial, epoch) pairs among a journal's ``epoch`` entries: a re-reported epoch counts once."""
    return len({(e["trial_id"], e["epoch"]) for e in entries
                if e.get("event") == "epoch" and (e.get("epoch") or 0) >= 1})
