"""A stand-in RunPod API on 127.0.0.1 for the cluster tests.

It serves what ``ast_tune.cluster.api`` sends:

- ``POST /graphql``: the runpod SDK's ``myPods`` query (``myself { pods { ... } }``) and its
  ``podTerminate`` mutation;
- ``POST /v1/pods``: the REST create call.

Pods live in memory. A pod's ``runtime`` is null for its first ``polls_before_ports`` list
queries, as a starting pod's is; then it shows a public port-22 mapping. ``reset_pod`` moves
that mapping, as a pod reset does. ``delay_s`` and ``fail_status`` make every answer slow or
failing; ``pods_null`` makes the list answer ``pods: null``, and ``ssh_mapping[pod id] = (ip, port)``
puts any values (even ones that do not parse) into a pod's port-22 mapping. Every request is
recorded in ``requests`` as ``(path, body text)``.

``serving`` points the provider's environment at a running stand-in, and
``RecordingProcessRunner`` replaces the ``subprocess`` module Ray's command runners call, so
ssh and rsync are recorded instead of run.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class FakeRunPod:
    """In-memory RunPod API server; use as a context manager."""

    def __init__(self, *, api_key: str, polls_before_ports: int = 2) -> None:
        self.api_key = api_key
        self.polls_before_ports = polls_before_ports
        self.delay_s = 0.0
        self.fail_status: int | None = None
        self.pods_null = False
        self.ssh_mapping: dict[str, tuple[Any, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeRunPod:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_pod(self, *, name: str, env: dict[str, str]) -> str:
        """A pod made outside the provider (another cluster, or by hand)."""
        return self._create({"name": name, "env": env})["id"]

    def reset_pod(self, pod_id: str) -> None:
        """Move the pod's public SSH mapping, as a RunPod reset does."""
        with self._lock:
            self.pods[pod_id]["public_port"] += 1000

    # ---- request handling ----------------------------------------------------------------
    def answer(self, path: str, headers: dict[str, str], body: str) -> tuple[int, Any]:
        with self._lock:
            self.requests.append((path, body))
        if self.delay_s:
            time.sleep(self.delay_s)
        if headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, {"error": "unauthorized"}
        if self.fail_status:
            return self.fail_status, {"error": "internal server error"}
        if path == "/v1/pods":
            return 201, self._create(json.loads(body))
        if path == "/graphql":
            return 200, self._graphql(json.loads(body)["query"])
        return 404, {"error": f"no route {path}"}

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            number = next(self._ids)
            pod_id = f"fake{number:04d}pod"
            self.pods[pod_id] = {
                "id": pod_id,
                "body": body,
                "desiredStatus": "RUNNING",
                "polls": 0,
                "public_port": 40000 + number,
            }
        return {"id": pod_id, "name": body.get("name"), "desiredStatus": "RUNNING"}

    def _graphql(self, query: str) -> dict[str, Any]:
        if "podTerminate" in query:
            match = re.search(r'podId:\s*"([^"]*)"', query)
            with self._lock:
                pod = self.pods.get(match.group(1)) if match else None
                if pod is None:
                    return {"errors": [{"message": "pod not found"}]}
                pod["desiredStatus"] = "TERMINATED"
            return {"data": {"podTerminate": None}}
        if "myself" in query and "pods" in query:
            with self._lock:
                live = [pod for pod in self.pods.values() if pod["desiredStatus"] != "TERMINATED"]
                listed = [self._render(pod) for pod in live]
            return {"data": {"myself": {"pods": None if self.pods_null else listed}}}
        return {"errors": [{"message": "unknown query"}]}

    def _render(self, pod: dict[str, Any]) -> dict[str, Any]:
        pod["polls"] += 1
        runtime = None
        if pod["polls"] > self.polls_before_ports:
            runtime = {
                "ports": [
                    {"ip": "100.65.0.2", "isIpPublic": False, "privatePort": 8888, "publicPort": 60001,
                     "type": "http"},
                    {"ip": self.ssh_mapping.get(pod["id"], ("203.0.113.7",))[0], "isIpPublic": True,
                     "privatePort": 22, "type": "tcp",
                     "publicPort": self.ssh_mapping.get(pod["id"], (None, pod["public_port"]))[1]},
                ]
            }
        env = pod["body"].get("env") or {}
        return {
            "id": pod["id"],
            "name": pod["body"].get("name"),
            "desiredStatus": pod["desiredStatus"],
            "env": [f"{key}={value}" for key, value in env.items()],
            "runtime": runtime,
        }


def _handler_for(api: FakeRunPod) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            status, payload = api.answer(self.path, dict(self.headers), body)
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                pass

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

    return Handler


@contextmanager
def serving(monkeypatch: pytest.MonkeyPatch, *, api_key: str) -> Iterator[FakeRunPod]:
    """Run a stand-in (ports after 2 list polls) and point RunPod's env variables at it."""
    with FakeRunPod(api_key=api_key, polls_before_ports=2) as server:
        monkeypatch.setenv("RUNPOD_API_BASE_URL", server.url)
        monkeypatch.setenv("RUNPOD_API_URL", server.url + "/v1")
        monkeypatch.setenv("RUNPOD_API_KEY", api_key)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        yield server


class RecordingProcessRunner:
    """Stands in for the ``subprocess`` module: records ``(argv, stdin)`` instead of running."""

    DEVNULL = subprocess.DEVNULL
    PIPE = subprocess.PIPE

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], bytes | None]] = []

    def check_call(self, cmd: list[str], **kwargs: object) -> int:
        self.calls.append((list(cmd), None))
        return 0

    def check_output(self, cmd: list[str], **kwargs: object) -> bytes:
        self.calls.append((list(cmd), None))
        return b""

    def run(self, cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        self.calls.append((list(cmd), kwargs.get("input")))
        return subprocess.CompletedProcess(cmd, 0)


def ssh_options_of(argv: list[str]) -> str:
    """The ssh options of a recorded ssh or rsync command, as one string."""
    if argv[0] == "rsync":
        return argv[argv.index("--rsh") + 1]
    return " ".join(argv)
