"""The promoted run over its seeds (``promote.seeds``): each seed's numbers, their mean ± std, the common verdict.

Pure functions on epoch tables (pandas); no torch, no Ray. A seed's numbers come from
:func:`ast_tune.results.tables.trials_table`, so they are computed as the sweep's trials' are:
final top-1 (%), counted savings (a fraction), measured speedups (×), time to target (s), tracking
error (points) and the verdict of that seed's run. The promoted configuration's verdict is the level that
every seed meets (:func:`ast_tune.results.verdict.common_level`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from ast_tune.config import columns
from ast_tune.config.criteria import NO_LEVEL, Criteria
from ast_tune.results import verdict
from ast_tune.results.progress import number
from ast_tune.results.tables import trials_table

#: Per-run numbers ``summary.json`` gives for each seed, and their mean and std over the seeds.
SEED_METRICS = ("val_top1", "energy_savings", "speedup", "speedup_to_target", "time_to_target_s",
                "tracking_error_mean", "tracking_error_max")


def seed_numbers(runs: Mapping[int, pd.DataFrame], baseline: Mapping | None,
                 criteria: Criteria) -> dict[int, dict[str, Any]]:
    """``{seed: SEED_METRICS, verdict, epochs_done, train_seconds}`` of each seed's epochs (in order)."""
    frames = [rows.assign(trial_id=str(seed), status=columns.TERMINATED) for seed, rows in runs.items() if len(rows)]
    if not frames:
        return {}
    table = trials_table(pd.concat(frames, ignore_index=True), [("val_top1", "max")], baseline=baseline,
                         criteria=criteria)
    return {int(row["trial_id"]): {**{key: row[key] for key in SEED_METRICS}, "verdict": row["verdict"],
                                   "epochs_done": int(row["epochs_done"]), "train_seconds": row["train_seconds"]}
            for row in table.to_dict("records")}


def over_seeds(numbers: Mapping[int, Mapping[str, Any]], *, failed: bool) -> dict[str, Any]:
    """``mean`` and ``std`` (ddof 1; empty for one seed) of :data:`SEED_METRICS`, ``seeds`` and the
    ``verdict`` every seed meets (``none`` if a seed failed)."""
    values = pd.DataFrame(list(numbers.values()), columns=list(SEED_METRICS), dtype=float)
    return {"seeds": {str(seed): dict(n) for seed, n in numbers.items()},
            "mean": values.mean().to_dict(), "std": values.std(ddof=1).to_dict() if len(values) > 1 else {},
            "verdict": NO_LEVEL if failed or not numbers else verdict.common_level(
                n["verdict"] for n in numbers.values())}


def summary_line(trial_id: str, summary: Mapping[str, Any]) -> str:
    """The promotion's last line: top-1, savings, speedups (mean ± std over the seeds) and the common verdict."""
    mean, std, count = summary["mean"], summary["std"], len(summary["seeds"])

    def show(key: str, fmt: str, scale: float = 1, unit: str = "") -> str:
        value, spread = number(mean[key], fmt, scale=scale), number(std.get(key), fmt, scale=scale)
        if value == "n/a":
            return verdict.MISSING.get(key, value)
        return f"{value}{'' if spread == 'n/a' else f' ± {spread}'}{unit}"

    over = f" (mean ± std over {count} seeds)" if count > 1 else ""
    return (f"promoted trial {trial_id}{over}: top1 {show('val_top1', '.2f', unit='%')}, savings "
            f"{show('energy_savings', '.1f', 100, '%')} (counted), speedup {show('speedup', '.2f', unit='x')}, "
            f"to target {show('speedup_to_target', '.2f', unit='x')} (measured); verdict "
            f"{summary['verdict']}{' (every seed)' if count > 1 else ''}")
