"""The fixed costs of a sweep beside its epochs, measured from finished sweeps' files: the cost model's defaults.

``python benchmarks/fixed_costs.py RESULTS_DIR [RESULTS_DIR ...]`` reads each sweep's ``run.json`` (its start),
``baseline.json`` (when the baseline was written, and its epochs' train and validation seconds) and
``journal.jsonl`` (every entry stamped with the time it was written; each epoch's ``train_seconds`` and
``val_seconds``), and prints a Markdown table under its command, date and machine (:mod:`machine`), one row
per sweep, in seconds (medians, with min–max over the trials or epochs):

- ``start``: from the baseline's end (without a baseline, the sweep's start) to the first trial's first epoch,
  less that epoch and less one trial start-up (below; the trials' part counts one per trial): Tune's start and
  the first trials' processes (``cost.ray_start_seconds``);
- ``baseline start-up``: the sweep's start to the baseline's end, less one copy's epochs of training and
  validation (the copies run side by side): the Ray Train run of the dense baseline, with its workers' start,
  imports, data and reporting (``cost.baseline_startup_seconds``);
- ``trial start-up``: a later trial's start to its first epoch, less that epoch, plus the hand-over of a slot
  (a trial's end to the start of the trial that takes its place; the k-th end is paired with the start that
  follows the first ``trials at once``) (``cost.trial_startup_seconds``);
- ``between epochs``: an epoch's entry to the next one's of the same trial, less the next epoch's training and
  validation, on epochs that write no checkpoint (``cost.epoch_overhead_seconds``);
- ``checkpoint``: the same on epochs that write one, less the median between epochs (``cost.checkpoint_seconds``).

Run a sweep first, e.g. ``python -m ast_tune.sweep search_spaces/quickstart.yaml --set storage.root=/tmp/fc``.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from machine import sweeps_table

from ast_tune.config.sweep_spec import load_sweep
from ast_tune.results.journal import JOURNAL, Journal


def _spread(values: Sequence[float]) -> str:
    if not values:
        return "—"
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def _epoch_seconds(entry: dict) -> float:
    return entry["train_seconds"] + (entry.get("val_seconds") or 0.0)


def measure(results: Path) -> dict[str, list[float]]:
    """The fixed costs of the sweep in ``results`` (seconds, one value per occasion; see the module docstring)."""
    spec = load_sweep(results / "spec.yaml")
    run = json.loads((results / "run.json").read_text())
    start = datetime.fromisoformat(run["start"]).timestamp()
    entries = [e for e in Journal(results / JOURNAL).read() if e.get("time", 0) >= start]
    baseline_path = results / "baseline.json"
    baseline = json.loads(baseline_path.read_text()) if baseline_path.is_file() else None
    trials_start = start
    found: dict[str, list[float]] = defaultdict(list)
    if baseline is not None:
        trials_start = datetime.fromisoformat(baseline["created"]).timestamp()
        epochs = sum(_epoch_seconds(r) for r in baseline["epochs"])
        found["baseline start-up"].append(trials_start - start - epochs)
    starts = {e["trial_id"]: e["time"] for e in entries if e["event"] == "start"}
    ends = sorted(e["time"] for e in entries if e["event"] == "end")
    by_trial: dict[str, list[dict]] = defaultdict(list)
    for entry in entries:
        if entry["event"] == "epoch":
            by_trial[entry["trial_id"]].append(entry)
    at_once = int(run.get("trials_at_once", 1))
    order = sorted(starts, key=starts.get)
    handover = [s - e for s, e in zip([starts[t] for t in order][at_once:], ends, strict=False)]
    for trial in order[at_once:]:
        if by_trial.get(trial):
            first = by_trial[trial][0]
            found["trial start-up"].append(first["time"] - starts[trial] - _epoch_seconds(first)
                                           + (statistics.median(handover) if handover else 0.0))
    first_epoch = min(rows[0]["time"] - _epoch_seconds(rows[0]) for rows in by_trial.values())
    ordinary = statistics.median(found["trial start-up"]) if found["trial start-up"] else 0.0
    found["start"].append(first_epoch - trials_start - ordinary)  # the trials' part counts one start-up each
    every = spec.baseline_spec().checkpoint_every
    between: dict[bool, list[float]] = {True: [], False: []}
    for rows in by_trial.values():
        for before, after in zip(rows, rows[1:], strict=False):
            writes = after["epoch"] % every == 0 or after["epoch"] == spec.workload.epochs
            between[writes].append(after["time"] - before["time"] - _epoch_seconds(after))
    found["between epochs"] = between[False]
    overhead = statistics.median(between[False]) if between[False] else 0.0
    found["checkpoint"] = [value - overhead for value in between[True]]
    return found


COLUMNS = ("start", "baseline start-up", "trial start-up", "between epochs", "checkpoint")


def row(results: Path) -> str:
    """A Markdown row for the sweep in ``results``."""
    run = json.loads((results / "run.json").read_text())
    spec = load_sweep(results / "spec.yaml")
    found = measure(results)
    where = "trial's process" if spec.workload.workers == 1 else f"TorchTrainer, {spec.workload.workers} workers"
    return (f"| {results.name} | {str(run.get('start', '?'))[:16].replace('T', ' ')} | {where} | "
            + " | ".join(_spread(found.get(name, [])) for name in COLUMNS) + " |")


HEADER = ("| sweep | started (UTC) | trials run in | " + " | ".join(f"{name} s" for name in COLUMNS) + " |\n"
          "|---|---|---|" + "---:|" * len(COLUMNS))


def main(argv: Sequence[str] | None = None) -> int:
    return sweeps_table("benchmarks/fixed_costs.py", argv, description=__doc__.splitlines()[0], header=HEADER, row=row)


if __name__ == "__main__":
    sys.exit(main())
