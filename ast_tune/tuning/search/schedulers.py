"""Ray Tune schedulers: multi-objective ASHA, and ASHA whose rungs survive ``Tuner.restore``.

Ray does not restore a scheduler's state when an experiment is restored (ray-project/ray
#30838), so a resumed ASHA would judge its first trials against empty rungs. Both schedulers
here write their rung records to a JSON ``state_file`` whenever a record is added, and read it
back when they are built *and when they are unpickled*: ``Tuner`` pickles the scheduler into
``tuner.pkl`` when it is created (rungs still empty) and ``Tuner.restore`` unpickles that copy
without calling ``__init__``. :func:`make_scheduler` builds the one a spec names.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from ast_tune.atomic import write_text
from ast_tune.config.columns import MODES
from ast_tune.config.sweep_spec import SCHEDULER_KINDS, SweepSpec
from ast_tune.results.pareto import crowding_distance, objective_signs, pareto_ranks

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

logger = logging.getLogger(__name__)

# One bracket is a list of rungs, each (milestone, {trial_id: record}), as in Ray's _Bracket._rungs.
_Rungs = list[tuple[float, dict[str, Any]]]


class _RungStateFile:
    """Saves rung records to JSON atomically and loads them back; a no-op when ``path`` is None."""

    def __init__(self, path: str | Path | None, *, scheduler: str) -> None:
        self.path = Path(path) if path is not None else None
        self.scheduler = scheduler
        self._saved_records = 0

    def load_into(self, brackets: list[_Rungs]) -> None:
        """Fill the (empty) rungs of ``brackets`` from the file, if it exists."""
        if self.path is None or not self.path.exists():
            return
        try:
            state = json.loads(self.path.read_text())
            saved = [[(milestone, records) for milestone, records in rungs] for rungs in state["brackets"]]
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"state_file {self.path}: not a rung state file ({err})") from err
        if state.get("scheduler") != self.scheduler or _milestones(saved) != _milestones(brackets):
            raise ValueError(
                f"state_file {self.path}: holds {state.get('scheduler')} rungs {_milestones(saved)}, "
                f"this {self.scheduler} has rungs {_milestones(brackets)}; use the same scheduler, "
                "grace_period, reduction_factor and max_t, or delete the file")
        for rungs, saved_rungs in zip(brackets, saved, strict=True):
            for (_, records), (_, saved_records) in zip(rungs, saved_rungs, strict=True):
                records.update(saved_records)
        self._saved_records = _count_records(brackets)

    def save_if_grown(self, brackets: list[_Rungs]) -> None:
        """Write ``brackets`` atomically if records were added since the last write."""
        count = _count_records(brackets)
        if self.path is None or count == self._saved_records:
            return
        write_text(self.path, json.dumps({"scheduler": self.scheduler, "brackets": brackets}))
        self._saved_records = count


class _ReloadsRungs:
    """Mixin: after unpickling, the rungs are filled again from the state file (see the module doc)."""

    _state: _RungStateFile

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._state.load_into(self._rung_lists())

    def _rung_lists(self) -> list[_Rungs]:
        raise NotImplementedError


def _milestones(brackets: list[_Rungs]) -> list[list[float]]:
    return [[milestone for milestone, _ in rungs] for rungs in brackets]


def _count_records(brackets: list[_Rungs]) -> int:
    return sum(len(records) for rungs in brackets for _, records in rungs)


def _survives(vectors: list[list[float]], modes: Sequence[str], reduction_factor: float) -> bool:
    """Whether the last of a rung's objective vectors is within the rung's top ``ceil(n/η)``.

    Vectors are ordered by Pareto rank, then by crowding distance within the rank (larger is
    better); ties favour the newcomer. With fewer than η vectors there is nothing to cut yet.
    """
    n = len(vectors)
    if n < reduction_factor:
        return True
    values = np.array(vectors, dtype=float)
    ranks = pareto_ranks(values, modes)
    same_front = ranks == ranks[-1]
    crowding = np.zeros(n)
    crowding[same_front] = crowding_distance(values[same_front])
    better = (ranks < ranks[-1]) | (same_front & (crowding > crowding[-1]))
    return int(better.sum()) < math.ceil(n / reduction_factor)


class MultiObjectiveASHA(_ReloadsRungs, FIFOScheduler):
    """Asynchronous successive halving that ranks trials on several objectives at once.

    When a trial reaches a rung (``grace_period * reduction_factor**k`` of ``time_attr``), its
    objective vector is recorded there and ranked against all vectors recorded at that rung by
    non-dominated sorting, ties broken by crowding distance; it continues only if it is within
    the top ``ceil(n / reduction_factor)`` of the ``n`` records (always, while
    ``n < reduction_factor``). Modelled on Syne Tune's MOASHA, which keeps a rank fraction
    ``<= 1/η`` and breaks ties with an ε-net instead. Trials reporting a NaN/inf objective are
    stopped and not recorded; results lacking a metric are ignored.

    Args:
        time_attr: Monotonic progress key in the results; ``"epoch"`` because
            ``training_iteration`` restarts after a restore.
        metrics: Names of the objectives in the results.
        modes: ``"min"`` or ``"max"`` per metric.
        grace_period: First rung, in units of ``time_attr``.
        reduction_factor: η; about 1/η of the trials pass each rung.
        max_t: Trials are stopped at this ``time_attr``.
        state_file: JSON file the rung records are saved to and restored from; None keeps
            them in memory only.
    """

    def __init__(self, *, time_attr: str = "epoch", metrics: Sequence[str], modes: Sequence[str],
                 grace_period: float = 1, reduction_factor: float = 3, max_t: float = 100,
                 state_file: str | Path | None = None) -> None:
        objective_signs(modes)
        if not metrics or len(metrics) != len(modes):
            raise ValueError(f"metrics: must be one name per mode {list(modes)}; got {list(metrics)}")
        if not 0 < grace_period <= max_t or reduction_factor <= 1:
            raise ValueError("grace_period, reduction_factor, max_t: need 0 < grace_period <= max_t "
                             f"and reduction_factor > 1; got {grace_period}, {reduction_factor}, {max_t}")
        super().__init__()
        self._time_attr, self._max_t, self._rf = time_attr, max_t, reduction_factor
        self._metrics, self._modes = list(metrics), list(modes)
        milestones = [grace_period * reduction_factor**k
                      for k in range(int(math.log(max_t / grace_period, reduction_factor) + 1e-9) + 1)]
        self._rungs: _Rungs = [(milestone, {}) for milestone in reversed(milestones)]
        self._state = _RungStateFile(state_file, scheduler=type(self).__name__)
        self._state.load_into(self._rung_lists())
        self._num_stopped = 0

    def _rung_lists(self) -> list[_Rungs]:
        return [self._rungs]

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Refuse a single ``TuneConfig`` metric/mode: the objectives are set here."""
        return metric is None and mode is None

    def on_trial_result(self, tune_controller: TuneController | None, trial: Trial,
                        result: dict[str, Any]) -> str:
        vector = self._objectives(result)
        if vector is None:
            return TrialScheduler.CONTINUE
        if not np.isfinite(vector).all():
            logger.warning("Stopping trial %s: non-finite objectives %s", trial.trial_id,
                           dict(zip(self._metrics, vector, strict=True)))
            action = TrialScheduler.STOP
        elif result[self._time_attr] >= self._max_t:
            action = TrialScheduler.STOP
        else:
            action = self._record(trial.trial_id, result[self._time_attr], vector)
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
        return action

    def on_trial_complete(self, tune_controller: TuneController | None, trial: Trial,
                          result: dict[str, Any]) -> None:
        vector = self._objectives(result)
        if vector is not None and np.isfinite(vector).all():
            self._record(trial.trial_id, result[self._time_attr], vector)

    def debug_string(self) -> str:
        rungs = " | ".join(f"{milestone:g}: {len(records)}" for milestone, records in reversed(self._rungs))
        return f"Using MultiObjectiveASHA: num_stopped={self._num_stopped}; records per rung {rungs}"

    def _objectives(self, result: dict[str, Any]) -> list[float] | None:
        if self._time_attr not in result or any(metric not in result for metric in self._metrics):
            return None
        return np.asarray([result[metric] for metric in self._metrics], dtype=float).tolist()

    def _record(self, trial_id: str, progress: float, vector: list[float]) -> str:
        """Record ``vector`` at the highest rung reached and not yet recorded; decide there."""
        for milestone, records in self._rungs:
            if progress < milestone or trial_id in records:
                continue
            keep = _survives([*records.values(), vector], self._modes, self._rf)
            records[trial_id] = vector
            self._state.save_if_grown(self._rung_lists())
            return TrialScheduler.CONTINUE if keep else TrialScheduler.STOP
        return TrialScheduler.CONTINUE


