"""Per-epoch bookkeeping: wall-clock timing, memory, NVML energy, and counted savings.

Measured and counted are kept apart on purpose: ``train_seconds`` and ``samples_per_second`` are
wall-clock measurements (CUDA synchronised before the clock is read), and so is ``data_seconds``,
the share of the train seconds the loop waited on its loader; ``energy_savings`` is only counted
from sample tallies, with the definition of the reference library (adaptive-sparse-training 1.0.1);
``energy_j`` comes from the GPU's own energy counter and is NaN where there is none (CPU), never
estimated.
"""

from __future__ import annotations

import logging
import math
import resource
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from ast_tune.config.columns import DATA_BOUND, EPOCH_METRICS

log = logging.getLogger(__name__)

#: The reference library's cost of a skipped sample relative to a trained one, in its counted savings.
SKIPPED_COST = 0.01


def counted_energy_savings(*, active: float, total: float) -> float:
    """The reference library's counted saving ``1 − (active + 0.01·skipped)/total``, a fraction; not measured."""
    if total <= 0:
        return math.nan
    return 1.0 - (active + SKIPPED_COST * (total - active)) / total


def synchronise(device: torch.device) -> None:
    """Wait for queued CUDA work so that the clock measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


PROC_STATUS, PROC_CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")  # Linux


def max_memory_mb(device: torch.device) -> float:
    """CUDA max allocated on ``device``, or this process's peak RSS on the CPU, in MiB.

    Counted from the last :func:`reset_peak_memory` (on a CPU without Linux's ``clear_refs``, from
    the process start).
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if PROC_STATUS.is_file():  # VmHWM: the peak RSS, which clear_refs can reset
        for line in PROC_STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB; never reset


def reset_peak_memory(device: torch.device) -> None:
    """Start :func:`max_memory_mb` afresh: a process may run several trials one after another."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        PROC_CLEAR_REFS.write_text("5")  # Linux: reset the peak RSS (VmHWM) to the current RSS
    except OSError as err:
        log.debug("peak RSS not reset (%s): max_memory_mb is this process's peak so far", err)


class EnergyMeter:
    """Joules used by the GPU between :meth:`start` and :meth:`stop` (NVML counter); NaN on CPU."""

    def __init__(self, device: torch.device) -> None:
        self._handle = None
        self._start_mj = 0
        if device.type != "cuda":
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            index = device.index if device.index is not None else torch.cuda.current_device()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except Exception as err:  # no NVML, or a GPU without an energy counter
            log.warning("GPU energy not measured: %s", err)
            self._handle = None

    def _read_mj(self) -> int:
        import pynvml

        return pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)

    def start(self) -> None:
        if self._handle is not None:
            self._start_mj = self._read_mj()

    def stop(self) -> float:
        """Joules since :meth:`start`, or NaN without a counter."""
        if self._handle is None:
            return math.nan
        return (self._read_mj() - self._start_mj) / 1000.0


class Stopwatch:
    """Wall-clock seconds of a phase, with CUDA synchronised at both ends."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._t0 = 0.0

    def start(self) -> None:
        synchronise(self.device)
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        synchronise(self.device)
        return time.perf_counter() - self._t0


class LoaderWait:
    """Iterates ``loader``; :attr:`seconds` adds up the wall time spent waiting for its batches.

    CUDA is synchronised before each wait starts, as :class:`Stopwatch` does, so the time counts
    only while the device has nothing queued: the loop truly waited on data.
    """

    def __init__(self, loader: Iterable, device: torch.device) -> None:
        self.loader = loader
        self.device = device
        self.seconds = 0.0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        batches = iter(self.loader)
        while True:
            synchronise(self.device)
            start = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - start
            yield batch




def data_bound_warning(record: Mapping[str, Any]) -> str | None:
    """One line when more than :data:`DATA_BOUND` of the epoch's train seconds waited on the loader, else None."""
    waited, total = record.get("data_seconds", math.nan), record.get("train_seconds", math.nan)
    if not (math.isfinite(waited) and math.isfinite(total) and total > 0 and waited > DATA_BOUND * total):
        return None
    return (f"warning: epoch {record.get('epoch')} waited {waited:.1f} of its {total:.1f} train seconds "
            f"({100 * waited / total:.0f}%) on the data loader, so its speedup measures the loader: read a "
            "resized copy (python -m ast_tune.prepare), or raise data.num_workers (and the CPUs per worker)")


def epoch_record(**values: float | str) -> dict[str, float | str]:
    """Order ``values`` as :data:`columns.EPOCH_METRICS`; missing metrics become NaN."""
    unknown = set(values) - set(EPOCH_METRICS)
    if unknown:
        raise KeyError(f"not epoch metrics: {sorted(unknown)}")
    return {name: values.get(name, math.nan) for name in EPOCH_METRICS}
