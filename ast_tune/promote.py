"""Run one sweep trial to full length: ``python -m ast_tune.promote results/<name> [--trial ID] [--epochs N]``.

**Which trial** (:func:`ast_tune.promotion.choice.choose_trial`, the spec's ``promote.rule``): of the front trials
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
trained as the sweep's trials are (:func:`ast_tune.tuning.search.tuner.run_trial`: in the trial's process,
or as a Train run for several workers) in a run directory named by seed, ``promoted/runs/promoted_<trial_id>``
(``_seed<N>`` after the first). Its journal (``promoted/journal.jsonl``) keeps and prints every epoch;
the same command starts a new Tune run of the seeds the journal holds no end of, and each continues
after its newest checkpoint. ``speedup`` divides the sweep's baseline epoch time by this run's; on CPU
that baseline was timed beside the other trials while this run runs alone, so it reads high.
With ``promote.workload`` (the full task after a proxy sweep) the run trains on that workload, a
dense baseline of it is timed first (``promoted/baseline.json``, cached) and gives the speedup, and
``summary.json``'s ``transfer`` sets the run beside its proxy trial (:mod:`ast_tune.promotion.transfer`).

``promoted/`` holds ``promotion.json`` (trial, params, RunSpec, seeds; a later call must ask for the same),
``epochs.parquet`` (one row per epoch, and a ``seed`` column with several seeds; rewritten every
epoch), ``summary.json`` (trial, params, status, the first seed's engine summary with
``per_class_top1``, its train seconds, workload and transfer check; per seed ``val_top1``, savings,
speedups and verdict under ``seeds``, their ``mean`` and ``std``; ``verdict``: the level every seed
meets; :mod:`ast_tune.results.promoted`), ``plots/`` (the first seed's), ``journal.jsonl``, ``runs/``
(each seed's checkpoints and engine summary), ``train/`` (Ray Train's runs) and ``tune/`` (Tune's scratch).
Exit codes: 0 done (or done before), 1 runtime failure or no trial qualifies, 2 bad input (one
line naming the path or flag; nothing written), 130 interrupted by Ctrl-C and 143 stopped by SIGTERM
(both print the command, the same one, that continues).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import ray
from ray import tune

from ast_tune import atomic
from ast_tune.config import columns
from ast_tune.config.cli import CliParser, continue_command, run_main
from ast_tune.config.run_spec import RunSpec
from ast_tune.config.spec import SpecError
from ast_tune.promotion.choice import PROMOTION_FILE, NoCandidateError, Promotion, decide_promotion
from ast_tune.promotion.transfer import transfer_check, transfer_lines, workload_line, workload_record
from ast_tune.results import lock
from ast_tune.results.journal import JOURNAL, Journal, epochs_frame
from ast_tune.results.plots import write_run_plots
from ast_tune.results.promoted import over_seeds, seed_numbers, summary_line
from ast_tune.results.sweep_dir import made_before
from ast_tune.results.tables import write_epochs
from ast_tune.tuning.runtime.baseline import probe_device, with_full_baseline
from ast_tune.tuning.runtime.session import fit, ray_session
from ast_tune.tuning.runtime.storage import StorageMarker, write_marker
from ast_tune.tuning.runtime.worker import SUMMARY, TrialFailedError, failure_reason
from ast_tune.tuning.search.callbacks import JournalCallback
from ast_tune.tuning.search.tuner import TrialContext, tune_run

log = logging.getLogger(__name__)

RUNS = "runs"  # under promoted/: each seed's run directory (checkpoints, FAILED, the engine's summary)

# --- the run ---------------------------------------------------------------------------------


def promote(results_dir: Path, *, trial: str | None = None, epochs: int | None = None) -> Path:
    """Choose (or take ``trial``) and run the promoted trial, once per seed; its ``promoted/`` directory.

    Starts Ray unless it is running already (as at the end of a sweep). A run that finished
    before is not run again; an interrupted one continues from its last checkpoint, per seed.
    Progress goes to stdout: the choice, one line per new epoch (printed by the promotion's
    journal), the transfer check and the closing line.

    Args:
        results_dir: the sweep's ``results/<name>``.
        trial: a finished trial's id; None: :func:`choose_trial` with the spec's rule.
        epochs: the run's length; None: ``promote.epochs``, else the base preset's.

    Raises:
        SpecError: bad input (see :func:`decide_promotion`), nothing written; another driver holds
            the sweep (:mod:`ast_tune.results.lock`); or an older version of ast_tune left ``promoted/``
            unfinished.
        NoCandidateError: the rule finds no trial.
        TrialFailedError: a seed's run failed; ``summary.json`` says so, with the reason.
    """
    promotion = decide_promotion(results_dir, trial=trial, epochs=epochs)
    say = functools.partial(print, flush=True)
    with lock.hold(results_dir, say=say):  # one driver per sweep; a sweep's own promotion holds it already
        say(promotion.why)
        summary_path = promotion.out / "summary.json"
        if summary_path.is_file() and json.loads(summary_path.read_text()).get("status") == "finished":
            say(f"trial {promotion.trial_id} was promoted before: {summary_path}")
            return promotion.out
        if made_before(promotion.out):
            raise SpecError(str(promotion.out), "an unfinished promotion made by an older version of ast_tune; "
                                                "move it away to promote anew")
        if ray.is_initialized():
            _train(promotion, say)
        else:
            with ray_session(verbose=False):
                _train(promotion, say)
    return promotion.out


def _train(promotion: Promotion, say: Callable[[str], None]) -> None:
    """A Tune trial per seed without an end (side by side as resources allow), then the epochs, plots and
    ``summary.json``."""
    promotion.out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(promotion.out / PROMOTION_FILE, json.dumps(promotion.document(), indent=2) + "\n")
    promotion = with_full_baseline(promotion, say)
    say(workload_line(promotion))
    _warn_about_baseline(promotion)
    journal = Journal(promotion.out / JOURNAL)
    ended = {e["params"]["seed"] for e in journal.read() if e["event"] == "end"}
    seeds = [seed for seed in promotion.seeds if seed not in ended]
    if seeds:
        marker = write_marker(promotion.out.parent)  # read by every seed's run as it starts on its node
        fit(_tuner(promotion, _EpochsJournal(promotion, journal), seeds, marker))
    entries = journal.read()
    ends = {e["params"]["seed"]: e for e in entries if e["event"] == "end"}
    if any(seed not in ends for seed in promotion.seeds):
        raise KeyboardInterrupt  # stopped before every seed ended: the same command continues
    runs = _runs(promotion, entries)
    summary = _summary(promotion, runs, ends)
    for line in transfer_lines(promotion.trial_id, summary["transfer"]):
        say(line)
    if summary["final"]:
        write_run_plots(runs[promotion.seeds[0]], promotion.out / "plots", summary=summary)
    atomic.write_text(promotion.out / "summary.json", json.dumps(summary, indent=2, default=float) + "\n")
    if summary["status"] != "finished":
        raise TrialFailedError(summary["reason"])
    say(summary_line(promotion.trial_id, summary))


def _summary(promotion: Promotion, runs: dict[int, pd.DataFrame], ends: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """``summary.json``: the trial, its params, status (``failed`` with the first seed's reason if one
    failed), the first seed's engine summary, final record, train seconds, workload and transfer check,
    and each seed's numbers with their mean ± std and the verdict every seed meets."""
    errors = {seed: end["reason"] for seed, end in ends.items() if end["status"] == columns.ERROR}
    first = runs[promotion.seeds[0]].to_dict("records")
    summary: dict[str, Any] = {"trial_id": promotion.trial_id, "params": promotion.params, "status": "finished",
                               **_engine_summary(promotion)}
    if errors:
        summary.update(status="failed", reason=next(iter(errors.values())),
                       errors={str(seed): reason for seed, reason in errors.items()})
    summary.update(final=first[-1] if first else {}, epochs_done=len(first),
                   train_seconds=sum(r["train_seconds"] for r in first),
                   baseline_epoch_seconds=promotion.baseline_seconds,
                   workload=workload_record(promotion), transfer=transfer_check(promotion, first),
                   **over_seeds(seed_numbers(runs, promotion.run_baseline, promotion.criteria), failed=bool(errors)))
    return summary


