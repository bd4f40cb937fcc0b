"""MLflow: one run per study trial in the experiment, found by its tags, through MLflow's client API.

A run is tagged ``ast_tune.sweep`` (the sweep's name) and ``ast_tune.trial`` (the study trial's number) and
named ``<sweep> trial <number>``; it is looked up by those tags before one is made, so a resumed sweep (a
new process) continues it. Its parameters are logged when it is made; each epoch's numbers are logged in
one batch stepped by the epoch, ``epoch`` among them, and an epoch whose step the run's ``epoch`` history
holds already is not logged again. A trial's end sets the run's status (``FINISHED``, or ``FAILED`` for an
error) and the tags ``ast_tune.status`` and ``ast_tune.reason``; the sweep's end tags each run
``on_front`` and ``verdict`` and the experiment ``ast_tune.verdict.<sweep>``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from ast_tune.config.columns import ERROR
from ast_tune.config.tracking_spec import MlflowSpec
from ast_tune.tracking.trackers import SWEEP_TAG, TRIAL_TAG, metrics


class MlflowTracker:
    """The MLflow runs of one sweep's trials (see the module docstring)."""

    knows_history = True

    def __init__(self, spec: MlflowSpec, *, sweep: str) -> None:
        self.client = MlflowClient(tracking_uri=spec.uri or os.environ["MLFLOW_TRACKING_URI"])
        name = spec.experiment or sweep
        found = self.client.get_experiment_by_name(name)
        self.experiment = found.experiment_id if found is not None else self.client.create_experiment(name)
        self.sweep = sweep
        self.runs: dict[str, str] = {}  # study trial → run id
        self.held: dict[str, set[int]] = {}  # study trial → the epochs its run holds

    def _run(self, trial: str, params: Mapping[str, Any] | None = None) -> str:
        """The run of ``trial``: found by its tags, else made (with ``params``)."""
        if trial not in self.runs:
            query = f"tags.`{SWEEP_TAG}` = '{self.sweep}' and tags.`{TRIAL_TAG}` = '{trial}'"
            found = self.client.search_runs([self.experiment], filter_string=query, max_results=1)
            if found:
                run = found[0].info.run_id
            else:
                run = self.client.create_run(self.experiment, run_name=f"{self.sweep} trial {trial}",
                                             tags={SWEEP_TAG: self.sweep, TRIAL_TAG: trial}).info.run_id
                self.client.log_batch(run, params=[Param(k, str(v)) for k, v in (params or {}).items()])
            self.runs[trial] = run
            self.held[trial] = {int(m.step) for m in self.client.get_metric_history(run, "epoch")}
        return self.runs[trial]

    def epoch(self, trial: str, params: Mapping[str, Any], record: Mapping[str, Any]) -> None:
        run = self._run(trial, params)
        epoch = int(record["epoch"])
        if epoch in self.held[trial]:
            return
        now = int(time.time() * 1000)
        self.client.log_batch(run, metrics=[Metric(k, v, now, epoch) for k, v in metrics(record).items()])
        self.held[trial].add(epoch)

    def end(self, trial: str, params: Mapping[str, Any], status: str, reason: str | None) -> None:
        run = self._run(trial, params)
        tags = [RunTag("ast_tune.status", status), *([RunTag("ast_tune.reason", reason)] if reason else [])]
        self.client.log_batch(run, tags=tags)
        self.client.set_terminated(run, status="FAILED" if status == ERROR else "FINISHED")

    def finish(self, outcomes: Mapping[str, tuple[bool, str]], conclusion: str) -> None:
        for trial, (on_front, verdict) in outcomes.items():
            self.client.log_batch(self._run(trial), tags=[RunTag("on_front", str(on_front).lower()),
                                                          RunTag("verdict", verdict)])
        self.client.set_experiment_tag(self.experiment, f"ast_tune.verdict.{self.sweep}", conclusion)

    def close(self) -> None:
        """Nothing to close: each call went through the client."""
