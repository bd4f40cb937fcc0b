"""Ray Train's torch backend with its DDP rendezvous store listening on one address, not on all.

Ray Train's ``TorchConfig`` has rank 0 open torch's ``TCPStore`` through ``init_process_group``, and
that store listens on every interface (``::``): torch has no bind-address setting, only a
ready-made listening socket (``master_listen_fd``). :class:`BoundTorchConfig` keeps Ray's backend
and replaces only how the process group is joined: rank 0 binds that socket to the address Ray
already gives every rank as the master's (127.0.0.1 on a local Ray, the node's own address on a
cluster), and every rank joins through a store on it. The store is unauthenticated, so on a
local Ray nothing off the machine can reach it.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from datetime import timedelta

import ray
import torch.distributed as dist
from ray.train._internal.base_worker_group import BaseWorkerGroup
from ray.train._internal.utils import get_address_and_port
from ray.train._internal.worker_group import WorkerGroup as V1WorkerGroup
from ray.train.torch.config import TorchConfig, _set_torch_distributed_env_vars, _TorchBackend


@dataclasses.dataclass
class BoundTorchConfig(TorchConfig):
    """``TorchConfig`` whose rendezvous store listens only on the master's address (see the module doc)."""

    @property
    def backend_cls(self) -> type[_TorchBackend]:
        return _BoundTorchBackend


class _BoundTorchBackend(_TorchBackend):
    def on_start(self, worker_group: BaseWorkerGroup, backend_config: BoundTorchConfig) -> None:
        gpus = worker_group.get_resources_per_worker().get("GPU", 0)
        backend = backend_config.backend or ("nccl" if gpus > 0 else "gloo")
        address, port = worker_group.execute_single(0, get_address_and_port)
        if not isinstance(worker_group, V1WorkerGroup):  # Train v2 sets RANK, LOCAL_RANK, ... here
            worker_group.execute(_set_torch_distributed_env_vars)
        ray.get([worker_group.execute_single_async(rank, join_process_group, backend=backend, world_rank=rank,
                                                   world_size=len(worker_group), address=address, port=port,
                                                   timeout_s=backend_config.timeout_s)
                 for rank in range(len(worker_group))])


def join_process_group(*, backend: str, world_rank: int, world_size: int, address: str, port: int,
                       timeout_s: float) -> None:
    """Join the default process group through a ``TCPStore`` that rank 0 serves on ``address:port`` only."""
    listener = None
    if world_rank == 0:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen()
            listener = sock.detach()  # the store owns the descriptor from here on
    if backend == "nccl":  # as Ray Train does: a timed-out collective fails instead of hanging
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    timeout = timedelta(seconds=timeout_s)
    store = dist.TCPStore(address, port, world_size, is_master=world_rank == 0, timeout=timeout,
                          master_listen_fd=listener)
    dist.init_process_group(backend, store=store, rank=world_rank, world_size=world_size, timeout=timeout)
