"""The trackers of a sweep (``tracking:``), as one: checked at the edge, opened once, each call passed to all.

One tracker run per study trial, keyed by the sweep's name and the trial's number, so a resumed sweep
continues the same runs. What a sweep logs, through :class:`Trackers`:

- :meth:`Trackers.record`: each entry the sweep's journal gets. An epoch record is logged with the trial's
  parameters (when its run is made), stepped by its epoch; an epoch the run holds already is not logged
  again (MLflow reads the run's metric history; W&B steps only forward). The journal gets only the epochs
  it lacks, so a resumed trial's replayed epochs are not logged twice. An end is the trial's
  (``TERMINATED``, ``STOPPED`` or ``ERROR`` with its reason).
- :meth:`Trackers.sync`: every trial of a journal, for a resumed sweep: what a kill kept from the tracker.
- :meth:`Trackers.finish`: once the tables are written, each trial's ``on_front`` and ``verdict`` and the
  sweep's verdict line.

A tracker that fails (its server gone, say) is named in one warning and the sweep goes on: the journal
and the study stay the record. :func:`check_trackers` is the edge check: a tracker the spec names whose
package is not installed is a one-line error (exit 2) before any compute.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from ast_tune.config.spec import SpecError
from ast_tune.config.sweep_spec import SweepSpec
from ast_tune.config.tracking_spec import TrackingSpec

log = logging.getLogger(__name__)

#: tracker → (the module it needs, the extra that installs it)
PACKAGES = {"mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb")}
#: the tags naming a tracker run's sweep and study trial
SWEEP_TAG, TRIAL_TAG = "ast_tune.sweep", "ast_tune.trial"


def check_trackers(tracking: TrackingSpec) -> None:
    """Raise :class:`SpecError` naming ``tracking.<name>`` for a tracker whose package cannot be imported, and
    for an MLflow store given neither as ``uri`` nor as ``MLFLOW_TRACKING_URI``."""
    for name, (module, extra) in PACKAGES.items():
        if getattr(tracking, name) is None:
            continue
        try:
            importlib.import_module(module)
        except ImportError:
            raise SpecError(f"tracking.{name}", f"{module} is not installed: pip install -e '.[{extra}]', or "
                                                f"remove tracking.{name}") from None
    if tracking.mlflow is not None and tracking.mlflow.uri is None and not os.environ.get("MLFLOW_TRACKING_URI"):
        raise SpecError("tracking.mlflow.uri", "required when MLFLOW_TRACKING_URI is not set, e.g. "
                                               "sqlite:///mlflow.db")


def run_id(sweep: str, trial: str) -> str:
    """A tracker run's id for study trial ``trial`` of ``sweep``: the same on every start of the sweep."""
    slug = re.sub(r"[^A-Za-z0-9_-]", "-", sweep)[:40]
    return f"{slug}-{hashlib.sha256(sweep.encode()).hexdigest()[:8]}-{trial}"


def metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of an epoch record that a tracker can plot: finite ints and floats (not booleans)."""
    return {k: float(v) for k, v in record.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and v == v and abs(v) != float("inf")}


class Tracker(Protocol):
    """One tracker (:mod:`ast_tune.tracking.mlflow_tracker`, :mod:`ast_tune.tracking.wandb_tracker`)."""

    knows_history: bool  # whether it can tell which epochs a run of an earlier attempt holds

    def epoch(self, trial: str, params: Mapping[str, Any], record: Mapping[str, Any]) -> None: ...

    def end(self, trial: str, params: Mapping[str, Any], status: str, reason: str | None) -> None: ...

    def finish(self, outcomes: Mapping[str, tuple[bool, str]], conclusion: str) -> None: ...

    def close(self) -> None: ...


class Trackers:
    """Every tracker of a sweep, each call passed to each; a failing tracker is warned about once and skipped."""

    def __init__(self, trackers: Mapping[str, Tracker]) -> None:
        self.trackers = dict(trackers)

    @classmethod
    def open(cls, spec: SweepSpec, results: Path) -> Trackers:
        """The trackers ``spec.tracking`` names (none: an empty, silent set); W&B's files go under ``results``."""
        check_trackers(spec.tracking)
        opened: dict[str, Tracker] = {}
        if spec.tracking.mlflow is not None:
            from ast_tune.tracking.mlflow_tracker import MlflowTracker

            opened["mlflow"] = MlflowTracker(spec.tracking.mlflow, sweep=spec.name)
        if spec.tracking.wandb is not None:
            from ast_tune.tracking.wandb_tracker import WandbTracker

            opened["wandb"] = WandbTracker(spec.tracking.wandb, sweep=spec.name, directory=results)
        return cls(opened)

    def _each(self, call: Callable[[Tracker], None], what: str, *,
              only: Callable[[Tracker], bool] | None = None) -> None:
        for name, tracker in list(self.trackers.items()):
            if only is not None and not only(tracker):
                continue
            try:
                call(tracker)
            except Exception as err:  # a tracker is a side channel: the journal and the study are the record
                log.warning("tracking: %s failed to log %s (%s: %s); it is left out for the rest of this run",
                            name, what, type(err).__name__, err)
                del self.trackers[name]

    def record(self, entry: Mapping[str, Any]) -> None:
        """Log one journal entry (:mod:`ast_tune.results.journal`) of a study trial: an epoch record (with the
        trial's parameters) or its end (``TERMINATED``, ``STOPPED``, or ``ERROR`` with its reason); a start
        is not logged."""
        self._each(lambda t: _log(t, entry), _what(entry))

    def sync(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Log what a journal's ``entries`` hold that a tracker lacks (a resumed sweep's first call): only the
        trackers that can tell what their runs hold (MLflow; W&B online, from a run's last step)."""
        def replay(tracker: Tracker) -> None:
            for entry in entries:
                _log(tracker, entry)

        self._each(replay, "the journal", only=lambda tracker: tracker.knows_history)

    def finish(self, trials: pd.DataFrame, conclusion: str) -> None:
        """Tag each trial of the trials table with ``on_front`` and its ``verdict``; log the sweep's verdict line."""
        outcomes = {str(row["trial_id"]): (bool(row["on_front"]), str(row["verdict"]))
                    for row in trials.to_dict("records")}
        self._each(lambda t: t.finish(outcomes, conclusion), "the front and the verdict")

    def close(self) -> None:
        """End whatever run is still open (a sweep interrupted mid-trial leaves them to its resume)."""
        self._each(lambda t: t.close(), "its close")


def _log(tracker: Tracker, entry: Mapping[str, Any]) -> None:
    """Hand a journal ``entry`` to ``tracker``: an epoch record, or a trial's end; anything else is not logged."""
    trial, params = str(entry["trial_id"]), entry.get("params", {})
    if entry.get("event") == "epoch":
        tracker.epoch(trial, params, entry)
    elif entry.get("event") == "end":
        tracker.end(trial, params, entry["status"], entry.get("reason"))


def _what(entry: Mapping[str, Any]) -> str:
    """An entry as a warning names it: ``trial 3 epoch 2``, ``the end of trial 3``."""
    if entry.get("event") == "epoch":
        return f"trial {entry['trial_id']} epoch {entry.get('epoch')}"
    return f"the {entry.get('event')} of trial {entry['trial_id']}"
