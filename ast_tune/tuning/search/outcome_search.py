"""Optuna search told each trial's whole-run outcome: trial-level objectives and the spec's constraints.

Some metrics exist only once a trial's epochs are in (``columns.OUTCOME_METRICS``: time to the
target top-1, speedup to it, tracking error, top-1 drop), and so do the ``constraints:`` on them.
When a trial ends, :class:`OutcomeSearch` rebuilds its row of the trials table from the sweep's
journal (the same :func:`ast_tune.results.tables.trials_table` the tables use), tells Optuna the
objectives from it, and sets each constraint's violation (> 0: broken) with
``optuna.trial.Trial.set_constraint``. TPE, NSGA-II and GP read those values as they read a
``constraints_func``'s (which Optuna 5 deprecates for ``set_constraint``), so they steer away
from infeasible settings.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from ast_tune.config import columns
from ast_tune.config.sweep_spec import SweepSpec
from ast_tune.results.baseline_file import BASELINE_FILE, read_baseline
from ast_tune.results.journal import JOURNAL, Journal, epochs_frame
from ast_tune.results.tables import trials_table

_BROKEN = 1e9  # the violation given for a constraint on a value that is NaN (never reached, not measured)


class OutcomeSearch(OptunaSearch):
    """``OptunaSearch`` whose completed trials carry their outcome metrics and constraint violations."""

    def __init__(self, *args: Any, sweep: SweepSpec, results: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sweep, self._results = sweep, str(results)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result and not error and "epoch" in result and trial_id in self._ot_trials:
            row = self._outcome(trial_id, result)
            modes = {o.metric: o.mode for o in self._sweep.objectives}
            result = {**result, **{m: _told(row[m], modes[m]) for m in columns.OUTCOME_METRICS if m in modes}}
            for constraint in self._sweep.constraints:  # named e.g. "top1_drop <= 5"
                violation = min(constraint.violation(row[constraint.metric]), _BROKEN)
                self._ot_trials[trial_id].set_constraint(constraint.describe(), violation)
        super().on_trial_complete(trial_id, result=result, error=error)

    def _outcome(self, trial_id: str, result: dict) -> dict[str, Any]:
        """The trial's trials-table row from its journal entries and this last ``result``."""
        results = Path(self._results)
        entries = [e for e in Journal(results / "tune" / JOURNAL).read()
                   if e["trial_id"] == trial_id and e["event"] == "epoch"]
        entries.append({"event": "epoch", "trial_id": trial_id, **{k: result.get(k) for k in columns.EPOCH_METRICS}})
        frame = epochs_frame(entries)
        table = trials_table(frame, [("val_top1", "max")], baseline=read_baseline(results / BASELINE_FILE),
                             criteria=self._sweep.criteria)
        return table.iloc[0].to_dict()


def _told(value: float, mode: str) -> float:
    """What Optuna is told for an outcome: its value, or the worst one when it is NaN (e.g. never reached)."""
    if value is None or math.isnan(value):
        return -math.inf if mode == "max" else math.inf
    return float(value)
