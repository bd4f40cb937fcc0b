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
from datetime import timedelta

import psutil
import pytest
import ray
import torch
import torch.distributed as dist
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from ast_tune.tuning.runtime.rendezvous import BoundTorchConfig, join_process_group
from ast_tune.tuning.runtime.session import free_loopback_port, ray_session


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


def _own_listening_ips() -> list[str]:
    return [ip for ips in _listening([psutil.Process()]).values() for ip in ips]


def test_the_rendezvous_store_listens_on_the_masters_address_where_torchs_own_listens_on_all():
    before = set(_own_listening_ips())
    default = dist.TCPStore("127.0.0.1", free_loopback_port(), 1, is_master=True, timeout=timedelta(seconds=30))
    assert not all(_is_loopback(ip) for ip in set(_own_listening_ips()) - before)  # torch's own: `::`
    del default
    join_process_group(backend="gloo", world_rank=0, world_size=1, address="127.0.0.1", port=free_loopback_port(),
                       timeout_s=30)
    try:
        total = torch.ones(1)
        dist.all_reduce(total)
        assert total.item() == 1.0
        opened = set(_own_listening_ips()) - before
        assert opened and all(_is_loopback(ip) for ip in opened), opened
    finally:
        dist.destroy_process_group()


def _gather_listening_ips(config: dict) -> list[str]:
    dist.barrier()  # every rank has joined: the store and gloo's sockets are all open now
    gathered: list[list[str]] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(gathered, _own_listening_ips())
    dist.barrier()
    return [ip for ips in gathered for ip in ips]


@pytest.mark.ray
def test_a_two_worker_train_run_listens_only_on_loopback(ray_cluster, tmp_path):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import a test module
    trainer = TorchTrainer(_gather_listening_ips, torch_config=BoundTorchConfig(),
                           scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.9}),
                           run_config=RunConfig(name="listening", storage_path=str(tmp_path)))
    addresses = trainer.fit().return_value
    assert addresses and all(_is_loopback(ip) for ip in addresses), addresses
