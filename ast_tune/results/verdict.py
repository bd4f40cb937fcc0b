"""The plan's question, per trial: time-to-accuracy, tracking error and the success level it meets.

Pure functions on epoch tables (pandas) and ``baseline.json``'s mapping; no torch, no Ray.
A run's *rows* are its epochs in order, one row per epoch (``epoch``, ``val_top1`` in %,
``train_seconds``, ``energy_savings`` as a fraction, ``phase``, ``activation_rate`` and
``target_activation`` as fractions), as :func:`ast_tune.results.tables.trials_table` keeps them.

- :func:`time_to_target`: train seconds until the end of the first epoch whose top-1 reaches the
  target (epochs are evaluated at their end, so this is when the run *knew*); NaN if it never does.
- ``speedup_to_target``: the baseline's own time to the target over the trial's (MEASURED,
  time-to-accuracy as in MLPerf / DAWNBench); NaN ("not reached") when either never gets there.
- :func:`tracking_error`: mean and max |activation − target| over the AST epochs, in points.
- :func:`verdict`: the highest level of :class:`~ast_tune.config.criteria.SuccessSpec` the trial
  meets. A level's speedup is the time-to-accuracy speedup to *that level's* accuracy bar (baseline
  final top-1 − the level's drop): "reached top-1 within 2 points, 2× sooner than the baseline did".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from ast_tune.config import columns
from ast_tune.config.criteria import LEVELS, NO_LEVEL, VERDICTS, Criteria, Level

#: Slack on every comparison (points, fractions, ×): a bound met to rounding is met.
TOLERANCE = 1e-9
#: The verdict's columns in the front's Markdown, after the per-epoch ones.
MD_COLUMNS = columns.shown("speedup_to_target", "time_to_target_s", "tracking_error_mean", "tracking_error_max",
                           "verdict")
#: What a missing value means in those columns when there is a target.
MISSING = {"speedup_to_target": "not reached", "time_to_target_s": "not reached"}


def epoch_rows(epochs: pd.DataFrame) -> pd.DataFrame:
    """The rows with ``epoch >= 1`` in epoch order; a re-reported epoch (after a restore) keeps its last row."""
    rows = epochs[epochs["epoch"] >= 1].sort_values("epoch", kind="stable")
    return rows.drop_duplicates(["trial_id", "epoch"], keep="last")


def target_top1(baseline: Mapping | None, criteria: Criteria) -> float | None:
    """The time-to-accuracy target (%): ``success.target_top1``, else the baseline's final top-1 −
    ``max_accuracy_drop``; None without either."""
    if criteria.success.target_top1 is not None:
        return criteria.success.target_top1
    return None if baseline is None else float(baseline["val_top1"]) - criteria.max_accuracy_drop


def baseline_epochs(baseline: Mapping | None) -> pd.DataFrame | None:
    """``baseline.json``'s per-epoch records (``epochs``) in epoch order, or None if it has none."""
    records = (baseline or {}).get("epochs")
    if not isinstance(records, list) or not records:
        return None
    return pd.DataFrame(records).sort_values("epoch", kind="stable").reset_index(drop=True)


def time_to_target(rows: pd.DataFrame, target: float | None) -> float:
    """Train seconds (s) up to the end of the first epoch of ``rows`` with ``val_top1 >= target``; NaN if none."""
    if rows is None or target is None or rows.empty:
        return math.nan
    reached = rows["val_top1"].to_numpy(dtype=float) >= target - TOLERANCE
    if not reached.any():
        return math.nan
    return float(rows["train_seconds"].to_numpy(dtype=float)[: int(np.argmax(reached)) + 1].sum())


def speedup_to(rows: pd.DataFrame, baseline_rows: pd.DataFrame | None, target: float | None) -> float:
    """The baseline's time to ``target`` over ``rows``' time to it (×); NaN if either never reaches it."""
    trial = time_to_target(rows, target)
    base = time_to_target(baseline_rows, target)
    return base / trial if trial > 0 and math.isfinite(base) else math.nan


def tracking_error(rows: pd.DataFrame) -> tuple[float, float]:
    """Mean and max |activation_rate − target_activation| over the ``phase == "ast"`` rows, in points.

    NaN for a run with no AST epoch, or rows without ``phase`` / ``target_activation`` (older tables).
    """
    if not {"phase", "target_activation"} <= set(rows.columns):
        return math.nan, math.nan
    ast = rows[rows["phase"] == "ast"]
    gap = 100 * (ast["activation_rate"].astype(float) - ast["target_activation"].astype(float)).abs()
    return (float(gap.mean()), float(gap.max())) if gap.notna().any() else (math.nan, math.nan)


