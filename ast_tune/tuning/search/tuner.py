"""The Tune side of a sweep: what one trial runs, and the Tuner (the study's searcher, the scheduler) that runs them.

Each Tune trial is a function (:func:`run_trial`). A one-worker trial trains in that function's own
process, which Tune reuses for the next trial (:func:`ast_tune.tuning.runtime.worker.run_in_trial`);
a multi-worker trial holds a tiny CPU share and runs a Ray Train ``TorchTrainer``
(:func:`ast_tune.tuning.runtime.worker.run_training`) named ``trial_<number>``, forwarding its
reports to Tune with ``TuneReportCallback``. Either way the run keeps its checkpoints in its own
directory, ``results/<name>/trials/<number>/``, so a trial handed to a new Tune run continues after
its newest one. :func:`make_tuner` builds a new Tuner every time a sweep starts (``--resume``
included): the searcher hands back the study's unfinished trials first
(:mod:`ast_tune.tuning.search.searcher`), the journal's callback tells the study each end
(:mod:`ast_tune.tuning.search.study`), and Tune's own saved state is never read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import TrialScheduler

from ast_tune import atomic
from ast_tune.config.run_spec import RunSpec
from ast_tune.config.sweep_spec import SweepSpec, Workload
from ast_tune.results.journal import Journal
from ast_tune.tuning.runtime.nodes import NodeWait, NodeWatch, node_wait_s
from ast_tune.tuning.runtime.resources import trial_resources
from ast_tune.tuning.runtime.storage import StorageMarker
from ast_tune.tuning.runtime.worker import (
    FAILED,
    SUMMARY,
    WORKER_RETRIES,
    TrialFailedError,
    run_in_trial,
    run_training,
)
from ast_tune.tuning.search.callbacks import EpochTBXLogger, JournalCallback
from ast_tune.tuning.search.schedulers import make_scheduler
from ast_tune.tuning.search.searcher import TRIAL_KEY, StudySearcher, trial_key
from ast_tune.tuning.search.study import distributions, tell

Config = Mapping[str, Any]
TRIALS = "trials"  # under results/<name>/: each trial's run directory, by study number


@dataclasses.dataclass(frozen=True)
class TrialContext:
    """What every trial of a Tune run shares: how a config becomes a run, where runs are kept, the baseline."""

    spec_of: Callable[[Config], RunSpec]  # a trial's config → its RunSpec
    name_of: Callable[[Config], str]  # a trial's config → its Tune directory's and Train run's name
    run_dir_of: Callable[[Config], Path]  # a trial's config → its run directory (checkpoints, FAILED, summary)
    workload: Workload
    train_storage: str  # absolute directory of the Train runs
    baseline_epoch_seconds: float | None
    marker: StorageMarker | None = None  # read by every run as it starts (tuning/runtime/storage.py)

    def trainable(self) -> Any:
        """:func:`run_trial` bound to this context, with the workload's resources per trial."""
        return tune.with_resources(tune.with_parameters(run_trial, context=self), trial_resources(self.workload))

    def dirname(self, trial: tune.experiment.Trial) -> str:
        """Tune's ``trial_dirname_creator``: the trial's directory in the Tune run (Tune's scratch)."""
        return self.name_of(trial.config)


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    """One trial: ``context.spec_of(config)`` trained in this process (one worker) or as a Train run.

    A one-worker trial trains in this process; a larger one as Train run ``context.name_of(config)``.
    Tune restarts a trial whose process died, but a trial that failed (e.g. a NaN loss) leaves its
    reason in ``FAILED`` in its run directory and fails again at once instead of training again. A
    trial that trains to its end leaves the engine's summary (per-class top-1, class names) in
    ``SUMMARY`` there.
    """
    run_dir = context.run_dir_of(config)
    failed = run_dir / FAILED
    if failed.is_file():
        raise TrialFailedError(failed.read_text())
    spec, workload = context.spec_of(config), context.workload
    try:
        if workload.workers == 1:
            result = run_in_trial(spec, workload=workload, run_dir=run_dir,
                                  baseline_epoch_seconds=context.baseline_epoch_seconds, marker=context.marker)
        else:
            result = run_training(spec, workload=workload, name=context.name_of(config),
                                  storage_path=context.train_storage, run_dir=run_dir,
                                  baseline_epoch_seconds=context.baseline_epoch_seconds,
                                  callbacks=[TuneReportCallback()], marker=context.marker)
    except TrialFailedError as err:
        with contextlib.suppress(OSError):  # a full disk must not hide the reason
            atomic.write_text(failed, str(err))
        raise
    atomic.write_text(run_dir / SUMMARY, json.dumps(result["summary"], default=float))


