"""The Ray Train side of a sweep: one training run = one ``TorchTrainer`` around ``engine.fit``.

Every rank runs :func:`train_loop_per_worker`: it sets torch's threads, resumes from
``ray.train.get_checkpoint()`` when the run has one, and forwards each epoch record (with the
checkpoint directory rank 0 gets at checkpoint epochs) to ``ray.train.report``. A run's storage is
``<storage_path>/<name>``; Ray Train keeps the two newest checkpoints there, so starting a run again
under the same name continues after its last checkpoint (the one before, if the last is damaged),
and a run whose worker dies is restarted from it up to ``WORKER_RETRIES`` times. The sweep's trials and its dense
baseline (:func:`ensure_baseline`) both go through :func:`run_training`. :func:`ray_session` and
:func:`concurrency` start Ray and size how many trials may run at once.
"""

from __future__ import annotations

import contextlib
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
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from ast_tune import ray_cleanup
from ast_tune.atomic import write_text
from ast_tune.checkpoint import CheckpointError
from ast_tune.checkpoint import load as load_checkpoint
from ast_tune.engine import NonFiniteLossError, fit
from ast_tune.spec import RunSpec, SpecError, build, to_dict
from ast_tune.sweep_spec import DRIVER_CPUS, SweepSpec, Workload

log = logging.getLogger(__name__)

API_SERVER_VARIABLE = "RAY_API_SERVER_ADDRESS"  # where Ray's state API is asked (the dashboard)
HISTORY_FILE = "history.json"  # the run's epoch records so far, saved beside the engine's checkpoint
KEEP_CHECKPOINTS = 2  # per Train run: the newest, and the previous one in case the newest is damaged
WORKER_RETRIES = 2  # restarts of a run's worker group (a dead worker) from its newest checkpoint


class TrialFailedError(RuntimeError):
    """A training run failed; ``str(err)`` is one line, e.g. ``NonFiniteLossError: loss is nan``."""


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Run ``engine.fit`` on this rank; rank 0's return value is ``{"summary", "records"}`` or ``{"error"}``.

    A resumed run first reports again the records its checkpoint holds: an interrupted sweep may
    not have passed the last of them on to Tune. ``records`` holds every epoch of the run. A
    checkpoint that does not load (truncated, garbage, not weights-only) is skipped with a warning
    for the previous one Train kept. A non-finite loss is returned as ``{"error": reason}``
    instead of raised, so Train does not spend its retries (meant for dead workers) repeating it.

    Args:
        config: ``run_spec`` (a RunSpec as a mapping), ``threads`` (torch CPU threads) and
            ``baseline_epoch_seconds`` (dense seconds per epoch, or None: speedup is NaN).
    """
    torch.set_num_threads(config["threads"])
    spec = build(RunSpec, config["run_spec"])
    try:
        latest = ray.train.get_checkpoint()
        for candidate in _newest_first(latest) if latest is not None else []:
            with candidate.as_directory() as directory:
                history = _usable_history(Path(directory))
                if history is None:
                    continue
                if candidate is not latest:
                    log.warning("resuming from the previous checkpoint %s", candidate.path)
                for record in history:
                    ray.train.report(record)
                return _fit_and_report(spec, config, resume_from=Path(directory), history=history)
        if latest is not None:
            log.warning("no checkpoint of this run loads; training from epoch 0")
        return _fit_and_report(spec, config, resume_from=None, history=[])
    except NonFiniteLossError as err:
        return {"error": f"{type(err).__name__}: {err}"}


def _newest_first(latest: Checkpoint) -> list[Checkpoint]:
    """``latest``, then the run's older checkpoints (``checkpoint_<time>`` siblings), newest first."""
    parent, name = PurePosixPath(latest.path).parent, PurePosixPath(latest.path).name
    infos = latest.filesystem.get_file_info(pyarrow.fs.FileSelector(str(parent)))
    older = sorted((info.path for info in infos if info.type == pyarrow.fs.FileType.Directory
                    and info.base_name.startswith("checkpoint_") and info.base_name < name), reverse=True)
    return [latest, *(Checkpoint(path, filesystem=latest.filesystem) for path in older)]


def _usable_history(directory: Path) -> list[dict] | None:
    """The epoch records saved with the checkpoint in ``directory``; None (and a warning) if it does not load."""
    try:
        load_checkpoint(directory)
        return json.loads((directory / HISTORY_FILE).read_text())
    except (CheckpointError, OSError, ValueError) as err:
        log.warning("checkpoint %s does not load (%s); trying the previous one", directory, err)
        return None


def _fit_and_report(spec: RunSpec, config: dict[str, Any], *, resume_from: Path | None,
                    history: list[dict]) -> dict[str, Any]:
    records = list(history)

    def report(record: dict, checkpoint_dir: Path | None) -> None:
        records.append(record)
        checkpoint = None
        if checkpoint_dir is not None:  # the records so far travel with the checkpoint
            (Path(checkpoint_dir) / HISTORY_FILE).write_text(json.dumps(records))
            checkpoint = Checkpoint.from_directory(checkpoint_dir)
        ray.train.report(dict(record), checkpoint=checkpoint)

    summary = fit(spec, report=report, resume_from=resume_from, device=ray.train.torch.get_device(),
                  baseline_epoch_seconds=config["baseline_epoch_seconds"])
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
        train_loop_config={"run_spec": to_dict(spec), "threads": max(1, round(workload.cpus_per_worker)),
                           "baseline_epoch_seconds": baseline_epoch_seconds},
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
    """What one trial holds, e.g. ``8 workers × 1 GPU + 8 CPU (+0.05 CPU driver)``."""
    w = spec.workload
    gpus = f" × {w.gpus_per_worker:g} GPU + {w.cpus_per_worker:g} CPU" if w.gpus_per_worker else \
        f" × {w.cpus_per_worker:g} CPU"
    plural = "s" if w.workers > 1 else ""
    return (f"trial resources: {w.workers} worker{plural}{gpus} (+{DRIVER_CPUS:g} CPU for the trial driver), "
            f"placement {w.placement}; up to {spec.search.max_concurrent} trials at once; "
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
