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
:func:`ray_session` and :func:`concurrency` start Ray and size how many trials may run at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import socket
import statistics
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
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

from ast_tune import ray_cleanup
from ast_tune.atomic import write_text
from ast_tune.checkpoint import CheckpointError
from ast_tune.checkpoint import load as load_checkpoint
from ast_tune.data import Datasets, load_datasets
from ast_tune.engine import NonFiniteLossError, default_device, fit
from ast_tune.spec import DataSpec, RunSpec, SpecError, build, to_dict
from ast_tune.sweep_spec import DRIVER_CPUS, SweepSpec, Workload

log = logging.getLogger(__name__)

API_SERVER_VARIABLE = "RAY_API_SERVER_ADDRESS"  # where Ray's state API is asked (the dashboard)
HISTORY_FILE = "history.json"  # the run's epoch records so far, saved beside the engine's checkpoint
KEEP_CHECKPOINTS = 2  # per Train run: the newest, and the previous one in case the newest is damaged
WORKER_RETRIES = 2  # restarts of a run's worker group (a dead worker) from its newest checkpoint


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

    A resumed run first reports again the records its checkpoint holds: an interrupted sweep may
    not have passed the last of them on to Tune. ``records`` holds every epoch of the run. A
    checkpoint that does not load (truncated, garbage, not weights-only) is skipped with a warning
    for the previous one kept. A non-finite loss is returned as ``{"error": reason}`` instead of
    raised, so the retries (meant for dead workers) are not spent repeating it.

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
                    session.report(record)
                return _fit_and_report(spec, config, session, resume_from=Path(directory), history=history)
        if candidates:
            log.warning("no checkpoint of this run loads; training from epoch 0")
        return _fit_and_report(spec, config, session, resume_from=None, history=[])
    except NonFiniteLossError as err:
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
        log.warning("checkpoint %s does not load (%s); trying the previous one", directory, err)
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
        checkpoint = None
        if checkpoint_dir is not None:  # the records so far travel with the checkpoint
            (Path(checkpoint_dir) / HISTORY_FILE).write_text(json.dumps(records))
            checkpoint = session.checkpoint_type.from_directory(checkpoint_dir)
        session.report(dict(record), checkpoint=checkpoint)

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
    resources = {"CPU": workload.cpus_per_worker}
    if workload.gpus_per_worker:
        resources["GPU"] = workload.gpus_per_worker
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=_loop_config(spec, workload, baseline_epoch_seconds),
        scaling_config=ScalingConfig(num_workers=workload.workers, use_gpu=workload.gpus_per_worker > 0,
                                     resources_per_worker=resources, placement_strategy=workload.placement),
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
    once per process (Tune reuses a trial's process for the next trial), so a trial starts in
    about a second instead of tens of seconds (README, "Per-trial overhead"). Tune keeps the
    checkpoints and restarts the trial from the newest when its process dies.

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


def trial_resources(workload: Workload) -> dict[str, float]:
    """What a Tune trial's own process holds: a one-worker run trains in it; a larger one only drives Train."""
    if workload.workers > 1:
        return {"CPU": DRIVER_CPUS}
    return {"CPU": workload.cpus_per_worker + DRIVER_CPUS, "GPU": workload.gpus_per_worker}


def _loop_config(spec: RunSpec, workload: Workload, baseline_epoch_seconds: float | None) -> dict[str, Any]:
    return {"run_spec": to_dict(spec), "threads": max(1, round(workload.cpus_per_worker)),
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


def device_name() -> str:
    """The accelerator this process trains on: the CUDA device's name, else the CPU model."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    return f"cpu: {model}"


def probe_device(workload: Workload) -> str:
    """:func:`device_name` as seen from a slot with one training worker's resources."""
    probe = ray.remote(device_name).options(num_cpus=min(workload.cpus_per_worker, 1),
                                            num_gpus=workload.gpus_per_worker)
    return ray.get(probe.remote())


# --- the dense baseline ----------------------------------------------------------------------


def baseline_fingerprint(sweep: SweepSpec, device: str, *, runs_at_once: int = 1) -> dict[str, Any]:
    """What the baseline's timing depends on; a different fingerprint means timing it again."""
    spec, workload = sweep.baseline_spec(), sweep.workload
    data = {key: value for key, value in to_dict(spec.data).items() if key != "num_workers"}
    return {"model": spec.model, "data": data, "batch_size": spec.batch_size, "precision": spec.precision,
            "world_size": workload.workers, "cpus_per_worker": workload.cpus_per_worker,
            "gpus_per_worker": workload.gpus_per_worker, "device": device, "runs_at_once": runs_at_once}


def ensure_baseline(sweep: SweepSpec, path: Path, *, storage_path: Path, runs_at_once: int = 1) -> dict[str, Any]:
    """The cached dense baseline at ``path`` (``baseline.json``), timed again if its fingerprint changed.

    The baseline trains ``sweep.baseline_spec()`` (base preset + workload, dense) for the workload's
    epochs through :func:`run_training`, on the trials' hardware. CPU trials that run side by side
    share the machine's cores and memory, so ``runs_at_once`` copies are timed side by side too.
    ``epoch_seconds`` is the median ``train_seconds`` over all their epochs; a trial's ``speedup``
    is that over its own epoch time. ``epochs`` holds the first copy's epoch records.
    """
    fingerprint = baseline_fingerprint(sweep, probe_device(sweep.workload), runs_at_once=runs_at_once)
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("fingerprint") == fingerprint:
            return cached
        log.warning("baseline: %s was timed for another setup; timing the dense baseline again", path)
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:12]
    spec = sweep.baseline_spec()
    runs = in_threads([functools.partial(_time_run, spec, sweep.workload, storage_path / f"baseline_{digest}_{i}")
                       for i in range(runs_at_once)])
    records = runs[0]
    baseline = {"fingerprint": fingerprint,
                "epoch_seconds": statistics.median(r["train_seconds"] for run in runs for r in run),
                "epochs_timed": sum(map(len, runs)), "val_top1": records[-1]["val_top1"],
                "val_top5": records[-1]["val_top5"], "spec": to_dict(spec),
                "created": datetime.now(UTC).isoformat(timespec="seconds"), "epochs": records}
    write_text(path, json.dumps(baseline, indent=2) + "\n")
    return baseline


def _time_run(spec: RunSpec, workload: Workload, run_dir: Path) -> list[dict]:
    """Every epoch record of Train run ``run_dir`` (continued from its checkpoint if it has one)."""
    return run_training(spec, workload=workload, name=run_dir.name, storage_path=run_dir.parent)["records"]


# --- Ray ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def ray_session(*, verbose: bool) -> Iterator[dict[str, float]]:
    """Start Ray (or join ``RAY_ADDRESS``) and always shut it down; yields the cluster's resources.

    A local Ray gets its own short temp dir (unix socket paths are length-limited) and a dashboard
    on 127.0.0.1: Ray Train's placement-group cleaner asks its state API whether a stopped trial's
    controller is gone, and frees the trial's workers only then. The temp dir is marked with this
    process (:mod:`ast_tune.ray_cleanup`), and the leftovers of marked Rays whose driver was killed
    are removed first.
    """
    temp_dir, api_server = None, os.environ.get(API_SERVER_VARIABLE)
    options: dict[str, Any] = {"log_to_driver": verbose, "configure_logging": verbose}
    if not os.environ.get("RAY_ADDRESS"):
        ray_cleanup.reap_stale("/tmp")
        temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
        ray_cleanup.mark(temp_dir)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        os.environ[API_SERVER_VARIABLE] = f"http://127.0.0.1:{port}"  # Ray's processes inherit it
        options.update(_temp_dir=temp_dir, include_dashboard=True, dashboard_host="127.0.0.1",
                       dashboard_port=port)
    try:
        ray.init(**options)
        yield {"CPU": 0.0, "GPU": 0.0, **ray.cluster_resources()}
    finally:
        ray.shutdown()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
            os.environ.pop(API_SERVER_VARIABLE)
            if api_server is not None:
                os.environ[API_SERVER_VARIABLE] = api_server


def concurrency(spec: SweepSpec, cluster: dict[str, float], *, autoscaling: bool) -> int:
    """Trials at once: ``search.max_concurrent``, capped so that every running trial's workers fit.

    Raises:
        SpecError: one trial does not fit a fixed (non-autoscaling) cluster.
    """
    workload = spec.workload
    need = {"CPU": workload.workers * workload.cpus_per_worker + DRIVER_CPUS,
            "GPU": workload.workers * workload.gpus_per_worker}
    fits = min(math.floor(cluster[kind] / amount + 1e-9) for kind, amount in need.items() if amount > 0)
    if fits < 1 and not autoscaling:
        raise SpecError("workload", f"a trial needs {need['CPU']:g} CPUs and {need['GPU']:g} GPUs; this Ray "
                                    f"cluster has {cluster['CPU']:g} CPUs and {cluster['GPU']:g} GPUs")
    if fits < 1:  # an autoscaling cluster may grow
        return spec.search.max_concurrent
    if fits < spec.search.max_concurrent:
        log.info("search.max_concurrent %d capped to %d: that many trials fit", spec.search.max_concurrent, fits)
    return min(spec.search.max_concurrent, fits)


def resources_line(spec: SweepSpec) -> str:
    """What one trial holds, e.g. ``8 × 1 GPU + 8 CPU Ray Train workers (+0.05 CPU for the trial driver) ...``."""
    w = spec.workload
    gpus = f" × {w.gpus_per_worker:g} GPU + {w.cpus_per_worker:g} CPU" if w.gpus_per_worker else \
        f" × {w.cpus_per_worker:g} CPU"
    where = f"Ray Train workers (+{DRIVER_CPUS:g} CPU for the trial driver), placement {w.placement}" \
        if w.workers > 1 else "worker, in the trial's own process"
    return (f"trial resources: {w.workers}{gpus} {where}; up to {spec.search.max_concurrent} trials at once; "
            f"{spec.search.num_trials} trials of {w.epochs} epochs")


def in_threads(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` at once in daemon threads; their results in order, or the first error raised.

    The caller's thread only waits, so Ctrl-C reaches it as KeyboardInterrupt (Ray Train installs
    its own SIGINT handler when ``fit`` runs in the main thread), and nothing blocks the exit.
    """
    boxes: list[dict[str, Any]] = [{} for _ in calls]

    def target(call: Callable[[], Any], box: dict[str, Any]) -> None:
        try:
            box["value"] = call()
        except BaseException as err:  # re-raised in the caller
            box["error"] = err

    threads = [threading.Thread(target=target, args=pair, daemon=True) for pair in zip(calls, boxes, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)
    for box in boxes:
        if "error" in box:
            raise box["error"]
    return [box["value"] for box in boxes]
