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
once per seed (``promote.seeds``: the trial's seed and the next ones). It is a Tune run with one
trial per seed (side by side where the resources allow), each driving a Ray Train run
(:func:`ast_tune.tuning.worker.run_training`) named ``promoted_<trial_id>`` (``_seed<N>`` for the
seeds after the first) under ``results/<name>/promoted/``; a Tune callback in the driver keeps the
epoch records and prints the new ones (a resumed run's replayed ones are marked so, and not printed
again). Ray Train keeps each run's newest checkpoint, so the same command continues every
unfinished seed where it stopped. ``speedup`` divides the sweep's baseline epoch time by this run's;
on CPU that baseline was timed beside the other trials while this run runs alone, so it reads high.

``promoted/`` holds ``plan.json`` (trial, params, RunSpec, seeds; a later call must ask for the same),
``epochs.parquet`` (one row per epoch, and a ``seed`` column with several seeds, rewritten every
epoch), ``summary.json`` (trial, params, status, the first seed's engine summary with
``per_class_top1``, per seed ``val_top1``, savings, speedups, ``verdict``; their ``mean`` and ``std``;
``verdict``: the level every seed meets), ``plots/`` (the first seed's) and the Train runs.
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
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import ray
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from ast_tune import atomic
from ast_tune.config import columns
from ast_tune.config.cli import CliParser, run_main
from ast_tune.config.sweep_spec import DRIVER_CPUS
from ast_tune.results import verdict
from ast_tune.results.plots import write_run_plots
from ast_tune.results.progress import epoch_line
from ast_tune.results.tables import trials_table, write_epochs
from ast_tune.tuning.baseline import probe_device
from ast_tune.tuning.promote_plan import PLAN_FILE, NoCandidateError, Plan, plan_promotion
from ast_tune.tuning.ray_runtime import in_threads, ray_session
from ast_tune.tuning.worker import REPLAYED, TrialFailedError, failure_reason, run_training

log = logging.getLogger(__name__)

# --- the run ---------------------------------------------------------------------------------


def progress_line(plan: Plan, seed: int, record: Mapping[str, Any]) -> str:
    """One line per epoch (:func:`ast_tune.results.progress.epoch_line`) naming the trial (and seed)."""
    which = f"{plan.trial_id} seed {seed}" if len(plan.seeds) > 1 else plan.trial_id
    return epoch_line(record, plan.run_spec.epochs, who=f"promoted trial {which} ")


def promote(results_dir: Path, *, trial: str | None = None, epochs: int | None = None,
            progress: Callable[[str], None] | None = None) -> Path:
    """Choose (or take ``trial``) and run the promoted trial, once per seed; its ``promoted/`` directory.

    Starts Ray unless it is running already (as at the end of a sweep). A run that finished
    before is not run again; an interrupted one continues from its last checkpoint, per seed.

    Args:
        results_dir: the sweep's ``results/<name>``.
        trial: a finished trial's id; None: :func:`choose_trial` with the spec's rule.
        epochs: the run's length; None: ``promote.epochs``, else the base preset's.
        progress: called with each progress line (the choice, then one per new epoch); default: log.

    Raises:
        SpecError: bad input (see :func:`plan_promotion`); nothing is written.
        NoCandidateError: the rule finds no trial.
        TrialFailedError: a seed's run failed; ``summary.json`` says so, with the reason.
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


class _Progress(tune.Callback):
    """In the driver: keeps every seed's epoch records, rewrites ``epochs.parquet`` and prints new epochs.

    A resumed run first re-reports its checkpoint's records, marked ``REPLAYED``: kept, not printed again.
    """

    def __init__(self, plan: Plan, say: Callable[[str], None]) -> None:
        self.plan, self.say = plan, say
        self.rows: dict[int, dict[int, dict[str, Any]]] = {seed: {} for seed in plan.seeds}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "epoch" not in result:
            return
        seed = trial.config["seed"]
        if not result.get(REPLAYED):  # printed first: a line is never missing for an epoch on file
            self.say(progress_line(self.plan, seed, result))
        self.rows[seed][result["epoch"]] = {key: result.get(key, math.nan) for key in columns.EPOCH_METRICS}
        _write_epochs(self.plan, self.rows)


def _run_seed(config: dict[str, Any], plan: Plan) -> None:
    """A Tune trial of the promotion: seed ``config["seed"]``'s Train run, its reports passed on to Tune."""
    seed = config["seed"]
    result = run_training(dataclasses.replace(plan.run_spec, seed=seed), workload=plan.workload,
                          name=plan.run_name(seed), storage_path=plan.out, callbacks=[TuneReportCallback()],
                          baseline_epoch_seconds=plan.baseline_seconds)
    atomic.write_text(plan.out / f"{plan.run_name(seed)}.json", json.dumps(result["summary"], default=float))


def _train(plan: Plan, say: Callable[[str], None]) -> None:
    """One Tune trial per seed (side by side as resources allow), each driving its seed's Train run."""
    plan.out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(plan.out / PLAN_FILE, json.dumps(plan.document(), indent=2) + "\n")
    _warn_about_baseline(plan)
    progress = _Progress(plan, say)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(_run_seed, plan=plan), {"CPU": DRIVER_CPUS}),
        param_space={"seed": tune.grid_search(list(plan.seeds))},
        tune_config=tune.TuneConfig(trial_dirname_creator=lambda trial: f"seed_{trial.config['seed']}"),
        run_config=tune.RunConfig(name="tune", storage_path=str(plan.out), verbose=0, callbacks=[progress]))
    (grid,) = in_threads([tuner.fit])  # off the main thread: Ctrl-C stays a KeyboardInterrupt (exit 130)
    errors = {r.config["seed"]: failure_reason(r.error) for r in grid if r.error}
    done = {seed: plan.out / f"{plan.run_name(seed)}.json" for seed in plan.seeds}
    if not errors and not all(path.is_file() for path in done.values()):
        raise KeyboardInterrupt  # stopped before every seed finished: the same command continues
    summaries = {seed: json.loads(path.read_text()) for seed, path in done.items() if seed not in errors}
    summary = promoted_summary(plan, progress.rows, summaries, errors)
    if any(progress.rows.values()):
        _write_epochs(plan, progress.rows)
        first = progress.rows[plan.seeds[0]]
        write_run_plots(pd.DataFrame([first[e] for e in sorted(first)]), plan.out / "plots", summary=summary)
    atomic.write_text(plan.out / "summary.json", json.dumps(summary, indent=2, default=float) + "\n")
    if summary["status"] != "finished":
        raise TrialFailedError(summary["reason"])
    say(summary_line(plan, summary))


