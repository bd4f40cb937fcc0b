"""Where a run trains: ``engine.fit`` in a Tune trial's own process or on every rank of a Ray Train ``TorchTrainer``.

One loop, :func:`train_loop`, serves every run (a sweep's trial, the dense baseline, a promoted
seed): it sets torch's threads, continues from the run's newest usable checkpoint, and forwards each
epoch record to the session's ``report``. A one-worker trial runs it in the trial's own process
(:func:`run_in_trial`, Tune's session); a multi-worker trial, the baseline and a several-worker
promotion run it on every rank of a ``TorchTrainer`` (:func:`run_training`, Train's session).

The checkpoints belong to the run, not to Tune or Train: ``<run dir>/checkpoints/epoch_NNNN/``
holds the engine's ``state.pt`` and ``history.json`` (the run's epoch records so far), written by
rank 0, the newest two kept (:mod:`ast_tune.core.checkpoint`). Every rank reads them when the run
starts, so a run started again (a new Tune run, Tune's retry of a trial whose process died, Train's
restart of a dead worker, up to ``WORKER_RETRIES`` times) continues after its newest usable one.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch
from ray import tune
from ray.train import FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from ast_tune.config.run_spec import DataSpec, RunSpec
from ast_tune.config.spec import build, to_dict
from ast_tune.config.sweep_spec import Workload
from ast_tune.core import checkpoint
from ast_tune.core.checkpoint import CheckpointError
from ast_tune.core.distributed import all_gather_objects, rank_and_world
from ast_tune.core.engine import NonFiniteLossError, default_device, fit
from ast_tune.data.sources import Datasets, load_datasets
from ast_tune.tuning.runtime import session
from ast_tune.tuning.runtime.nodes import NODES, node_id, worker_group_attempts
from ast_tune.tuning.runtime.rendezvous import BoundTorchConfig
from ast_tune.tuning.runtime.resources import torch_threads, worker_resources
from ast_tune.tuning.runtime.storage import StorageMarker, check_marker

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"  # in a run's directory: its epoch_NNNN checkpoints
FAILED = "FAILED"  # in a run's directory: the reason the run failed, which a retry cannot fix
SUMMARY = "summary.json"  # in a run's directory: the engine's summary of a run trained to its end
WORKER_RETRIES = 2  # restarts of a run whose worker (or trial process) died, from its newest checkpoint
REPLAYED = "replayed"  # True in a report that repeats an epoch record of the checkpoint a run resumed from


class TrialFailedError(RuntimeError):
    """A training run failed; ``str(err)`` is one line, e.g. ``NonFiniteLossError: loss is nan``."""


@dataclasses.dataclass(frozen=True)
class Session:
    """Where a training loop sends its reports, and the device it trains on: Ray Train's or Ray Tune's."""

    report: Callable[[dict[str, Any]], None]
    device: Callable[[], torch.device]


TRAIN_SESSION = Session(ray.train.report, ray.train.torch.get_device)
TUNE_SESSION = Session(tune.report, default_device)


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train's entry point on every rank: :func:`train_loop` in Train's session."""
    return train_loop(config, TRAIN_SESSION)