def tune_run(trainable: Any, storage: Path, *, journal: JournalCallback, param_space: dict[str, Any] | None = None,
             scheduler: TrialScheduler | None = None, watch: Sequence[tune.Callback] = (),
             **tune_config: Any) -> tune.Tuner:
    """A new Tune run named ``tune`` under ``storage`` (Tune's scratch: TensorBoard files, its own state,
    never read back), recorded by ``journal`` and then told to ``watch`` (which may read the journal); trials
    restarted ``WORKER_RETRIES`` times when their process dies (or its node: a line names it), and ended
    ``ERROR`` when no node can take one for :func:`node_wait_s` (:mod:`ast_tune.tuning.runtime.nodes`)."""
    return tune.Tuner(trainable, param_space=param_space,
                      tune_config=tune.TuneConfig(scheduler=NodeWait(scheduler, wait_s=node_wait_s()), **tune_config),
                      run_config=tune.RunConfig(name="tune", storage_path=str(storage), verbose=0,
                                                callbacks=[journal, *watch, EpochTBXLogger(),
                                                           NodeWatch(journal.name)],
                                                failure_config=tune.FailureConfig(max_failures=WORKER_RETRIES)))


def _sweep_name(config: Config) -> str:
    return f"trial_{config[TRIAL_KEY]}"


def _sweep_run_dir(results: Path, config: Config) -> Path:
    return results / TRIALS / trial_key(config)


def _study_number(trial: tune.experiment.Trial) -> str:
    """A sweep trial's id in the scheduler's rungs: its study number, the same in every Tune run."""
    return trial_key(trial.config)


def make_tuner(spec: SweepSpec, results: Path, *, study: optuna.Study, resume: Sequence[optuna.trial.FrozenTrial],
               journal: Journal, concurrency: int, baseline: Mapping | None,
               marker: StorageMarker | None = None, watch: Sequence[tune.Callback] = (),
               on_entry: Callable[[dict[str, Any]], None] | None = None, quiet: bool = False) -> tune.Tuner:
    """A new Tune run of the sweep over ``results/<name>``: the trials to resume first, then new ones.

    Args:
        spec: the sweep.
        results: ``results/<name>``, absolute.
        study: the sweep's study; ``resume``: its trials to hand back first (:func:`study.reconcile`).
        journal: the journal (``results/<name>/journal.jsonl``); the scheduler's rungs are rebuilt from it.
        concurrency: trials at once.
        baseline: ``baseline.json`` (its ``epoch_seconds`` gives every speedup), or None: speedup is NaN.
        marker: the storage marker every trial's run reads as it starts, or None.
        watch: callbacks told after the journal (the status line: :mod:`ast_tune.tuning.search.watch`).
        on_entry, quiet: :class:`JournalCallback`'s (the trackers; ``--quiet``).
    """
    context = TrialContext(spec.trial_spec, _sweep_name, functools.partial(_sweep_run_dir, results), spec.workload,
                           str(results / "train"), baseline["epoch_seconds"] if baseline else None, marker)
    searcher = StudySearcher(study, distributions(spec), num_trials=spec.search.num_trials, resume=resume)

    def told(number: str, entries: list[dict[str, Any]]) -> None:
        tell(study, int(number), entries, spec=spec, baseline=baseline, trial=searcher.asked.get(int(number)))

    callback = JournalCallback(journal, epochs=spec.workload.epochs, key=trial_key, run_dir=context.run_dir_of,
                               on_end=told, on_entry=on_entry, quiet=quiet)
    history = [(e["trial_id"], e) for e in journal.read() if e["event"] == "epoch"]
    scheduler = make_scheduler(spec, key=_study_number, history=history)
    return tune_run(context.trainable(), results, journal=callback, watch=watch, search_alg=searcher,
                    scheduler=scheduler, num_samples=-1, max_concurrent_trials=concurrency,
                    trial_dirname_creator=context.dirname,
                    reuse_actors=spec.workload.workers == 1)  # a Train run's end outlasts reuse
