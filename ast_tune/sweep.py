"""Run a sweep: ``python -m ast_tune.sweep SPEC.yaml [--set key.path=value ...] [--name NAME] [--resume] [--dry-run]``.

Each Tune trial is a function (:func:`_run_trial`). A one-worker trial trains in that function's own
process, which Tune reuses for the next trial (:func:`ast_tune.worker.run_in_trial`); a multi-worker
trial holds a tiny CPU share and runs a Ray Train ``TorchTrainer`` (:func:`ast_tune.worker.run_training`)
named ``trial_<tune trial id>``, forwarding its reports to Tune with ``TuneReportCallback``. Optuna
proposes the trials with ALL objectives (``OptunaSearch(space=..., metric=[...], mode=[...])``; the
space is given to OptunaSearch, never to ``param_space``) and stores its study in
``results/<name>/optuna.db``; the scheduler (ASHA on one metric, or multi-objective ASHA) stops
trials in ``epoch`` units and keeps its rungs in ``scheduler_state.json``. Re-running the same name
(or ``--resume``) restores the Tune experiment: finished and errored trials are kept, unfinished
ones continue from their checkpoints (Tune's, or their Train run's).

Files under ``results/<name>/``: ``spec.yaml``, ``run.json``, ``baseline.json``, ``optuna.db``,
``scheduler_state.json``, ``tune/`` (the Tune experiment, with ``journal.jsonl``: every epoch and
trial end, which survives restores; and per trial its checkpoints and TensorBoard event files stepped
by epoch, for ``tensorboard --logdir results/<name>``), ``train/`` (Train runs and their checkpoints:
the baseline's and multi-worker trials'), and the tables
of :func:`ast_tune.export.write_tables`; then ``promoted/`` (``promote.enabled``: see
:mod:`ast_tune.promote`) and ``report/`` (unless ``--no-report``). On a multi-node cluster (``RAY_ADDRESS`` set)
``storage.root`` must be a filesystem every node mounts: Train runs persist checkpoints there.
Exit codes: 0 done, 1 runtime failure, 2 bad input (one line naming the key path or file; nothing
written), 130 interrupted (``--resume`` continues).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import os
import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import ray
import yaml
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.search.optuna import OptunaSearch

from ast_tune import atomic, export
from ast_tune.baseline import ensure_baseline
from ast_tune.cli import CliParser, run_main
from ast_tune.data import check_root
from ast_tune.promote import promote
from ast_tune.promote_plan import NoCandidateError
from ast_tune.ray_runtime import concurrency, in_threads, ray_session, resources_line
from ast_tune.report import write_report
from ast_tune.schedulers import make_scheduler
from ast_tune.spec import SpecError
from ast_tune.sweep_journal import JOURNAL, EpochTBXLogger, Journal, epochs_frame
from ast_tune.sweep_space import Param
from ast_tune.sweep_spec import SweepSpec, load_sweep, to_document
from ast_tune.worker import (
    KEEP_CHECKPOINTS,
    WORKER_RETRIES,
    TrialFailedError,
    failure_reason,
    run_in_trial,
    run_training,
    trial_resources,
)

FAILED = "FAILED"  # in a Tune trial's working directory: the reason the trial failed


# --- the trial: a Tune function that trains in its own process or runs a Ray Train run ----------


@dataclasses.dataclass(frozen=True)
class _TrialContext:
    sweep: SweepSpec
    tune_storage: str  # absolute directory of the Tune experiment (its trials' directories)
    train_storage: str  # absolute directory of the Train runs
    baseline_epoch_seconds: float | None


def _run_trial(config: dict[str, Any], context: _TrialContext) -> None:
    """One trial: the sampled ``config`` on top of base + workload.

    A one-worker trial trains in this process; a larger one as Train run ``trial_<id>``. Tune
    restarts a trial whose process died, but a trial that failed (e.g. a NaN loss) leaves its
    reason in ``FAILED`` in its working directory and fails again at once instead of training again.
    """
    context_tune = tune.get_context()
    failed = Path(context_tune.get_trial_dir()) / FAILED
    if failed.is_file():
        raise TrialFailedError(failed.read_text())
    spec, workload = context.sweep.trial_spec(config), context.sweep.workload
    name = _dirname(context_tune.get_trial_id())
    try:
        if workload.workers == 1:
            run_in_trial(spec, workload=workload, trial_dir=f"{context.tune_storage}/{name}",
                         baseline_epoch_seconds=context.baseline_epoch_seconds)
        else:
            run_training(spec, workload=workload, name=name,
                         storage_path=context.train_storage, baseline_epoch_seconds=context.baseline_epoch_seconds,
                         callbacks=[TuneReportCallback()])
    except TrialFailedError as err:
        atomic.write_text(failed, str(err))
        raise


def _dirname(trial_id: str) -> str:
    """A trial's directory in the Tune experiment, and the name of its Train run."""
    return f"trial_{trial_id}"