#: Per-run numbers summary.json gives for each seed, and their mean and std over the seeds.
SEED_METRICS = ("val_top1", "energy_savings", "speedup", "speedup_to_target", "time_to_target_s",
                "tracking_error_mean", "tracking_error_max")


def _frame(plan: Plan, rows: Mapping[int, Mapping[int, dict[str, Any]]]) -> pd.DataFrame:
    """Every seed's epochs in order; a ``seed`` column only when there are several seeds."""
    frames = [pd.DataFrame([by_epoch[e] for e in sorted(by_epoch)], columns=list(columns.EPOCH_METRICS))
              .assign(seed=seed) for seed, by_epoch in rows.items() if by_epoch]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*columns.EPOCH_METRICS, "seed"])
    return frame if len(plan.seeds) > 1 else frame.drop(columns="seed")


def _write_epochs(plan: Plan, rows: Mapping[int, Mapping[int, dict[str, Any]]]) -> None:
    write_epochs(plan.out / "epochs.parquet", _frame(plan, rows))


def promoted_summary(plan: Plan, rows: Mapping[int, Mapping[int, dict[str, Any]]],
                     summaries: Mapping[int, Mapping[str, Any]], errors: Mapping[int, str]) -> dict[str, Any]:
    """``summary.json``: the first seed's engine summary, each seed's numbers, their mean ± std, the verdict.

    ``verdict`` is the level every seed meets (:func:`ast_tune.results.verdict.common_level`);
    ``status`` is ``failed`` (with the first ``reason``) if any seed's run failed.
    """
    epochs = pd.concat([pd.DataFrame([by_epoch[e] for e in sorted(by_epoch)]).assign(
        trial_id=str(seed), status="ERROR" if seed in errors else "TERMINATED")
        for seed, by_epoch in rows.items() if by_epoch]) if any(rows.values()) else None
    per_seed = {} if epochs is None else {
        int(r["trial_id"]): {**{k: r[k] for k in SEED_METRICS}, "verdict": r["verdict"],
                             "epochs_done": int(r["epochs_done"]), "train_seconds": r["train_seconds"]}
        for r in trials_table(epochs, [("val_top1", "max")], baseline=plan.baseline, criteria=plan.criteria)
        .to_dict("records")}
    summary: dict[str, Any] = {"trial_id": plan.trial_id, "params": plan.params, "status": "finished",
                               **summaries.get(plan.seeds[0], {})}
    if errors:
        summary.update(status="failed", reason=next(iter(errors.values())),
                       errors={str(k): v for k, v in errors.items()})
    first = rows[plan.seeds[0]]
    summary.update(final=first[max(first)] if first else {}, epochs_done=len(first),
                   train_seconds=per_seed.get(plan.seeds[0], {}).get("train_seconds", 0.0),
                   baseline_epoch_seconds=plan.baseline_seconds,
                   verdict=verdict.common_level(s["verdict"] for s in per_seed.values()) if not errors else "none",
                   seeds={str(seed): numbers for seed, numbers in per_seed.items()})
    values = pd.DataFrame(list(per_seed.values()), columns=list(SEED_METRICS))
    summary.update(mean=values.mean().to_dict(), std=values.std(ddof=1).to_dict() if len(values) > 1 else {})
    return summary


def summary_line(plan: Plan, summary: Mapping[str, Any]) -> str:
    """The promotion's last line: top-1, savings, speedups (mean ± std over seeds) and the common verdict."""
    mean, std = summary["mean"], summary["std"]

    def show(key: str, fmt: str, scale: float = 1, unit: str = "") -> str:
        spread = f" ± {scale * std[key]:{fmt}}" if key in std and math.isfinite(std[key]) else ""
        return f"{scale * mean[key]:{fmt}}{spread}{unit}" if math.isfinite(mean[key]) else "n/a"

    over = f" (mean ± std over {len(plan.seeds)} seeds)" if len(plan.seeds) > 1 else ""
    return (f"promoted trial {plan.trial_id}{over}: top1 {show('val_top1', '.2f', unit='%')}, savings "
            f"{show('energy_savings', '.1f', 100, '%')} (counted), speedup {show('speedup', '.2f', unit='x')}, "
            f"to target {show('speedup_to_target', '.2f', unit='x')} (measured); verdict "
            f"{summary['verdict']}{' (every seed)' if len(plan.seeds) > 1 else ''}")


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
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's legacy reporter: silent at verbose=0
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
