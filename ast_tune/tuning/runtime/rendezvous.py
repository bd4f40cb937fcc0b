"""Ray Train's torch backend with its DDP rendezvous store listening on one address, not on all.

Ray Train's ``TorchConfig`` has rank 0 open torch's ``TCPStore`` through ``init_process_group``, and
that store listens on every interface (``::``): torch has no bind-address setting, only a
ready-made listening socket (``master_listen_fd``). :class:`BoundTorchConfig` is a ``TorchConfig``
whose backend (a ``ray.train.backend.Backend``, Ray Train's DeveloperAPI for a training backend)
joins the process group its own way: rank 0 binds that socket to its node's address (127.0.0.1 on
a local Ray, the node's own address on a cluster), and every rank joins through a store on it. The
store is unauthenticated, so on a local Ray nothing off the machine can reach it.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from datetime import timedelta
from typing import Any

import ray
import ray.train
import ray.util
import torch
import torch.distributed as dist
from ray.train.backend import Backend
from ray.train.torch import TorchConfig


@dataclasses.dataclass
class BoundTorchConfig(TorchConfig):
    """``TorchConfig`` whose rendezvous store listens only on the master's address (see the module doc)."""

    @property
    def backend_cls(self) -> type[Backend]:
        return _BoundTorchBackend


class _BoundTorchBackend(Backend):
    share_cuda_visible_devices = True  # as Ray's torch backend: a node's ranks see each other's GPUs (NCCL)

    def on_start(self, worker_group: Any, backend_config: BoundTorchConfig) -> None:
        gpus = worker_group.get_resources_per_worker().get("GPU", 0)
        backend = backend_config.backend or ("nccl" if gpus > 0 else "gloo")
        address, port = worker_group.execute_single(0, _address_and_port)
        worker_group.execute(_set_rank_variables)
        ray.get([worker_group.execute_single_async(rank, join_process_group, backend=backend, world_rank=rank,
                                                   world_size=len(worker_group), address=address, port=port,
                                                   timeout_s=backend_config.timeout_s)
                 for rank in range(len(worker_group))])

    def on_shutdown(self, worker_group: Any, backend_config: BoundTorchConfig) -> None:
        worker_group.execute(_leave_process_group)


def _address_and_port() -> tuple[str, int]:
    """This node's address (as Ray knows it) and a TCP port free on it just now."""
    address = ray.util.get_node_ip_address()
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as probe:
        probe.bind((address, 0))
        return address, probe.getsockname()[1]


def _set_rank_variables() -> None:
    """The variables torch.distributed's launchers set (``RANK``, ``LOCAL_RANK``, ...), from Train's context."""
    context = ray.train.get_context()
    os.environ.update(LOCAL_RANK=str(context.get_local_rank()), LOCAL_WORLD_SIZE=str(context.get_local_world_size()),
                      NODE_RANK=str(context.get_node_rank()), RANK=str(context.get_world_rank()),
                      WORLD_SIZE=str(context.get_world_size()))


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


def _leave_process_group() -> None:
    """Leave the process group and free the GPU memory torch caches, as Ray's torch backend does at the end."""
    if dist.is_initialized():
        dist.destroy_process_group()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
