"""Where a sweep's runs train: ``engine.fit`` in a Tune trial's own process or in a Ray Train ``TorchTrainer``.

One loop, :func:`train_loop`, serves both: it sets torch's threads, resumes from its session's
checkpoint when the run has one, and forwards each epoch record (with the checkpoint directory
rank 0 gets at checkpoint epochs) to the session's ``report``. A one-worker trial runs it in the
trial's own process (:func:`run_in_trial`, Tune's session); a multi-worker trial, the dense
baseline and a promotion run it on every rank of a ``TorchTrainer`` (:func:`run_training`,
Train's session). A Train run's storage is ``<storage_path>/<name>``; Ray Train keeps the two
newest checkpoints there, so starting a run again under the same name continues after its last
checkpoint (the one before, if the last is damaged), and a run whose worker dies is restarted from
it up to ``WORKER_RETRIES`` times (Tune does the same for a trial's own checkpoints and process).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow.fs
import ray
import ray.train
import ray.train.torch
import torch
from ray import tune
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from ast_tune.config.run_spec import DataSpec, RunSpec
from ast_tune.config.spec import build, to_dict
from ast_tune.config.sweep_spec import Workload
from ast_tune.core.checkpoint import CheckpointError
from ast_tune.core.checkpoint import load as load_checkpoint
from ast_tune.core.engine import NonFiniteLossError, default_device, fit
from ast_tune.data.sources import Datasets, load_datasets
from ast_tune.tuning.runtime.rendezvous import BoundTorchConfig
from ast_tune.tuning.runtime.resources import torch_threads, worker_resources

log = logging.getLogger(__name__)

HISTORY_FILE = "history.json"  # the run's epoch records so far, saved beside the engine's checkpoint
KEEP_CHECKPOINTS = 2  # per run (Train's or a Tune trial's): the newest, and the one before in case it is damaged
WORKER_RETRIES = 2  # restarts of a run whose worker (or trial process) died, from its newest checkpoint
REPLAYED = "replayed"  # True in a report that repeats an epoch record of the checkpoint a run resumed from


class TrialFailedError(RuntimeError):
    """A training run failed; ``str(err)`` is one line, e.g. ``NonFiniteLossError: loss is nan``."""


@dataclasses.dataclass(frozen=True)
class Session:
    """Where a training loop gets its checkpoint and sends its reports: Ray Train's or Ray Tune's."""

    get_checkpoint: Callable[[], Checkpoint | None]
    report: Callable[..., None]
    checkpoint_type: type[Checkpoint]  # the class ``report`` accepts
    device: Callable[[], torch.device]


TRAIN_SESSION = Session(ray.train.get_checkpoint, ray.train.report, Checkpoint, ray.train.torch.get_device)
TUNE_SESSION = Session(tune.get_checkpoint, tune.report, tune.Checkpoint, default_device)


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train's entry point on every rank: :func:`train_loop` in Train's session."""
    return train_loop(config, TRAIN_SESSION)