def meets(level: Level, *, top1_drop: float, savings: float, speedup: float) -> bool:
    """Whether a run ``top1_drop`` points below the baseline, at ``savings`` and ``speedup``, meets ``level``."""
    return bool(top1_drop <= level.max_accuracy_drop + TOLERANCE and savings >= level.min_savings - TOLERANCE
                and speedup >= level.min_speedup - TOLERANCE)


def level_speedups(rows: pd.DataFrame, baseline_rows: pd.DataFrame | None, baseline_top1: float | None,
                   criteria: Criteria) -> dict[str, float]:
    """``{level: speedup to baseline_top1 − that level's drop}`` (×; NaN without a baseline)."""
    return {name: speedup_to(rows, baseline_rows, None if baseline_top1 is None
                             else baseline_top1 - level.max_accuracy_drop)
            for name, level in criteria.success.levels()}


def verdict(top1_drop: float, savings: float, speedups: Mapping[str, float], criteria: Criteria) -> str:
    """The highest level met (``stretch`` / ``publication`` / ``minimum``), else ``none``."""
    for name, level in criteria.success.levels():
        if meets(level, top1_drop=top1_drop, savings=savings, speedup=speedups[name]):
            return name
    return NO_LEVEL


def outcome(rows: pd.DataFrame, baseline: Mapping | None, criteria: Criteria) -> dict[str, object]:
    """One run's ``top1_drop`` (points), ``time_to_target_s``, ``speedup_to_target`` (×),
    ``tracking_error_mean`` / ``_max`` (points) and ``verdict``; ``rows`` has at least one epoch."""
    base_top1 = None if baseline is None else float(baseline["val_top1"])
    base_rows = baseline_epochs(baseline)
    target = target_top1(baseline, criteria)
    drop = math.nan if base_top1 is None else base_top1 - float(rows["val_top1"].iloc[-1])
    mean_error, max_error = tracking_error(rows)
    speedups = level_speedups(rows, base_rows, base_top1, criteria)
    return {"top1_drop": drop, "time_to_target_s": time_to_target(rows, target),
            "speedup_to_target": speedup_to(rows, base_rows, target), "tracking_error_mean": mean_error,
            "tracking_error_max": max_error,
            "verdict": verdict(drop, float(rows["energy_savings"].mean()), speedups, criteria)}


def outcomes(rows: pd.DataFrame, baseline: Mapping | None, criteria: Criteria) -> pd.DataFrame:
    """:func:`outcome` per ``trial_id`` of ``rows`` (one row per trial × epoch, in epoch order), indexed by it."""
    if rows.empty:
        return pd.DataFrame(columns=[*columns.OUTCOME_METRICS, "verdict"], dtype=float)
    return pd.DataFrame.from_dict({trial_id: outcome(group, baseline, criteria)
                                   for trial_id, group in rows.groupby("trial_id", sort=False)}, orient="index")


def feasible(trials: pd.DataFrame, criteria: Criteria) -> np.ndarray:
    """Whether each row of ``trials`` meets every one of ``criteria.constraints`` (a NaN value breaks one)."""
    ok = np.ones(len(trials), dtype=bool)
    for constraint in criteria.constraints:
        ok &= np.array([constraint.violation(v) <= 0 for v in trials[constraint.metric].astype(float)], dtype=bool)
    return ok


def target_caption(target: float | None) -> str:
    """The sentence that says what "target" and "verdict" mean in a table's caption (``target`` in %)."""
    where = f"{target:.2f}% top-1" if target is not None else "the target (no baseline: not measured)"
    return (f"Speedup to target: the dense baseline's train time to {where} / the trial's (time-to-accuracy); "
            "verdict: the highest of the plan's levels (stretch, publication, minimum) the trial meets.")


def common_level(verdicts: Iterable[str]) -> str:
    """The highest level every one of ``verdicts`` meets (e.g. over the seeds of a run); ``none`` if empty."""
    ranks = [VERDICTS.index(v) for v in verdicts]
    return VERDICTS[max(ranks)] if ranks else NO_LEVEL


