"""Where a sweep stands, from its files alone: trials, epochs, time, spend and the best trial so far.

:func:`status_of` builds a :class:`SweepStatus` from what a running sweep holds in memory (its spec, journal
entries, driver runs, baseline and start estimate); :func:`read_status` reads the same from
``results/<name>/`` (``spec.yaml``, ``run.json``, ``journal.jsonl``, ``baseline.json``, ``driver.lock``)
without Ray or torch. :func:`status_line` says it in one line (the sweep's progress line);
:func:`status_lines` at length (``python -m ast_tune.status``). The ETA and the projected spend are
:func:`ast_tune.cost.reestimate.reestimate`'s; the best trial is judged as the tables judge it
(:mod:`ast_tune.results.tables`, :mod:`ast_tune.results.verdict`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ast_tune.config.spec import SpecError
from ast_tune.config.sweep_spec import SweepSpec, load_sweep
from ast_tune.cost.estimate import duration, usd
from ast_tune.cost.reestimate import Attempt, Projection, Trials, attempts_of, reestimate, trials_of
from ast_tune.results import lock, tables, verdict
from ast_tune.results.baseline_file import BASELINE_FILE, load_json, read_baseline
from ast_tune.results.journal import JOURNAL, Journal, epochs_frame


@dataclasses.dataclass(frozen=True)
class SweepStatus:
    """A sweep at one moment."""

    name: str
    live: bool  # a driver runs it now
    trials: Trials
    projection: Projection
    best: str  # the best trial so far, one phrase
    verdict: str  # the sweep's verdict line, as it prints at its end
    estimate: Mapping[str, Any] | None  # the estimate made at the start

    @property
    def finished(self) -> bool:
        return self.trials.done >= self.trials.total


#: what the best trial and the verdict say while a sweep's dense baseline (``storage.baseline: auto``) is untimed
_BASELINE_DUE = "not judged yet: the dense baseline is not timed yet"


def _best(trials: Any, baseline: Mapping | None) -> str:
    if baseline is None:
        return "best: not judged (no dense baseline)"
    if trials.empty:
        return "best: no trial finished yet"
    found = verdict.best(trials)
    if found is None:
        return "best: none at minimum yet"
    level, row, _ = found
    return (f"best: trial {row['trial_id']} at {level} (top-1 {row['val_top1']:.2f}%, savings "
            f"{100 * row['energy_savings']:.1f}% counted)")


def status_of(spec: SweepSpec, entries: Sequence[Mapping[str, Any]], *, attempts: Sequence[Attempt], now: float,
              live: bool, baseline: Mapping | None = None, estimate: Mapping[str, Any] | None = None,
              promoted: bool = False) -> SweepStatus:
    """The status of ``spec``'s sweep (arguments as :func:`~ast_tune.cost.reestimate.reestimate`'s; ``baseline``:
    ``baseline.json``'s mapping, which the best trial is judged against)."""
    projection = reestimate(spec, entries, attempts=attempts, now=now, live=live, estimate=estimate,
                            baseline_due=spec.storage.baseline == "auto" and baseline is None, promoted=promoted)
    epochs = tables.rebased(epochs_frame(entries), baseline and baseline["epoch_seconds"])
    objectives = [(o.metric, o.mode) for o in spec.objectives]
    judged = tables.trials_table(epochs, objectives, baseline=baseline, criteria=spec.criteria) if len(epochs) \
        else epochs
    if len(judged):
        judged = judged[tables.eligible(judged) & judged["feasible"]]
    if baseline is None and spec.storage.baseline == "auto":
        best, line = f"best: {_BASELINE_DUE}", f"verdict: {_BASELINE_DUE}"
    else:
        best = _best(judged, baseline)
        line = verdict.conclusion(judged, verdict.epoch_rows(epochs), baseline, spec.criteria)
    return SweepStatus(spec.name, live, trials_of(entries, spec.search.num_trials, live=live), projection,
                       best, line, estimate)


