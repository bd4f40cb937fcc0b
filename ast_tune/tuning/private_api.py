"""Every private part of Ray and Optuna that ast_tune uses, each with what it is, why, and the versions checked.

Nothing else in ``ast_tune`` (the RunPod node provider in ``ast_tune/cluster/`` aside) touches a private
name of Ray or Optuna; an upgrade of either is checked here first. Checked against ray 2.60.0 and optuna 5.0.0.
"""

from __future__ import annotations

import optuna


def trial_by_number(study: optuna.Study, number: int) -> optuna.trial.Trial:
    """A ``Trial`` for study trial ``number``, e.g. one asked by an earlier driver, to set its constraints.

    Why: ``Trial.set_constraint`` is public, but a ``Trial`` is public only as ``study.ask`` returns it;
    Optuna has no public way to reopen a running trial by number. ``optuna.trial.Trial(study, trial_id)``
    is a public class whose storage id ``FrozenTrial._trial_id`` is private (optuna 5.0.0).
    """
    frozen = next(trial for trial in study.get_trials(deepcopy=False) if trial.number == number)
    return optuna.trial.Trial(study, frozen._trial_id)
