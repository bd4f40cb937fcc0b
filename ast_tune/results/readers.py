"""A sweep's ``results/<name>`` directory, read once for the report (:mod:`ast_tune.report`).

``epochs.parquet`` is required; everything else is optional and None (or ``{}``) when absent:
``spec.yaml``, ``baseline.json``, ``promoted/epochs.parquet``, ``promoted/summary.json``. A JSON
file that cannot be read (or a ``baseline.json`` that :func:`read_baseline` rejects) is logged and
treated as absent; ranks come from :func:`ast_tune.results.tables.trials_table`. ``baseline.json``
is read by :func:`ast_tune.results.baseline_file.read_baseline`, as the promotion (where a bad file
is an error) and the sweep's baseline cache (where it means timing the baseline again) read it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

from ast_tune.config import columns
from ast_tune.config.criteria import PLAN_CRITERIA, Criteria, criteria_from
from ast_tune.config.spec import SpecError, load_yaml
from ast_tune.results.baseline_file import BASELINE_FILE, load_json, read_baseline
from ast_tune.results.tables import Objective, objectives_from, read_epochs, trials_table

logger = logging.getLogger(__name__)
_LATER_COLUMNS = ("phase", "val_seconds")  # epoch columns that results made by an older version lack

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
    criteria: Criteria = PLAN_CRITERIA  # spec.yaml's success levels and constraints
    promoted_baseline: Mapping | None = None  # promoted/baseline.json: the promoted workload's own (promote.workload)


def _optional(read: Callable[[Path], dict | None], path: Path) -> dict | None:
    """``read(path)``, with a file it rejects logged and treated as absent."""
    try:
        return read(path)
    except SpecError as err:
        logger.warning("%s; ignored", err)
        return None


def _read_json(path: Path) -> dict | None:
    doc = load_json(path)
    return doc if isinstance(doc, dict) else None


def _read_promoted(path: Path) -> pd.DataFrame | None:
    """``promoted/epochs.parquet``; with several seeds (a ``seed`` column) the first seed's run only:
    ``summary.json`` holds every seed's numbers and their mean ± std."""
    if not path.is_file():
        return None
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise SpecError(str(path), f"cannot read Parquet ({type(err).__name__})") from None
    missing = [name for name in columns.EPOCH_METRICS if name not in frame.columns and name not in _LATER_COLUMNS]
    if missing:
        raise SpecError(str(path), f"missing column(s) {', '.join(missing)}")
    if "seed" in frame and len(frame):
        frame = frame[frame["seed"] == frame["seed"].iloc[0]].drop(columns="seed").reset_index(drop=True)
    return frame


def load_results(results_dir: Path) -> SweepResults:
    """Read ``results_dir``.

    Raises:
        SpecError: the directory or ``epochs.parquet`` is missing or unreadable, ``spec.yaml`` is
            not a YAML mapping or names bad objectives, or ``promoted/epochs.parquet`` is unreadable;
            the message names the path.
    """
    results_dir = Path(results_dir)
    epochs = read_epochs(results_dir)
    spec_path = results_dir / "spec.yaml"
    spec = load_yaml(spec_path) if spec_path.exists() else {}
    objectives = objectives_from(spec, source=spec_path)
    criteria = criteria_from(spec, source=str(spec_path))
    baseline = _optional(read_baseline, results_dir / BASELINE_FILE)
    return SweepResults(
        name=results_dir.resolve().name, epochs=epochs,
        trials=trials_table(epochs, objectives, baseline=baseline, criteria=criteria),
        objectives=objectives, spec=spec, baseline=baseline,
        promoted_epochs=_read_promoted(results_dir / "promoted" / "epochs.parquet"),
        promoted_summary=_optional(_read_json, results_dir / "promoted" / "summary.json"), criteria=criteria,
        promoted_baseline=_optional(read_baseline, results_dir / "promoted" / BASELINE_FILE))
