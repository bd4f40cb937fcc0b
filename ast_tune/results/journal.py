"""A sweep's journal: every trial start, epoch record and trial end, one JSON line each.

The journal is the history of record (``results/<name>/journal.jsonl``; a promotion's is
``promoted/journal.jsonl``): :func:`epochs_frame` turns it into the epochs table that
:func:`ast_tune.results.tables.write_tables` reads. Every entry carries the time it was written
(``time``), from which :mod:`ast_tune.cost.reestimate` measures a running sweep's pace. Appending starts
every record on a line of its own, and reading skips a line torn by a kill or a full disk, so a journal
survives both. The Tune
callback that writes it lives in :mod:`ast_tune.tuning.search.callbacks`; this module reads and
writes the file alone, without Ray.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ast_tune.config import columns

log = logging.getLogger(__name__)

JOURNAL = "journal.jsonl"
TIME = "time"  # when an entry was written, Unix seconds: the status line's clock


class Journal:
    """The journal file at ``path``: :meth:`append` one record, :meth:`read` them all."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, entry: dict[str, Any]) -> None:
        """One line, stamped with the time it is written (``time``, Unix seconds) unless ``entry`` has one;
        it starts on a line of its own even after a line torn by a kill or a full disk."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entry = {**entry, TIME: entry.get(TIME, round(time.time(), 3))}
        with self.path.open("a+b") as handle:
            size = handle.seek(0, os.SEEK_END)
            torn = size > 0 and handle.seek(size - 1) >= 0 and handle.read(1) != b"\n"
            handle.write((("\n" if torn else "") + json.dumps(entry, default=str) + "\n").encode())

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
