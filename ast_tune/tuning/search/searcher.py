"""The sweep's Tune searcher: the trials to resume first, then Optuna's ``study.ask`` until the budget is spent.

:class:`StudySearcher` is a Ray Tune ``Searcher`` (a DeveloperAPI meant to be subclassed) over the
Optuna study's public ask-and-tell: it hands Tune each study trial to resume (the ``RUNNING`` ones
:func:`ast_tune.tuning.search.study.reconcile` returns) under its own number and parameters, then asks
the study for new ones while it holds fewer than ``search.num_trials`` counted trials, then says
``FINISHED``. A trial's config carries its study number under :data:`TRIAL_KEY`, beside its
parameters; Tune names its directory from it, and the journal and the schedulers know the trial by
it. The searcher never tells the study anything: the journal's callback does, once it has recorded
the trial's end (:func:`ast_tune.tuning.search.study.tell`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from ray.tune.search import Searcher

from ast_tune.tuning.search.study import counted

#: The key of a trial's config that holds its study number; no space parameter can take this name
#: (a parameter is an alias of ``config.sweep_space.ALIASES`` or a dotted RunSpec path).
TRIAL_KEY = "trial"


def trial_key(config: Mapping[str, Any]) -> str:
    """A sweep trial's id everywhere: its study number, from its config."""
    return str(config[TRIAL_KEY])


def trial_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's parameters: its config without its study number."""
    return {name: value for name, value in config.items() if name != TRIAL_KEY}


class StudySearcher(Searcher):
    """Resumed study trials first, then ``study.ask(space)`` until ``num_trials`` trials count; then ``FINISHED``.

    Args:
        study: the sweep's study (``optuna.db``).
        space: the distributions ``study.ask`` is given, by parameter name.
        num_trials: the trials the sweep runs in all (``search.num_trials``).
        resume: the study trials to hand back first, under their own numbers and parameters.
    """

    def __init__(self, study: optuna.Study, space: dict[str, optuna.distributions.BaseDistribution], *,
                 num_trials: int, resume: Sequence[optuna.trial.FrozenTrial] = ()) -> None:
        super().__init__(metric=None, mode=None)  # the objectives go to Optuna alone: Tune checks no metric
        self.study, self.space, self.num_trials = study, space, num_trials
        self.resume = list(resume)
        self.asked: dict[int, optuna.trial.Trial] = {}  # by number: the trials this driver asked

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.resume:
            frozen = self.resume.pop(0)
            return {TRIAL_KEY: frozen.number, **frozen.params}
        if counted(self.study, self.space) >= self.num_trials:
            return Searcher.FINISHED
        trial = self.study.ask(self.space)
        self.asked[trial.number] = trial
        return {TRIAL_KEY: trial.number, **trial.params}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Nothing: the journal's callback tells the study, after it has recorded the trial's end."""

    def save(self, checkpoint_path: str) -> None:
        """Nothing: the study is the search's state (Tune's saved state is never read)."""
