"""Weights & Biases: one run per study trial, its id made from the sweep's name and the trial's number.

A trial's run is opened (``resume="allow"``: a resumed sweep continues it) with the trial's parameters as
its config, grouped by the sweep and named ``trial <number>``; each epoch's numbers are logged stepped by
the epoch, and W&B steps only forward, so an epoch at or below the run's last step (from an earlier
attempt, read from the run's summary when online) is not logged again. A trial's end writes its status to
the run's summary and finishes it; the sweep's end opens each trial's run again to write ``on_front`` and
``verdict`` to its summary (a front trial's run is also tagged ``on_front``), and the sweep's verdict line to
the front's runs. ``mode: offline`` writes the runs under ``results/<name>/wandb/`` for ``wandb sync``; each
opening of a run there is a directory of its own, which ``wandb sync`` merges by the run's id. W&B writes a
run's records from a service process, so :meth:`WandbTracker.close` waits for it (``wandb.teardown``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import wandb

from ast_tune.config.columns import ERROR
from ast_tune.config.tracking_spec import WandbSpec
from ast_tune.tracking.trackers import metrics, run_id


class WandbTracker:
    """The W&B runs of one sweep's trials (see the module docstring)."""

    def __init__(self, spec: WandbSpec, *, sweep: str, directory: Path) -> None:
        self.spec, self.sweep, self.directory = spec, sweep, Path(directory)
        self.knows_history = spec.mode == "online"
        self.runs: dict[str, Any] = {}  # study trial → its open run
        self.last: dict[str, int] = {}  # study trial → the last epoch its run holds

    def _run(self, trial: str, params: Mapping[str, Any] | None = None) -> Any:
        if trial not in self.runs:
            self.directory.mkdir(parents=True, exist_ok=True)
            run = wandb.init(project=self.spec.project, id=run_id(self.sweep, trial), name=f"trial {trial}",
                             group=self.sweep, job_type="trial", config=dict(params or {}), resume="allow",
                             mode=self.spec.mode, dir=str(self.directory), reinit="create_new",
                             settings=wandb.Settings(silent=True, console="off"))
            self.runs[trial] = run
            self.last[trial] = max(self.last.get(trial, 0), int(run.summary.get("epoch", 0) or 0))
        return self.runs[trial]

    def epoch(self, trial: str, params: Mapping[str, Any], record: Mapping[str, Any]) -> None:
        run = self._run(trial, params)
        epoch = int(record["epoch"])
        if epoch <= self.last[trial]:
            return
        run.log(metrics(record), step=epoch)
        self.last[trial] = epoch

    def end(self, trial: str, params: Mapping[str, Any], status: str, reason: str | None) -> None:
        run = self._run(trial, params)
        run.summary.update({"status": status, **({"reason": reason} if reason else {})})
        run.finish(exit_code=1 if status == ERROR else 0)
        del self.runs[trial]

    def finish(self, outcomes: Mapping[str, tuple[bool, str]], conclusion: str) -> None:
        for trial, (on_front, verdict) in outcomes.items():
            run = self._run(trial)
            run.summary.update({"on_front": on_front, "verdict": verdict,
                                **({"sweep_verdict": conclusion} if on_front else {})})
            if on_front:
                run.tags = (*run.tags, "on_front")
            run.finish()
            del self.runs[trial]

    def close(self) -> None:
        """Finish the runs still open and wait until W&B has written (or sent) everything: its files are
        written by a service process after a run finishes."""
        for trial in list(self.runs):
            self.runs.pop(trial).finish()
        wandb.teardown()