def train_loop(config: dict[str, Any], session: Session) -> dict[str, Any]:
    """Run ``engine.fit`` on this rank; rank 0's return value is ``{"summary", "records"}`` or ``{"error"}``.

    Every rank first reads the storage marker (:func:`ast_tune.tuning.runtime.storage.check_marker`);
    if one cannot, every rank returns that rank's reason, so none trains. A resumed run first reports
    again the records its checkpoint holds (marked ``REPLAYED``): an interrupted sweep may not have
    passed the last of them on. ``records`` holds every epoch of the run. A checkpoint that is not
    usable (truncated, garbage, not weights-only, or without its history) is skipped with a warning
    for the one holding the next most epochs, and rank 0 removes it. A non-finite loss, or a checkpoint
    that cannot be written (a full disk: the previous one stays), is returned as ``{"error": reason}``
    instead of raised, so the retries (meant for dead workers) are not spent repeating it. Each report
    names the nodes the run's processes run on (:data:`NODES`).

    Args:
        config: ``run_spec`` (a RunSpec as a mapping), ``threads`` (torch CPU threads),
            ``baseline_epoch_seconds`` (dense seconds per epoch, or None: speedup is NaN), ``run_dir``,
            the run's directory (its checkpoints are under ``run_dir/checkpoints``), ``marker`` (the
            storage marker, or None) and ``nodes`` (the nodes of the run's processes besides its ranks).
        session: Ray Train's (a Train worker) or Ray Tune's (the trial's own process).
    """
    torch.set_num_threads(config["threads"])
    spec = build(RunSpec, config["run_spec"])
    checkpoints = Path(config["run_dir"]) / CHECKPOINTS
    ranks = all_gather_objects((node_id(), check_marker(config["marker"])))
    problems = [problem for _, problem in ranks if problem]
    if problems:
        return {"error": problems[0]}
    nodes = list(dict.fromkeys([*config["nodes"], *(node for node, _ in ranks)]))

    def report(record: dict[str, Any]) -> None:
        session.report({**record, NODES: nodes})

    try:
        resume_from, history = checkpoint.resume_point(checkpoints, remove_unusable=rank_and_world()[0] == 0)
        for record in history:
            report({**record, REPLAYED: True})
        return _fit_and_report(spec, config, report, session.device(), checkpoints, resume_from=resume_from,
                               history=history)
    except (NonFiniteLossError, CheckpointError) as err:
        return {"error": f"{type(err).__name__}: {err}"}


@functools.lru_cache(maxsize=1)
def _datasets(spec: DataSpec) -> Datasets:
    """``load_datasets(spec)``, kept for the next run in this process with the same data."""
    return load_datasets(spec)


def _fit_and_report(spec: RunSpec, config: dict[str, Any], send: Callable[[dict[str, Any]], None],
                    device: torch.device, checkpoints: Path, *, resume_from: Path | None,
                    history: list[dict]) -> dict[str, Any]:
    records = list(history)

    def report(record: dict, checkpoint_dir: Path | None) -> None:
        records.append(record)
        if checkpoint_dir is not None:  # rank 0 at a checkpoint epoch: the records so far go beside it
            checkpoint.save_history(checkpoint_dir, records)
        send(dict(record))

    summary = fit(spec, report=report, resume_from=resume_from, checkpoint_root=checkpoints, device=device,
                  baseline_epoch_seconds=config["baseline_epoch_seconds"], datasets=_datasets(spec.data))
    return {"summary": summary, "records": records}


