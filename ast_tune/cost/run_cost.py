"""A sweep's cost in ``run.json``: the estimate before launch (``estimate``) and the actuals after (``actual``).

:func:`sweep_estimate` prices the spec from ``--probe`` or the spec's ``cost:`` figures
(:mod:`ast_tune.cost.estimate`, :mod:`ast_tune.cost.epoch_cost`); :func:`print_estimate` is
``--dry-run``'s table; :func:`record_actuals` writes the measured trial-epochs, wall time and GPU-hours.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ast_tune import atomic
from ast_tune.config.spec import SpecError
from ast_tune.config.sweep_spec import SweepSpec, Workload
from ast_tune.cost.epoch_cost import epoch_costs, probe
from ast_tune.cost.estimate import actuals, count_trial_epochs, estimate_lines, promoted_epochs
from ast_tune.cost.estimate import estimate as estimate_cost
from ast_tune.data.sources import check_root
from ast_tune.results.journal import Journal


def sweep_estimate(spec: SweepSpec, probe_steps: int | None) -> dict[str, Any]:
    """The cost estimate (:mod:`ast_tune.cost.estimate`), or ``{"unavailable": why}`` without figures."""
    if probe_steps is not None:
        check_root(spec.workload.data)
        print(f"probe: timing {probe_steps} training steps of one worker here", flush=True)
    try:
        return estimate_cost(spec, epoch_costs(spec, probe(spec, steps=probe_steps) if probe_steps else None))
    except SpecError as err:
        if probe_steps is not None:
            raise
        return {"unavailable": str(err)}


def print_estimate(spec: SweepSpec, probe_steps: int | None) -> None:
    """``--dry-run``: the sweep's (proxy) workload, the promoted one, and the cost table."""
    print(f"sweep workload: {spec.workload.describe()}")
    if spec.promote.enabled:
        source = "promote.workload" if spec.promote.workload else "the sweep's workload"
        print(f"promoted workload ({source}): {spec.promoted_sweep(promoted_epochs(spec)).workload.describe()}")
    result = sweep_estimate(spec, probe_steps)
    if "unavailable" in result:
        print(f"cost estimate: unavailable: {result['unavailable']}")
        return
    print("\n".join(estimate_lines(result)))


def record_actuals(results: Path, attempt: dict[str, Any], journal: Journal, workload: Workload,
                    trials_at_once: int) -> None:
    """``run.json``'s ``actual`` beside its ``estimate``: trial-epochs (of every attempt, from the journal),
    wall time since ``attempt`` started (promotion included) and GPU-hours over that time."""
    start = datetime.fromisoformat(attempt["start"])
    wall = (datetime.now(UTC) - start).total_seconds()
    stored = json.loads((results / "run.json").read_text())
    stored["actual"] = actuals(trial_epochs=count_trial_epochs(journal.read()), wall_seconds=wall,
                               workload=workload, trials_at_once=trials_at_once)
    atomic.write_text(results / "run.json", json.dumps(stored, indent=2) + "\n")
