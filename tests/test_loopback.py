"""A local Ray listens on loopback only and refuses a driver without its token.

Every listening TCP socket of the driver's Ray (GCS, raylet, dashboard and its agent, runtime-env
agent, workers: all descendants of this process) is asked for its address; any that is not a
loopback address fails the test.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys

import psutil
import ray

from ast_tune.tuning.ray_runtime import ray_session


def _listening(processes: list[psutil.Process]) -> dict[str, list[str]]:
    """``name (pid)`` -> the addresses each process listens on."""
    found: dict[str, list[str]] = {}
    for process in processes:
        try:
            sockets = [c.laddr for c in process.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
            found[f"{process.name()} ({process.pid})"] = [s.ip for s in sockets]
        except psutil.NoSuchProcess:
            continue
    return found


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


@ray.remote(num_cpus=0)
class _Idle:
    def ready(self) -> bool:
        return True


def test_a_local_ray_listens_only_on_loopback_and_wants_its_token(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with ray_session(verbose=False):
        actor = _Idle.remote()  # a worker process of its own, with its gRPC server
        assert ray.get(actor.ready.remote())
        listening = _listening([psutil.Process(), *psutil.Process().children(recursive=True)])
        gcs = ray.get_runtime_context().gcs_address
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        stranger = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address={gcs!r})"],
                                  env=env, capture_output=True, text=True, timeout=120)
    addresses = [ip for ips in listening.values() for ip in ips]
    assert any(name.startswith("gcs_server") for name in listening) and len(addresses) >= 5, listening
    assert all(_is_loopback(ip) for ip in addresses), listening
    assert gcs.startswith("127.0.0.1:")
    assert stranger.returncode != 0 and "Authentication" in stranger.stderr, stranger.stderr[-2000:]
