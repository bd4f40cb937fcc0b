"""Run one sweep trial to full length: ``python -m ast_tune.promote results/<name> [--trial ID] [--epochs N]``.

**Which trial** (:func:`ast_tune.tuning.promote_plan.choose_trial`, the spec's ``promote.rule``): of the front trials
(finished or scheduler-stopped; errored ones never are) whose final ``val_top1`` is at most
``max_accuracy_drop`` points below the dense baseline's (``baseline.json``; without one, the
most accurate front trial's), the best on the ``prefer`` objective; ties go to the higher top-1,
then the smaller trial id. If none is close enough nothing runs (exit 1, naming the most
accurate front trial): a long run is costly, so it is never spent on a trial the rule rejects.
``--trial ID`` promotes any finished trial by hand.

**The run**: the trial's RunSpec (:meth:`SweepSpec.trial_spec` of its ``param.*``) with ``epochs``
from ``--epochs``, else ``promote.epochs``, else the base preset, and ``promote.checkpoint_every``,
trained by :func:`ast_tune.tuning.worker.run_training` as Train run ``promoted_<trial_id>`` under
``results/<name>/promoted/``. Ray Train keeps its newest checkpoint there, so the same command
continues an interrupted run. ``speedup`` divides the sweep's baseline epoch time by this run's;
on CPU that baseline was timed beside the other trials while this run runs alone, so it reads high.
With ``promote.workload`` (the full task after a proxy sweep) the run trains on that workload, a
dense baseline of it is timed first (``promoted/baseline.json``, cached) and gives the speedup, and
``summary.json``'s ``transfer`` sets the run beside its proxy trial (:mod:`ast_tune.tuning.transfer`).

``promoted/`` holds ``plan.json`` (trial, params, RunSpec; a later call must ask for the same),
``epochs.parquet`` (one row per epoch, rewritten every epoch), ``summary.json`` (trial, params,
status, the engine's summary with ``per_class_top1``, train seconds), ``plots/`` and the Train run.
Exit codes: 0 done (or done before), 1 runtime failure or no trial qualifies, 2 bad input (one
line naming the path or flag; nothing written), 130 interrupted (the same command continues).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import ray
from ray.train import UserCallback
from ray.util.queue import Queue

from ast_tune import atomic
from ast_tune.config.cli import CliParser, run_main
from ast_tune.core.metrics import data_bound_warning
from ast_tune.results.plots import write_run_plots
from ast_tune.results.progress import epoch_line
from ast_tune.results.tables import write_epochs
from ast_tune.tuning import lock
from ast_tune.tuning.baseline import probe_device
from ast_tune.tuning.promote_plan import PLAN_FILE, NoCandidateError, Plan, plan_promotion
from ast_tune.tuning.ray_runtime import in_threads, ray_session
from ast_tune.tuning.transfer import transfer_check, transfer_lines, with_full_baseline, workload_line, workload_record
from ast_tune.tuning.worker import TrialFailedError, failure_reason, run_training

log = logging.getLogger(__name__)

# --- the run ---------------------------------------------------------------------------------


class _Forward(UserCallback):
    """Runs in the Ray Train controller: passes rank 0's epoch records on to the driver's queue."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        self.queue.put(dict(metrics[0]))  # blocking: in order, and delivered before the run ends


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
        SpecError: bad input (see :func:`plan_promotion`), nothing written; or another driver holds
            the sweep (:mod:`ast_tune.tuning.lock`).
        NoCandidateError: the rule finds no trial.
        TrialFailedError: the run failed; ``summary.json`` says so, with the reason.
    """
    plan = plan_promotion(results_dir, trial=trial, epochs=epochs)
    say = progress or log.info
    with lock.hold(results_dir, say=say):  # one driver per sweep; a sweep's own promotion holds it already
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
    plan = with_full_baseline(plan, say)
    say(workload_line(plan))
    warned = []
    _warn_about_baseline(plan)
    rows: dict[int, dict[str, Any]] = {}  # by epoch: a resumed run first reports its checkpoint's epochs again
    shown = _shown_before(plan.out / "epochs.parquet")

    def on_epoch(record: dict[str, Any]) -> None:
        rows[record["epoch"]] = record
        write_epochs(plan.out / "epochs.parquet", list(rows.values()))
        if shown.get(record["epoch"]) != record["train_seconds"]:  # not a re-report of an earlier call's epoch
            say(epoch_line(record, plan.run_spec.epochs, who=f"promoted trial {plan.trial_id} "))
            if not warned and (warning := data_bound_warning(record)):
                warned.append(warning)
                say(warning)

    summary: dict[str, Any] = {"trial_id": plan.trial_id, "params": plan.params, "status": "finished"}
    try:
        result = _run_forwarding(plan, on_epoch)
        records = result["records"]
        summary.update(result["summary"], final=records[-1] if records else {})
    except TrialFailedError as err:
        records = [rows[epoch] for epoch in sorted(rows)]
        summary.update(status="failed", reason=str(err), epochs_done=len(records))
    summary.update(train_seconds=sum(r["train_seconds"] for r in records),
                   baseline_epoch_seconds=plan.baseline_seconds, workload=workload_record(plan),
                   transfer=transfer_check(plan, records))
    for line in transfer_lines(plan.trial_id, summary["transfer"]):
        say(line)
    if records:
        write_epochs(plan.out / "epochs.parquet", records)
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
    parser.add_argument("--dry-run", action="store_true",
                        help="print the choice and the plan; read only Parquet, JSON and YAML, run nothing")
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
    if args.dry_run:
        plan = plan_promotion(args.results, trial=args.trial, epochs=args.epochs)
        print(plan.why, json.dumps(plan.document(), indent=2), sep="\n", flush=True)
        return 0
    out = promote(args.results, trial=args.trial, epochs=args.epochs, progress=lambda line: print(line, flush=True))
    print(f"done: {out}/epochs.parquet, summary.json, plots/", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
