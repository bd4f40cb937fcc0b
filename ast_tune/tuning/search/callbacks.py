"""The Tune callbacks of a sweep and a promotion: the journal's writer (with the progress lines) and TensorBoard.

:class:`JournalCallback` appends every trial start, epoch record and trial end to the journal
(:class:`ast_tune.results.journal.Journal`, the history of record), keyed by an id that names the
run across Tune runs (a sweep trial's study number, a promoted seed's run name), and prints one
progress line per epoch and trial; :class:`EpochTBXLogger` writes TensorBoard event files stepped by
epoch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.logger import TBXLoggerCallback
from ray.tune.result import TIMESTEPS_TOTAL

from ast_tune.config import columns
from ast_tune.core.metrics import data_bound_warning
from ast_tune.results.journal import Journal
from ast_tune.results.progress import epoch_line, number
from ast_tune.tuning.runtime.worker import FAILED, REPLAYED
from ast_tune.tuning.search.searcher import trial_params

Config = Mapping[str, Any]


class JournalCallback(tune.Callback):
    """Appends one JSON line per started trial, reported epoch and ended trial, and prints a progress line.

    A trial's end is ``TERMINATED`` (all epochs), ``STOPPED`` (by the scheduler) or ``ERROR`` (with
    its reason: the run's ``FAILED`` file, else the last line of Tune's ``error.txt``). A resumed run
    first reports its checkpoint's epochs again (marked ``REPLAYED``); those the journal holds
    already are neither written nor printed again. Tune tells its searcher of a trial's end before
    its callbacks, and the journal records it before ``on_end`` hears of it, so the study is told
    after the journal (:func:`ast_tune.tuning.search.study.tell`).

    Args:
        journal: the journal file.
        epochs: a run's full length (for "epoch 3/10" and for telling finished from stopped).
        key: a trial's id in the journal, from its config (it names the run across Tune runs).
        run_dir: a trial's run directory, from its config (where a failed run leaves ``FAILED``).
        label: names a trial in the progress lines, from its id and config; default ``trial <id>``.
        on_end: called with a trial's id and its journal entries once its end is recorded.
        on_entry: called with each entry as it is appended (the sweep's trackers).
        quiet: print no line per trial start, epoch and end (the sweep's ``--quiet``).
    """

    def __init__(self, journal: Journal, *, epochs: int, key: Callable[[Config], str],
                 run_dir: Callable[[Config], Path], label: Callable[[str, Config], str] | None = None,
                 on_end: Callable[[str, list[dict[str, Any]]], None] | None = None,
                 on_entry: Callable[[dict[str, Any]], None] | None = None, quiet: bool = False) -> None:
        self.journal, self.epochs, self.key, self.run_dir, self.on_end = journal, epochs, key, run_dir, on_end
        self.on_entry, self.quiet = on_entry, quiet
        self.label = label or (lambda trial_id, config: f"trial {trial_id}")
        self.held: set[tuple[str, int]] | None = None  # (id, epoch) on file; read on the first report
        self.started: set[str] = set()  # the trials this Tune run started
        self.warned_data = False  # the data-bound warning is printed once per attempt (one driver's run)

    def _append(self, event: str, trial: Any, **fields: Any) -> None:
        entry = {"event": event, "trial_id": self.key(trial.config), "params": trial_params(trial.config), **fields}
        self.journal.append(entry)
        if self.on_entry is not None:
            self.on_entry(entry)

    def _say(self, line: str) -> None:
        if not self.quiet:
            print(line, flush=True)

    def name(self, trial: Any) -> str:
        """A trial as the progress lines name it, e.g. ``trial 3``."""
        return self.label(self.key(trial.config), trial.config)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.started.add(self.key(trial.config))
        self._append("start", trial)
        self._say(f"{self.name(trial)} started")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "epoch" not in result:
            return
        if self.held is None:
            self.held = {(e["trial_id"], e["epoch"]) for e in self.journal.read() if e["event"] == "epoch"}
        held = (self.key(trial.config), result["epoch"])
        if result.get(REPLAYED) and held in self.held:
            return
        self.held.add(held)
        record = {key: result.get(key) for key in columns.EPOCH_METRICS}
        self._append("epoch", trial, **record)
        self._say(epoch_line(record, self.epochs, who=f"{self.name(trial)} "))
        if not self.warned_data and (warning := data_bound_warning(record)):
            self.warned_data = True
            print(f"{self.name(trial)} {warning}", file=sys.stderr, flush=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.key(trial.config) not in self.started:  # a pending trial removed before it ran: no end
            return
        last = trial.last_result or {}
        status = columns.TERMINATED if last.get("epoch", 0) >= self.epochs else columns.STOPPED
        self._end(trial, status, None)
        self._say(f"{self.name(trial)} {status} after {last.get('epoch', 0)} epochs: top1 "
                  f"{number(last.get('val_top1'), '.2f', suffix='%')} savings "
                  f"{number(last.get('energy_savings'), '.1f', scale=100, suffix='%')} (counted) speedup "
                  f"{number(last.get('speedup'), '.2f', suffix='x')} (measured)")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        reason = _error_reason(self.run_dir(trial.config) / FAILED, trial.error_file)
        self._end(trial, columns.ERROR, reason)
        self._say(f"{self.name(trial)} {columns.ERROR}: {reason}")

    def _end(self, trial: Any, status: str, reason: str | None) -> None:
        self._append("end", trial, status=status, reason=reason)
        if self.on_end is not None:
            trial_id = self.key(trial.config)
            self.on_end(trial_id, [e for e in self.journal.read() if e["trial_id"] == trial_id])


def _error_reason(failed: Path, error_file: str | None) -> str:
    """One line: the run's own reason (``failed``), else the last line of Tune's text ``error_file``."""
    for path in (failed, Path(error_file) if error_file else None):
        lines = [line for line in path.read_text().splitlines() if line.strip()] if path and path.is_file() else []
        if lines:
            return lines[-1].strip()
    return "unknown error"


class EpochTBXLogger(TBXLoggerCallback):
    """TensorBoard event files per trial (``tensorboard --logdir results/<name>``), stepped by epoch.

    Tune's own TBX logger steps by ``training_iteration``, which restarts when a trial resumes.
    """

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        if "epoch" in result:
            result = {**result, TIMESTEPS_TOTAL: result["epoch"]}
        super().log_trial_result(iteration, trial, result)