def misses(level: Level, *, top1_drop: float, savings: float, speedup: float) -> list[str]:
    """What keeps a run from ``level``, one phrase per bound it misses (empty if it meets it)."""
    out = []
    if not top1_drop <= level.max_accuracy_drop + TOLERANCE:
        out.append(f"top-1 {top1_drop:.2f} points below the baseline (allowed {level.max_accuracy_drop:g})")
    if not savings >= level.min_savings - TOLERANCE:
        out.append(f"savings {100 * savings:.1f}% counted (needs {100 * level.min_savings:g}%)")
    if not speedup >= level.min_speedup - TOLERANCE:
        reached = f"{speedup:.2f}x" if math.isfinite(speedup) else "not reached"
        out.append(f"speedup to its accuracy {reached} (needs {level.min_speedup:g}x)")
    return out


def shortfall(level: Level, *, top1_drop: float, savings: float, speedup: float) -> float:
    """How far a run is from ``level``: the sum over its bounds of the miss relative to the bound (0 = meets)."""
    def gap(miss: float, scale: float) -> float:
        return 1.0 if math.isnan(miss) else max(0.0, miss) / max(scale, TOLERANCE)
    return (gap(top1_drop - level.max_accuracy_drop, max(level.max_accuracy_drop, 1.0))
            + gap(level.min_savings - savings, level.min_savings) + gap(level.min_speedup - speedup, level.min_speedup))



def best(trials: pd.DataFrame) -> tuple[str, pd.Series, int] | None:
    """The highest level any of ``trials`` reaches, its most accurate trial there (ties: the larger savings,
    then the smaller id) and how many reach it; None when none reaches the lowest level.

    Args:
        trials: the trials to judge (finished and feasible), with ``verdict``, ``val_top1``, ``energy_savings``.
    """
    for name in LEVELS:
        at = trials[trials["verdict"] == name]
        if not at.empty:
            order = at.sort_values(["val_top1", "energy_savings", "trial_id"], ascending=[False, False, True])
            return name, order.iloc[0], len(at)
    return None


def conclusion(trials: pd.DataFrame, rows: pd.DataFrame, baseline: Mapping | None, criteria: Criteria) -> str:
    """One line: the most accurate trial at the highest level reached, or how closely Minimum was missed.

    Args:
        trials: the trials to judge (finished and feasible): ``trial_id``, ``verdict``, ``val_top1`` (%),
            ``top1_drop`` (points), ``energy_savings`` (fraction), ``speedup_to_target`` (×).
        rows: their epochs, one row per trial × epoch in epoch order.
        baseline: ``baseline.json``'s mapping, or None.
        criteria: the levels and the target.
    """
    if baseline is None:
        return "verdict: no dense baseline was timed (storage.baseline: none), so no trial is judged"
    if trials.empty:
        return "verdict: no finished, feasible trial to judge"
    base_top1 = float(baseline["val_top1"])
    found = best(trials)
    if found is not None:
        name, top, reaching = found
        speedup = level_speedups(rows[rows["trial_id"] == top["trial_id"]], baseline_epochs(baseline), base_top1,
                                 criteria)[name]
        bar = base_top1 - getattr(criteria.success, name).max_accuracy_drop
        return (f"verdict: {reaching} trial(s) reach {name}{'' if name == LEVELS[0] else ' (none higher)'}; "
                f"the most accurate, trial {top['trial_id']}: top-1 {top['val_top1']:.2f}% "
                f"({top['top1_drop']:.2f} points below the baseline's {base_top1:.2f}%), savings "
                f"{100 * top['energy_savings']:.1f}% (counted), {speedup:.2f}x sooner to {bar:.2f}% (measured)")
    level = criteria.success.minimum
    scored = []
    for row in trials.to_dict("records"):
        speedup = level_speedups(rows[rows["trial_id"] == row["trial_id"]], baseline_epochs(baseline), base_top1,
                                 criteria)["minimum"]
        args = {"top1_drop": row["top1_drop"], "savings": row["energy_savings"], "speedup": speedup}
        scored.append((shortfall(level, **args), str(row["trial_id"]), misses(level, **args)))
    _, trial_id, missed = min(scored)
    return (f"verdict: no trial reaches minimum (top-1 within {level.max_accuracy_drop:g} points of the baseline's "
            f"{base_top1:.2f}%, savings >= {100 * level.min_savings:g}% counted, >= {level.min_speedup:g}x sooner "
            f"to {base_top1 - level.max_accuracy_drop:.2f}%); the closest, trial {trial_id}, misses: "
            + "; ".join(missed))