class PersistentASHA(_ReloadsRungs, AsyncHyperBandScheduler):
    """Ray's ``AsyncHyperBandScheduler`` whose rung records are kept in ``state_file``.

    Args:
        state_file: JSON file the rung records are saved to and restored from; None keeps
            them in memory only.
        **asha_kwargs: Passed to ``AsyncHyperBandScheduler`` (time_attr, metric, mode, max_t,
            grace_period, reduction_factor, brackets, stop_last_trials).
    """

    def __init__(self, *, state_file: str | Path | None = None, **asha_kwargs: Any) -> None:
        super().__init__(**asha_kwargs)
        self._state = _RungStateFile(state_file, scheduler=type(self).__name__)
        self._state.load_into(self._rung_lists())

    def on_trial_add(self, tune_controller: TuneController | None, trial: Trial) -> None:
        super().on_trial_add(tune_controller, trial)
        for bracket in self._brackets:  # a restored trial goes back to the bracket that knows it
            if any(trial.trial_id in records for _, records in bracket._rungs):
                self._trial_info[trial.trial_id] = bracket

    def on_trial_result(self, tune_controller: TuneController | None, trial: Trial,
                        result: dict[str, Any]) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        self._state.save_if_grown(self._rung_lists())
        return action

    def on_trial_complete(self, tune_controller: TuneController | None, trial: Trial,
                          result: dict[str, Any]) -> None:
        super().on_trial_complete(tune_controller, trial, result)
        self._state.save_if_grown(self._rung_lists())

    def _rung_lists(self) -> list[_Rungs]:
        return [bracket._rungs for bracket in self._brackets]