def train_loop(config: dict[str, Any], session: Session) -> dict[str, Any]:
    """Run ``engine.fit`` on this rank; rank 0's return value is ``{"summary", "records"}`` or ``{"error"}``.

    A resumed run first reports again the records its checkpoint holds (marked ``REPLAYED``): an
    interrupted sweep may not have passed the last of them on to Tune. ``records`` holds every epoch of the run. A
    checkpoint that does not load (truncated, garbage, not weights-only) is skipped with a warning
    for the one holding the next most epochs, and the one resumed from is logged. A non-finite
    loss, or a checkpoint that cannot be written (a full disk: the previous one stays), is returned
    as ``{"error": reason}`` instead of raised, so the retries (meant for dead workers) are not
    spent repeating it.

    Args:
        config: ``run_spec`` (a RunSpec as a mapping), ``threads`` (torch CPU threads),
            ``baseline_epoch_seconds`` (dense seconds per epoch, or None: speedup is NaN) and
            optionally ``run_dir``, the directory (path or URI) holding the run's checkpoints.
        session: Ray Train's (a Train worker) or Ray Tune's (the trial's own process).
    """
    torch.set_num_threads(config["threads"])
    spec = build(RunSpec, config["run_spec"])
    try:
        latest = session.get_checkpoint()
        candidates = _newest_first(latest, config.get("run_dir"), session.checkpoint_type)
        for number, candidate in enumerate(candidates):
            with candidate.as_directory() as directory:
                history = _usable_history(Path(directory))
                if history is None:
                    continue
                if number or latest is None or candidate.path != latest.path:
                    log.warning("resuming from checkpoint %s (%d epochs); the recorded one was %s", candidate.path,
                                len(history), latest and latest.path)
                for record in history:
                    session.report({**record, REPLAYED: True})
                return _fit_and_report(spec, config, session, resume_from=Path(directory), history=history)
        if candidates:
            log.warning("no checkpoint of this run loads; training from epoch 0")
        return _fit_and_report(spec, config, session, resume_from=None, history=[])
    except (NonFiniteLossError, CheckpointError) as err:
        return {"error": f"{type(err).__name__}: {err}"}


def _newest_first(latest: Checkpoint | None, run_dir: str | None, kind: type[Checkpoint]) -> list[Checkpoint]:
    """The run's checkpoints (``latest``, its ``checkpoint_*`` siblings or those in ``run_dir``), most epochs first.

    Ordered by the epochs each holds, not by name, and looked for beyond the one the session
    recorded: a killed driver may not have recorded the newest checkpoint its run wrote (or any),
    and Tune numbers a restored trial's checkpoints on from the one it knew.
    """
    if latest is not None:
        filesystem, parent = latest.filesystem, str(PurePosixPath(latest.path).parent)
    elif run_dir is not None:
        filesystem, parent = pyarrow.fs.FileSystem.from_uri(run_dir)
    else:
        return []
    infos = filesystem.get_file_info(pyarrow.fs.FileSelector(parent, allow_not_found=True))
    paths = {info.path for info in infos if info.type == pyarrow.fs.FileType.Directory
             and info.base_name.startswith("checkpoint_")} | ({latest.path} if latest is not None else set())
    held = {path: _epochs_held(filesystem, path) for path in paths}
    return [kind(path, filesystem=filesystem) for path in sorted(paths, key=lambda p: (held[p], p), reverse=True)]


def _epochs_held(filesystem: pyarrow.fs.FileSystem, path: str) -> int:
    """How many epoch records the checkpoint at ``path`` holds; -1 if its history does not read."""
    try:
        with filesystem.open_input_stream(f"{path}/{HISTORY_FILE}") as stream:
            return len(json.loads(stream.read()))
    except (OSError, ValueError):
        return -1


def _usable_history(directory: Path) -> list[dict] | None:
    """The epoch records saved with the checkpoint in ``directory``; None (and a warning) if it does not load."""
    try:
        load_checkpoint(directory)
        return json.loads((directory / HISTORY_FILE).read_text())
    except (CheckpointError, OSError, ValueError) as err:
        log.warning("checkpoint %s does not load (%s); trying the one with the next most epochs", directory, err)
        return None


@functools.lru_cache(maxsize=1)
def _datasets(spec: DataSpec) -> Datasets:
    """``load_datasets(spec)``, kept for the next run in this process with the same data."""
    return load_datasets(spec)


