"""The sweep's journal: every trial start, reported epoch and trial end, appended to ``tune/journal.jsonl``.

Tune rewrites a restored trial's own result files, so the journal is the history of record;
:func:`epochs_frame` turns it into the epochs table that :func:`ast_tune.results.tables.write_tables`
reads. The journal is also a Tune callback that prints one progress line per epoch and trial.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from ray import cloudpickle, tune
from ray.tune.logger import TBXLoggerCallback
from ray.tune.result import TIMESTEPS_TOTAL

from ast_tune.config import columns
from ast_tune.core.metrics import data_bound_warning
from ast_tune.results.progress import epoch_line, number
from ast_tune.tuning.worker import REPLAYED, failure_reason

log = logging.getLogger(__name__)

JOURNAL = "journal.jsonl"


class Journal(tune.Callback):
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
        self.path, self.epochs = path, epochs
        if label is not None:
            self.label = label
        if run_key is not None:
            self.run_key = run_key
        self.warned_data = False  # the data-bound warning is printed once per attempt (one driver's run)

    def _append(self, entry: dict[str, Any]) -> None:
        """One line; it starts on a line of its own even after a line torn by a kill or a full disk."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as handle:
            size = handle.seek(0, os.SEEK_END)
            torn = size > 0 and handle.seek(size - 1) >= 0 and handle.read(1) != b"\n"
            handle.write((("\n" if torn else "") + json.dumps(entry, default=str) + "\n").encode())

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._append({"event": "start", "trial_id": trial.trial_id, "params": trial.config})
        print(f"{self.label(trial)} started", flush=True)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "epoch" not in result:
            return
        if self._held is None:
            self._held = {(self.run_key(e["trial_id"], e["params"]), e["epoch"]) for e in self.read()
                          if e["event"] == "epoch"}
        held = (self.run_key(trial.trial_id, trial.config), result["epoch"])
        if result.get(REPLAYED) and held in self._held:
            return
        self._held.add(held)
        record = {key: result.get(key) for key in columns.EPOCH_METRICS}
        self._append({"event": "epoch", "trial_id": trial.trial_id, "params": trial.config, **record})
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
        self._append({"event": "end", "trial_id": trial.trial_id, "params": trial.config, "status": status,
                      "reason": reason})

    def read(self) -> list[dict[str, Any]]:
        """Every whole record; a line torn by a kill is skipped with a warning naming it.

        A record written straight after a torn line (by a journal that did not start it on a new
        line) is still read.
        """
        if not self.path.is_file():
            return []
        entries = []
        for line_number, line in enumerate(self.path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            record, torn = _parse(line) if line.strip() else (None, None)
            if torn is not None:
                log.warning("journal %s line %d is torn (a kill or a full disk mid-write); skipped: %.80s",
                            self.path, line_number, torn)
            if record is not None:
                entries.append(record)
        return entries


def _parse(line: str) -> tuple[dict[str, Any] | None, str | None]:
    """The record on ``line`` (None if none) and the torn text before it (None if the line is whole)."""
    with contextlib.suppress(json.JSONDecodeError):
        return json.loads(line), None
    start = line.find('{"event"', 1)
    if start > 0:
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(line[start:]), line[:start]
    return None, line


def _error_reason(trial: Any) -> str:
    """One line from the error Tune saved for ``trial`` (its local copy: storage may lag behind)."""
    pickled, text = trial.pickled_error_file, trial.error_file
    if pickled and Path(pickled).is_file():
        with open(pickled, "rb") as handle:
            return failure_reason(cloudpickle.load(handle))
    lines = [line for line in Path(text).read_text().splitlines() if line.strip()] if text else []
    return lines[-1].strip() if lines else "unknown error"


def epochs_frame(entries: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per trial × epoch (the last report of a re-run epoch wins), with status and ``param.*``.

    A trial that ended before its first epoch gets one row with epoch 0 and NaN metrics; a trial
    with epochs but no end (the sweep was interrupted) is ``INTERRUPTED``.
    """
    ends = {e["trial_id"]: e for e in entries if e["event"] == "end"}
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for entry in entries:
        if entry["event"] == "epoch":
            rows[entry["trial_id"], entry["epoch"]] = entry
    for trial_id, end in ends.items():
        if not any(key[0] == trial_id for key in rows):
            rows[trial_id, 0] = {**end, "epoch": 0}
    order: dict[str, int] = {}
    for entry in entries:
        order.setdefault(entry["trial_id"], len(order))
    table = []
    for (trial_id, _), entry in sorted(rows.items(), key=lambda item: (order[item[0][0]], item[0][1])):
        end = ends.get(trial_id, {})
        row = {"trial_id": trial_id, "status": end.get("status", columns.INTERRUPTED), "reason": end.get("reason")}
        row.update({key: entry.get(key, math.nan) for key in columns.EPOCH_METRICS})
        row.update({f"{columns.PARAM_PREFIX}{k}": v for k, v in entry.get("params", {}).items()})
        table.append(row)
    first = [*columns.EPOCH_TABLE_KEYS, *columns.EPOCH_METRICS, "reason"]
    frame = pd.DataFrame(table, columns=None if table else first)
    return frame[[*first, *sorted(c for c in frame.columns if c not in first)]]


class EpochTBXLogger(TBXLoggerCallback):
    """TensorBoard event files per trial (``tensorboard --logdir results/<name>``), stepped by epoch.

    Tune's own TBX logger steps by ``training_iteration``, which restarts when a trial resumes.
    """

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        if "epoch" in result:
            result = {**result, TIMESTEPS_TOTAL: result["epoch"]}
        super().log_trial_result(iteration, trial, result)