def make_scheduler(spec: SweepSpec) -> TrialScheduler:
    """The scheduler ``spec.scheduler`` names, on the spec's objectives and epochs."""
    return _make_scheduler(spec.scheduler.kind, metric=spec.scheduler.metric, mode=spec.scheduler_mode,
                           metrics=[o.metric for o in spec.rung_objectives],
                           modes=[o.mode for o in spec.rung_objectives],
                           grace_period=spec.scheduler.grace_period, reduction_factor=spec.scheduler.reduction_factor,
                           max_t=spec.workload.epochs)


def _make_scheduler(kind: str, *, metric: str | None = None, mode: str | None = None,
                   metrics: Sequence[str] = (), modes: Sequence[str] = (), grace_period: float = 1,
                   reduction_factor: float = 3, max_t: float = 100,
                   state_file: str | Path | None = None) -> TrialScheduler:
    """Build the scheduler a spec names; every kind measures progress in ``"epoch"``.

    Args:
        kind: ``"fifo"`` (no early stopping), ``"asha"`` (one objective: ``metric``/``mode``)
            or ``"moasha"`` (all objectives: ``metrics``/``modes``).
        metric: The objective ASHA stops on.
        mode: ``"min"`` or ``"max"`` for ``metric``.
        metrics: The objectives MOASHA ranks.
        modes: ``"min"`` or ``"max"`` per entry of ``metrics``.
        grace_period: First rung, in epochs.
        reduction_factor: η; about 1/η of the trials pass each rung.
        max_t: Trials are stopped at this epoch.
        state_file: JSON file for the rung records (ASHA and MOASHA).

    Raises:
        ValueError: ``kind`` is unknown, or ASHA lacks ``metric``/``mode``.
    """
    if kind == "fifo":
        return FIFOScheduler()
    if kind == "asha":
        if metric is None or mode not in MODES:
            raise ValueError(f"scheduler.metric, scheduler.mode: kind 'asha' needs a metric and a mode "
                             f"of min, max; got {metric!r}, {mode!r}")
        return PersistentASHA(time_attr="epoch", metric=metric, mode=mode, grace_period=grace_period,
                              reduction_factor=reduction_factor, max_t=max_t, state_file=state_file)
    if kind == "moasha":
        return MultiObjectiveASHA(metrics=metrics, modes=modes, grace_period=grace_period,
                                  reduction_factor=reduction_factor, max_t=max_t, state_file=state_file)
    raise ValueError(f"scheduler.kind: must be one of {', '.join(SCHEDULER_KINDS)}; got {kind!r}")