def run_training(spec: RunSpec, *, workload: Workload, name: str, storage_path: str | Path,
                 run_dir: str | Path | None = None, baseline_epoch_seconds: float | None = None,
                 callbacks: Sequence[Any] = (), marker: StorageMarker | None = None) -> dict[str, Any]:
    """Train ``spec`` on ``workload.workers`` Ray Train workers; continue after the run's newest checkpoint.

    This process (a trial's, or the driver's) and every rank first read ``marker``. A worker that
    dies (or its node) costs the run the epochs after its newest checkpoint, up to ``WORKER_RETRIES``
    times; workers that no node can place are waited for about
    :func:`ast_tune.tuning.runtime.nodes.node_wait_s`, then the run fails.

    Args:
        spec: the run; ``spec.checkpoint_every`` sets how often a resumable checkpoint is kept.
        workload: worker count and per-worker CPUs/GPUs (``cpus_per_worker`` also sets torch threads).
        name: the Train run's name.
        storage_path: absolute directory that holds Train's own files of the run (``<storage_path>/<name>``).
        run_dir: the run's directory (its checkpoints), on storage every rank reads; default
            ``<storage_path>/<name>``.
        baseline_epoch_seconds: dense train seconds per epoch, passed to ``engine.fit`` for speedup.
        callbacks: Ray Train callbacks, e.g. Tune's ``TuneReportCallback`` inside a trial.
        marker: the storage marker every rank reads first (:mod:`ast_tune.tuning.runtime.storage`), or None.

    Returns:
        Rank 0's ``{"summary": fit's summary, "records": [every epoch record of the run]}``.

    Raises:
        TrialFailedError: a worker raised (e.g. ``NonFiniteLossError``), a node cannot read ``marker``, or
            the run could not start.
    """
    if problem := check_marker(marker):
        raise TrialFailedError(problem)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=_loop_config(spec, workload, baseline_epoch_seconds, run_dir or Path(storage_path) / name,
                                       marker=marker, nodes=[node_id()]),
        torch_config=BoundTorchConfig(),  # its rendezvous store listens on the master's address only
        scaling_config=ScalingConfig(num_workers=workload.workers, use_gpu=workload.gpus_per_worker > 0,
                                     resources_per_worker=worker_resources(workload),
                                     placement_strategy=workload.placement),
        run_config=RunConfig(name=name, storage_path=str(storage_path), callbacks=list(callbacks),
                             failure_config=FailureConfig(max_failures=WORKER_RETRIES,
                                                          controller_failure_limit=worker_group_attempts() - 1)),
    )
    try:
        result = session.fit(trainer).return_value
    except ray.train.TrainingFailedError as err:
        raise TrialFailedError(failure_reason(err)) from None
    if "error" in result:
        raise TrialFailedError(result["error"])
    return result


def run_in_trial(spec: RunSpec, *, workload: Workload, run_dir: str | Path,
                 baseline_epoch_seconds: float | None = None, marker: StorageMarker | None = None) -> dict[str, Any]:
    """Train a one-worker ``spec`` in this Tune trial's own process, continuing after the run's newest checkpoint.

    No Train controller, worker actor or placement group is started, and the datasets are loaded
    once per process (Tune reuses a trial's process for the next trial), so a trial pays none of
    their start-up (docs/benchmarks.md, "Per-trial overhead"). Tune restarts the trial when its
    process dies, and the run continues after its newest checkpoint.

    Args:
        spec: the run.
        workload: gives the torch threads (``cpus_per_worker``).
        run_dir: the run's directory (its checkpoints).
        baseline_epoch_seconds: dense train seconds per epoch, passed to ``engine.fit`` for speedup.
        marker: the storage marker read first (:mod:`ast_tune.tuning.runtime.storage`), or None.

    Returns:
        ``{"summary": fit's summary, "records": [every epoch record of the run]}``.

    Raises:
        TrialFailedError: the loss became non-finite, or this node cannot read ``marker``.
    """
    result = train_loop(_loop_config(spec, workload, baseline_epoch_seconds, run_dir, marker=marker, nodes=[]),
                        TUNE_SESSION)
    if "error" in result:
        raise TrialFailedError(result["error"])
    return result


def _loop_config(spec: RunSpec, workload: Workload, baseline_epoch_seconds: float | None, run_dir: str | Path, *,
                 marker: StorageMarker | None, nodes: list[str]) -> dict[str, Any]:
    return {"run_spec": to_dict(spec), "threads": torch_threads(workload),
            "baseline_epoch_seconds": baseline_epoch_seconds, "run_dir": str(run_dir), "marker": marker,
            "nodes": nodes}


def failure_reason(err: BaseException) -> str:
    """One line naming the root exception of a Ray Train/Tune failure: ``Type: first line``."""
    seen: set[int] = set()
    while id(err) not in seen:
        seen.add(id(err))
        failures = getattr(err, "worker_failures", None)
        inner = (failures[min(failures)] if failures else None) or getattr(err, "cause", None) \
            or getattr(err, "controller_failure", None)
        if not isinstance(inner, BaseException):
            break
        err = inner
    if isinstance(err, TrialFailedError):
        return str(err)
    lines = [line for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0].strip()}" if lines else type(err).__name__
