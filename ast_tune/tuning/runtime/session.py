"""Ray for a sweep: start it (or join a cluster) and always shut it down; blocking calls that Ctrl-C still reaches.

:func:`ray_session` starts a local Ray with its own temp dir and always shuts it down
(:func:`local_ray` makes every port of a local Ray listen on loopback only, behind a token);
:func:`in_threads` runs blocking calls so that Ctrl-C still reaches the main thread. What a trial
holds, and how many trials fit at once, is :mod:`ast_tune.tuning.runtime.resources`;
:func:`fit` runs a Tune run and gives Ctrl-C and SIGTERM back to the command when it ends.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import ray

from ast_tune.config.cli import EXIT_TERMINATED, terminate_as_interrupt
from ast_tune.tuning import private_api
from ast_tune.tuning.runtime import cleanup

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
    (never written to disk) makes every RPC carry it. The variables are restored afterwards. Ray
    read them once already, when it was imported: :mod:`ast_tune.tuning.private_api` has it read
    them again.
    """
    saved = {name: os.environ.get(name) for name in LOCAL_RAY_VARIABLES}
    os.environ.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token",
                      RAY_AUTH_TOKEN=secrets.token_hex(32))
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    private_api.reload_auth()
    try:
        with private_api.single_node_ray():
            yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value
        private_api.reload_auth()


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 just now (the OS's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def _sigterm_held() -> Iterator[None]:
    """While Ray starts, a SIGTERM waits; then SIGTERM is Ctrl-C again (config.cli), and one that came is delivered.

    ``ray.init`` forks Ray's processes, and a KeyboardInterrupt raised in an at-fork hook is lost
    (Python only prints "Exception ignored"): the command would go on. Held, the SIGTERM stops the
    command as soon as Ray has started; a second one while Ray starts ends the process at once. Ray's
    own SIGTERM handlers are not installed (:func:`ast_tune.tuning.private_api.sigterm_left_alone`),
    and the handler is installed again over the one Ray's core worker adds (it logs, then calls ours).
    """
    held: list[int] = []

    def hold(signum: int, frame: object) -> None:
        if held:
            os._exit(EXIT_TERMINATED)
        held.append(signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, hold)
    try:
        with private_api.sigterm_left_alone():
            yield
    finally:
        terminate_as_interrupt()
        if held:
            signal.raise_signal(signal.SIGTERM)


@contextlib.contextmanager
def ray_session(*, verbose: bool, num_cpus: int | None = None) -> Iterator[dict[str, float]]:
    """Start Ray (or join ``RAY_ADDRESS``) and always shut it down; yields the cluster's resources.

    A local Ray (:func:`local_ray`: loopback only, token auth) gets its own short temp dir (unix
    socket paths are length-limited) and a dashboard on 127.0.0.1: Ray Train's placement-group
    cleaner asks its state API whether a stopped trial's controller is gone, and frees the trial's
    workers only then. The temp dir is marked with this
    process (:mod:`ast_tune.tuning.runtime.cleanup`), and the leftovers of marked Rays whose driver was killed
    are removed first. ``num_cpus``: the CPUs a local Ray offers (default: all). A command sent
    SIGTERM while or after Ray starts stops as on Ctrl-C (:func:`_sigterm_held`).
    """
    temp_dir, api_server = None, os.environ.get(API_SERVER_VARIABLE)
    options: dict[str, Any] = {"log_to_driver": verbose, "configure_logging": verbose}
    if not os.environ.get("RAY_ADDRESS"):
        cleanup.reap_stale("/tmp")
        temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
        cleanup.mark(temp_dir)
        port = free_loopback_port()
        os.environ[API_SERVER_VARIABLE] = f"http://127.0.0.1:{port}"  # Ray's processes inherit it
        options.update(_temp_dir=temp_dir, include_dashboard=True, dashboard_host="127.0.0.1",
                       dashboard_port=port, num_cpus=num_cpus)
    try:
        with local_ray() if temp_dir else contextlib.nullcontext():
            try:
                with _sigterm_held():
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


def fit(tuner: Any) -> Any:
    """``tuner.fit()`` of a Tune Tuner or a Ray Train trainer, with the SIGINT handler in place before it put
    back afterwards; what ``fit`` returns.

    Tune and Ray Train install a handler of their own for the run and leave it there when the run ends: a
    Ctrl-C, or a SIGTERM (handled as Ctrl-C), after the run would then only stop (or, for Ray Train, call
    the controller of) that finished run.
    """
    handler = signal.getsignal(signal.SIGINT)
    try:
        return tuner.fit()
    finally:
        if handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, handler)


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
