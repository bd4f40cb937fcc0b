"""``baseline.json``, the dense baseline a sweep's speedups divide by: built, checked, written and read here only.

:func:`ast_tune.tuning.runtime.baseline.ensure_baseline` times the runs and hands them to :func:`make_baseline`
and :func:`write_baseline`; the report, the promotion and the sweep's cache read it with
:func:`read_baseline`. Keys: ``fingerprint`` (what the timing depends on), ``epoch_seconds`` (median
train seconds per epoch over every timed epoch), ``epochs_timed``, ``val_top1``/``val_top5`` (the
first copy's final accuracy, %), ``spec`` (the baseline's RunSpec), ``created`` (UTC, ISO 8601) and
``epochs`` (the first copy's epoch records).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ast_tune.atomic import write_text
from ast_tune.config.spec import SpecError

BASELINE_FILE = "baseline.json"
#: Keys every ``baseline.json`` holds as numbers: median train seconds per epoch, final top-1 (%).
BASELINE_NUMBERS = ("epoch_seconds", "val_top1")


def make_baseline(fingerprint: Mapping[str, Any], spec: Mapping[str, Any],
                  runs: Sequence[Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """The ``baseline.json`` document of ``runs`` (each copy's epoch records) timed for ``fingerprint``."""
    records = [dict(record) for record in runs[0]]
    return {"fingerprint": dict(fingerprint),
            "epoch_seconds": statistics.median(r["train_seconds"] for run in runs for r in run),
            "epochs_timed": sum(map(len, runs)), "val_top1": records[-1]["val_top1"],
            "val_top5": records[-1]["val_top5"], "spec": dict(spec),
            "created": datetime.now(UTC).isoformat(timespec="seconds"), "epochs": records}


def write_baseline(path: Path, baseline: Mapping[str, Any]) -> None:
    """Check ``baseline`` as :func:`read_baseline` will, then write it atomically to ``path``."""
    _check(baseline, path)
    write_text(path, json.dumps(dict(baseline), indent=2) + "\n")


def read_baseline(path: Path) -> dict | None:
    """``baseline.json`` as :func:`write_baseline` wrote it, or None if there is no such file.

    Raises:
        SpecError: not JSON, or ``epoch_seconds`` (s) or ``val_top1`` (%) missing or not a number;
            the message names the file and the key.
    """
    baseline = load_json(path)
    if baseline is not None:
        _check(baseline, path)
    return baseline


def _check(baseline: object, path: Path) -> None:
    for key in BASELINE_NUMBERS:
        if not isinstance(baseline, Mapping) or not isinstance(baseline.get(key), int | float):
            raise SpecError(f"{path}: {key}", "missing or not a number")


def baseline_curve(baseline: Mapping | None) -> pd.DataFrame | None:
    """The baseline's per-epoch records (``epochs``, each with ``epoch``), or None if it has none."""
    records = (baseline or {}).get("epochs")
    if isinstance(records, list) and records and all(isinstance(r, Mapping) and "epoch" in r for r in records):
        return pd.DataFrame(records).sort_values("epoch")
    return None


def load_json(path: Path) -> object:
    """The JSON document at ``path``, or None if there is no such file.

    Raises:
        SpecError: the file cannot be read or is not JSON; the key is the path.
    """
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SpecError(str(path), f"cannot read JSON ({type(err).__name__})") from None
