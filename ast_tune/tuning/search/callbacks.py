"""The Tune callbacks of a sweep: the journal's writer (with a progress line per epoch and trial) and TensorBoard.

:class:`JournalCallback` appends every trial start, epoch record and trial end to the journal
(:class:`ast_tune.results.journal.Journal`), the history of record; :class:`EpochTBXLogger` writes
TensorBoard event files stepped by epoch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

from ray import cloudpickle, tune
from ray.tune.logger import TBXLoggerCallback
from ray.tune.result import TIMESTEPS_TOTAL

from ast_tune.config import columns
from ast_tune.core.metrics import data_bound_warning
from ast_tune.results.journal import Journal
from ast_tune.results.progress import epoch_line, number
from ast_tune.tuning.runtime.worker import REPLAYED, failure_reason


class JournalCallback(tune.Callback):
    """Appends one JSON line per started trial, reported epoch and finished trial, and prints a progress line.

    Tune rewrites a restored trial's own result files, so this file is the history of record.
    A trial's end is ``TERMINATED`` (all epochs), ``STOPPED`` (by the scheduler) or ``ERROR``.
    A resumed run first reports its checkpoint's epochs again (marked ``REPLAYED``); those the
    journal holds already for the same run are neither written nor printed again.

    Args:
        path: the journal file.
        epochs: a trial's full length (for "epoch 3/10" and for telling finished from stopped).
        label: names a trial in the progress lines; default ``trial <id>``.
        run_key: what names a run across Tune runs, from a trial's id and config: the trial id (a
            sweep's default), or e.g. the seed of a promotion, whose Tune run may be started anew.
    """

    # class defaults too: a journal unpickled from a sweep made before they existed still has them
    label: Callable[[Any], str] = staticmethod(lambda trial: f"trial {trial.trial_id}")
    run_key: Callable[[str, Mapping[str, Any]], Hashable] = staticmethod(lambda trial_id, config: trial_id)
    _held: set[tuple[Hashable, int]] | None = None  # (run key, epoch) on file; read on the first report

    def __init__(self, path: Path, *, epochs: int, label: Callable[[Any], str] | None = None,
                 run_key: Callable[[str, Mapping[str, Any]], Hashable] | None = None) -> None:
        self.journal, self.epochs = Journal(path), epochs
        if label is not None:
            self.label = label
        if run_key is not None:
            self.run_key = run_key
        self.warned_data = False  # the data-bound warning is printed once per attempt (one driver's run)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.journal.append({"event": "start", "trial_id": trial.trial_id, "params": trial.config})
        print(f"{self.label(trial)} started", flush=True)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "epoch" not in result:
            return
        if self._held is None:
            self._held = {(self.run_key(e["trial_id"], e["params"]), e["epoch"]) for e in self.journal.read()
                          if e["event"] == "epoch"}
        held = (self.run_key(trial.trial_id, trial.config), result["epoch"])
        if result.get(REPLAYED) and held in self._held:
            return
        self._held.add(held)
        record = {key: result.get(key) for key in columns.EPOCH_METRICS}
        self.journal.append({"event": "epoch", "trial_id": trial.trial_id, "params": trial.config, **record})
        print(epoch_line(record, self.epochs, who=f"{self.label(trial)} "), flush=True)
        if not self.warned_data and (warning := data_bound_warning(record)):
            self.warned_data = True
            print(f"{self.label(trial)} {warning}", file=sys.stderr, flush=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        status = columns.TERMINATED if last.get("epoch", 0) >= self.epochs else columns.STOPPED
        self._end(trial, status, None)
        print(f"{self.label(trial)} {status} after {last.get('epoch', 0)} epochs: top1 "
              f"{number(last.get('val_top1'), '.2f', suffix='%')} savings "
              f"{number(last.get('energy_savings'), '.1f', scale=100, suffix='%')} (counted) speedup "
              f"{number(last.get('speedup'), '.2f', suffix='x')} (measured)", flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        reason = _error_reason(trial)
        self._end(trial, columns.ERROR, reason)
        print(f"{self.label(trial)} {columns.ERROR}: {reason}", flush=True)

    def _end(self, trial: Any, status: str, reason: str | None) -> None:
        self.journal.append({"event": "end", "trial_id": trial.trial_id, "params": trial.config, "status": status,
                      "reason": reason})


def _error_reason(trial: Any) -> str:
    """One line from the error Tune saved for ``trial`` (its local copy: storage may lag behind)."""
    pickled, text = trial.pickled_error_file, trial.error_file
    if pickled and Path(pickled).is_file():
        with open(pickled, "rb") as handle:
            return failure_reason(cloudpickle.load(handle))
    lines = [line for line in Path(text).read_text().splitlines() if line.strip()] if text else []
    return lines[-1].strip() if lines else "unknown error"


class EpochTBXLogger(TBXLoggerCallback):
    """TensorBoard event files per trial (``tensorboard --logdir results/<name>``), stepped by epoch.

    Tune's own TBX logger steps by ``training_iteration``, which restarts when a trial resumes.
    """

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        if "epoch" in result:
            result = {**result, TIMESTEPS_TOTAL: result["epoch"]}
        super().log_trial_result(iteration, trial, result)
