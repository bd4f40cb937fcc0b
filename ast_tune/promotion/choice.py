"""Which sweep trial to promote, and the RunSpec it is promoted with; reads the results, writes nothing.

:func:`choose_trial` applies the spec's ``promote.rule`` to the trials table; :func:`decide_promotion`
reads ``results/<name>/`` (``epochs.parquet``, ``spec.yaml``, ``baseline.json``) and returns the
:class:`Promotion` that :func:`ast_tune.promote.promote` runs. Every bad input is a one-line
:class:`~ast_tune.config.spec.SpecError` naming the file, key or flag.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ast_tune.config import columns
from ast_tune.config.columns import FRONT_STATUSES, may_rank
from ast_tune.config.criteria import PLAN_CRITERIA, Criteria
from ast_tune.config.presets import get_preset
from ast_tune.config.promote_spec import PromoteRule
from ast_tune.config.run_spec import RunSpec
from ast_tune.config.spec import SpecError, to_dict
from ast_tune.config.sweep_spec import SweepSpec, Workload, load_sweep
from ast_tune.results.baseline_file import BASELINE_FILE, read_baseline
from ast_tune.results.tables import eligible, read_epochs, trials_table

PROMOTED = "promoted"  # the promoted run's directory under results/<name>/
PROMOTION_FILE = "promotion.json"  # under promoted/: what a later call must ask for again


class NoCandidateError(RuntimeError):
    """No front trial is close enough to the reference accuracy; ``str(err)`` is one line."""


_ID = "_id_order"


def _by_id(trials: pd.DataFrame) -> pd.DataFrame:
    """``trials`` with a column that orders trial ids: study numbers as numbers ("9" before "10"), other ids
    (results of older versions, keyed by Tune ids) after them, as text."""
    order = [(0, int(i), "") if str(i).isdigit() else (1, 0, str(i)) for i in trials["trial_id"]]
    return trials.assign(**{_ID: pd.Series(order, index=trials.index, dtype=object)})


def choose_trial(trials: pd.DataFrame, *, baseline_top1: float | None, rule: PromoteRule,
                 prefer_mode: str = "max") -> str:
    """The id of the trial to promote (see the module docstring for the rule).

    Args:
        trials: :func:`ast_tune.results.tables.trials_table` rows: ``trial_id``, ``status``, ``on_front``,
            ``val_top1`` (final, %) and the ``rule.prefer`` column.
        baseline_top1: the dense baseline's final top-1 (%); None: the best front trial's.
        rule: ``max_accuracy_drop`` (percentage points) and ``prefer`` (an objective's metric).
        prefer_mode: ``max`` or ``min``, the mode of the ``prefer`` objective.

    Raises:
        NoCandidateError: no finished trial is on the front, or none is within the drop.
    """
    front = trials[eligible(trials) & trials["on_front"].astype(bool)]
    if front.empty:
        raise NoCandidateError("no trial is on the Pareto front; see trials.csv")
    reference = front["val_top1"].max() if baseline_top1 is None else baseline_top1
    close = front[reference - front["val_top1"] <= rule.max_accuracy_drop + 1e-9]
    if close.empty:
        best = _by_id(front).sort_values(["val_top1", _ID], ascending=[False, True]).iloc[0]
        raise NoCandidateError(
            f"no front trial is within {rule.max_accuracy_drop:g} points of the "
            f"{'baseline' if baseline_top1 is not None else 'best trial'}'s top-1 "
            f"{reference:.2f}%; the most accurate, trial {best['trial_id']}, has {best['val_top1']:.2f}%; "
            "pass --trial ID to promote one anyway")
    ranked = _by_id(close).sort_values([rule.prefer, "val_top1", _ID], ascending=[prefer_mode == "min", False, True],
                               na_position="last", kind="stable")
    return str(ranked["trial_id"].iloc[0])


@dataclasses.dataclass(frozen=True)
class Promotion:
    """Everything the promoted run needs, read and checked before anything is written."""

    trial_id: str
    params: dict[str, Any]
    run_spec: RunSpec
    workload: Workload
    baseline: Mapping | None  # baseline.json
    out: Path  # results/<name>/promoted, absolute
    why: str  # one line: which trial and why
    trial_row: Mapping = dataclasses.field(default_factory=dict)  # the trial's trials-table row in the sweep
    full_sweep: SweepSpec | None = None  # promote.workload: the sweep on the promoted workload and epochs
    full_baseline: Mapping | None = None  # its dense baseline (promoted/baseline.json), once timed
    seeds: tuple[int, ...] = (0,)  # the runs' seeds: promote.seeds of them, the trial's own first
    criteria: Criteria = PLAN_CRITERIA  # the sweep's success levels and constraints

    @property
    def run_baseline(self) -> Mapping | None:
        """The dense baseline of this run's workload: ``promoted/baseline.json`` with ``promote.workload``,
        else the sweep's; None if there is none (then speedup is NaN)."""
        return self.full_baseline if self.full_sweep is not None else self.baseline

    def run_name(self, seed: int) -> str:
        """The run's directory (and Train run) name for ``seed``: ``promoted_<trial>``, ``_seed<N>`` after the first."""
        return f"promoted_{self.trial_id}" + ("" if seed == self.seeds[0] else f"_seed{seed}")

    @property
    def baseline_seconds(self) -> float | None:
        """The dense baseline's train seconds per epoch on this run's workload, or None (then speedup is NaN)."""
        return self.run_baseline["epoch_seconds"] if self.run_baseline else None

    def document(self) -> dict[str, Any]:
        """``promotion.json``: what a later call must ask for again to continue this run."""
        seeds = {"seeds": list(self.seeds)} if len(self.seeds) > 1 else {}
        return json.loads(json.dumps({"trial_id": self.trial_id, "params": self.params,
                                      "run_spec": to_dict(self.run_spec), **seeds}))


def decide_promotion(results_dir: Path, *, trial: str | None = None, epochs: int | None = None) -> Promotion:
    """Read ``results_dir`` and decide the run; writes nothing.

    Raises:
        SpecError: a missing or bad input (directory, ``epochs.parquet``, ``spec.yaml``,
            ``baseline.json``, ``--trial``, ``--epochs``, or ``promoted/`` holding another run).
        NoCandidateError: no ``trial`` given and the rule finds none.
    """
    results_dir = Path(results_dir)
    table = read_epochs(results_dir)
    sweep = _load_spec(results_dir / "spec.yaml")
    baseline = read_baseline(results_dir / BASELINE_FILE)
    trials = trials_table(table, [(o.metric, o.mode) for o in sweep.objectives], baseline=baseline,
                          criteria=sweep.criteria)
    trials["trial_id"] = trials["trial_id"].astype(str)
    if trial is None:
        rule, modes = sweep.promote.rule, {o.metric: o.mode for o in sweep.objectives}
        if rule.prefer not in modes:
            raise SpecError(f"{results_dir / 'spec.yaml'}: promote.rule.prefer",
                            f"must be one of the objectives {', '.join(modes)}; got {rule.prefer!r}")
        trial = choose_trial(trials, baseline_top1=baseline["val_top1"] if baseline else None, rule=rule,
                             prefer_mode=modes[rule.prefer])
        why = f"promote.rule: best {rule.prefer} of the front trials within {rule.max_accuracy_drop:g} points " \
              f"of the {'baseline' if baseline else 'best trial'}'s top-1"
    else:
        _check_requested(trials, trial)
        why = "asked for with --trial"
    row = trials[trials["trial_id"] == trial].to_dict("records")[0]
    params = {k.removeprefix(columns.PARAM_PREFIX): v for k, v in row.items() if k.startswith(columns.PARAM_PREFIX)}
    spec, promoted = _promoted_spec(sweep, params, epochs, results_dir / "spec.yaml")
    promotion = Promotion(trial, params, spec, promoted.workload, baseline, (results_dir / PROMOTED).resolve(),
                f"promoting trial {trial} ({why}): top-1 {row['val_top1']:.2f}%, savings "
                f"{100 * row['energy_savings']:.1f}% (counted), {spec.epochs} epochs, a checkpoint every "
                f"{spec.checkpoint_every}", trial_row=row,
                full_sweep=promoted if sweep.promote.workload is not None else None,
                seeds=tuple(range(spec.seed, spec.seed + sweep.promote.seeds)), criteria=sweep.criteria)
    _check_previous(promotion)
    return promotion


def _load_spec(path: Path) -> SweepSpec:
    try:
        return load_sweep(path)
    except SpecError as err:
        raise SpecError(f"{path}: {err.key}" if err.key not in ("", str(path)) else str(path), err.message) from None


def _check_requested(trials: pd.DataFrame, trial: str) -> None:
    known = trials.set_index("trial_id")["status"]
    if trial not in known.index:
        raise SpecError("--trial", f"no trial {trial!r}; the trials are {', '.join(known.index)}")
    if not may_rank(known[trial]):
        raise SpecError("--trial", f"trial {trial} is {known[trial]}; only finished trials "
                                   f"({', '.join(FRONT_STATUSES)}) can be promoted")


def _promoted_spec(sweep: SweepSpec, params: dict[str, Any], epochs: int | None,
                   spec_path: Path) -> tuple[RunSpec, SweepSpec]:
    """The trial's RunSpec on the promoted workload (:meth:`SweepSpec.promoted_sweep`, also returned), run
    for the promotion's epochs with its checkpoint interval."""
    key = "--epochs" if epochs is not None else f"{spec_path}: promote.epochs"
    epochs = epochs if epochs is not None else sweep.promote.epochs or get_preset(sweep.base).epochs
    try:
        promoted = sweep.promoted_sweep(epochs)
        return dataclasses.replace(promoted.trial_spec(params), epochs=epochs,
                                   checkpoint_every=sweep.promote.checkpoint_every), promoted
    except SpecError as err:  # e.g. fewer epochs than the trial's warm-up
        raise SpecError(key, f"the trial's RunSpec with {epochs} epochs is invalid: {err}") from None


def _check_previous(promotion: Promotion) -> None:
    path = promotion.out / PROMOTION_FILE
    old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else promotion.document()
    if old != promotion.document():
        raise SpecError(str(path), f"{promotion.out} holds the promotion of trial {old['trial_id']} "
                                   f"({old['run_spec']['epochs']} epochs); move it away to promote trial "
                                   f"{promotion.trial_id} ({promotion.run_spec.epochs} epochs)")
