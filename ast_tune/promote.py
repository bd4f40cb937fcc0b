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
once per seed (``promote.seeds``: the trial's seed and the next ones). It is a Tune run under
``results/<name>/promoted/tune`` with one trial per seed, side by side where the resources allow,
trained as the sweep's trials are (:func:`ast_tune.tuning.tuner.run_trial`: in the trial's process,
or as a Train run for several workers) in a directory named by seed, ``promoted_<trial_id>``
(``_seed<N>`` after the first). Its journal (``tune/journal.jsonl``) keeps and prints every epoch;
the same command restores the Tune run, or starts it anew, and every unfinished seed continues from
its newest checkpoint. ``speedup`` divides the sweep's baseline epoch time by this run's; on CPU
that baseline was timed beside the other trials while this run runs alone, so it reads high.
With ``promote.workload`` (the full task after a proxy sweep) the run trains on that workload, a
dense baseline of it is timed first (``promoted/baseline.json``, cached) and gives the speedup, and
``summary.json``'s ``transfer`` sets the run beside its proxy trial (:mod:`ast_tune.tuning.transfer`).

``promoted/`` holds ``plan.json`` (trial, params, RunSpec, seeds; a later call must ask for the same),
``epochs.parquet`` (one row per epoch, and a ``seed`` column with several seeds; rewritten every
epoch), ``summary.json`` (trial, params, status, the first seed's engine summary with
``per_class_top1``, its train seconds, workload and transfer check; per seed ``val_top1``, savings,
speedups and verdict under ``seeds``, their ``mean`` and ``std``; ``verdict``: the level every seed
meets; :mod:`ast_tune.results.promoted`), ``plots/`` (the first seed's) and ``tune/``.
Exit codes: 0 done (or done before), 1 runtime failure or no trial qualifies, 2 bad input (one
line naming the path or flag; nothing written), 130 interrupted (the same command continues).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import ray
from ray import tune

from ast_tune import atomic
from ast_tune.config import columns
from ast_tune.config.cli import CliParser, run_main
from ast_tune.config.run_spec import RunSpec
from ast_tune.results.plots import write_run_plots
from ast_tune.results.promoted import over_seeds, seed_numbers, summary_line
from ast_tune.results.tables import write_epochs
from ast_tune.tuning import lock
from ast_tune.tuning.baseline import probe_device
from ast_tune.tuning.journal import JOURNAL, EpochTBXLogger, Journal, epochs_frame
from ast_tune.tuning.promote_plan import PLAN_FILE, NoCandidateError, Plan, plan_promotion
from ast_tune.tuning.ray_runtime import ray_session
from ast_tune.tuning.transfer import transfer_check, transfer_lines, with_full_baseline, workload_line, workload_record
from ast_tune.tuning.trust import check_restorable
from ast_tune.tuning.tune_state import usable_snapshot
from ast_tune.tuning.tuner import SUMMARY, TrialContext
from ast_tune.tuning.worker import KEEP_CHECKPOINTS, WORKER_RETRIES, TrialFailedError, failure_reason

log = logging.getLogger(__name__)

# --- the run ---------------------------------------------------------------------------------


def promote(results_dir: Path, *, trial: str | None = None, epochs: int | None = None) -> Path:
    """Choose (or take ``trial``) and run the promoted trial, once per seed; its ``promoted/`` directory.

    Starts Ray unless it is running already (as at the end of a sweep). A run that finished
    before is not run again; an interrupted one continues from its last checkpoint, per seed.
    Progress goes to stdout: the choice, one line per new epoch (printed by the promotion's
    journal, which a resumed Tune run restores), the transfer check and the closing line.

    Args:
        results_dir: the sweep's ``results/<name>``.
        trial: a finished trial's id; None: :func:`choose_trial` with the spec's rule.
        epochs: the run's length; None: ``promote.epochs``, else the base preset's.

    Raises:
        SpecError: bad input (see :func:`plan_promotion`), nothing written; another driver holds
            the sweep (:mod:`ast_tune.tuning.lock`); or ``promoted/tune`` may not be unpickled
            (:func:`ast_tune.tuning.trust.check_restorable`).
        NoCandidateError: the rule finds no trial.
        TrialFailedError: a seed's run failed; ``summary.json`` says so, with the reason.
    """
    plan = plan_promotion(results_dir, trial=trial, epochs=epochs)
    say = functools.partial(print, flush=True)
    with lock.hold(results_dir, say=say):  # one driver per sweep; a sweep's own promotion holds it already
        say(plan.why)
        summary_path = plan.out / "summary.json"
        if summary_path.is_file() and json.loads(summary_path.read_text()).get("status") == "finished":
            say(f"trial {plan.trial_id} was promoted before: {summary_path}")
            return plan.out
        restore = tune.Tuner.can_restore(plan.out / "tune")
        if restore:
            check_restorable(plan.out, key=str(plan.out / "tune"), instead=f"move {plan.out} away to promote anew")
            restore = usable_snapshot(plan.out / "tune", say=say)  # none whole: a new Tune run, same checkpoints
        if ray.is_initialized():
            _train(plan, say, restore=restore)
        else:
            with ray_session(verbose=False):
                _train(plan, say, restore=restore)
    return plan.out


def _train(plan: Plan, say: Callable[[str], None], *, restore: bool) -> None:
    """One Tune trial per seed (side by side as resources allow), then the epochs, plots and ``summary.json``."""
    plan.out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(plan.out / PLAN_FILE, json.dumps(plan.document(), indent=2) + "\n")
    plan = with_full_baseline(plan, say)
    say(workload_line(plan))
    _warn_about_baseline(plan)
    journal = _EpochsJournal(plan)
    _tuner(plan, journal, restore=restore).fit()
    entries = journal.read()
    ends = {e["params"]["seed"]: e for e in entries if e["event"] == "end"}
    if any(seed not in ends for seed in plan.seeds):
        raise KeyboardInterrupt  # stopped before every seed ended: the same command continues
    runs = _runs(plan, entries)
    summary = _summary(plan, runs, ends)
    for line in transfer_lines(plan.trial_id, summary["transfer"]):
        say(line)
    if summary["final"]:
        write_run_plots(runs[plan.seeds[0]], plan.out / "plots", summary=summary)
    atomic.write_text(plan.out / "summary.json", json.dumps(summary, indent=2, default=float) + "\n")
    if summary["status"] != "finished":
        raise TrialFailedError(summary["reason"])
    say(summary_line(plan.trial_id, summary))


def _summary(plan: Plan, runs: dict[int, pd.DataFrame], ends: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """``summary.json``: the trial, its params, status (``failed`` with the first seed's reason if one
    failed), the first seed's engine summary, final record, train seconds, workload and transfer check,
    and each seed's numbers with their mean ± std and the verdict every seed meets."""
    errors = {seed: end["reason"] for seed, end in ends.items() if end["status"] == columns.ERROR}
    first = runs[plan.seeds[0]].to_dict("records")
    summary: dict[str, Any] = {"trial_id": plan.trial_id, "params": plan.params, "status": "finished",
                               **_engine_summary(plan)}
    if errors:
        summary.update(status="failed", reason=next(iter(errors.values())),
                       errors={str(seed): reason for seed, reason in errors.items()})
    summary.update(final=first[-1] if first else {}, epochs_done=len(first),
                   train_seconds=sum(r["train_seconds"] for r in first), baseline_epoch_seconds=plan.baseline_seconds,
                   workload=workload_record(plan), transfer=transfer_check(plan, first),
                   **over_seeds(seed_numbers(runs, plan.run_baseline, plan.criteria), failed=bool(errors)))
    return summary


class _EpochsJournal(Journal):
    """The promotion's journal (``promoted/tune/journal.jsonl``): also rewrites ``epochs.parquet`` every epoch."""

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan.out / "tune" / JOURNAL, epochs=plan.run_spec.epochs,
                         label=functools.partial(_label, plan), run_key=_seed_of)
        self.plan = plan

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        super().on_trial_result(iteration, trials, trial, result, **info)  # prints first: a line per epoch on file
        if "epoch" in result:
            runs = _runs(self.plan, self.read())
            frames = [rows.assign(seed=seed) if len(self.plan.seeds) > 1 else rows for seed, rows in runs.items()]
            write_epochs(self.plan.out / "epochs.parquet", pd.concat(frames, ignore_index=True))


def _label(plan: Plan, trial: Any) -> str:
    seed = f" seed {trial.config['seed']}" if len(plan.seeds) > 1 else ""
    return f"promoted trial {plan.trial_id}{seed}"


def _seed_of(trial_id: str, config: dict[str, Any]) -> int:
    """A promoted run is its seed: a Tune run started anew gives the same seed another trial id."""
    return config["seed"]


def _runs(plan: Plan, entries: list[dict[str, Any]]) -> dict[int, pd.DataFrame]:
    """``{seed: its epoch records in order}`` (:data:`columns.EPOCH_METRICS`) from the journal's entries.

    An epoch reported under two trial ids of one seed (a Tune run started anew retrained it) keeps the later.
    """
    seed = f"{columns.PARAM_PREFIX}seed"
    table = epochs_frame(entries)  # trials in the order they first appear, each's epochs in order
    table = table[table["epoch"] >= 1].drop_duplicates([seed, "epoch"], keep="last").sort_values("epoch")
    return {s: table[table[seed] == s][list(columns.EPOCH_METRICS)].reset_index(drop=True) for s in plan.seeds}


def _engine_summary(plan: Plan) -> dict[str, Any]:
    """The first seed's engine summary (per-class top-1, class names), as its trial left it; {} if none."""
    path = plan.out / "tune" / plan.run_name(plan.seeds[0]) / SUMMARY
    return json.loads(path.read_text()) if path.is_file() else {}


def _name(plan: Plan, trial_id: str, config: dict[str, Any]) -> str:
    return plan.run_name(config["seed"])


def _seeded(spec: RunSpec, config: dict[str, Any]) -> RunSpec:
    return dataclasses.replace(spec, seed=config["seed"])


def _tuner(plan: Plan, journal: Journal, *, restore: bool) -> tune.Tuner:
    """The promotion's Tune run over ``promoted/tune``: restored (``restore``), else new.

    Either way each seed's run continues from its newest checkpoint: the trial directories (and
    multi-worker Train runs) are named by seed, not by Tune's trial id.
    """
    context = TrialContext(functools.partial(_seeded, plan.run_spec), functools.partial(_name, plan), plan.workload,
                           str(plan.out / "tune"), str(plan.out), plan.baseline_seconds)
    if restore:
        return tune.Tuner.restore(str(plan.out / "tune"), context.trainable(), resume_unfinished=True,
                                  resume_errored=False, restart_errored=False)
    return tune.Tuner(context.trainable(), param_space={"seed": tune.grid_search(list(plan.seeds))},
                      tune_config=tune.TuneConfig(trial_dirname_creator=context.dirname),
                      run_config=tune.RunConfig(name="tune", storage_path=str(plan.out), verbose=0,
                                                callbacks=[journal, EpochTBXLogger()],
                                                checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
                                                failure_config=tune.FailureConfig(max_failures=WORKER_RETRIES)))


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
                        help="print the choice and its plan.json (the promoted run); read only Parquet, JSON "
                             "and YAML, run nothing")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.getLogger("ray").setLevel(logging.CRITICAL)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's legacy reporter: silent at verbose=0
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
    out = promote(args.results, trial=args.trial, epochs=args.epochs)
    print(f"done: {out}/epochs.parquet, summary.json, plots/", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
