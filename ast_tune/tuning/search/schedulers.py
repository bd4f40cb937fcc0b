"""Early stopping in epochs: asynchronous successive halving on several objectives (MOASHA) or on one (ASHA).

Both keep one bracket of rungs at ``grace_period * reduction_factor**k`` epochs below ``max_t``
(:func:`ast_tune.cost.estimate.milestones`, which the cost estimate also reads). When a trial reaches
a rung, its objectives are recorded there and judged against the records already there:

- :class:`MultiObjectiveASHA` ranks the vectors by non-dominated sorting, ties broken by crowding
  distance, and keeps the trial if it is within the top ``ceil(n / reduction_factor)`` of the ``n``
  records (always while ``n < reduction_factor``); modelled on Syne Tune's MOASHA, which keeps a rank
  fraction ``<= 1/η`` and breaks ties with an ε-net instead;
- :class:`ASHA` keeps the trial if its metric is at least the ``(1 − 1/η)`` percentile (linear
  interpolation) of the earlier records, as Ray's ``AsyncHyperBandScheduler`` does with one bracket.

A trial reporting a NaN/inf objective is stopped and not recorded; a result lacking an objective is
ignored; a trial is stopped at ``max_t``. The rung records are keyed by the trial's id across Tune
runs (a sweep's: its study number) and rebuilt, when the scheduler is built, from the journal's epoch
records (``history``) as if they were reported live: so a sweep resumed as a new Tune run judges its
trials against every earlier record. A trial reporting again at a rung it is recorded at (a resumed
trial replaying its checkpoint, or going on to its next rung) is judged again on its record against
the records that came before it: it gets the decision it got then, so a trial stopped before a kill
is stopped again, and one that passed is never stopped there later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from ast_tune.config.sweep_spec import SCHEDULER_KINDS, SweepSpec
from ast_tune.cost.estimate import milestones
from ast_tune.cost.rungs import moasha_passes
from ast_tune.results.pareto import objective_signs

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

logger = logging.getLogger(__name__)

TIME_ATTR = "epoch"  # progress is counted in epochs: Tune's training_iteration restarts with each Tune run


def _tune_trial_id(trial: Trial) -> str:
    return trial.trial_id


class MultiObjectiveASHA(FIFOScheduler):
    """Asynchronous successive halving that ranks trials on several objectives at once (see the module doc).

    Args:
        metrics: Names of the objectives in the results.
        modes: ``"min"`` or ``"max"`` per metric.
        grace_period: First rung, in epochs.
        reduction_factor: η; about 1/η of the trials pass each rung.
        max_t: Trials are stopped at this epoch.
        key: A trial's id in the rung records; Tune's trial id by default (a sweep's: its study number).
        history: ``(id, result)`` pairs recorded in order before any live result, e.g. the journal's epochs.
    """

    kind = "moasha"  # the rungs of :func:`ast_tune.cost.estimate.milestones`

    def __init__(self, *, metrics: Sequence[str], modes: Sequence[str], grace_period: float = 1,
                 reduction_factor: float = 3, max_t: float = 100, key: Callable[[Trial], str] = _tune_trial_id,
                 history: Iterable[tuple[str, dict[str, Any]]] = ()) -> None:
        objective_signs(modes)
        if not metrics or len(metrics) != len(modes):
            raise ValueError(f"metrics: must be one name per mode {list(modes)}; got {list(metrics)}")
        if not 0 < grace_period <= max_t or reduction_factor <= 1:
            raise ValueError("grace_period, reduction_factor, max_t: need 0 < grace_period <= max_t "
                             f"and reduction_factor > 1; got {grace_period}, {reduction_factor}, {max_t}")
        super().__init__()
        self.metrics, self.modes, self.key = list(metrics), list(modes), key
        self.reduction_factor, self.max_t = reduction_factor, max_t
        rungs = milestones(self.kind, grace_period=grace_period, reduction_factor=reduction_factor, max_t=max_t)
        self.rungs: list[tuple[float, dict[str, list[float]]]] = [(m, {}) for m in sorted(rungs, reverse=True)]
        self.num_stopped = 0
        for trial_id, result in history:
            self._judge(trial_id, result)

    def passes(self, earlier: list[list[float]], vector: list[float]) -> bool:
        """Whether ``vector`` continues at a rung that holds the ``earlier`` records."""
        return moasha_passes([*earlier, vector], self.modes, self.reduction_factor)

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Refuse a ``TuneConfig`` metric/mode: the objectives are set here."""
        return metric is None and mode is None

    def on_trial_result(self, tune_controller: TuneController | None, trial: Trial, result: dict[str, Any]) -> str:
        action = self._judge(self.key(trial), result)
        if action == TrialScheduler.STOP:
            self.num_stopped += 1
        return action

    def on_trial_complete(self, tune_controller: TuneController | None, trial: Trial,
                          result: dict[str, Any]) -> None:
        self._judge(self.key(trial), result)

    def debug_string(self) -> str:
        rungs = " | ".join(f"{milestone:g}: {len(records)}" for milestone, records in reversed(self.rungs))
        return f"Using {type(self).__name__}: num_stopped={self.num_stopped}; records per rung {rungs}"

    def _judge(self, trial_id: str, result: dict[str, Any]) -> str:
        """Record ``result`` at the highest rung it reached (once per trial) and decide against the earlier records."""
        if TIME_ATTR not in result or any(metric not in result for metric in self.metrics):
            return TrialScheduler.CONTINUE
        vector = np.asarray([result[metric] for metric in self.metrics], dtype=float).tolist()
        if not np.isfinite(vector).all():
            logger.warning("Stopping trial %s: non-finite objectives %s", trial_id,
                           dict(zip(self.metrics, vector, strict=True)))
            return TrialScheduler.STOP
        if result[TIME_ATTR] >= self.max_t:
            return TrialScheduler.STOP
        for milestone, records in self.rungs:
            if result[TIME_ATTR] < milestone:
                continue
            ids = list(records)
            if trial_id in records:  # judged here before: again, on what it was judged on then
                ids, vector = ids[:ids.index(trial_id)], records[trial_id]
            keep = self.passes([records[i] for i in ids], vector)
            records.setdefault(trial_id, vector)
            return TrialScheduler.CONTINUE if keep else TrialScheduler.STOP
        return TrialScheduler.CONTINUE


class ASHA(MultiObjectiveASHA):
    """Asynchronous successive halving on one metric, with the rule of Ray's ``AsyncHyperBandScheduler``.

    Args:
        metric: The metric its rungs rank trials on.
        mode: ``"min"`` or ``"max"``.
        **kwargs: As :class:`MultiObjectiveASHA` (``grace_period``, ``reduction_factor``, ``max_t``,
            ``key``, ``history``).
    """

    kind = "asha"

    def __init__(self, *, metric: str, mode: str, **kwargs: Any) -> None:
        super().__init__(metrics=[metric], modes=[mode], **kwargs)

    def passes(self, earlier: list[list[float]], vector: list[float]) -> bool:
        """At least the ``(1 − 1/η)`` percentile of the earlier records (always, at an empty rung)."""
        if not earlier:
            return True
        sign = 1.0 if self.modes[0] == "max" else -1.0
        cutoff = np.nanpercentile([sign * v[0] for v in earlier], (1 - 1 / self.reduction_factor) * 100)
        return bool(sign * vector[0] >= cutoff)


def make_scheduler(spec: SweepSpec, *, key: Callable[[Trial], str] = _tune_trial_id,
                   history: Iterable[tuple[str, dict[str, Any]]] = ()) -> TrialScheduler:
    """The scheduler ``spec.scheduler`` names, on the spec's objectives, in epochs up to ``workload.epochs``.

    Args:
        spec: the sweep.
        key: a trial's id in the rung records (a sweep's: its study number).
        history: ``(id, epoch record)`` pairs in journal order, recorded before any live result.

    Raises:
        ValueError: the kind is unknown, or its settings do not make rungs.
    """
    scheduler = spec.scheduler
    rungs = {"grace_period": scheduler.grace_period, "reduction_factor": scheduler.reduction_factor,
             "max_t": spec.workload.epochs, "key": key, "history": history}
    if scheduler.kind == "fifo":
        return FIFOScheduler()
    if scheduler.kind == "asha":
        return ASHA(metric=scheduler.metric, mode=spec.scheduler_mode, **rungs)
    if scheduler.kind == "moasha":
        return MultiObjectiveASHA(metrics=[o.metric for o in spec.rung_objectives],
                                  modes=[o.mode for o in spec.rung_objectives], **rungs)
    raise ValueError(f"scheduler.kind: must be one of {', '.join(SCHEDULER_KINDS)}; got {scheduler.kind!r}")