class _EpochsJournal(JournalCallback):
    """The promotion's journal (``promoted/journal.jsonl``), keyed by run name: also rewrites ``epochs.parquet``
    every epoch."""

    def __init__(self, promotion: Promotion, journal: Journal) -> None:
        super().__init__(journal, epochs=promotion.run_spec.epochs, key=functools.partial(_name, promotion),
                         run_dir=functools.partial(_run_dir, promotion), label=functools.partial(_label, promotion))
        self.promotion = promotion

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        super().on_trial_result(iteration, trials, trial, result, **info)  # prints first: a line per epoch on file
        if "epoch" in result:
            runs = _runs(self.promotion, self.journal.read())
            frames = [rows.assign(seed=seed) if len(self.promotion.seeds) > 1 else rows for seed, rows in runs.items()]
            write_epochs(self.promotion.out / "epochs.parquet", pd.concat(frames, ignore_index=True))


def _label(promotion: Promotion, run_name: str, config: Mapping[str, Any]) -> str:
    seed = f" seed {config['seed']}" if len(promotion.seeds) > 1 else ""
    return f"promoted trial {promotion.trial_id}{seed}"


def _runs(promotion: Promotion, entries: list[dict[str, Any]]) -> dict[int, pd.DataFrame]:
    """``{seed: its epoch records in order}`` (:data:`columns.EPOCH_METRICS`) from the journal's entries.

    An epoch reported twice (a seed's run started again retrained it after its last checkpoint) keeps the later.
    """
    seed = f"{columns.PARAM_PREFIX}seed"
    table = epochs_frame(entries)  # trials in the order they first appear, each's epochs in order
    table = table[table["epoch"] >= 1].drop_duplicates([seed, "epoch"], keep="last").sort_values("epoch")
    return {s: table[table[seed] == s][list(columns.EPOCH_METRICS)].reset_index(drop=True) for s in promotion.seeds}