def _trial_dirname(trial: tune.experiment.Trial) -> str:
    return _dirname(trial.trial_id)


def _distribution(param: Param) -> optuna.distributions.BaseDistribution:
    low, high = param.values[0], param.values[-1]
    if param.kind in ("uniform", "loguniform"):
        return optuna.distributions.FloatDistribution(low, high, log=param.kind == "loguniform")
    if param.kind == "int":
        return optuna.distributions.IntDistribution(low, high)
    return optuna.distributions.CategoricalDistribution(param.values)  # choice; fixed = one option


def _sampler(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    search = spec.search
    if search.sampler == "nsga2":  # a population of a quarter of the budget, 4..50
        population = min(50, max(4, search.num_trials // 4))
        return optuna.samplers.NSGAIISampler(seed=search.seed, population_size=population)
    if search.sampler == "tpe":  # random for the first quarter of the budget (Optuna's default: 10 trials)
        return optuna.samplers.TPESampler(seed=search.seed, n_startup_trials=max(4, search.num_trials // 4))
    samplers = {"random": optuna.samplers.RandomSampler, "gp": optuna.samplers.GPSampler}
    return samplers[search.sampler](seed=search.seed)


def _new_tuner(spec: SweepSpec, results: Path, trainable: Any, journal: Journal, concurrency: int) -> tune.Tuner:
    metrics = [o.metric for o in spec.objectives]
    modes = [o.mode for o in spec.objectives]
    search = OptunaSearch(space={p.name: _distribution(p) for p in spec.space}, metric=metrics, mode=modes,
                          sampler=_sampler(spec), study_name=spec.name,
                          storage=optuna.storages.RDBStorage(f"sqlite:///{results / 'optuna.db'}"))
    scheduler = make_scheduler(spec.scheduler.kind, metric=spec.scheduler.metric, mode=spec.scheduler_mode,
                               metrics=metrics, modes=modes, grace_period=spec.scheduler.grace_period,
                               reduction_factor=spec.scheduler.reduction_factor, max_t=spec.workload.epochs,
                               state_file=results / "scheduler_state.json")
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=search, scheduler=scheduler, num_samples=spec.search.num_trials,
                                    max_concurrent_trials=concurrency, trial_dirname_creator=_trial_dirname,
                                    reuse_actors=spec.workload.workers == 1),  # a Train run's end outlasts reuse
        run_config=tune.RunConfig(name="tune", storage_path=str(results), verbose=0,
                                  callbacks=[journal, EpochTBXLogger()],
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
                                  failure_config=tune.FailureConfig(max_failures=WORKER_RETRIES)))


# --- results ---------------------------------------------------------------------------------


def _write_tables(spec: SweepSpec, results: Path, journal: Journal) -> pd.DataFrame | None:
    """Hand the epochs table to :func:`ast_tune.export.write_tables`; the front, or None if no trial ran."""
    epochs = epochs_frame(journal.read())
    if epochs.empty:
        return None
    return export.write_tables(results, epochs, [(o.metric, o.mode) for o in spec.objectives])


def _versions() -> dict[str, str]:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
            "optuna": optuna.__version__, "pandas": pd.__version__}


def _write_run(results: Path, session: dict[str, Any]) -> None:
    """``run.json``: this session on top, earlier sessions (of a resumed sweep) under ``previous``."""
    path = results / "run.json"
    previous = json.loads(path.read_text()) if path.is_file() else None
    if previous is not None and previous.get("start") != session["start"]:
        session = {**session, "previous": [*previous.pop("previous", []), previous]}
    elif previous is not None:
        session = {**session, "previous": previous.get("previous", [])}
    atomic.write_text(path, json.dumps(session, indent=2) + "\n")


# --- the CLI -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The CLI's arguments; a bad one raises :class:`SpecError` (one line, exit 2 in :func:`main`)."""
    parser = CliParser(prog="python -m ast_tune.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="sweep spec YAML, e.g. search_spaces/quickstart.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a spec field, e.g. --set search.num_trials=8 (repeatable)")
    parser.add_argument("--name", help="the sweep's name (results/<name>); default: the spec's name")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted sweep of this name")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved spec and trial resources")
    parser.add_argument("--no-report", action="store_true", help="skip the HTML report (report/index.html)")
    parser.add_argument("--verbose", action="store_true", help="show Ray's own logs")
    return parser.parse_args(argv)


def _check_results(spec: SweepSpec, results: Path, *, resume: bool) -> bool:
    """Whether ``results`` holds a Tune experiment to restore; SpecError if it holds another spec."""
    restorable = (results / "tune" / "tuner.pkl").is_file()
    if resume and not restorable:
        raise SpecError("--resume", f"{results / 'tune'} holds no sweep to resume")
    stored = results / "spec.yaml"
    if restorable and stored.is_file() and yaml.safe_load(stored.read_text()) != to_document(spec):
        raise SpecError(str(stored), f"sweep {spec.name!r} ran with another spec; resume it unchanged "
                                     "or start a new one with --name")
    return restorable


def _absolute(spec: SweepSpec) -> SweepSpec:
    """Paths made absolute against the current directory: Ray workers run elsewhere."""
    data = spec.workload.data
    if data.root and not data.root.startswith(("/", "s3://", "gs://")):
        data = dataclasses.replace(data, root=str(Path(data.root).resolve()))
    root = spec.storage.root if "://" in spec.storage.root else str(Path(spec.storage.root).resolve())
    return dataclasses.replace(spec, workload=dataclasses.replace(spec.workload, data=data),
                               storage=dataclasses.replace(spec.storage, root=root))


def sweep(spec: SweepSpec, results: Path, *, restore: bool, cluster: dict[str, float], argv: Sequence[str],
          report: bool = True) -> int:
    """Baseline, Tune, tables, then (when every trial ended and one finished) promotion and report.

    Returns:
        The exit code: 0 done, 1 no trial finished, 130 interrupted.
    """
    trials_at_once = concurrency(spec, cluster, autoscaling=bool(os.environ.get("RAY_ADDRESS")))
    results.mkdir(parents=True, exist_ok=True)  # only now: bad input has been ruled out
    atomic.write_text(results / "spec.yaml", yaml.safe_dump(to_document(spec), sort_keys=False))
    session = {"command": [sys.executable, "-m", "ast_tune.sweep", *argv], "cwd": os.getcwd(),
               "start": datetime.now(UTC).isoformat(timespec="seconds"), "end": None, "status": "running",
               "versions": _versions(), "hardware": {"host": platform.node(), "cpus": cluster["CPU"],
                                                       "gpus": cluster["GPU"]},
               "trials_at_once": trials_at_once}
    _write_run(results, session)
    journal = Journal(results / "tune" / JOURNAL, epochs=spec.workload.epochs)
    status = "interrupted"
    try:
        seconds = _baseline(spec, results, trials_at_once, session) if spec.storage.baseline == "auto" else None
        context = _TrialContext(spec, str(results / "tune"), str(results / "train"), seconds)
        trainable = tune.with_resources(tune.with_parameters(_run_trial, context=context),
                                         trial_resources(spec.workload))
        if restore:
            tuner = tune.Tuner.restore(str(results / "tune"), trainable, resume_unfinished=True,
                                       resume_errored=False, restart_errored=False)
        else:
            tuner = _new_tuner(spec, results, trainable, journal, trials_at_once)
        tuner.fit()
        ended = {e["trial_id"] for e in journal.read() if e["event"] == "end"}
        status = "done" if len(ended) >= spec.search.num_trials else "interrupted"
    finally:
        front = _write_tables(spec, results, journal)
        _write_run(results, {**session, "end": datetime.now(UTC).isoformat(timespec="seconds"), "status": status})
    code = _conclude(spec, results, journal, front, interrupted=status == "interrupted", argv=argv)
    if code == 0:
        _after_trials(spec, results, report=report)
    return code


def _after_trials(spec: SweepSpec, results: Path, *, report: bool) -> None:
    """Promote a trial (``promote.enabled``; a rule that finds none is not a failure), then the report."""
    if spec.promote.enabled:
        try:
            promote(results, progress=lambda line: print(f"promote: {line}", flush=True))
        except NoCandidateError as err:
            print(f"promote: {err}", file=sys.stderr)
    if report:
        print(f"report: {write_report(results)}", flush=True)


def _baseline(spec: SweepSpec, results: Path, trials_at_once: int, session: dict[str, Any]) -> float:
    """Time (or reuse) the dense baseline; its median seconds per epoch."""
    print("baseline: timing the dense baseline (or reusing baseline.json)", flush=True)
    side_by_side = 1 if spec.workload.gpus_per_worker else trials_at_once  # CPU trials share the cores
    (baseline,) = in_threads([functools.partial(ensure_baseline, spec, results / "baseline.json",
                                                storage_path=results / "train", runs_at_once=side_by_side)])
    device = baseline["fingerprint"]["device"]
    session["hardware"]["device"] = device
    print(f"baseline: {baseline['epoch_seconds']:.3f} s per epoch (median of {baseline['epochs_timed']}), "
          f"top1 {baseline['val_top1']:.2f}% on {device}", flush=True)
    return baseline["epoch_seconds"]


def _conclude(spec: SweepSpec, results: Path, journal: Journal, front: pd.DataFrame | None, *,
              interrupted: bool, argv: Sequence[str]) -> int:
    """Print the front and where the results are; the exit code."""
    if front is not None:
        print(export.front_markdown(front, [(o.metric, o.mode) for o in spec.objectives]))
    print(f"results: {results}", flush=True)
    if interrupted:
        again = " ".join(a for a in argv if a != "--resume")
        print(f"interrupted; continue with: python -m ast_tune.sweep {again} --resume", file=sys.stderr)
        return 130
    if not epochs_frame(journal.read())["status"].isin(["TERMINATED", "STOPPED"]).any():
        print("sweep failed: no trial finished; see the reason column of trials.csv", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_main(functools.partial(_main, argv), interrupted="interrupted; continue with --resume",
                    failures={Exception: lambda err: f"sweep failed: {failure_reason(err)}"},
                    log_format="%(message)s", trace_level=logging.INFO)  # the traceback, with --verbose


def _main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.verbose:
        logging.getLogger().setLevel(logging.INFO)
    spec = _absolute(load_sweep(args.spec, args.set, name=args.name))
    results = Path(spec.storage.root) / spec.name
    if args.dry_run:
        print(yaml.safe_dump(to_document(spec), sort_keys=False), end="")
        print(resources_line(spec))
        return 0
    try:
        check_root(spec.workload.data)
    except SpecError as err:
        raise err.within("workload") from None
    restore = _check_results(spec, results, resume=args.resume)
    if not args.verbose:  # our progress lines only
        logging.getLogger("ray").setLevel(logging.CRITICAL)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # Tune's legacy reporter: silent at verbose=0
    with ray_session(verbose=args.verbose) as cluster:
        return sweep(spec, results, restore=restore, cluster=cluster, argv=argv, report=not args.no_report)


if __name__ == "__main__":
    sys.exit(main())