def _fit_and_report(spec: RunSpec, config: dict[str, Any], session: Session, *, resume_from: Path | None,
                    history: list[dict]) -> dict[str, Any]:
    records = list(history)

    def report(record: dict, checkpoint_dir: Path | None) -> None:
        records.append(record)
        if checkpoint_dir is None:
            session.report(dict(record), checkpoint=None)
            return
        try:  # the records so far travel with the checkpoint, which the session copies to the run's storage
            (Path(checkpoint_dir) / HISTORY_FILE).write_text(json.dumps(records))
            session.report(dict(record), checkpoint=session.checkpoint_type.from_directory(checkpoint_dir))
        except OSError as err:
            raise CheckpointError(f"epoch {record['epoch']}: checkpoint not written ({err.strerror or err}); "
                                  "the previous checkpoint is kept") from None

    summary = fit(spec, report=report, resume_from=resume_from, device=session.device(),
                  baseline_epoch_seconds=config["baseline_epoch_seconds"], datasets=_datasets(spec.data))
    return {"summary": summary, "records": records}


def run_training(spec: RunSpec, *, workload: Workload, name: str, storage_path: str | Path,
                 baseline_epoch_seconds: float | None = None, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train ``spec`` on ``workload.workers`` Ray Train workers; continue run ``name`` if it has a checkpoint.

    Args:
        spec: the run; ``spec.checkpoint_every`` sets how often a resumable checkpoint is kept.
        workload: worker count and per-worker CPUs/GPUs (``cpus_per_worker`` also sets torch threads).
        name: the Train run's name; the same name resumes from the same storage directory.
        storage_path: absolute directory (or URI) that holds the run.
        baseline_epoch_seconds: dense train seconds per epoch, passed to ``engine.fit`` for speedup.
        callbacks: Ray Train callbacks, e.g. Tune's ``TuneReportCallback`` inside a trial.

    Returns:
        Rank 0's ``{"summary": fit's summary, "records": [every epoch record of the run]}``.

    Raises:
        TrialFailedError: a worker raised (e.g. ``NonFiniteLossError``) or the run could not start.
    """
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=_loop_config(spec, workload, baseline_epoch_seconds),
        torch_config=BoundTorchConfig(),  # its rendezvous store listens on the master's address only
        scaling_config=ScalingConfig(num_workers=workload.workers, use_gpu=workload.gpus_per_worker > 0,
                                     resources_per_worker=worker_resources(workload),
                                     placement_strategy=workload.placement),
        run_config=RunConfig(name=name, storage_path=str(storage_path),
                             checkpoint_config=CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
                             failure_config=FailureConfig(max_failures=WORKER_RETRIES), callbacks=list(callbacks)),
    )
    try:
        result = trainer.fit().return_value
    except ray.train.TrainingFailedError as err:
        raise TrialFailedError(failure_reason(err)) from None
    if "error" in result:
        raise TrialFailedError(result["error"])
    return result


def run_in_trial(spec: RunSpec, *, workload: Workload, trial_dir: str,
                 baseline_epoch_seconds: float | None = None) -> dict[str, Any]:
    """Train a one-worker ``spec`` in this Tune trial's own process, continuing from the trial's checkpoint.

    No Train controller, worker actor or placement group is started, and the datasets are loaded
    once per process (Tune reuses a trial's process for the next trial), so a trial pays none of
    their start-up (docs/benchmarks.md, "Per-trial overhead"). Tune keeps the checkpoints and
    restarts the trial from the newest when its process dies.

    Args:
        spec: the run.
        workload: gives the torch threads (``cpus_per_worker``).
        trial_dir: the trial's directory in the experiment's storage (path or URI), where Tune
            keeps its checkpoints.
        baseline_epoch_seconds: dense train seconds per epoch, passed to ``engine.fit`` for speedup.

    Returns:
        ``{"summary": fit's summary, "records": [every epoch record of the run]}``.

    Raises:
        TrialFailedError: the loss became non-finite.
    """
    result = train_loop({**_loop_config(spec, workload, baseline_epoch_seconds), "run_dir": trial_dir}, TUNE_SESSION)
    if "error" in result:
        raise TrialFailedError(result["error"])
    return result


def _loop_config(spec: RunSpec, workload: Workload, baseline_epoch_seconds: float | None) -> dict[str, Any]:
    return {"run_spec": to_dict(spec), "threads": torch_threads(workload),
            "baseline_epoch_seconds": baseline_epoch_seconds}


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
