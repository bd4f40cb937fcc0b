"""The sweep's Optuna study (``optuna.db``): its sampler and space, what it is told, and what a start finds in it.

The study and the journal are the sweep's record. A study trial's *number* is the trial's id
everywhere (journal, tables, directories). The study is told a trial's end from the journal, right
after the journal has recorded it (:func:`tell`): its objectives (a per-epoch metric: the last
epoch's value; a whole-run outcome such as the time to the target top-1: the trial's row of
:func:`ast_tune.results.tables.trials_table`; NaN: the worst value, so the trial stays ``COMPLETE``),
the violation of each ``constraints:`` entry (``Trial.set_constraint``, which TPE, NSGA-II and GP
read), or ``FAIL`` for an errored trial. A driver killed between the two leaves a ``RUNNING`` study
trial whose end the journal holds; :func:`reconcile` finishes that tell when the sweep starts again,
tells ``FAIL`` to a trial killed while Optuna stored its parameters (*abandoned*: it never ran, and
it does not count against ``search.num_trials``), and returns the others to be resumed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ast_tune.config import columns
from ast_tune.config.spec import SpecError
from ast_tune.config.sweep_space import Param
from ast_tune.config.sweep_spec import SweepSpec
from ast_tune.results.journal import epochs_frame
from ast_tune.results.tables import trials_table
from ast_tune.tuning import private_api
from ast_tune.tuning.search.schedulers import make_scheduler

log = logging.getLogger(__name__)

STUDY_FILE = "optuna.db"
_BROKEN = 1e9  # the violation given for a constraint on a value that is NaN (never reached, not measured)


def distributions(spec: SweepSpec) -> dict[str, optuna.distributions.BaseDistribution]:
    """The space as Optuna distributions, by parameter name (what ``study.ask`` is given)."""
    return {param.name: _distribution(param) for param in spec.space}


def _distribution(param: Param) -> optuna.distributions.BaseDistribution:
    low, high = param.values[0], param.values[-1]
    if param.kind in ("uniform", "loguniform"):
        return optuna.distributions.FloatDistribution(low, high, log=param.kind == "loguniform")
    if param.kind == "int":
        return optuna.distributions.IntDistribution(low, high)
    return optuna.distributions.CategoricalDistribution(param.values)  # choice; fixed = one option


def sampler(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    """The spec's ``search.sampler``, seeded with ``search.seed``."""
    search = spec.search
    if search.sampler == "nsga2":  # a population of a quarter of the budget, 4..50
        population = min(50, max(4, search.num_trials // 4))
        return optuna.samplers.NSGAIISampler(seed=search.seed, population_size=population)
    if search.sampler == "tpe":  # random for the first quarter of the budget (Optuna's default: 10 trials)
        return optuna.samplers.TPESampler(seed=search.seed, n_startup_trials=max(4, search.num_trials // 4))
    samplers = {"random": optuna.samplers.RandomSampler, "gp": optuna.samplers.GPSampler}
    return samplers[search.sampler](seed=search.seed)


def check_search(spec: SweepSpec) -> None:
    """Build the sampler, the space's distributions and the scheduler once, before anything is timed.

    Raises:
        SpecError: one of them refuses the spec (key ``search``, ``space`` or ``scheduler``).
    """
    for key, build in (("search", lambda: sampler(spec)), ("scheduler", lambda: make_scheduler(spec)),
                       ("space", lambda: distributions(spec))):
        try:
            build()
        except (ValueError, TypeError, OverflowError) as err:
            raise SpecError(key, str(err)) from None


def open_study(spec: SweepSpec, results: Path) -> optuna.Study:
    """The sweep's study in ``results/optuna.db`` (named after the sweep), created on the first start."""
    directions = ["maximize" if o.mode == "max" else "minimize" for o in spec.objectives]
    return optuna.create_study(study_name=spec.name, storage=f"sqlite:///{results / STUDY_FILE}",
                               sampler=sampler(spec), directions=directions, load_if_exists=True)


def counted(study: optuna.Study, space: Mapping[str, Any]) -> int:
    """The study's trials that count against ``search.num_trials``: all but the abandoned ones.

    An abandoned trial lacks some of the space's parameters: Optuna stores a new trial's parameters
    one by one, and the driver was killed in between; it never ran.
    """
    return sum(1 for trial in study.get_trials(deepcopy=False) if trial.params.keys() == space.keys())


def tell(study: optuna.Study, number: int, entries: Sequence[dict[str, Any]], *, spec: SweepSpec,
         baseline: Mapping | None, trial: optuna.trial.Trial | None = None) -> None:
    """Tell study trial ``number`` its end, from its journal ``entries`` (which hold the end).

    Args:
        study: the sweep's study.
        number: the study trial's number (its ``trial_id`` in the journal).
        entries: the journal's entries of that trial.
        spec: the sweep (objectives, constraints, success criteria).
        baseline: ``baseline.json`` (the outcome metrics need it), or None.
        trial: the trial as ``study.ask`` returned it, if this driver asked it (else it is looked up).
    """
    end = [e for e in entries if e["event"] == "end"][-1]
    if end["status"] == columns.ERROR:
        study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        return
    epochs = [e for e in entries if e["event"] == "epoch"]
    last = max(epochs, key=lambda e: e["epoch"]) if epochs else {}
    row = trials_table(epochs_frame(entries), [("val_top1", "max")], baseline=baseline,
                       criteria=spec.criteria).iloc[0].to_dict()
    values = [_told(row[o.metric] if o.metric in columns.OUTCOME_METRICS else last.get(o.metric), o.mode)
              for o in spec.objectives]
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    missing = [c for c in spec.constraints if c.describe() not in frozen.constraints]  # set before a kill: kept
    if missing and frozen.state == TrialState.RUNNING:
        trial = trial or private_api.trial_by_number(study, number)
        for constraint in missing:  # named e.g. "top1_drop <= 5"
            trial.set_constraint(constraint.describe(), min(constraint.violation(row[constraint.metric]), _BROKEN))
    study.tell(number, values, skip_if_finished=True)


def _told(value: float | None, mode: str) -> float:
    """What Optuna is told for an objective: its value, or the worst one when it is NaN (e.g. never reached)."""
    if value is None or math.isnan(value):
        return -math.inf if mode == "max" else math.inf
    return float(value)


def reconcile(study: optuna.Study, entries: Sequence[dict[str, Any]], *, spec: SweepSpec,
              baseline: Mapping | None) -> list[FrozenTrial]:
    """Close what a killed driver left open in the study; the trials to resume, by number.

    Each ``RUNNING`` study trial is told its end if the journal holds one (the driver was killed
    between the two), told ``FAIL`` if it lacks some of the space's parameters (abandoned while it
    was asked), and otherwise returned: it resumes under its own number and parameters.
    ``COMPLETE`` and ``FAIL`` trials are done and never run again.
    """
    by_trial: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_trial.setdefault(entry["trial_id"], []).append(entry)
    space, resume = distributions(spec), []
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        own = by_trial.get(str(frozen.number), [])
        if any(e["event"] == "end" for e in own):
            tell(study, frozen.number, own, spec=spec, baseline=baseline)
        elif frozen.params.keys() != space.keys():
            log.warning("resume: study trial %d lost parameters to a kill while it was asked; it never ran and "
                        "is told FAIL (it does not count against search.num_trials)", frozen.number)
            study.tell(frozen.number, state=TrialState.FAIL)
        else:
            resume.append(frozen)
    return resume
