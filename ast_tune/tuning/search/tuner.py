"""The Tune side of a sweep: what one trial runs, and the Tuner (Optuna search, scheduler) that runs them.

Each Tune trial is a function (:func:`run_trial`). A one-worker trial trains in that function's own
process, which Tune reuses for the next trial (:func:`ast_tune.tuning.runtime.worker.run_in_trial`); a multi-worker
trial holds a tiny CPU share and runs a Ray Train ``TorchTrainer`` (:func:`ast_tune.tuning.runtime.worker.run_training`)
named ``trial_<tune trial id>``, forwarding its reports to Tune with ``TuneReportCallback``. Optuna
proposes the trials with ALL objectives (``OptunaSearch(space=..., metric=[...], mode=[...])``; the
space is given to OptunaSearch, never to ``param_space``) and stores its study in
``results/<name>/optuna.db``; when a trial ends it is told the trial's whole-run outcomes and the
constraint violations of the spec's ``constraints:`` (:mod:`ast_tune.tuning.search.outcome_search`); the
scheduler (ASHA on one metric, or multi-objective ASHA) stops
trials in ``epoch`` units and keeps its rungs in ``scheduler_state.json``. :func:`make_tuner`
builds the Tuner, or restores it from ``results/<name>/tune``: finished and errored trials are
kept, unfinished ones continue from their checkpoints (Tune's, or their Train run's), and trials that
Tune's saved state missed are handed back to it under their own ids (:mod:`ast_tune.tuning.search.reconcile`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from ast_tune import atomic
from ast_tune.config import columns
from ast_tune.config.run_spec import RunSpec
from ast_tune.config.spec import SpecError
from ast_tune.config.sweep_space import Param
from ast_tune.config.sweep_spec import SweepSpec, Workload
from ast_tune.results.journal import JOURNAL, Journal
from ast_tune.tuning.runtime.resources import trial_resources
from ast_tune.tuning.runtime.worker import (
    WORKER_RETRIES,
    TrialFailedError,
    run_in_trial,
    run_training,
)
from ast_tune.tuning.search.callbacks import EpochTBXLogger, JournalCallback
from ast_tune.tuning.search.outcome_search import OutcomeSearch
from ast_tune.tuning.search.reconcile import ReconcilingSearch, trial_dirname
from ast_tune.tuning.search.schedulers import make_scheduler

FAILED = "FAILED"  # in a Tune trial's working directory: the reason the trial failed
SUMMARY = "summary.json"  # in a Tune trial's directory: the engine's summary of a run trained to its end


@dataclasses.dataclass(frozen=True)
class TrialContext:
    """What every trial of a Tune run shares: how a config becomes a run, where runs are kept, the baseline."""

    spec_of: Callable[[dict[str, Any]], RunSpec]  # a trial's config → its RunSpec
    name_of: Callable[[str, dict[str, Any]], str]  # (trial id, config) → its directory and Train run name
    workload: Workload
    tune_storage: str  # absolute directory of the Tune experiment (its trials' directories)
    train_storage: str  # absolute directory of the Train runs
    baseline_epoch_seconds: float | None

    def trainable(self) -> Any:
        """:func:`run_trial` bound to this context, with the workload's resources per trial."""
        return tune.with_resources(tune.with_parameters(run_trial, context=self), trial_resources(self.workload))

    def dirname(self, trial: tune.experiment.Trial) -> str:
        """Tune's ``trial_dirname_creator``: the trial's directory under ``tune_storage``."""
        return self.name_of(trial.trial_id, trial.config)


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    """One trial: ``context.spec_of(config)`` trained in this process (one worker) or as a Train run.

    A one-worker trial trains in this process; a larger one as Train run ``context.name_of(id, config)``.
    Tune restarts a trial whose process died, but a trial that failed (e.g. a NaN loss) leaves its
    reason in ``FAILED`` in its working directory and fails again at once instead of training again;
    a trial the journal saw end (after Tune's last save of its state) reports its last epoch again
    and ends without training. A trial that trains to its end leaves the engine's summary (per-class
    top-1, class names) in ``SUMMARY`` in its directory.
    """
    trial_id = tune.get_context().get_trial_id()
    spec, workload, name = context.spec_of(config), context.workload, context.name_of(trial_id, config)
    run_dir = Path(context.tune_storage) / name
    failed = run_dir / FAILED
    if failed.is_file():
        raise TrialFailedError(failed.read_text())
    last = _ended(Path(context.tune_storage) / JOURNAL, trial_id)
    if last is not None:
        tune.report({key: last.get(key) for key in columns.EPOCH_METRICS})
        return
    try:
        if workload.workers == 1:
            result = run_in_trial(spec, workload=workload, run_dir=run_dir,
                                  baseline_epoch_seconds=context.baseline_epoch_seconds)
        else:
            result = run_training(spec, workload=workload, name=name, storage_path=context.train_storage,
                                  run_dir=run_dir, baseline_epoch_seconds=context.baseline_epoch_seconds,
                                  callbacks=[TuneReportCallback()])
    except TrialFailedError as err:
        with contextlib.suppress(OSError):  # a full disk must not hide the reason
            atomic.write_text(failed, str(err))
        raise
    atomic.write_text(run_dir / SUMMARY, json.dumps(result["summary"], default=float))


