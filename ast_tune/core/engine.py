"""The training loop: ``train_one_epoch``, ``evaluate`` and ``fit``. No Ray here.

``fit`` runs one :class:`~ast_tune.config.run_spec.RunSpec` on one process, or on each rank of an already
initialised ``torch.distributed`` group (which is what Ray Train's TorchTrainer provides). The
selection modes (docs/design.md, "The AST algorithm") differ only in :func:`_train_batch`; the bookkeeping lives
in :mod:`ast_tune.core.metrics` and :mod:`ast_tune.core.checkpoint`, the sample choice in
:mod:`ast_tune.core.sparsity`.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from ast_tune.config.run_spec import RunSpec
from ast_tune.core import checkpoint
from ast_tune.core.distributed import all_reduce_, all_reduce_sum, rank_and_world
from ast_tune.core.lr_schedule import lr_at
from ast_tune.core.metrics import (
    EnergyMeter,
    LoaderWait,
    Stopwatch,
    counted_energy_savings,
    epoch_record,
    max_memory_mb,
    reset_peak_memory,
)
from ast_tune.core.run_state import RunState
from ast_tune.core.sparsity import significance
from ast_tune.data.loaders import make_loader
from ast_tune.data.sources import Datasets, load_datasets

log = logging.getLogger(__name__)

Reporter = Callable[[dict, Path | None], None]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stops rather than train on garbage."""


def default_device() -> torch.device:
    """The first CUDA device if there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _autocast(run: RunState):
    return torch.autocast(device_type=run.device.type, dtype=run.amp_dtype, enabled=run.amp)


def _score(run: RunState, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Significance of each sample from a no-grad forward (BatchNorm in the spec's scoring mode)."""
    net = run.net
    if run.spec.sparsity.score_bn == "eval":
        net.eval()
    with torch.no_grad(), _autocast(run):
        logits = net(x)
    net.train()
    return _significance(run, logits, y)


