"""A running sweep's cost, re-estimated from what its journal has measured so far.

:func:`reestimate` takes the journal's entries (each stamped with the time it was written), the driver
runs (*attempts*) of ``run.json`` and the estimate made at the start, and projects the rest:

- **trial-epochs left**: a trial that ended has none; a trial that started and has not ended has what
  its next rungs are expected to let through after its last epoch (``Schedule.remaining``); a trial
  not started yet has the expectation of its place in the order (``Schedule.per_trial``);
- **the pace**: trial-epochs per second of wall time over the current attempt, from the moment every
  slot has run an epoch to its last epoch, so it holds the trials' start-up, validation, checkpoints and
  the trials running side by side (the first trials' start-up is the sweep's, once); until then, the start
  estimate's; in a journal without times (an older version's), the epochs over the attempts' wall time;
- **the ETA**: the trial-epochs left at that pace; before the attempt's first trial, also what the start
  estimate prices ahead of the trials (the start, a baseline not timed yet) less the time already spent;
  and the promotion, as the start estimate prices it, while it has not run;
- **device-hours held**: each attempt's trials at once × one trial's devices, over its wall time
  (:func:`ast_tune.cost.estimate.held_hours`); projected: the same over the ETA, added.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ast_tune.config.sweep_spec import SweepSpec
from ast_tune.cost.estimate import count_trial_epochs, device_of, held_hours, price, schedule
from ast_tune.results.journal import TIME

#: the names of the estimate's parts (:func:`ast_tune.cost.estimate.estimate`) that the trials' pace leaves out
_START, _BASELINE, _PROMOTION = "Ray's start", "dense baseline", ("promoted-workload dense baseline", "promoted run")


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One driver run of a sweep (``run.json``, ``attempts``): Unix seconds; ``end`` None while it runs or
    when it was killed."""

    start: float
    end: float | None
    trials_at_once: int


def attempts_of(run: Mapping[str, Any]) -> list[Attempt]:
    """The driver runs a ``run.json`` mapping records, oldest first (the earlier ones under ``attempts``)."""
    def stamp(text: str | None) -> float | None:
        return None if not text else datetime.fromisoformat(text).timestamp()

    return [Attempt(stamp(a["start"]), stamp(a.get("end")), int(a.get("trials_at_once") or 1))
            for a in [*(run.get("attempts") or []), run] if a.get("start")]


@dataclasses.dataclass(frozen=True)
class Trials:
    """Where the trials of a sweep stand: done (their end recorded), running, and pending of ``total``."""

    total: int
    done: int
    running: int  # started, no end, and the driver alive (else they are pending: they resume)
    started: int  # started at some point (the order a pending trial takes comes after them)
    last_epoch: dict[str, int]  # each started trial without an end: its last epoch

    @property
    def pending(self) -> int:
        return max(0, self.total - self.done - self.running)


def trials_of(entries: Sequence[Mapping[str, Any]], total: int, *, live: bool) -> Trials:
    """Count the trials of a journal's ``entries`` (``total``: ``search.num_trials``)."""
    ended = {e["trial_id"] for e in entries if e["event"] == "end"}
    started = {e["trial_id"]: 0 for e in entries}
    for e in entries:
        if e["event"] == "epoch" and (e.get("epoch") or 0) > started[e["trial_id"]]:
            started[e["trial_id"]] = e["epoch"]
    open_ = {t: epoch for t, epoch in started.items() if t not in ended}
    return Trials(total, len(ended), len(open_) if live else 0, len(started), open_)


@dataclasses.dataclass(frozen=True)
class Projection:
    """What a sweep has cost so far and is projected to cost in all (seconds, device-hours, USD)."""

    epochs_done: int
    epochs_expected: float
    elapsed_seconds: float  # wall time over every attempt
    eta_seconds: float | None  # None: no pace measured and no estimate to take one from
    pace: float | None  # trial-epochs per second of wall time
    basis: str  # where the pace comes from, one phrase
    device: str  # "GPU" or "CPU"
    held_hours: float
    projected_hours: float | None
    held_usd: float | None
    projected_usd: float | None

    def totals(self) -> dict[str, Any]:
        """The projected whole, with run.json's estimate keys (``trial_epochs``, ``wall_seconds``, ...)."""
        wall = None if self.eta_seconds is None else self.elapsed_seconds + self.eta_seconds
        return {"trial_epochs": self.epochs_expected, "wall_seconds": wall, "device": self.device,
                "device_hours": self.projected_hours, "usd": self.projected_usd,
                "made_at": {"trial_epochs": self.epochs_done, "elapsed_seconds": self.elapsed_seconds}}


