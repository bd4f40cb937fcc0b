"""The mutable state of one training run: model, optimizer, scaler, controller, score table.

:class:`RunState` builds them from a :class:`~ast_tune.config.run_spec.RunSpec`, and turns them into a
checkpoint dict and back, so that ``engine`` holds only the loop.
"""

from __future__ import annotations

import dataclasses
import logging

import torch
from torch.nn.parallel import DistributedDataParallel

from ast_tune.config.run_spec import RunSpec
from ast_tune.config.spec import to_dict
from ast_tune.core.models import build_model
from ast_tune.core.sparsity import BatchSelector, SamplePool, ScoreTable, SundewController
from ast_tune.data.loaders import seeded_generator
from ast_tune.data.normalise import normalised
from ast_tune.data.sources import Datasets

log = logging.getLogger(__name__)

#: The last key of the epoch's own generator, apart from the loaders' (seed, epoch[, rank]) streams.
EPOCH_STREAM = 2**32


@dataclasses.dataclass
class RunState:
    spec: RunSpec
    data: Datasets
    device: torch.device
    rank: int
    world_size: int
    net: torch.nn.Module  # the bare model: checkpoints and the no-grad scoring forward
    model: torch.nn.Module  # ``net``, wrapped in DDP when world_size > 1
    optimizer: torch.optim.SGD
    scaler: torch.amp.GradScaler
    controller: SundewController
    selector: BatchSelector
    table: ScoreTable | None  # skip mode only
    pool: SamplePool | None  # inline with sparsity.pool only; empty at every epoch end
    amp: bool  # autocast on, in ``amp_dtype``
    amp_dtype: torch.dtype = torch.float16
    channels_last: bool = False  # model and batches in NHWC (CUDA only)
    lr: float = 0.0

    @classmethod
    def create(cls, spec: RunSpec, data: Datasets, device: torch.device, *, rank: int = 0,
               world_size: int = 1) -> RunState:
        fp16 = spec.precision == "amp" and device.type == "cuda"  # fp16 autocast needs a GradScaler
        if spec.precision == "amp" and not fp16:
            log.warning("precision amp needs CUDA; training in fp32 on %s", device)
        amp = fp16 or spec.precision == "bf16"  # bf16 autocasts on CPU and CUDA alike, without a scaler
        channels_last = spec.channels_last and device.type == "cuda"
        net = build_model(spec.model, num_classes=data.num_classes, in_channels=data.in_channels,
                          pretrained=spec.pretrained).to(device)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = spec.sparsity.mode not in ("inline", "mask")  # ragged subsets
        model = net
        if world_size > 1:
            model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
        optimizer = torch.optim.SGD(net.parameters(), lr=spec.optim.lr, momentum=spec.optim.momentum,
                                    weight_decay=spec.optim.weight_decay)
        controller = SundewController(spec.sparsity)
        table = ScoreTable(len(data.train), spec.sparsity) if spec.sparsity.mode == "skip" else None
        pool = None
        if spec.sparsity.mode == "inline" and spec.sparsity.pool:
            pool = SamplePool(spec.sparsity.pool_size or spec.batch_size, world_size)
        return cls(spec=spec, data=data, device=device, rank=rank, world_size=world_size, net=net,
                   model=model, optimizer=optimizer, scaler=torch.amp.GradScaler(device.type, enabled=fp16),
                   controller=controller, selector=BatchSelector(spec.sparsity, controller, device),
                   table=table, pool=pool, amp=amp, amp_dtype=torch.float16 if fp16 else torch.bfloat16,
                   channels_last=channels_last)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """A loader's batch as the network takes it: on the device, in NHWC with ``channels_last``, a uint8
        batch of photos converted to float32 and normalised there (:func:`~ast_tune.data.normalise.normalised`)."""
        x = x.to(self.device, non_blocking=True)
        x = x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
        return normalised(x)

    def set_lr(self, lr: float) -> None:
        self.lr = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def optimizer_step(self) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    def epoch_generator(self, epoch: int) -> torch.Generator:
        """A CPU generator seeded by (seed, epoch): identical on every rank, and after a resume."""
        return seeded_generator(self.spec.seed, epoch, EPOCH_STREAM)

    def state_dict(self, epoch: int) -> dict:
        """Everything needed to continue after ``epoch`` (1-based count of finished epochs)."""
        state = {"epoch": epoch, "spec": to_dict(self.spec), "model": self.net.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                 "controller": self.controller.state_dict(), "rng": torch.get_rng_state()}
        if self.table is not None:
            state["table"] = self.table.state_dict()
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def restore(self, state: dict) -> int:
        """Load a :meth:`state_dict`; returns the epoch to continue from (0-based)."""
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.controller.load_state_dict(state["controller"])
        if self.table is not None and "table" in state:
            self.table.load_state_dict(state["table"])
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        return int(state["epoch"])
