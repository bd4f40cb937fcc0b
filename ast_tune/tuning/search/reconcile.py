"""The sweep's search algorithm: Optuna's suggestions, reconciled with the study when a sweep is restored.

Tune saves its experiment state only now and then, so a driver killed between two saves leaves
trials that the study (``optuna.db``, written at once) holds but ``Tuner.restore`` does not: trials
proposed, started or even finished after the last save. :class:`ReconcilingSearch` tags every
Optuna trial with its Tune trial id (user attribute ``tune_trial_id``) and, on the first call after a
restore, hands Tune each study trial that Tune's restored state does not know, under its own id and
with its own configuration, before it asks the sampler for anything new. Such a trial runs in its
old directory, so it continues from its newest checkpoint that loads (``worker.train_loop``); one that
had ended ends again without training (``tuner.run_trial``). Each counts against ``num_samples``, so
the sampler proposes exactly as many trials as an uninterrupted sweep, and each keeps its one Optuna
trial, which Tune's end of the trial closes (``COMPLETE`` or ``FAIL``).
"""

from __future__ import annotations

import copy
import logging

import optuna
import pyarrow.fs
from ray.train._internal.storage import StorageContext
from ray.tune.experiment import Trial
from ray.tune.experiment.config_parser import _create_trial_from_spec
from ray.tune.search import ConcurrencyLimiter, SearchGenerator
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.variant_generator import format_vars
from ray.tune.utils.util import flatten_dict, merge_dicts

log = logging.getLogger(__name__)

TUNE_TRIAL_ID = "tune_trial_id"  # the Optuna user attribute naming a study trial's Tune trial


def trial_dirname(trial_id: str) -> str:
    """A trial's directory in the Tune experiment, and the name of its Train run."""
    return f"trial_{trial_id}"


class ReconcilingSearch(SearchGenerator):
    """Optuna behind a concurrency limit; after a restore, first the study trials Tune lost.

    Args:
        optuna_search: the sweep's ``OptunaSearch`` (its study stored in ``optuna.db``).
        max_concurrent: trials at once.
    """

    def __init__(self, optuna_search: OptunaSearch, *, max_concurrent: int) -> None:
        super().__init__(ConcurrencyLimiter(optuna_search, max_concurrent=max_concurrent))
        self._lost: list[tuple[str, optuna.trial.FrozenTrial]] | None = None  # None: not reconciled yet

    @property
    def _optuna(self) -> OptunaSearch:
        return self.searcher.searcher

    def next_trial(self) -> Trial | None:
        if self._lost is None:
            self._lost = _lost_trials(self._optuna)
            if self._lost:
                log.warning("restore: %d trial(s) the study holds but Tune's saved state does not: %s; resuming "
                            "them under their own ids", len(self._lost), ", ".join(i for i, _ in self._lost))
        if self._lost:
            return self._resume(*self._lost.pop(0))
        trial = super().next_trial()
        if trial is not None:
            self._optuna._ot_trials[trial.trial_id].set_user_attr(TUNE_TRIAL_ID, trial.trial_id)
        return trial

    def _resume(self, trial_id: str, frozen: optuna.trial.FrozenTrial) -> Trial:
        """A Tune trial for study trial ``frozen``, in its old directory, counted against ``num_samples``."""
        optuna_search = self._optuna
        ot_trial = optuna.trial.Trial(optuna_search._ot_study, frozen._trial_id)
        frozen = _with_every_param(ot_trial, frozen, optuna_search._space)
        if frozen.user_attrs.get(TUNE_TRIAL_ID) != trial_id:  # asked, but killed before it was tagged
            ot_trial.set_user_attr(TUNE_TRIAL_ID, trial_id)
        optuna_search._ot_trials[trial_id] = ot_trial
        self.searcher.live_trials.add(trial_id)  # so its end reaches Optuna through the limiter
        self.searcher.num_unfinished_live_trials += 1
        spec = copy.deepcopy(self._experiment.spec)
        spec["config"] = merge_dicts(spec["config"], copy.deepcopy(frozen.params))
        self._counter += 1
        trial = _create_trial_from_spec(spec, self._parser, evaluated_params=flatten_dict(frozen.params),
                                        experiment_tag=f"{self._counter}_{format_vars(frozen.params)}",
                                        trial_id=trial_id)
        trial.relative_logdir = trial.storage.trial_dir_name = trial_dirname(trial_id)  # not a fresh directory
        trial.storage.current_checkpoint_index = _last_checkpoint_index(trial.storage)
        return trial


def _lost_trials(optuna_search: OptunaSearch) -> list[tuple[str, optuna.trial.FrozenTrial]]:
    """``(tune trial id, study trial)`` for each study trial the restored searcher never suggested."""
    known = set(optuna_search._ot_trials)
    lost = []
    for frozen in optuna_search._ot_study.get_trials(deepcopy=False):
        trial_id = frozen.user_attrs.get(TUNE_TRIAL_ID)
        if trial_id is None and frozen.state == optuna.trial.TrialState.RUNNING:
            trial_id = Trial.generate_id()  # asked, then killed before Tune made a trial of it
        if trial_id is not None and trial_id not in known:
            lost.append((trial_id, frozen))
    return lost


def _with_every_param(ot_trial: optuna.trial.Trial, frozen: optuna.trial.FrozenTrial,
                      space: dict[str, optuna.distributions.BaseDistribution]) -> optuna.trial.FrozenTrial:
    """``frozen`` with a value for every parameter of ``space``.

    Optuna's ``ask`` stores a new trial's parameters one by one, so a driver killed in between leaves a
    study trial with some or none of them; the sampler draws the missing ones now, once, and they are
    stored before the trial runs (it never ran: a trial starts only after ``ask`` returns).
    """
    missing = [name for name in space if name not in frozen.params]
    if not missing:
        return frozen
    log.warning("restore: study trial %d lost parameter(s) %s to the kill; sampling them now", frozen.number,
                ", ".join(missing))
    for name in missing:
        ot_trial._suggest(name, space[name])
    return ot_trial.study._storage.get_trial(frozen._trial_id)


def _last_checkpoint_index(storage: StorageContext) -> int:
    """The highest N of the trial's ``checkpoint_N`` directories, -1 if none: Tune numbers its next one on from it."""
    infos = storage.storage_filesystem.get_file_info(pyarrow.fs.FileSelector(storage.trial_fs_path,
                                                                              allow_not_found=True))
    numbers = [int(info.base_name.removeprefix("checkpoint_")) for info in infos
               if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith("checkpoint_")
               and info.base_name.removeprefix("checkpoint_").isdigit()]
    return max(numbers, default=-1)