def _engine_summary(promotion: Promotion) -> dict[str, Any]:
    """The first seed's engine summary (per-class top-1, class names), as its trial left it; {} if none."""
    path = promotion.out / RUNS / promotion.run_name(promotion.seeds[0]) / SUMMARY
    return json.loads(path.read_text()) if path.is_file() else {}


def _name(promotion: Promotion, config: Mapping[str, Any]) -> str:
    """A seed's run name: its Tune directory, Train run and journal id."""
    return promotion.run_name(config["seed"])


def _run_dir(promotion: Promotion, config: Mapping[str, Any]) -> Path:
    return promotion.out / RUNS / _name(promotion, config)


def _seeded(spec: RunSpec, config: Mapping[str, Any]) -> RunSpec:
    return dataclasses.replace(spec, seed=config["seed"])


def _tuner(promotion: Promotion, journal: JournalCallback, seeds: Sequence[int], marker: StorageMarker) -> tune.Tuner:
    """A new Tune run of ``seeds`` under ``promoted/tune``; each seed's run continues after its newest checkpoint."""
    context = TrialContext(functools.partial(_seeded, promotion.run_spec), functools.partial(_name, promotion),
                           functools.partial(_run_dir, promotion), promotion.workload, str(promotion.out / "train"),
                           promotion.baseline_seconds, marker)
    return tune_run(context.trainable(), promotion.out, journal=journal,
                    param_space={"seed": tune.grid_search(list(seeds))}, trial_dirname_creator=context.dirname)


def _warn_about_baseline(promotion: Promotion) -> None:
    if promotion.baseline is None:
        log.warning("no baseline.json: the promoted run's speedup is not measured (NaN)")
        return
    fingerprint = promotion.baseline.get("fingerprint", {})
    if "device" in fingerprint and fingerprint["device"] != (device := probe_device(promotion.workload)):
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
                        help="print the choice and its promotion.json (the promoted run); read only Parquet, JSON "
                             "and YAML, run nothing")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.getLogger("ray").setLevel(logging.CRITICAL)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's legacy reporter: silent at verbose=0
    again = continue_command("ast_tune.promote", argv, flag=None)
    return run_main(
        functools.partial(_main, argv),
        interrupted=f"interrupted: the last checkpoint is kept; continue with the same command: {again}",
        failures={NoCandidateError: lambda err: f"nothing promoted: {err}",
                  Exception: lambda err: f"promotion failed: {failure_reason(err)}"})


def _main(argv: Sequence[str] | None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        promotion = decide_promotion(args.results, trial=args.trial, epochs=args.epochs)
        print(promotion.why, json.dumps(promotion.document(), indent=2), sep="\n", flush=True)
        return 0
    out = promote(args.results, trial=args.trial, epochs=args.epochs)
    print(f"done: {out}/epochs.parquet, summary.json, plots/", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
