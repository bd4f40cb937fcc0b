"""Faults of a multi-node cluster: a node lost mid-trial (one worker, two Train workers, a promotion), a trial no
node can take, and a node that does not share ``storage.root``.

One cluster serves the module (``ray.cluster_utils.Cluster``): a head with no CPUs (the sweep's driver joins
it through ``RAY_ADDRESS``) and two one-CPU worker nodes, each its own raylet, all on 127.0.0.1 behind a
token, told apart by node id; every trial fits on any worker node, so a retry has somewhere to go. A node
is lost as a pod is: the processes its raylet started are killed with it, at once. Each test waits on a
state (a journal entry), freezes the run there (SIGSTOP) before the node goes, and the cluster gets its
two worker nodes back before the next test, as an autoscaler would add them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pandas as pd
import psutil
import pytest
from ray.cluster_utils import Cluster

from ast_tune.results.journal import JOURNAL, Journal
from ast_tune.tuning import private_api
from ast_tune.tuning.runtime import cleanup
from ast_tune.tuning.runtime.nodes import NODE_WAIT_VARIABLE
from ast_tune.tuning.runtime.session import free_loopback_port
from ast_tune.tuning.runtime.storage import MARKER
from tests.test_faults import ROOT
from tests.test_kills import _sweep_argv

pytestmark = pytest.mark.ray

WORKER_NODES = 2
VARIABLES = ("RAY_TMPDIR", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN",
             "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")


class LocalCluster:
    """A head and one-CPU worker nodes on 127.0.0.1; :meth:`lose` takes one away as a vanished pod would."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a sweep that joins this cluster."""
        return {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": self.cluster.address, **extra}

    def refill(self) -> None:
        while len(self.cluster.worker_nodes) < WORKER_NODES:
            self.cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")

    def processes(self, title: str) -> dict[psutil.Process, object]:
        """The processes named ``title`` (trials' processes, Train workers) on the worker nodes, with their node."""
        found = {}
        for node in self.cluster.worker_nodes:
            raylet = next(process for kind, process in node.live_processes() if kind == "raylet")
            for process in psutil.Process(raylet.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if title in " ".join(process.cmdline()):
                        found[process] = node
        return found

    def lose(self, node: object) -> None:
        """Kill ``node``'s raylet, everything it started (the trials' processes on it) and its agents, at once."""
        raylet = next(process for kind, process in node.live_processes() if kind == "raylet")
        for process in psutil.Process(raylet.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                process.kill()
        self.cluster.remove_node(node, allow_graceful=False)


@pytest.fixture(scope="module")
def module_cluster() -> Iterator[LocalCluster]:
    temp = Path(tempfile.mkdtemp(prefix="raycl", dir="/tmp"))  # short: unix socket paths are length-limited
    (temp / "ray").mkdir()
    cleanup.mark(temp)  # a later sweep reaps it if this process is killed
    saved = {name: os.environ.get(name) for name in VARIABLES}
    os.environ.update(RAY_TMPDIR=str(temp), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token",
                      RAY_AUTH_TOKEN=secrets.token_hex(32))
    for name in ("RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        os.environ.pop(name, None)
    private_api.reload_auth()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "node_ip_address": "127.0.0.1", "temp_dir": str(temp / "ray"), "include_dashboard": True,
        "dashboard_host": "127.0.0.1", "dashboard_port": free_loopback_port()})
    try:
        local = LocalCluster(cluster)
        local.refill()
        yield local
    finally:
        cluster.shutdown()
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value
        private_api.reload_auth()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def cluster(module_cluster: LocalCluster) -> LocalCluster:
    module_cluster.refill()  # the nodes an earlier test lost come back, as an autoscaler would add them
    return module_cluster


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("a") as out:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait(process: subprocess.Popen, condition: Callable[[], bool], log: Path, timeout: float = 400) -> None:
    deadline = time.monotonic() + timeout  # a safety net for a broken run, not a speed
    while not condition():
        assert process.poll() is None, f"the sweep ended early with {process.returncode}: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for the state: {log.read_text()[-3000:]}"
        time.sleep(0.05)


def _finish(process: subprocess.Popen) -> int:
    try:
        return process.wait(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _journal(path: Path) -> list[dict]:
    return Journal(path).read()


def _has_epoch(path: Path, epoch: int) -> Callable[[], bool]:
    return lambda: any(e["event"] == "epoch" and e["epoch"] == epoch for e in _journal(path))


def _epoch_seconds(path: Path) -> dict[tuple[str, int], set[float]]:
    seen: dict[tuple[str, int], set[float]] = {}
    for e in _journal(path):
        if e["event"] == "epoch":
            seen.setdefault((e["trial_id"], e["epoch"]), set()).add(e["train_seconds"])
    return seen


def _lose_the_node_of(cluster: LocalCluster, title: str, journal: Path, *, pick: Callable[[dict], object]) -> str:
    """Freeze the run's processes named ``title``, check it has not ended, lose the node ``pick`` chooses; its id."""
    processes = cluster.processes(title)
    for process in processes:
        process.suspend()
    assert processes and not any(e["event"] == "end" for e in _journal(journal)), "no state to stop the run at"
    node = pick(processes)
    cluster.lose(node)
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.resume()
    return node.node_id


def test_a_trial_and_a_promotion_that_lose_their_node_continue_on_another_from_their_checkpoints(cluster, tmp_path):
    results, log = tmp_path / "results", tmp_path / "sweep.log"
    argv = _sweep_argv(results, "workload.epochs=3", "search.num_trials=1", "scheduler.kind=fifo",
                       "promote.enabled=true", "promote.epochs=3", "promote.checkpoint_every=1",
                       "promote.rule.max_accuracy_drop=100")
    journal, promoted = results / "quickstart" / JOURNAL, results / "quickstart" / "promoted" / JOURNAL
    process = _start(argv, cluster.env(), log)
    try:
        _wait(process, _has_epoch(journal, 1), log)
        trial_node = _lose_the_node_of(cluster, "ImplicitFunc", journal, pick=lambda found: next(iter(found.values())))
        cluster.refill()
        _wait(process, _has_epoch(promoted, 1), log)
        promoted_node = _lose_the_node_of(cluster, "ImplicitFunc", promoted,
                                          pick=lambda found: next(iter(found.values())))
        assert _finish(process) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
    out = log.read_text()
    assert f"trial 0 lost node {trial_node}: it continues from its newest checkpoint" in out, out[-3000:]
    assert f"promoted trial 0 lost node {promoted_node}: it continues" in out, out[-3000:]
    epochs = pd.read_parquet(results / "quickstart" / "epochs.parquet")
    assert epochs["epoch"].tolist() == [1, 2, 3] and set(epochs["status"]) == {"TERMINATED"}
    study = optuna.load_study(study_name="quickstart", storage=f"sqlite:///{results / 'quickstart' / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"]
    # epoch 1 was checkpointed before the loss: replayed on the new node (the journal skips what it holds), not
    # trained again (that would append it with other seconds)
    assert [len(_epoch_seconds(journal)["0", epoch]) for epoch in (1, 2, 3)] == [1, 1, 1]
    assert pd.read_parquet(results / "quickstart" / "promoted" / "epochs.parquet")["epoch"].tolist() == [1, 2, 3]
    assert len(_epoch_seconds(promoted)["promoted_0", 1]) == 1
    assert json.loads((results / "quickstart" / "promoted" / "summary.json").read_text())["status"] == "finished"


def test_a_two_worker_train_trial_that_loses_a_workers_node_continues_from_its_checkpoint(cluster, tmp_path):
    """The lost node holds a rank but not the trial's own process: Ray Train starts the workers again elsewhere."""
    results, log = tmp_path / "results", tmp_path / "sweep.log"
    argv = _sweep_argv(results, "workload.epochs=3", "search.num_trials=1", "scheduler.kind=fifo",
                       "workload.workers=2", "workload.cpus_per_worker=0.45", "workload.placement=SPREAD")
    journal = results / "quickstart" / JOURNAL
    process = _start(argv, cluster.env(), log)
    try:
        _wait(process, _has_epoch(journal, 1), log)
        trial_nodes = set(cluster.processes("ImplicitFunc").values())

        def a_rank_alone(found: dict) -> object:
            return next(node for node in found.values() if node not in trial_nodes)

        lost = _lose_the_node_of(cluster, "RayTrainWorker", journal, pick=a_rank_alone)
        assert _finish(process) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
    assert f"trial 0 lost node {lost}: it continues" in log.read_text(), log.read_text()[-3000:]
    epochs = pd.read_parquet(results / "quickstart" / "epochs.parquet")
    assert epochs["epoch"].tolist() == [1, 2, 3] and set(epochs["status"]) == {"TERMINATED"}
    assert len(_epoch_seconds(journal)["0", 1]) == 1  # from its checkpoint: epoch 1 was not trained again


def test_a_trial_no_node_can_take_ends_as_error_after_the_stated_wait(cluster, tmp_path):
    """The trial needs 1.55 CPUs: only the two-CPU node added for it holds that, and it is lost."""
    big = cluster.cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1")
    results, log = tmp_path / "results", tmp_path / "sweep.log"
    argv = _sweep_argv(results, "workload.epochs=3", "search.num_trials=1", "scheduler.kind=fifo",
                       "workload.cpus_per_worker=1.5")
    journal = results / "quickstart" / JOURNAL
    process = _start(argv, cluster.env(**{NODE_WAIT_VARIABLE: "3"}), log)
    try:
        _wait(process, _has_epoch(journal, 1), log)
        lost = _lose_the_node_of(cluster, "ImplicitFunc", journal, pick=lambda found: big)
        assert _finish(process) == 1, log.read_text()[-3000:]  # no trial finished
    finally:
        if process.poll() is None:
            process.kill()
    out = log.read_text()
    assert f"trial 0 lost node {lost}" in out and "sweep failed: no trial finished" in out, out[-3000:]
    trials = pd.read_csv(results / "quickstart" / "trials.csv")
    assert trials["status"].tolist() == ["ERROR"]
    assert trials["reason"].iloc[0] == ("NoNode: no node of the cluster can take the trial (1.55 CPU); waited 3 s "
                                        "for the autoscaler to add one")


def test_a_trial_whose_node_cannot_read_the_storage_marker_fails_at_once_and_the_sweep_says_so(cluster, tmp_path):
    """Trial 0 has read the marker; it is gone when trial 1 starts, as on a node without the shared mount."""
    results, log = tmp_path / "results", tmp_path / "sweep.log"
    argv = _sweep_argv(results, "workload.epochs=2", "search.num_trials=2", "search.max_concurrent=1",
                       "scheduler.kind=fifo")
    journal, marker = results / "quickstart" / JOURNAL, results / "quickstart" / MARKER
    process = _start(argv, cluster.env(), log)
    try:
        _wait(process, _has_epoch(journal, 1), log)
        trials = cluster.processes("ImplicitFunc")
        for trial in trials:
            trial.suspend()
        assert trials and not any(e["event"] == "end" for e in _journal(journal))
        marker.unlink()
        for trial in trials:
            trial.resume()
        assert _finish(process) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
    nodes = {node.node_id for node in cluster.cluster.worker_nodes}
    table = pd.read_csv(results / "quickstart" / "trials.csv").set_index("trial_id")
    assert table["status"].to_dict() == {0: "TERMINATED", 1: "ERROR"}
    reason = table.loc[1, "reason"]
    assert reason.startswith("StorageNotShared: node ") and reason.split()[2] in nodes, reason
    assert reason.endswith(f"cannot read {marker} (No such file or directory)"), reason
    assert not any(e["event"] == "epoch" and e["trial_id"] == "1" for e in _journal(journal))  # failed at once
    assert (f"storage.root {results} is not shared by every node: trial(s) 1 could not read the driver's marker"
            in log.read_text()), log.read_text()[-3000:]
