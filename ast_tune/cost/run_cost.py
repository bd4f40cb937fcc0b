"""A sweep's cost in ``run.json``: three estimates (at the start, at half the expected trial-epochs) and the actual.

:func:`sweep_estimate` prices the spec from ``--probe``'s timing, else the spec's ``cost:`` figures, else the
dense baseline the sweep has timed (:mod:`ast_tune.cost.estimate`, :mod:`ast_tune.cost.epoch_cost`,
:mod:`ast_tune.cost.overheads`); :func:`print_estimate` is ``--dry-run``'s table. :func:`half_estimate` is
the projection made once half the expected trial-epochs are done (:mod:`ast_tune.cost.reestimate`), and
:func:`record_actuals` writes the actual, measured, at the end.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ast_tune import atomic
from ast_tune.config.spec import SpecError
from ast_tune.config.sweep_spec import SweepSpec, Workload
from ast_tune.cost.epoch_cost import Probe, epoch_costs, from_baseline, probe
from ast_tune.cost.estimate import actuals, count_trial_epochs, duration, estimate_lines, promoted_epochs, usd
from ast_tune.cost.estimate import estimate as estimate_cost
from ast_tune.cost.overheads import overheads
from ast_tune.cost.reestimate import Projection
from ast_tune.data.sources import check_root
from ast_tune.results.journal import Journal

#: ``run.json``'s keys for the three estimates, in the order they are made
START, HALF, ACTUAL = "estimate", "estimate_at_half", "actual"


def measure(spec: SweepSpec, probe_steps: int) -> Probe:
    """``--probe``: time ``probe_steps`` training steps (and the loader alone) of one worker here."""
    check_root(spec.workload.data)
    print(f"probe: timing {probe_steps} training steps and the loader of one worker here", flush=True)
    return probe(spec, steps=probe_steps)


def sweep_estimate(spec: SweepSpec, probe_steps: int | None = None, *, probed: Probe | None = None,
                   baseline: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The cost estimate (:func:`ast_tune.cost.estimate.estimate`), or ``{"unavailable": why}``.

    Args:
        spec: the sweep.
        probe_steps: ``--probe``'s steps, timed now; None: none (or ``probed`` already).
        probed: a probe's measurements already made.
        baseline: ``baseline.json``'s mapping, the dense baseline this sweep timed: the figures when
            neither the probe nor ``cost:`` gives them.
    """
    if probe_steps is not None and probed is None:
        probed = measure(spec, probe_steps)
    fixed = overheads(spec.cost, spec.workload, checkpoint=probed.checkpoint if probed else None)
    try:
        return estimate_cost(spec, epoch_costs(spec, probed.per_image if probed else None), fixed)
    except SpecError as err:
        if probed is not None or baseline is None or err.key != "cost":
            if probed is not None:
                raise
            return {"unavailable": str(err)}
    return estimate_cost(spec, epoch_costs(spec, from_baseline(spec, baseline)), fixed)


def print_estimate(spec: SweepSpec, probe_steps: int | None) -> None:
    """``--dry-run``: the sweep's (proxy) workload, the promoted one, and the cost table."""
    print(f"sweep workload: {spec.workload.describe()}")
    if spec.promote.enabled:
        source = "promote.workload" if spec.promote.workload else "the sweep's workload"
        print(f"promoted workload ({source}): {spec.promoted_sweep(promoted_epochs(spec)).workload.describe()}")
    result = sweep_estimate(spec, probe_steps)
    if "unavailable" in result:
        print(f"cost estimate: unavailable before the sweep times its dense baseline: {result['unavailable']}")
        return
    print("\n".join(estimate_lines(result)))


def half_estimate(run: Mapping[str, Any], projection: Projection) -> dict[str, Any] | None:
    """``run.json``'s ``estimate_at_half``: the one stored, else ``projection``'s totals once half the
    trial-epochs the start's estimate expected are done, else None (not due yet, or no start estimate).

    Args:
        run: ``run.json``'s mapping as it is now (this attempt's).
        projection: the sweep's projection now (:func:`ast_tune.cost.reestimate.reestimate`).
    """
    if run.get(HALF) is not None:
        return dict(run[HALF])
    start = run.get(START)
    expected = start.get("trial_epochs") if isinstance(start, Mapping) else None
    if expected is None or projection.epochs_done < expected / 2:
        return None
    return projection.totals()


def record_actuals(results: Path, attempt: dict[str, Any], journal: Journal, workload: Workload,
                   trials_at_once: int, *, usd_per_gpu_hour: float | None = None) -> None:
    """``run.json``'s ``actual`` beside its ``estimate``: trial-epochs (of every attempt, from the journal),
    wall time since ``attempt`` started (promotion included) and the device-hours ``workload``'s trials held,
    priced at ``usd_per_gpu_hour``."""
    start = datetime.fromisoformat(attempt["start"])
    wall = (datetime.now(UTC) - start).total_seconds()
    stored = json.loads((results / "run.json").read_text())
    stored[ACTUAL] = actuals(workload, trial_epochs=count_trial_epochs(journal.read()), wall_seconds=wall,
                             trials_at_once=trials_at_once, usd_per_gpu_hour=usd_per_gpu_hour)
    atomic.write_text(results / "run.json", json.dumps(stored, indent=2) + "\n")


def cost_line(run: Mapping[str, Any]) -> str:
    """``run.json``'s three estimates beside each other, as the sweep's last line prints them: ``cost:
    estimated 107.5 trial-epochs, 3.6 min, 0.12 CPU-h, from the dense baseline · at half 110.2 trial-epochs,
    3.4 min, 0.11 CPU-h · actual 108 trial-epochs, 3.3 min, 0.11 CPU-h``."""
    def said(figures: Mapping[str, Any]) -> str:
        wall = figures.get("wall_seconds")
        price = f" ({usd(figures['usd'])})" if figures.get("usd") is not None else ""
        epochs = figures["trial_epochs"]
        return (f"{epochs:.0f}" if float(epochs).is_integer() else f"{epochs:.1f}") + (
            f" trial-epochs, {'n/a' if wall is None else duration(wall)}, "
            f"{figures.get('device_hours') or 0:.2f} {figures.get('device', 'GPU')}-h{price}")

    start, half, actual = run.get(START), run.get(HALF), run.get(ACTUAL)
    parts = [f"estimated {said(start)}, from {start.get('source', 'the spec')}" if isinstance(start, Mapping)
             and "trial_epochs" in start else "no estimate at the start"]
    if isinstance(half, Mapping):
        parts.append(f"at half {said(half)}")
    if isinstance(actual, Mapping):
        parts.append(f"actual {said(actual)}")
    return "cost: " + " · ".join(parts)
