"""Ray for a sweep: start it (or join a cluster), the resources a trial holds, and how many fit at once.

:func:`ray_session` starts a local Ray with its own temp dir and always shuts it down
(:func:`local_ray` makes every port of a local Ray listen on loopback only, behind a token); the
resource arithmetic lives here only (:func:`worker_resources`, :func:`trial_resources`,
:func:`trial_need`, :func:`torch_threads`); :func:`concurrency` caps the trials at once so every
running trial's resources fit, and :func:`in_threads` runs blocking calls so that Ctrl-C still
reaches the main thread.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import ray
from ray._private import ray_constants
from ray._raylet import AuthenticationTokenLoader, Config

from ast_tune.config.spec import SpecError
from ast_tune.config.sweep_spec import DRIVER_CPUS, SweepSpec, Workload
from ast_tune.tuning import ray_cleanup

log = logging.getLogger(__name__)

API_SERVER_VARIABLE = "RAY_API_SERVER_ADDRESS"  # where Ray's state API is asked (the dashboard)
# A local Ray's environment: no multi-node cluster (every process takes 127.0.0.1 as the node's
# address and binds its ports there) and token authentication, with a fresh token for each local Ray.
LOCAL_RAY_VARIABLES = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@contextlib.contextmanager
def local_ray() -> Iterator[None]:
    """While it lasts, a ``ray.init()`` that starts a Ray binds it to 127.0.0.1 and turns on token auth.

    Ray reads both settings from the environment (its processes inherit it): with
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` the node's address is the loopback one and the GCS, raylet,
    agents and workers listen only there; ``RAY_AUTH_MODE=token`` with a ``RAY_AUTH_TOKEN`` made here
    (never written to disk) makes every RPC carry it. The variables are restored afterwards.
    """
    saved = {name: os.environ.get(name) for name in LOCAL_RAY_VARIABLES}
    os.environ.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token",
                      RAY_AUTH_TOKEN=secrets.token_hex(32))
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    cluster_flag, ray_constants.ENABLE_RAY_CLUSTER = ray_constants.ENABLE_RAY_CLUSTER, False  # read at import
    _reload_auth()
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = cluster_flag
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value
        _reload_auth()


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 just now (the OS's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _reload_auth() -> None:
    """Make this process see the current ``RAY_AUTH_*`` variables (Ray caches them): config first, then token."""
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@contextlib.contextmanager
def ray_session(*, verbose: bool, num_cpus: int | None = None) -> Iterator[dict[str, float]]:
    """Start Ray (or join ``RAY_ADDRESS``) and always shut it down; yields the cluster's resources.

    A local Ray (:func:`local_ray`: loopback only, token auth) gets its own short temp dir (unix
    socket paths are length-limited) and a dashboard on 127.0.0.1: Ray Train's placement-group
    cleaner asks its state API whether a stopped trial's controller is gone, and frees the trial's
    workers only then. The temp dir is marked with this
    process (:mod:`ast_tune.tuning.ray_cleanup`), and the leftovers of marked Rays whose driver was killed
    are removed first. ``num_cpus``: the CPUs a local Ray offers (default: all).
    """
    temp_dir, api_server = None, os.environ.get(API_SERVER_VARIABLE)
    options: dict[str, Any] = {"log_to_driver": verbose, "configure_logging": verbose}
    if not os.environ.get("RAY_ADDRESS"):
        ray_cleanup.reap_stale("/tmp")
        temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
        ray_cleanup.mark(temp_dir)
        port = free_loopback_port()
        os.environ[API_SERVER_VARIABLE] = f"http://127.0.0.1:{port}"  # Ray's processes inherit it
        options.update(_temp_dir=temp_dir, include_dashboard=True, dashboard_host="127.0.0.1",
                       dashboard_port=port, num_cpus=num_cpus)
    try:
        with local_ray() if temp_dir else contextlib.nullcontext():
            try:
                ray.init(**options)
                yield {"CPU": 0.0, "GPU": 0.0, **ray.cluster_resources()}
            finally:
                ray.shutdown()
    finally:
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
            os.environ.pop(API_SERVER_VARIABLE)
            if api_server is not None:
                os.environ[API_SERVER_VARIABLE] = api_server


def worker_resources(workload: Workload) -> dict[str, float]:
    """What one training worker (a DDP rank) holds: ``cpus_per_worker`` CPUs and, if any, its GPUs."""
    return {"CPU": workload.cpus_per_worker, **({"GPU": workload.gpus_per_worker} if workload.gpus_per_worker else {})}


def trial_resources(workload: Workload) -> dict[str, float]:
    """What a Tune trial's own process holds: a one-worker run trains in it; a larger one only drives Train."""
    if workload.workers > 1:
        return {"CPU": DRIVER_CPUS}
    return {"CPU": workload.cpus_per_worker + DRIVER_CPUS, "GPU": workload.gpus_per_worker}


def trial_need(workload: Workload) -> dict[str, float]:
    """Everything one running trial holds: its process and (more than one worker) its Train workers."""
    return {"CPU": workload.workers * workload.cpus_per_worker + DRIVER_CPUS,
            "GPU": workload.workers * workload.gpus_per_worker}


def torch_threads(workload: Workload) -> int:
    """Torch threads of one training worker: its CPUs, rounded, at least 1."""
    return max(1, round(workload.cpus_per_worker))


def concurrency(spec: SweepSpec, cluster: dict[str, float], *, autoscaling: bool) -> int:
    """Trials at once: ``search.max_concurrent``, capped so that every running trial's workers fit.

    On an autoscaling cluster it is ``search.max_concurrent`` whatever is up now: trials that do
    not fit yet wait for the nodes they make the autoscaler add.

    Raises:
        SpecError: one trial does not fit a fixed (non-autoscaling) cluster.
    """
    need = trial_need(spec.workload)
    fits = min(math.floor(cluster[kind] / amount + 1e-9) for kind, amount in need.items() if amount > 0)
    if fits < 1 and not autoscaling:
        raise SpecError("workload", f"a trial needs {need['CPU']:g} CPUs and {need['GPU']:g} GPUs; this Ray "
                                    f"cluster has {cluster['CPU']:g} CPUs and {cluster['GPU']:g} GPUs")
    if autoscaling:  # the cluster grows for the trials that wait
        return spec.search.max_concurrent
    if fits < spec.search.max_concurrent:
        log.info("search.max_concurrent %d capped to %d: that many trials fit", spec.search.max_concurrent, fits)
    return min(spec.search.max_concurrent, fits)


def resources_line(spec: SweepSpec) -> str:
    """What one trial holds, e.g. ``8 × 1 GPU + 8 CPU Ray Train workers (+0.05 CPU for the trial driver) ...``."""
    w = spec.workload
    gpus = f" × {w.gpus_per_worker:g} GPU + {w.cpus_per_worker:g} CPU" if w.gpus_per_worker else \
        f" × {w.cpus_per_worker:g} CPU"
    where = f"Ray Train workers (+{DRIVER_CPUS:g} CPU for the trial driver), placement {w.placement}" \
        if w.workers > 1 else "worker, in the trial's own process"
    return (f"trial resources: {w.workers}{gpus} {where}; up to {spec.search.max_concurrent} trials at once; "
            f"{spec.search.num_trials} trials of {w.epochs} epochs")


def in_threads(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` at once in daemon threads; their results in order, or the first error raised.

    The caller's thread only waits, so Ctrl-C reaches it as KeyboardInterrupt (Ray Train installs
    its own SIGINT handler when ``fit`` runs in the main thread), and nothing blocks the exit.
    """
    boxes: list[dict[str, Any]] = [{} for _ in calls]

    def target(call: Callable[[], Any], box: dict[str, Any]) -> None:
        try:
            box["value"] = call()
        except BaseException as err:  # re-raised in the caller
            box["error"] = err

    threads = [threading.Thread(target=target, args=pair, daemon=True) for pair in zip(calls, boxes, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)
    for box in boxes:
        if "error" in box:
            raise box["error"]
    return [box["value"] for box in boxes]
