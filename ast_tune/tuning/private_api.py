"""Every private part of Ray and Optuna that ast_tune uses, each with what it is, why, and the versions checked.

Nothing else in ``ast_tune`` (the RunPod node provider in ``ast_tune/cluster/`` aside) touches a private
name of Ray or Optuna; an upgrade of either is checked here first. Each use below was checked against
ray 2.59.0 and 2.60.0 and optuna 5.0.0 and 5.1.0, the ranges ``pyproject.toml`` allows.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import optuna
import ray._private.utils
from ray._private import ray_constants
from ray._raylet import AuthenticationTokenLoader, Config
from ray.train.v2._internal.constants import DEFAULT_WORKER_GROUP_START_TIMEOUT_S, WORKER_GROUP_START_TIMEOUT_S_ENV_VAR
from ray.tune.error import TuneError


def reload_auth() -> None:
    """Make this process see the ``RAY_AUTH_*`` variables as they are now.

    What: ``ray._raylet.Config.initialize("")`` re-reads Ray's config (``RAY_AUTH_MODE``) from the
    environment, and ``AuthenticationTokenLoader.instance().reset_cache()`` drops the token Ray cached.
    Why: token authentication is public only as environment variables, which Ray reads when it is
    imported; a local Ray gets a fresh token after that, and one process (the test suite, a sweep
    and its promotion) may start several. Checked: ray 2.59.0, 2.60.0.
    """
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@contextlib.contextmanager
def single_node_ray() -> Iterator[None]:
    """While it lasts, a Ray started in this process takes 127.0.0.1 as its node's address.

    What: ``ray._private.ray_constants.ENABLE_RAY_CLUSTER``, the value of
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` that Ray read when it was imported, set to False. Why: with it
    False every process of a new Ray binds its ports to 127.0.0.1; the variable itself (which the
    Ray processes inherit) is set after the import, and joining a cluster (``RAY_ADDRESS``) must not
    change. Checked: ray 2.59.0, 2.60.0.
    """
    saved, ray_constants.ENABLE_RAY_CLUSTER = ray_constants.ENABLE_RAY_CLUSTER, False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


@contextlib.contextmanager
def sigterm_left_alone() -> Iterator[None]:
    """While it lasts, ``ray.init`` leaves this process's SIGTERM handler as it is.

    What: ``ray._private.utils.set_sigterm_handler``, which ``ray.init`` (a driver's handler:
    ``sys.exit(15)``) and a head node it starts (``sys.exit(1)`` after killing its processes) call to
    install theirs, replaced by a no-op. Why: a command handles SIGTERM as Ctrl-C
    (:func:`ast_tune.config.cli.terminate_as_interrupt`) from its first moment; with Ray's handlers a
    SIGTERM while or after Ray starts would end it with neither its tables nor the line that says how
    to continue. Checked: ray 2.59.0, 2.60.0.
    """
    saved, ray._private.utils.set_sigterm_handler = ray._private.utils.set_sigterm_handler, lambda handler: None
    try:
        yield
    finally:
        ray._private.utils.set_sigterm_handler = saved


def fail_pending_trial(tune_controller: Any, trial: Any, reason: str) -> None:
    """End a pending Tune trial as ERROR, ``reason`` its one-line error, as Tune ends a trial whose actor failed.

    What: the ``TuneController`` behind the wrapper Tune hands a scheduler (``TrialRunnerWrapper._tune_controller``),
    its ``_unstage_trial_with_resources(trial)`` for a trial it staged, then
    ``_process_trial_failure(trial, exception=TuneError(reason))`` (what ``TuneController._actor_failed`` does for a
    pending trial): the scheduler, the searcher and the callbacks hear of the error, and ``error.txt`` ends with
    ``reason``. Why: Tune keeps a trial that no node can hold pending for ever and offers no public way to end
    one. Checked: ray 2.59.0, 2.60.0.
    """
    controller = getattr(tune_controller, "_tune_controller", tune_controller)
    if trial in controller._staged_trials:
        controller._unstage_trial_with_resources(trial)
    controller._process_trial_failure(trial, exception=TuneError(reason))


def worker_group_start_timeout_s() -> float:
    """Seconds Ray Train waits for a run's workers to be placed before it tries again (60 unless set).

    What: ``ray.train.v2._internal.constants``' ``WORKER_GROUP_START_TIMEOUT_S_ENV_VAR``
    (``RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S``, which Ray's own error message names) and its default.
    Why: a Train run whose node was lost retries its start this often; the count of tries is what
    bounds its wait for a node. Checked: ray 2.59.0, 2.60.0.
    """
    return float(os.environ.get(WORKER_GROUP_START_TIMEOUT_S_ENV_VAR, DEFAULT_WORKER_GROUP_START_TIMEOUT_S))


def trial_by_number(study: optuna.Study, number: int) -> optuna.trial.Trial:
    """A ``Trial`` for study trial ``number``, e.g. one an earlier driver asked, to set its constraints.

    What: ``optuna.trial.Trial(study, frozen._trial_id)``, the storage id ``FrozenTrial._trial_id``.
    Why: ``Trial.set_constraint`` is public, but Optuna hands out a ``Trial`` only from ``study.ask``;
    it has no public way to reopen a running trial by number. Checked: optuna 5.0.0, 5.1.0.
    """
    frozen = next(trial for trial in study.get_trials(deepcopy=False) if trial.number == number)
    return optuna.trial.Trial(study, frozen._trial_id)