def _significance(run: RunState, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    s = run.spec.sparsity
    return significance(logits, y, loss_weight=s.loss_weight, entropy_weight=s.entropy_weight)


def phase_of(spec: RunSpec, epoch: int) -> str:
    """The phase of 0-based ``epoch``.

    ``warmup`` (dense), ``calibrate`` (the last warm-up epoch: dense, controller running), ``ast``,
    or ``anneal`` (the last ``sparsity.anneal_epochs``: dense, the controller frozen, neither
    stepped nor reset, so its threshold, EMA and integral stay as the last ``ast`` epoch left them).
    The warm-up comes first: annealing takes at most the epochs after it (a sweep may shorten ``epochs``).
    """
    if epoch < spec.warmup_epochs:
        return "calibrate" if epoch == spec.warmup_epochs - 1 else "warmup"
    return "anneal" if epoch >= spec.epochs - spec.sparsity.anneal_epochs else "ast"


def _train_batch(run: RunState, x, y, idx, refresh, *, mode: str, phase: str) -> tuple[torch.Tensor, int, int]:
    """One loader batch; returns (sum of CE over the samples trained on, their number, backward passes).

    ``inline`` scores the batch without grad and trains on its significant subset; with a
    :class:`~ast_tune.core.sparsity.SamplePool` the subset is pooled instead and trained on (0 or 1
    backward passes) only once the pool is full. The controller steps once per scored batch either way.
    """
    kept_global = None
    if mode == "inline" and phase == "ast":
        keep, kept_global = run.selector.choose(_score(run, x, y))
        x, y = x[keep], y[keep]
        if run.pool is not None:
            run.pool.add(x, y, kept_global)
            if not run.pool.full():
                return torch.zeros((), device=run.device), 0, 0
            x, y, kept_global = run.pool.take()
    return (*_forward_backward(run, x, y, idx, refresh, mode=mode, phase=phase, kept_global=kept_global), 1)


def _forward_backward(run: RunState, x, y, idx, refresh, *, mode: str, phase: str,
                      kept_global: float | None) -> tuple[torch.Tensor, int]:
    """One forward + backward; returns (sum of CE over the samples trained on, their number).

    ``kept_global``: the samples trained on in this step summed over all ranks (inline), or None.
    In the ``calibrate`` epoch every sample is trained on, but the controller already runs on the
    activation the selection would have had (from the training forward's own logits, at no extra
    forward), so the threshold is calibrated when selection starts.
    """
    with _autocast(run):
        logits = run.model(x)
        ce = F.cross_entropy(logits.float(), y, reduction="none")
    if mode == "skip":
        run.table.update(idx, _significance(run, logits, y))
    elif (mode == "mask" and phase == "ast") or (mode in ("inline", "mask") and phase == "calibrate"):
        keep, kept = run.selector.choose(_significance(run, logits, y))
        if phase == "ast":  # mask, the reference library's way: full forward and backward, loss masked
            ce, kept_global = ce[keep], kept
    if kept_global is not None:
        loss = ce.sum() * run.world_size / kept_global  # each rank weighted by its share of the global count
    elif mode == "skip" and run.spec.sparsity.reweight and phase == "ast":
        loss = (ce * (1 + refresh.to(ce.dtype) * (1 / run.spec.sparsity.refresh_fraction - 1))).mean()
    else:
        loss = ce.mean()
    run.scaler.scale(loss / run.spec.grad_accum).backward()
    return ce.detach().sum(), len(ce)


def _train_loop(run: RunState, loader, refresh_lookup, epoch: int, *, mode: str, phase: str) -> tuple:
    """Every batch of one epoch, then the pool's remainder; returns (CE sum, trained, seen)."""
    spec = run.spec
    loss_sum, trained, seen, pending = torch.zeros((), device=run.device), 0, 0, 0  # pending: backwards not stepped
    steps = len(loader)
    for step, (x, y, idx) in enumerate(loader):
        x, y = run.to_device(x), y.to(run.device, non_blocking=True)
        run.set_lr(lr_at(spec.optim, progress=epoch + step / steps, epochs=spec.epochs,
                         warmup_epochs=spec.warmup_epochs))
        refresh = refresh_lookup[idx].to(run.device) if refresh_lookup is not None else None
        batch_loss, n, passes = _train_batch(run, x, y, idx, refresh, mode=mode, phase=phase)
        loss_sum, trained, seen, pending = loss_sum + batch_loss, trained + n, seen + len(y), pending + passes
        if pending == spec.grad_accum:
            run.optimizer_step()
            pending = 0
    if run.pool is not None and run.pool.global_count:  # flushed: no partial step is carried over an epoch end
        x, y, kept_global = run.pool.take()
        batch_loss, n = _forward_backward(run, x, y, None, None, mode=mode, phase=phase, kept_global=kept_global)
        loss_sum, trained, pending = loss_sum + batch_loss, trained + n, pending + 1
    if pending:
        run.optimizer_step()
    return loss_sum, trained, seen


def train_one_epoch(run: RunState, epoch: int) -> dict[str, float]:
    """Train one epoch (0-based ``epoch``); returns its loss, tallies and measured seconds."""
    spec = run.spec
    mode, phase = spec.sparsity.mode, phase_of(spec, epoch)
    indices = refresh_of = None
    if mode == "skip" and phase == "ast":
        indices, refresh_of = run.table.plan_epoch(run.controller.threshold, run.epoch_generator(epoch))
    loader = make_loader(run.data.train, batch_size=spec.batch_size, train=True, seed=spec.seed, epoch=epoch,
                         indices=indices, rank=run.rank, world_size=run.world_size,
                         num_workers=spec.data.num_workers, pin_memory=run.device.type == "cuda",
                         device=run.device)
    refresh_lookup = _refresh_lookup(len(run.data.train), indices, refresh_of)
    run.model.train()
    clock, energy = Stopwatch(run.device), EnergyMeter(run.device)
    clock.start()
    energy.start()
    waits = LoaderWait(loader, run.device)
    loss_sum, trained, seen = _train_loop(run, waits, refresh_lookup, epoch, mode=mode, phase=phase)
    seconds, joules = clock.stop(), energy.stop()
    if mode == "skip":
        run.table.synchronise(run.device)
        if phase == "calibrate" or (phase == "ast" and epoch == 0):  # the table first holds every score
            run.controller.start_at(run.table.threshold_for(spec.sparsity.target_activation))
        elif phase == "ast":
            full_epoch_steps = math.ceil(len(run.data.train) / (spec.batch_size * run.world_size))
            run.table.settle(run.controller, steps=full_epoch_steps)
    loss_total, trained, seen = all_reduce_sum([float(loss_sum), float(trained), float(seen)], run.device)
    if not math.isfinite(loss_total):
        raise NonFiniteLossError(f"training loss became {loss_total} in epoch {epoch + 1}")
    skipping = indices is not None
    total = float(len(run.data.train)) if skipping else seen
    active = float(len(indices)) if skipping else trained
    return {"phase": "warmup" if phase == "calibrate" else phase, "train_loss": loss_total / trained,
            "activation_rate": active / total,
            "energy_savings": counted_energy_savings(active=active, total=total),
            "train_seconds": seconds, "data_seconds": waits.seconds, "samples_per_second": total / seconds,
            "energy_j": joules}


def _refresh_lookup(size: int, indices, refresh_of) -> torch.Tensor | None:
    """Dataset-indexed bool tensor: kept this epoch only to refresh its score (skip mode)."""
    if indices is None:
        return None
    lookup = torch.zeros(size, dtype=torch.bool)
    lookup[indices] = refresh_of
    return lookup


@torch.no_grad()
def evaluate(run: RunState, loader) -> dict[str, object]:
    """Top-1/top-5 (percent) and per-class top-1 over ``loader``, summed over all ranks."""
    run.model.eval()
    classes = run.data.num_classes
    correct = torch.zeros(2, device=run.device)
    per_class = torch.zeros(2, classes, device=run.device)  # rows: correct, count
    for x, y, _ in loader:
        x, y = run.to_device(x), y.to(run.device, non_blocking=True)
        with _autocast(run):
            logits = run.model(x)
        top = logits.topk(min(5, classes), dim=1).indices
        hit1 = top[:, 0] == y
        correct += torch.stack([hit1.sum(), (top == y[:, None]).any(dim=1).sum()]).float()
        per_class[0].index_add_(0, y, hit1.float())
        per_class[1].index_add_(0, y, torch.ones_like(y, dtype=torch.float))
    if run.world_size > 1:
        all_reduce_(correct)
        all_reduce_(per_class)
    count = per_class[1].sum().clamp(min=1)
    return {"val_top1": 100 * float(correct[0] / count), "val_top5": 100 * float(correct[1] / count),
            "per_class_top1": (100 * per_class[0] / per_class[1].clamp(min=1)).tolist()}


def fit(spec: RunSpec, *, report: Reporter | None = None, resume_from: str | Path | None = None,
        checkpoint_root: str | Path | None = None, baseline_epoch_seconds: float | None = None,
        device: torch.device | None = None, datasets: Datasets | None = None) -> dict:
    """Train ``spec`` to its last epoch; call ``report(record, checkpoint_dir)`` after every epoch.

    Args:
        spec: the run.
        report: called on every rank with the epoch's record (``columns.EPOCH_METRICS``) and, on
            rank 0 at checkpoint epochs, the directory holding the checkpoint (else None).
        resume_from: a checkpoint directory; training continues after its epoch.
        checkpoint_root: keep checkpoints in ``<root>/epoch_NNNN``; by default they go to a temporary
            directory that is removed once ``report`` has returned.
        baseline_epoch_seconds: dense train seconds per epoch on this hardware; gives ``speedup``.
        device: where to train; the first GPU if any, else the CPU.
        datasets: ``load_datasets(spec.data)`` when the caller has it already (validated or cached).

    Returns:
        ``{"epochs_done", "final" (the last record), "per_class_top1", "class_names"}``.

    Raises:
        NonFiniteLossError: the loss became NaN or infinite.
    """
    device = device or default_device()
    reset_peak_memory(device)  # max_memory_mb is this run's, also in a process reused for several trials
    rank, world = rank_and_world()
    torch.manual_seed(spec.seed)
    data = datasets or load_datasets(spec.data)
    run = RunState.create(spec, data, device, rank=rank, world_size=world)
    start = run.restore(checkpoint.load(resume_from)) if resume_from else 0
    val_loader = make_loader(data.val, batch_size=spec.batch_size, train=False, rank=rank, world_size=world,
                             num_workers=spec.data.num_workers, pin_memory=device.type == "cuda",
                             device=device)
    record = {}
    # a run resumed after its last epoch still evaluates its final model, for the summary
    evaluation = evaluate(run, val_loader) if start >= spec.epochs else {"per_class_top1": []}
    clock = Stopwatch(device)
    for epoch in range(start, spec.epochs):
        stats = train_one_epoch(run, epoch)
        clock.start()
        evaluation = evaluate(run, val_loader)
        stats["val_seconds"] = clock.stop()
        speedup = baseline_epoch_seconds / stats["train_seconds"] if baseline_epoch_seconds else math.nan
        record = epoch_record(epoch=epoch + 1, **stats, val_top1=evaluation["val_top1"],
                              val_top5=evaluation["val_top5"], lr=run.lr, speedup=speedup,
                              **_controller_fields(run), max_memory_mb=max_memory_mb(device))
        _save_and_report(run, epoch + 1, record, report, checkpoint_root)
    return {"epochs_done": spec.epochs, "final": record, "per_class_top1": evaluation["per_class_top1"],
            "class_names": list(data.class_names)}


def _controller_fields(run: RunState) -> dict[str, float]:
    """Threshold (nats) and target activation; a dense run has no threshold and trains on everything."""
    if run.spec.sparsity.mode == "dense":
        return {"threshold": math.nan, "target_activation": 1.0}
    return {"threshold": run.controller.threshold, "target_activation": run.spec.sparsity.target_activation}


def _save_and_report(run: RunState, epoch: int, record: dict, report: Reporter | None,
                     checkpoint_root: str | Path | None) -> None:
    due = epoch % run.spec.checkpoint_every == 0 or epoch == run.spec.epochs
    directory = None
    if due and run.rank == 0:
        root = Path(checkpoint_root) if checkpoint_root else Path(tempfile.mkdtemp(prefix="ast_ckpt_"))
        directory = checkpoint.save(checkpoint.epoch_dir(root, epoch), run.state_dict(epoch))
    try:
        if report is not None:
            report(record, directory)
    finally:
        if directory is not None and checkpoint_root is None:
            shutil.rmtree(directory.parent, ignore_errors=True)
