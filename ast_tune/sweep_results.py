"""A sweep's ``results/<name>`` directory, read once for the report (:mod:`ast_tune.report`).

``epochs.parquet`` is required; everything else is optional and None (or ``{}``) when absent:
``spec.yaml``, ``baseline.json``, ``promoted/epochs.parquet``, ``promoted/summary.json``. A JSON
file that cannot be read is logged and treated as absent; ranks come from
:func:`ast_tune.export.trials_table`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import yaml

from ast_tune import columns
from ast_tune.export import Objective, read_epochs, read_objectives, trials_table
from ast_tune.spec import SpecError

logger = logging.getLogger(__name__)

#: Keys of ``baseline.json`` that may hold the baseline's per-epoch records.
BASELINE_RECORDS = ("epochs", "records", "history")


@dataclasses.dataclass(frozen=True)
class SweepResults:
    """What a ``results/<name>`` directory holds, read once; optional parts are None when absent."""

    name: str
    epochs: pd.DataFrame
    trials: pd.DataFrame  # export.trials_table: ranks and front from there
    objectives: tuple[Objective, ...]
    spec: Mapping
    baseline: Mapping | None
    promoted_epochs: pd.DataFrame | None
    promoted_summary: Mapping | None


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        logger.warning("%s: ignored, cannot read JSON (%s)", path, type(err).__name__)
        return None
    return doc if isinstance(doc, dict) else None


def _read_promoted(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise SpecError(str(path), f"cannot read Parquet ({type(err).__name__})") from None
    missing = [name for name in columns.EPOCH_METRICS if name not in frame.columns and name != "phase"]
    if missing:
        raise SpecError(str(path), f"missing column(s) {', '.join(missing)}")
    return frame


def load_results(results_dir: Path) -> SweepResults:
    """Read ``results_dir``.

    Raises:
        SpecError: the directory or ``epochs.parquet`` is missing or unreadable, ``spec.yaml`` is
            invalid, or ``promoted/epochs.parquet`` is unreadable; the message names the path.
    """
    results_dir = Path(results_dir)
    epochs = read_epochs(results_dir)
    spec_path = results_dir / "spec.yaml"
    objectives = read_objectives(spec_path)  # validates the YAML when the file exists
    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8")) if spec_path.is_file() else None
    return SweepResults(
        name=results_dir.resolve().name, epochs=epochs, trials=trials_table(epochs, objectives),
        objectives=objectives, spec=spec if isinstance(spec, Mapping) else {},
        baseline=_read_json(results_dir / "baseline.json"),
        promoted_epochs=_read_promoted(results_dir / "promoted" / "epochs.parquet"),
        promoted_summary=_read_json(results_dir / "promoted" / "summary.json"))


def baseline_curve(baseline: Mapping | None) -> pd.DataFrame | None:
    """The baseline's per-epoch records (a list of dicts with ``epoch``), or None if it has none."""
    for key in BASELINE_RECORDS:
        records = (baseline or {}).get(key)
        if isinstance(records, list) and records and all(isinstance(r, Mapping) and "epoch" in r
                                                         for r in records):
            return pd.DataFrame(records).sort_values("epoch")
    return None