def _times(entries: Sequence[Mapping[str, Any]], event: str, since: float) -> list[float]:
    return [e[TIME] for e in entries if e["event"] == event and isinstance(e.get(TIME), int | float)
            and e[TIME] >= since]


def _pace(entries: Sequence[Mapping[str, Any]], attempts: Sequence[Attempt], elapsed: float,
          estimate: Mapping[str, Any] | None) -> tuple[float | None, str]:
    """Trial-epochs per second, and where the figure comes from (module docstring)."""
    current = attempts[-1] if attempts else None
    starts = _times(entries, "start", current.start) if current else []
    epochs = sorted(_times(entries, "epoch", min(starts))) if starts else []
    slots = current.trials_at_once if current else 1
    if len(epochs) > slots and epochs[-1] > epochs[slots - 1]:  # once every slot has run an epoch
        return (len(epochs) - slots) / (epochs[-1] - epochs[slots - 1]), f"measured over {len(epochs)} trial-epochs"
    if any(TIME not in e for e in entries) and count_trial_epochs(entries) and elapsed > 0:
        return count_trial_epochs(entries) / elapsed, "the epochs over the wall time (a journal without times)"
    trials = _parts(estimate, lambda name: name.startswith("trials"))
    if trials and trials[0]["wall_seconds"] > 0:
        return trials[0]["epochs"] / trials[0]["wall_seconds"], "the start estimate's (too few epochs measured yet)"
    return None, "no pace yet (too few epochs measured, no estimate)"


def _parts(estimate: Mapping[str, Any] | None, chosen: Any) -> list[Mapping[str, Any]]:
    """The parts of ``estimate`` whose name ``chosen`` accepts."""
    return [p for p in (estimate or {}).get("parts", []) if chosen(p["name"])]


def _elapsed(attempts: Sequence[Attempt], entries: Sequence[Mapping[str, Any]], now: float, live: bool) -> list[float]:
    """Each attempt's wall time: to its end; the running one to ``now``; a killed one to its last journal entry."""
    walls = []
    for i, attempt in enumerate(attempts):
        later = attempts[i + 1].start if i + 1 < len(attempts) else float("inf")
        if attempt.end is not None:
            end = attempt.end
        elif i == len(attempts) - 1 and live:
            end = now
        else:
            end = max([t for t in _times(entries, "epoch", attempt.start) + _times(entries, "end", attempt.start)
                       + _times(entries, "start", attempt.start) if t < later], default=attempt.start)
        walls.append(max(0.0, end - attempt.start))
    return walls


def reestimate(spec: SweepSpec, entries: Sequence[Mapping[str, Any]], *, attempts: Sequence[Attempt], now: float,
               live: bool, estimate: Mapping[str, Any] | None = None, baseline_due: bool = False,
               promoted: bool = False) -> Projection:
    """Project the cost of ``spec``'s sweep from its journal ``entries`` (module docstring).

    Args:
        spec: the sweep.
        entries: its journal, in order.
        attempts: its driver runs, oldest first.
        now: Unix seconds.
        live: whether a driver runs it now (its open trials are running, not waiting to resume).
        estimate: the estimate made at the start (``run.json``'s), if there is one.
        promoted: whether the promotion has run (its cost is then no longer ahead).
    """
    trials = trials_of(entries, spec.search.num_trials, live=live)
    plan = schedule(spec)
    left = sum(plan.remaining(epoch) for epoch in trials.last_epoch.values())
    left += sum(plan.per_trial[min(trials.started, len(plan.per_trial)):])
    done = count_trial_epochs(entries)
    walls = _elapsed(attempts, entries, now, live)
    elapsed = sum(walls)
    pace, basis = _pace(entries, attempts, elapsed, estimate)
    eta = None if pace is None else left / pace
    if eta is not None and attempts and not _times(entries, "start", attempts[-1].start):
        before = _parts(estimate, lambda name: name == _START or (baseline_due and name == _BASELINE))
        eta += max(0.0, sum(p["wall_seconds"] for p in before) - walls[-1])
    if eta is not None and spec.promote.enabled and not promoted:
        eta += sum(p["wall_seconds"] for p in _parts(estimate, lambda name: name in _PROMOTION))
    held = sum(held_hours(spec.workload, trials_at_once=a.trials_at_once, wall_seconds=wall)
               for a, wall in zip(attempts, walls, strict=True))
    at_once = attempts[-1].trials_at_once if attempts else min(spec.search.max_concurrent, spec.search.num_trials)
    projected = None if eta is None else held + held_hours(spec.workload, trials_at_once=at_once, wall_seconds=eta)
    rate = spec.cost.usd_per_gpu_hour
    return Projection(done, done + left, elapsed, eta, pace, basis, device_of(spec.workload), held, projected,
                      price(spec.workload, rate, held),
                      None if projected is None else price(spec.workload, rate, projected))
