"""A 2-rank all-reduce check (NCCL on 2 GPUs, or gloo on the CPU): ``collective_check("nccl")``.

Spawns 2 processes on loopback; each all-reduces a float32 tensor of ``rank + 1`` (64 MiB on NCCL,
256 KiB on gloo), checks the sum, then times 10 more all-reduces. Used by ``benchmarks/gpu_check.py``.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ast_tune.atomic import write_text
from ast_tune.core.metrics import Stopwatch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _collective_rank(rank: int, world: int, port: int, backend: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if backend == "nccl":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, rank=rank, world_size=world)
    tensor = torch.full((2**24 if backend == "nccl" else 2**16,), float(rank + 1), device=device)
    dist.all_reduce(tensor)
    ok = bool((tensor == world * (world + 1) / 2).all())
    clock = Stopwatch(device)
    clock.start()
    for _ in range(10):
        dist.all_reduce(tensor)
    seconds = clock.stop() / 10
    if rank == 0:  # ring all-reduce bus bandwidth, as nccl-tests reports it
        bus = 2 * (world - 1) / world * tensor.numel() * 4 / seconds / 1e9
        write_text(Path(out), json.dumps({"ran": True, "backend": backend, "ranks": world, "sum_correct": ok,
                                          "mib": tensor.numel() * 4 / 2**20, "seconds": seconds, "bus_gb_s": bus}))
    dist.destroy_process_group()


def collective_check(backend: str) -> dict:
    """A 2-rank all-reduce: correct sum, seconds per call, bus GB/s; or why it did not run."""
    if backend == "nccl" and torch.cuda.device_count() < 2:
        return {"ran": False, "reason": f"{torch.cuda.device_count()} GPU present; the NCCL check needs 2"}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        out = str(Path(tmp) / "rank0.json")
        mp.spawn(_collective_rank, args=(2, _free_port(), backend, out), nprocs=2)
        return json.loads(Path(out).read_text())