def _start_estimate(run: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The estimate of the latest attempt that has one (a resumed attempt may have made none)."""
    for attempt in [run, *reversed(run.get("attempts") or [])]:
        estimate = attempt.get("estimate")
        if isinstance(estimate, Mapping) and "trial_epochs" in estimate:
            return estimate
    return None


def read_status(results: Path, *, now: float | None = None) -> SweepStatus:
    """The status of the sweep in ``results`` (``results/<name>``), from its files alone.

    Raises:
        SpecError: ``results`` is not a sweep's results directory (no ``spec.yaml``), or a file there is
            not what the sweep writes; the message names the path.
    """
    results = Path(results)
    if not (results / "spec.yaml").is_file():
        raise SpecError(str(results), "not a sweep's results directory (no spec.yaml); give results/<name>")
    spec = load_sweep(results / "spec.yaml")
    run = load_json(results / "run.json") or {}
    if not isinstance(run, Mapping):
        raise SpecError(str(results / "run.json"), "must hold a JSON object")
    baseline = read_baseline(results / BASELINE_FILE)
    promoted = (results / "promoted" / "summary.json").is_file()
    return status_of(spec, Journal(results / JOURNAL).read(), attempts=attempts_of(run),
                     now=time.time() if now is None else now, live=lock.holder(results) is not None,
                     baseline=baseline, estimate=_start_estimate(run), promoted=promoted)


def _spend(projection: Projection) -> str:
    device = f"{projection.device}-h"
    held = f"{projection.held_hours:.2f} {device}" + (f" ({usd(projection.held_usd)})" if projection.held_usd
                                                        is not None else "")
    if projection.projected_hours is None:
        return f"{held} held"
    projected = f"{projection.projected_hours:.2f}" + (f" ({usd(projection.projected_usd)})"
                                                       if projection.projected_usd is not None else "")
    return f"{held} held, {projected} projected"


def _eta(status: SweepStatus) -> str:
    eta = status.projection.eta_seconds
    if status.finished and not status.live:
        return "finished"
    return "ETA n/a" if eta is None else f"ETA {duration(eta)}"


def status_line(status: SweepStatus) -> str:
    """One line: ``status: 9/16 trials done, 2 running, 5 pending · 74/104 epochs · 3.2 min elapsed, ETA 80 s ·
    0.10 CPU-h held, 0.15 projected · best: trial 7 at minimum (...)``."""
    t, p = status.trials, status.projection
    return (f"status: {t.done}/{t.total} trials done, {t.running} running, {t.pending} pending · "
            f"{p.epochs_done}/{p.epochs_expected:.0f} epochs · {duration(p.elapsed_seconds)} elapsed, "
            f"{_eta(status)} · {_spend(p)} · {status.best}")


def status_lines(status: SweepStatus) -> list[str]:
    """The status at length: what runs, the trials, the epochs, time and spend (and how they were
    re-estimated), the estimate made at the start, and the verdict so far."""
    t, p = status.trials, status.projection
    state = "running" if status.live else "finished" if status.finished else "not running (continue with --resume)"
    lines = [f"sweep {status.name}: {state}",
             f"trials: {t.done} of {t.total} done, {t.running} running, {t.pending} pending",
             f"trial-epochs: {p.epochs_done} of {p.epochs_expected:.1f} expected (the rungs' expectation for the "
             "trials not yet ended)",
             f"time: {duration(p.elapsed_seconds)} elapsed; {_eta(status)} (pace: {p.basis}"
             + (f", {p.pace:.3g} trial-epochs/s)" if p.pace else ")"),
             f"{p.device}-hours: {_spend(p)} (the trials' {p.device}s held over the wall time)"]
    if status.estimate is not None:
        e = status.estimate
        lines.append(f"estimate at the start: {e['trial_epochs']:.1f} trial-epochs, {duration(e['wall_seconds'])}, "
                     f"{e.get('device_hours', e.get('gpu_hours', 0.0)):.2f} {p.device}-h ({e.get('source', '?')})")
    return [*lines, status.best, status.verdict]

