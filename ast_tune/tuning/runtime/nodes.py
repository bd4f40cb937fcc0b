"""Nodes that leave: which trial a lost node took with it, and a trial no node can take.

Every run reports the Ray nodes its processes run on (:data:`NODES` in each epoch record: the trial's
own process and every rank). :class:`NodeWatch`, a Tune callback, looks at those nodes every few
seconds and prints one line for each trial that ran on a node that has gone; Tune (a trial's process
died with it) or Ray Train (a rank did) then starts the run again on another node, and it continues
after its newest checkpoint (:mod:`ast_tune.tuning.runtime.worker`).

When no node can take a trial (a trial waiting for its first node, or for one after its node was lost),
it waits :func:`node_wait_s` for the autoscaler to add one, then ends ``ERROR`` with the reason and the
sweep goes on with its other trials. For a trial's own process that is :class:`NodeWait`: it counts
from the moment no alive node's total resources hold the trial, so a trial that waits for a node's
running trials to end waits as long as it takes. For a Train run's workers it is Ray Train's own
restart of its worker group, given up after about the same time (:func:`worker_group_attempts`).
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import ray
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from ast_tune.config.spec import SpecError
from ast_tune.tuning import private_api

NODES = "nodes"  # in a run's reports: the ids of the Ray nodes its processes run on
NODE_WAIT_VARIABLE = "AST_TUNE_NODE_WAIT_S"  # seconds a trial no node can take waits for one
NODE_WAIT_S = 900.0  # the default: long enough for an autoscaler to start a cloud GPU node
POLL_S = 2.0  # how often the cluster's nodes are asked for
PROBE_S = 1.0  # how long a node's raylet has to take a connection


def node_id() -> str:
    """The id of the Ray node this process runs on, or ``local`` outside Ray."""
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"


def node_wait_s() -> float:
    """Seconds a trial that no node can take waits for the autoscaler: ``AST_TUNE_NODE_WAIT_S``, default 900.

    Raises:
        SpecError: the variable is not a number of seconds ≥ 0.
    """
    text = os.environ.get(NODE_WAIT_VARIABLE, str(NODE_WAIT_S))
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise SpecError(NODE_WAIT_VARIABLE, f"must be a number of seconds >= 0; got {text!r}")
    return seconds


def worker_group_attempts() -> int:
    """Ray Train's tries at starting a run's workers that add up to :func:`node_wait_s` (at least one)."""
    return max(1, math.ceil(node_wait_s() / private_api.worker_group_start_timeout_s()))


def _alive_nodes() -> dict[str, dict[str, float]]:
    """``{node id: its total resources}`` of the nodes Ray holds alive."""
    return {node["NodeID"]: node["Resources"] for node in ray.nodes() if node["Alive"]}


def _lost(nodes: set[str]) -> set[str]:
    """Of ``nodes``, those Ray holds dead or has forgotten, and those whose raylet takes no connection.

    Ray holds a node dead only after it missed several health checks; its raylet's port answers at once.
    """
    table = {node["NodeID"]: node for node in ray.nodes()}
    return {node for node in nodes if node not in table or not table[node]["Alive"] or not _answers(table[node])}


def _answers(node: dict[str, Any]) -> bool:
    try:
        with socket.create_connection((node["NodeManagerAddress"], node["NodeManagerPort"]), timeout=PROBE_S):
            return True
    except OSError:
        return False


class NodeWatch(tune.Callback):
    """Prints one line for each unfinished trial that ran on a node that is lost: ``trial 3 lost node <id>: ...``.

    The nodes of the running trials are looked at every ``POLL_S``, and a trial's as Tune restarts it
    (its process died) or as it ends (a Train run may have lost a rank's node and gone on), so the line
    comes even when the run finishes on its new node before Ray holds the old one dead.

    Args:
        name: names a Tune trial in the line (as the progress lines do).
    """

    def __init__(self, name: Callable[[Any], str]) -> None:
        self.name = name
        self.where: dict[Any, set[str]] = {}  # an unfinished trial → the nodes its runs reported, none known lost
        self.next_poll = 0.0

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.where.setdefault(trial, set()).update(result.get(NODES, ()))

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._look([trial])

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._look([trial])
        self.where.pop(trial, None)

    on_trial_error = on_trial_complete

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if time.monotonic() >= self.next_poll:
            self.next_poll = time.monotonic() + POLL_S
            self._look(list(self.where))

    def _look(self, trials: list[Any]) -> None:
        nodes = set().union(*(self.where.get(trial, set()) for trial in trials))
        for node in sorted(_lost(nodes) if nodes else ()):
            for trial in trials:
                if node in self.where.get(trial, ()):
                    self.where[trial].discard(node)
                    print(f"{self.name(trial)} lost node {node}: it continues from its newest checkpoint on a node "
                          "that can take it", file=sys.stderr, flush=True)


class NodeWait(TrialScheduler):
    """``scheduler``, and a pending trial that no alive node can hold ends ``ERROR`` after ``wait_s`` seconds.

    Tune keeps such a trial pending for ever; each time Tune asks which trial to run next, the trials
    pending this long are ended first, through Tune's own path for a failed trial
    (:func:`ast_tune.tuning.private_api.fail_pending_trial`), so the callbacks record the reason.
    """

    def __init__(self, scheduler: TrialScheduler | None, *, wait_s: float) -> None:
        super().__init__()
        self.scheduler, self.wait_s = scheduler or FIFOScheduler(), wait_s
        self.since: dict[Any, float] = {}  # a pending trial no node can hold → since when
        self.nodes: dict[str, dict[str, float]] = {}
        self.next_poll = 0.0

    @property
    def metric(self) -> str | None:
        return self.scheduler.metric

    @property
    def supports_buffered_results(self) -> bool:
        return self.scheduler.supports_buffered_results

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return self.scheduler.set_search_properties(metric, mode, **spec)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self.scheduler.on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self.scheduler.on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        return self.scheduler.on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self.scheduler.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self.scheduler.on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return self.scheduler.debug_string()

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        if time.monotonic() >= self.next_poll:
            self.next_poll = time.monotonic() + POLL_S
            self.nodes = _alive_nodes()
            self._give_up(tune_controller)
        return self.scheduler.choose_trial_to_run(tune_controller)

    def _give_up(self, tune_controller: Any) -> None:
        now = time.monotonic()
        homeless = [trial for trial in tune_controller.get_trials()
                    if trial.status == Trial.PENDING and not self._fits(_need(trial))]
        self.since = {trial: self.since.get(trial, now) for trial in homeless}
        for trial in [trial for trial, since in self.since.items() if now - since >= self.wait_s]:
            need = ", ".join(f"{amount:g} {kind}" for kind, amount in _need(trial).items())
            private_api.fail_pending_trial(tune_controller, trial, f"NoNode: no node of the cluster can take the "
                                                                   f"trial ({need}); waited {self.wait_s:g} s for "
                                                                   "the autoscaler to add one")
            del self.since[trial]

    def _fits(self, need: dict[str, float]) -> bool:
        """Whether some alive node's total resources hold ``need``."""
        return any(all(total.get(kind, 0.0) >= amount for kind, amount in need.items())
                   for total in self.nodes.values())


def _need(trial: Trial) -> dict[str, float]:
    """What a Tune trial's own process holds (one bundle for an ast_tune trial), without the zero amounts."""
    return {kind: amount for kind, amount in trial.placement_group_factory.required_resources.items() if amount > 0}