def _ended(journal: Path, trial_id: str) -> dict[str, Any] | None:
    """The last epoch record of ``trial_id`` if the journal holds its end (finished or stopped), else None."""
    entries = [e for e in Journal(journal).read() if e["trial_id"] == trial_id]
    if not any(e["event"] == "end" and columns.may_rank(e["status"]) for e in entries):
        return None
    epochs = [e for e in entries if e["event"] == "epoch"]
    return max(epochs, key=lambda e: e["epoch"]) if epochs else None


def _sweep_trial_name(trial_id: str, config: dict[str, Any]) -> str:
    return trial_dirname(trial_id)


def _trial_dirname(trial: tune.experiment.Trial) -> str:
    """The sweep's ``trial_dirname_creator`` (by this name: a restored ``tuner.pkl`` refers to it)."""
    return trial_dirname(trial.trial_id)


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


def _scheduler(spec: SweepSpec, *, state_file: Path | None) -> tune.schedulers.TrialScheduler:
    return make_scheduler(spec.scheduler.kind, metric=spec.scheduler.metric, mode=spec.scheduler_mode,
                          metrics=[o.metric for o in spec.rung_objectives],
                          modes=[o.mode for o in spec.rung_objectives],
                          grace_period=spec.scheduler.grace_period, reduction_factor=spec.scheduler.reduction_factor,
                          max_t=spec.workload.epochs, state_file=state_file)


def check_search(spec: SweepSpec) -> None:
    """Build the sampler, the space's distributions and the scheduler once, before anything is timed.

    Raises:
        SpecError: one of them refuses the spec (key ``search``, ``space`` or ``scheduler``).
    """
    for key, build in (("search", lambda: _sampler(spec)), ("scheduler", lambda: _scheduler(spec, state_file=None)),
                       ("space", lambda: [_distribution(p) for p in spec.space])):
        try:
            build()
        except (ValueError, TypeError, OverflowError) as err:
            raise SpecError(key, str(err)) from None


def _new_tuner(spec: SweepSpec, results: Path, trainable: Any, journal: JournalCallback,
               concurrency: int) -> tune.Tuner:
    metrics = [o.metric for o in spec.objectives]
    modes = [o.mode for o in spec.objectives]
    optuna_search = OutcomeSearch(space={p.name: _distribution(p) for p in spec.space}, metric=metrics, mode=modes,
                                  sampler=_sampler(spec), study_name=spec.name, sweep=spec, results=results,
                                  storage=optuna.storages.RDBStorage(f"sqlite:///{results / 'optuna.db'}"))
    if set(metrics) & set(columns.OUTCOME_METRICS):  # told when a trial ends (OutcomeSearch), not per epoch
        os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    scheduler = _scheduler(spec, state_file=results / "scheduler_state.json")
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=ReconcilingSearch(optuna_search, max_concurrent=concurrency),
                                    scheduler=scheduler, num_samples=spec.search.num_trials,
                                    trial_dirname_creator=_trial_dirname,
                                    reuse_actors=spec.workload.workers == 1),  # a Train run's end outlasts reuse
        run_config=tune.RunConfig(name="tune", storage_path=str(results), verbose=0,
                                  callbacks=[journal, EpochTBXLogger()],
                                  failure_config=tune.FailureConfig(max_failures=WORKER_RETRIES)))


def make_tuner(spec: SweepSpec, results: Path, *, restore: bool, journal: JournalCallback, concurrency: int,
               baseline_epoch_seconds: float | None) -> tune.Tuner:
    """The sweep's Tuner over ``results/<name>/tune``: restored from it (``restore``) or new.

    Args:
        spec: the sweep.
        results: ``results/<name>``, absolute.
        restore: continue the Tune experiment stored there.
        journal: the callback that records every epoch and trial end (``tune/journal.jsonl``).
        concurrency: trials at once.
        baseline_epoch_seconds: the dense baseline's train seconds per epoch; None: speedup is NaN.
    """
    trainable = TrialContext(spec.trial_spec, _sweep_trial_name, spec.workload, str(results / "tune"),
                             str(results / "train"), baseline_epoch_seconds).trainable()
    if restore:
        return tune.Tuner.restore(str(results / "tune"), trainable, resume_unfinished=True,
                                  resume_errored=False, restart_errored=False)
    return _new_tuner(spec, results, trainable, journal, concurrency)
