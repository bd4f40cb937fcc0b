"""Per-trial overhead of a sweep: the seconds a Tune trial spends outside ``engine.fit``'s epochs.

``python benchmarks/trial_overhead.py RESULTS_DIR [RESULTS_DIR ...]`` reads a finished sweep's Tune
run (``tune/experiment_state-*.json``: each trial's directory, start time and last result time, and
``tune/trial_<number>/result.json``: each epoch's ``time_total_s``, ``time_this_iter_s`` and
``train_seconds``) and prints a Markdown table, one row per sweep (its start and device from its
``run.json``), under the command, date and machine of the tabulation (:mod:`machine`):

- ``startup``: trial start → first epoch's report, minus that epoch's own wall time (its
  ``train_seconds`` plus the median evaluation + report time of the later epochs). This is Ray
  Train's controller and placement group, the worker's start, imports and data loading.
- ``handover``: a trial's last report → the start of the trial that took its slot (workers shut
  down, the Train run finalised, the next trial suggested and scheduled). The k-th trial started
  after the first ``concurrency`` is paired with the k-th trial to end.
- ``overhead / trial``: startup + median handover.
- ``idle slot s / trial``: ``(concurrency × sweep span − Σ epoch wall time) / trials``, the span
  running from the first trial's start to the last report. It needs no pairing of trials, so it
  also holds when a trial's start waits on another's teardown.

Run ``python -m ast_tune.sweep search_spaces/quickstart.yaml --set storage.root=/tmp/ov`` first,
or pass any sweep's results directory.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from machine import sweeps_table


@dataclass(frozen=True)
class TrialTiming:
    """One Tune trial's clock, in seconds (times are Unix epoch seconds)."""

    trial_id: str
    start: float  # Tune started the trial
    last_result: float  # its last report reached Tune
    startup_s: float  # start → first epoch report, minus the first epoch's own wall time
    epochs: int
    epoch_wall_s: float  # the sum of its epochs' wall time (train + eval + report)


def _epoch_rows(result_file: Path) -> list[dict]:
    rows = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
    return [row for row in rows if "epoch" in row]


def trial_timing(trial_id: str, start: float, last_result: float, rows: Sequence[dict]) -> TrialTiming:
    """Split one trial's time into startup and epochs, from its result rows (at least one epoch).

    The first epoch's wall time is its ``train_seconds`` plus the median, over later epochs, of
    ``time_this_iter_s - train_seconds`` (evaluation and reporting); 0 if there is no later epoch.
    """
    first, later = rows[0], rows[1:]
    extra = statistics.median(r["time_this_iter_s"] - r["train_seconds"] for r in later) if later else 0.0
    first_wall = first["train_seconds"] + max(0.0, extra)
    return TrialTiming(trial_id=trial_id, start=start, last_result=last_result,
                       startup_s=first["time_total_s"] - first_wall, epochs=len(rows),
                       epoch_wall_s=first_wall + sum(r["time_this_iter_s"] for r in later))


def read_timings(results: Path) -> list[TrialTiming]:
    """Every trial with at least one reported epoch, in start order."""
    tune_dir = results / "tune"
    states = sorted(tune_dir.glob("experiment_state-*.json"))
    if not states:
        raise FileNotFoundError(f"{tune_dir}: no experiment_state-*.json; is this a sweep's results directory?")
    timings = []
    for trial_json, meta_json in json.loads(states[-1].read_text())["trial_data"]:
        trial, meta = json.loads(trial_json), json.loads(meta_json)
        rows = _epoch_rows(tune_dir / trial["relative_logdir"] / "result.json")
        if rows:
            timings.append(trial_timing(trial["trial_id"], meta["start_time"], meta["last_result_time"], rows))
    return sorted(timings, key=lambda t: t.start)


def handovers(timings: Sequence[TrialTiming], *, concurrency: int) -> list[float]:
    """Seconds from the k-th trial to end to the start of the (concurrency + k)-th trial to start."""
    ends = sorted(t.last_result for t in timings)
    starts = [t.start for t in timings][concurrency:]
    return [start - end for start, end in zip(starts, ends, strict=False)]


def idle_per_trial(timings: Sequence[TrialTiming], *, concurrency: int) -> float:
    """Trial-slot seconds not spent in epochs, per trial: ``(concurrency × span − Σ epoch wall) / n``."""
    span = max(t.last_result for t in timings) - min(t.start for t in timings)
    return (concurrency * span - sum(t.epoch_wall_s for t in timings)) / len(timings)


def _spread(values: Sequence[float]) -> str:
    if not values:
        return "—"
    return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def summary(results: Path) -> str:
    """A Markdown row for the sweep in ``results``: medians (min–max) over its trials, in seconds."""
    run = json.loads((results / "run.json").read_text())
    timings = read_timings(results)
    concurrency = int(run.get("trials_at_once", 1))
    gaps = handovers(timings, concurrency=concurrency)
    startup = [t.startup_s for t in timings]
    per_trial = statistics.median(startup) + (statistics.median(gaps) if gaps else 0.0)
    compute = statistics.median(t.epoch_wall_s / t.epochs for t in timings)
    hardware = run.get("hardware", {})
    started = str(run.get("start", "?")).replace("T", " ")[:16]
    cpus = f"{hardware['cpus']:g}" if isinstance(hardware.get("cpus"), int | float) else "?"
    return (f"| {results.name} | {started} | {hardware.get('device', '?')}, {cpus} CPUs "
            f"| {len(timings)} | {_spread(startup)} | {_spread(gaps)} | {per_trial:.1f} "
            f"| {idle_per_trial(timings, concurrency=concurrency):.1f} | {compute:.2f} |")


HEADER = ("| sweep | started (UTC) | device | trials | startup s | handover s | overhead / trial s "
          "| idle slot s / trial | epoch wall s |\n|---|---|---|---|---|---|---|---|---|")


def main(argv: Sequence[str] | None = None) -> int:
    return sweeps_table("benchmarks/trial_overhead.py", argv, description=__doc__.splitlines()[0], header=HEADER,
                        row=summary)


if __name__ == "__main__":
    sys.exit(main())
