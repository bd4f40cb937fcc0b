"""Run one sweep trial to full length: ``python -m ast_tune.promote results/<name> [--trial ID] [--epochs N]``.

**Which trial** (:func:`choose_trial`, the spec's ``promote.rule``): of the Pareto-front trials
(finished or scheduler-stopped; errored ones never are) whose final ``val_top1`` is at most
``max_accuracy_drop`` points below the dense baseline's (``baseline.json``; without one, the
most accurate front trial's), the best on the ``prefer`` objective; ties go to the higher top-1,
then the smaller trial id. If none is close enough nothing runs (exit 1, naming the most
accurate front trial): a long run is costly, so it is never spent on a trial the rule rejects.
``--trial ID`` promotes any finished trial by hand.

**The run**: the trial's RunSpec (:meth:`SweepSpec.trial_spec` of its ``param.*``) with ``epochs``
from ``--epochs``, else ``promote.epochs``, else the base preset, and ``promote.checkpoint_every``,
trained by :func:`ast_tune.worker.run_training` as Train run ``promoted_<trial_id>`` under
``results/<name>/promoted/``. Ray Train keeps its newest checkpoint there, so the same command
continues an interrupted run. ``speedup`` divides the sweep's baseline epoch time by this run's;
on CPU that baseline was timed beside the other trials while this run runs alone, so it reads high.

``promoted/`` holds ``plan.json`` (trial, params, RunSpec; a later call must ask for the same),
``epochs.parquet`` (one row per epoch, rewritten every epoch), ``summary.json`` (trial, params,
status, the engine's summary with ``per_class_top1``, train seconds), ``plots/`` and the Train run.
Exit codes: 0 done (or done before), 1 runtime failure or no trial qualifies, 2 bad input (one
line naming the path or flag; nothing written), 130 interrupted (the same command continues).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import ray
from ray.train import UserCallback
from ray.util.queue import Queue

from ast_tune import atomic, columns
from ast_tune.baseline import probe_device
from ast_tune.cli import CliParser, run_main
from ast_tune.export import FRONT_STATUSES, read_epochs, trials_table
from ast_tune.plots import write_run_plots
from ast_tune.presets import get_preset
from ast_tune.ray_runtime import in_threads, ray_session
from ast_tune.run_spec import RunSpec
from ast_tune.spec import SpecError, to_dict
from ast_tune.sweep_results import read_baseline
from ast_tune.sweep_spec import PromoteRule, SweepSpec, Workload, load_sweep
from ast_tune.worker import TrialFailedError, failure_reason, run_training

log = logging.getLogger(__name__)

PROMOTED = "promoted"  # the promoted run's directory under results/<name>/
PLAN_FILE = "plan.json"


class NoCandidateError(RuntimeError):
    """No front trial is close enough to the reference accuracy; ``str(err)`` is one line."""


def choose_trial(trials: pd.DataFrame, *, baseline_top1: float | None, rule: PromoteRule,
                 prefer_mode: str = "max") -> str:
    """The id of the trial to promote (see the module docstring for the rule).

    Args:
        trials: :func:`ast_tune.export.trials_table` rows: ``trial_id``, ``status``, ``on_front``,
            ``val_top1`` (final, %) and the ``rule.prefer`` column.
        baseline_top1: the dense baseline's final top-1 (%); None: the best front trial's.
        rule: ``max_accuracy_drop`` (percentage points) and ``prefer`` (an objective's metric).
        prefer_mode: ``max`` or ``min``, the mode of the ``prefer`` objective.

    Raises:
        NoCandidateError: no finished trial is on the front, or none is within the drop.
    """
    finished = trials["status"].astype(str).str.upper().isin(FRONT_STATUSES)
    front = trials[finished & trials["on_front"].astype(bool)]
    if front.empty:
        raise NoCandidateError("no trial is on the Pareto front; see trials.csv")
    reference = front["val_top1"].max() if baseline_top1 is None else baseline_top1
    close = front[reference - front["val_top1"] <= rule.max_accuracy_drop + 1e-9]
    if close.empty:
        best = front.sort_values(["val_top1", "trial_id"], ascending=[False, True]).iloc[0]
        raise NoCandidateError(
            f"no front trial is within {rule.max_accuracy_drop:g} points of the "
            f"{'baseline' if baseline_top1 is not None else 'best trial'}'s top-1 "
            f"{reference:.2f}%; the most accurate, trial {best['trial_id']}, has {best['val_top1']:.2f}%; "
            "pass --trial ID to promote one anyway")
    ranked = close.sort_values([rule.prefer, "val_top1", "trial_id"], ascending=[prefer_mode == "min", False, True],
                               na_position="last", kind="stable")
    return str(ranked["trial_id"].iloc[0])


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything the promoted run needs, read and checked before anything is written."""

    trial_id: str
    params: dict[str, Any]
    run_spec: RunSpec
    workload: Workload
    baseline: Mapping | None  # baseline.json
    out: Path  # results/<name>/promoted, absolute
    why: str  # one line: which trial and why

    @property
    def baseline_seconds(self) -> float | None:
        """The dense baseline's train seconds per epoch, or None (then speedup is NaN)."""
        return self.baseline["epoch_seconds"] if self.baseline else None

    def document(self) -> dict[str, Any]:
        """``plan.json``: what a later call must ask for again to continue this run."""
        return json.loads(json.dumps({"trial_id": self.trial_id, "params": self.params,
                                      "run_spec": to_dict(self.run_spec)}))


def plan_promotion(results_dir: Path, *, trial: str | None = None, epochs: int | None = None) -> Plan:
    """Read ``results_dir`` and decide the run; writes nothing.

    Raises:
        SpecError: a missing or bad input (directory, ``epochs.parquet``, ``spec.yaml``,
            ``baseline.json``, ``--trial``, ``--epochs``, or ``promoted/`` holding another run).
        NoCandidateError: no ``trial`` given and the rule finds none.
    """
    results_dir = Path(results_dir)
    table = read_epochs(results_dir)
    sweep = _load_spec(results_dir / "spec.yaml")
    trials = trials_table(table, [(o.metric, o.mode) for o in sweep.objectives])
    trials["trial_id"] = trials["trial_id"].astype(str)
    baseline = read_baseline(results_dir / "baseline.json")
    if trial is None:
        rule, modes = sweep.promote.rule, {o.metric: o.mode for o in sweep.objectives}
        if rule.prefer not in modes:
            raise SpecError(f"{results_dir / 'spec.yaml'}: promote.rule.prefer",
                            f"must be one of the objectives {', '.join(modes)}; got {rule.prefer!r}")
        trial = choose_trial(trials, baseline_top1=baseline["val_top1"] if baseline else None, rule=rule,
                             prefer_mode=modes[rule.prefer])
        why = f"promote.rule: best {rule.prefer} of the front trials within {rule.max_accuracy_drop:g} points " \
              f"of the {'baseline' if baseline else 'best trial'}'s top-1"
    else:
        _check_requested(trials, trial)
        why = "asked for with --trial"
    row = trials[trials["trial_id"] == trial].to_dict("records")[0]
    params = {k.removeprefix(columns.PARAM_PREFIX): v for k, v in row.items() if k.startswith(columns.PARAM_PREFIX)}
    spec = _promoted_spec(sweep, params, epochs, results_dir / "spec.yaml")
    plan = Plan(trial, params, spec, sweep.workload, baseline, (results_dir / PROMOTED).resolve(),
                f"promoting trial {trial} ({why}): top-1 {row['val_top1']:.2f}%, savings "
                f"{100 * row['energy_savings']:.1f}% (counted), {spec.epochs} epochs, a checkpoint every "
                f"{spec.checkpoint_every}")
    _check_previous(plan)
    return plan


def _load_spec(path: Path) -> SweepSpec:
    try:
        return load_sweep(path)
    except SpecError as err:
        raise SpecError(f"{path}: {err.key}" if err.key not in ("", str(path)) else str(path), err.message) from None


def _check_requested(trials: pd.DataFrame, trial: str) -> None:
    known = trials.set_index("trial_id")["status"]
    if trial not in known.index:
        raise SpecError("--trial", f"no trial {trial!r}; the trials are {', '.join(known.index)}")
    if str(known[trial]).upper() not in FRONT_STATUSES:
        raise SpecError("--trial", f"trial {trial} is {known[trial]}; only finished trials "
                                   f"({', '.join(sorted(FRONT_STATUSES))}) can be promoted")


def _promoted_spec(sweep: SweepSpec, params: dict[str, Any], epochs: int | None, spec_path: Path) -> RunSpec:
    """The trial's RunSpec, run for the promotion's epochs with its checkpoint interval."""
    key = "--epochs" if epochs is not None else f"{spec_path}: promote.epochs"
    epochs = epochs if epochs is not None else sweep.promote.epochs or get_preset(sweep.base).epochs
    try:
        return dataclasses.replace(sweep.trial_spec(params), epochs=epochs,
                                   checkpoint_every=sweep.promote.checkpoint_every)
    except SpecError as err:  # e.g. fewer epochs than the trial's warm-up
        raise SpecError(key, f"the trial's RunSpec with {epochs} epochs is invalid: {err}") from None


def _check_previous(plan: Plan) -> None:
    path = plan.out / PLAN_FILE
    old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else plan.document()
    if old != plan.document():
        raise SpecError(str(path), f"{plan.out} holds the promotion of trial {old['trial_id']} "
                                   f"({old['run_spec']['epochs']} epochs); move it away to promote trial "
                                   f"{plan.trial_id} ({plan.run_spec.epochs} epochs)")


# --- the run ---------------------------------------------------------------------------------


class _Forward(UserCallback):
    """Runs in the Ray Train controller: passes rank 0's epoch records on to the driver's queue."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        self.queue.put(dict(metrics[0]))  # blocking: in order, and delivered before the run ends


def progress_line(trial_id: str, record: Mapping[str, Any], epochs: int) -> str:
    """One line per epoch: trial, epoch, top-1 (%), activation (fraction), speedup (measured)."""
    speedup = record.get("speedup", math.nan)
    return (f"promoted trial {trial_id} epoch {record['epoch']}/{epochs}: top1 {record['val_top1']:.2f}% "
            f"act {record['activation_rate']:.3f} speedup "
            f"{f'{speedup:.2f}x' if math.isfinite(speedup) else 'n/a'} (measured)")


def promote(results_dir: Path, *, trial: str | None = None, epochs: int | None = None,
            progress: Callable[[str], None] | None = None) -> Path:
    """Choose (or take ``trial``) and run the promoted trial; its ``promoted/`` directory.

    Starts Ray unless it is running already (as at the end of a sweep). A run that finished
    before is not run again; an interrupted one continues from its last checkpoint.

    Args:
        results_dir: the sweep's ``results/<name>``.
        trial: a finished trial's id; None: :func:`choose_trial` with the spec's rule.
        epochs: the run's length; None: ``promote.epochs``, else the base preset's.
        progress: called with each progress line (the choice, then one per epoch); default: log.

    Raises:
        SpecError: bad input (see :func:`plan_promotion`); nothing is written.
        NoCandidateError: the rule finds no trial.
        TrialFailedError: the run failed; ``summary.json`` says so, with the reason.
    """
    plan = plan_promotion(results_dir, trial=trial, epochs=epochs)
    say = progress or log.info
    say(plan.why)
    summary_path = plan.out / "summary.json"
    if summary_path.is_file() and json.loads(summary_path.read_text()).get("status") == "finished":
        say(f"trial {plan.trial_id} was promoted before: {summary_path}")
        return plan.out
    if ray.is_initialized():
        _train(plan, say)
    else:
        with ray_session(verbose=False):
            _train(plan, say)
    return plan.out


def _train(plan: Plan, say: Callable[[str], None]) -> None:
    plan.out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(plan.out / PLAN_FILE, json.dumps(plan.document(), indent=2) + "\n")
    _warn_about_baseline(plan)
    rows: dict[int, dict[str, Any]] = {}  # by epoch: a resumed run first reports its checkpoint's epochs again
    shown = _shown_before(plan.out / "epochs.parquet")

    def on_epoch(record: dict[str, Any]) -> None:
        rows[record["epoch"]] = record
        _write_epochs(plan.out, list(rows.values()))
        if shown.get(record["epoch"]) != record["train_seconds"]:  # not a re-report of an earlier call's epoch
            say(progress_line(plan.trial_id, record, plan.run_spec.epochs))

    summary: dict[str, Any] = {"trial_id": plan.trial_id, "params": plan.params, "status": "finished"}
    try:
        result = _run_forwarding(plan, on_epoch)
        records = result["records"]
        summary.update(result["summary"], final=records[-1] if records else {})
    except TrialFailedError as err:
        records = [rows[epoch] for epoch in sorted(rows)]
        summary.update(status="failed", reason=str(err), epochs_done=len(records))
    summary.update(train_seconds=sum(r["train_seconds"] for r in records),
                   baseline_epoch_seconds=plan.baseline_seconds)
    if records:
        _write_epochs(plan.out, records)
        write_run_plots(pd.DataFrame(records), plan.out / "plots", summary=summary)
    atomic.write_text(plan.out / "summary.json", json.dumps(summary, indent=2, default=float) + "\n")
    if summary["status"] != "finished":
        raise TrialFailedError(summary["reason"])


def _run_forwarding(plan: Plan, on_epoch: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """:func:`run_training` in one thread, ``on_epoch`` for each record in another; its result."""
    queue = Queue(actor_options={"num_cpus": 0})

    def train() -> dict[str, Any]:
        try:
            return run_training(plan.run_spec, workload=plan.workload, name=f"promoted_{plan.trial_id}",
                                storage_path=plan.out, callbacks=[_Forward(queue)],
                                baseline_epoch_seconds=plan.baseline_seconds)
        finally:
            queue.put(None)  # the end of the records

    def forward() -> None:
        while (record := queue.get()) is not None:
            on_epoch(record)

    try:
        return in_threads([train, forward])[0]
    finally:
        queue.shutdown()


def _shown_before(path: Path) -> dict[int, float]:
    """``{epoch: train_seconds}`` of the epochs an interrupted earlier call wrote (and printed)."""
    if not path.is_file():
        return {}
    frame = pd.read_parquet(path, columns=["epoch", "train_seconds"])
    return dict(zip(frame["epoch"].tolist(), frame["train_seconds"].tolist(), strict=True))


def _write_epochs(out: Path, records: Sequence[Mapping[str, Any]]) -> None:
    frame = pd.DataFrame([{key: r.get(key, math.nan) for key in columns.EPOCH_METRICS} for r in records])
    with atomic.atomic_path(out / "epochs.parquet") as tmp:
        frame.to_parquet(tmp, index=False)


def _warn_about_baseline(plan: Plan) -> None:
    if plan.baseline is None:
        log.warning("no baseline.json: the promoted run's speedup is not measured (NaN)")
        return
    fingerprint = plan.baseline.get("fingerprint", {})
    if "device" in fingerprint and fingerprint["device"] != (device := probe_device(plan.workload)):
        log.warning("the baseline was timed on %s, this run is on %s: its speedup compares different hardware",
                    fingerprint["device"], device)
    elif fingerprint.get("runs_at_once", 1) > 1:
        log.warning("the baseline was timed with %d runs side by side, this run runs alone: its speedup "
                    "reads high", fingerprint["runs_at_once"])


# --- CLI -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = CliParser(prog="python -m ast_tune.promote", description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the sweep's results/<name> directory")
    parser.add_argument("--trial", help="promote this finished trial instead of the rule's choice")
    parser.add_argument("--epochs", type=int, help="epochs of the promoted run (default: the spec's promote.epochs)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.getLogger("ray").setLevel(logging.CRITICAL)
    return run_main(
        functools.partial(_main, argv),
        interrupted="interrupted: the last checkpoint is kept; run the same command again to continue",
        failures={NoCandidateError: lambda err: f"nothing promoted: {err}",
                  Exception: lambda err: f"promotion failed: {failure_reason(err)}"})


def _main(argv: Sequence[str] | None) -> int:
    args = parse_args(argv)
    out = promote(args.results, trial=args.trial, epochs=args.epochs, progress=lambda line: print(line, flush=True))
    print(f"done: {out}/epochs.parquet, summary.json, plots/", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
