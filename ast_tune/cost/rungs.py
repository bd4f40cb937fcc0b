"""The rungs of the early-stopping schedulers and the trial-epochs they let through, expected before a sweep runs.

:func:`milestones` lays the rungs out (the schedulers of :mod:`ast_tune.tuning.search.schedulers` build theirs
with it); :func:`asha_passes` and :func:`moasha_passes` are their rules (a trial continues at a rung or is
stopped there); :func:`expected_schedule` is what the cost estimate and the status line expect of them.

**The rules.** ASHA continues a trial whose metric is at least the ``(1 − 1/η)`` percentile (linear
interpolation) of the records already at the rung, as Ray's ``AsyncHyperBandScheduler`` does with one
bracket. MOASHA orders the rung's objective vectors by Pareto rank, then by crowding distance within the
rank (larger first), and keeps the newcomer if fewer than ``ceil(n / η)`` of the ``n`` records are strictly
ahead of it (always while ``n < η``): ties favour it. With three objectives, the extremes of each front all
have infinite crowding, so a newcomer that is an extreme passes more often than ``ceil(n/η)/n``.

**The expectation** is a Monte Carlo run of those rules on simulated trials, with a fixed seed so the same
spec gives the same numbers: each trial has a quality drawn at random (one normal value per objective, the
objectives independent), which persists across its rungs: at each rung it reports that quality plus a fresh
normal noise of :data:`RUNG_NOISE` (a good trial stays good, as a real one mostly does). Trials arrive in
order, one at a time; ``benchmarks/rung_model.py`` checks the result against the real scheduler classes run
on asynchronous simulated trials (docs/benchmarks.md, "Rung model"). A trial stopped at a rung ran
``ceil(milestone)`` epochs; one that passes every rung runs ``max_t``; ``fifo`` runs every trial to ``max_t``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import numpy as np

from ast_tune.results.pareto import crowding_distance, pareto_ranks

#: Per-rung noise of a simulated trial's reported objectives, in units of the spread of trial quality
#: (fitted against the schedulers on simulated trials: docs/benchmarks.md, "Rung model").
RUNG_NOISE = 0.3
#: Judgements the Monte Carlo makes at most (sweeps simulated × trials × rungs), so a large sweep stays quick.
_JUDGEMENTS = 60_000
_SEED = 20_261_203


def milestones(kind: str, *, grace_period: float, reduction_factor: float, max_t: float) -> list[float]:
    """The rungs below ``max_t`` of scheduler ``kind``, in epochs (``asha``'s laid out as Ray's
    ``AsyncHyperBandScheduler`` lays out one bracket); a rung at or past ``max_t`` stops no one."""
    if kind == "fifo":
        return []
    if kind == "asha":
        count = int(np.log(max_t / grace_period) / np.log(reduction_factor) + 1)
    else:
        count = int(math.log(max_t / grace_period, reduction_factor) + 1e-9) + 1
    return [grace_period * reduction_factor**k for k in range(count) if grace_period * reduction_factor**k < max_t]


def asha_passes(earlier: Sequence[float], value: float, reduction_factor: float, *, mode: str = "max") -> bool:
    """ASHA's rule: ``value`` is at least the ``(1 − 1/η)`` percentile of the ``earlier`` records (always at an
    empty rung); ``mode`` ``"min"`` flips the values."""
    if len(earlier) == 0:
        return True
    sign = 1.0 if mode == "max" else -1.0
    cutoff = np.nanpercentile([sign * v for v in earlier], (1 - 1 / reduction_factor) * 100)
    return bool(sign * value >= cutoff)


def moasha_passes(vectors: Sequence[Sequence[float]], modes: Sequence[str], reduction_factor: float) -> bool:
    """MOASHA's rule: whether the last of a rung's objective vectors is within the rung's top ``ceil(n/η)``,
    by Pareto rank, then crowding distance within the rank; ties favour it; fewer than η vectors all pass."""
    n = len(vectors)
    if n < reduction_factor:
        return True
    values = np.asarray(vectors, dtype=float)
    ranks = pareto_ranks(values, modes)
    same_front = ranks == ranks[-1]
    crowding = np.zeros(n)
    crowding[same_front] = crowding_distance(values[same_front])
    better = (ranks < ranks[-1]) | (same_front & (crowding > crowding[-1]))
    return int(better.sum()) < math.ceil(n / reduction_factor)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """What a scheduler is expected to let through; counts are expectations (fractional).

    ``per_trial[i]`` is the expected epochs of the ``i``-th trial to start (later ones meet fuller rungs).
    """

    milestones: tuple[float, ...]  # epochs
    reached: tuple[float, ...]  # trials expected to reach each rung
    stopped: tuple[float, ...]  # of those, expected to be stopped there
    per_trial: tuple[float, ...]  # epochs
    max_t: int

    @property
    def trial_epochs(self) -> float:
        """Expected epochs of all the trials."""
        return float(sum(self.per_trial))

    def remaining(self, epoch: int) -> float:
        """Expected epochs still to run for a trial that has run ``epoch`` epochs and was not stopped:
        to each later rung, weighted by the chance of getting past the rungs between."""
        left, position, chance = 0.0, float(epoch), 1.0
        for milestone, reached, stopped in zip(self.milestones, self.reached, self.stopped, strict=True):
            at = math.ceil(milestone)
            if at <= epoch:
                continue
            left += chance * (at - position)
            position = at
            chance *= 1 - stopped / reached if reached else 0.0
        return left + chance * max(0.0, self.max_t - position)


def _judge(kind: str, reported: np.ndarray, reduction_factor: float) -> np.ndarray:
    """Which of the trials arriving at a rung in this order (rows: their objectives, to maximise) pass it."""
    modes = ["max"] * reported.shape[1]
    if kind == "asha":
        column = reported[:, 0]
        return np.array([asha_passes(column[:i], column[i], reduction_factor) for i in range(len(column))])
    return np.array([moasha_passes(reported[:i + 1], modes, reduction_factor) for i in range(len(reported))])


@functools.lru_cache(maxsize=64)
def expected_schedule(kind: str, *, trials: int, grace_period: float, reduction_factor: float, max_t: int,
                      objectives: int = 1) -> Schedule:
    """The expected rungs and trial-epochs of ``trials`` trials under scheduler ``kind`` (module docstring).

    Args:
        kind: ``fifo``, ``asha`` or ``moasha``.
        trials: trials in the sweep.
        grace_period: the first rung, in epochs.
        reduction_factor: η.
        max_t: a trial's full length, in epochs.
        objectives: the objectives MOASHA ranks on (ASHA ranks on one).
    """
    rungs = milestones(kind, grace_period=grace_period, reduction_factor=reduction_factor, max_t=max_t)
    if not rungs:
        return Schedule((), (), (), (float(max_t),) * trials, max_t)
    width = 1 if kind == "asha" else objectives
    sweeps = max(20, min(400, _JUDGEMENTS // (trials * len(rungs))))
    rng = np.random.default_rng(_SEED)
    epochs = np.zeros(trials)
    reached, stopped = np.zeros(len(rungs)), np.zeros(len(rungs))
    for _ in range(sweeps):
        quality = rng.standard_normal((trials, width))
        alive, ran = np.arange(trials), np.full(trials, float(max_t))
        for r, milestone in enumerate(rungs):
            reported = quality[alive] + RUNG_NOISE * rng.standard_normal((len(alive), width))
            passed = _judge(kind, reported, reduction_factor)
            ran[alive[~passed]] = math.ceil(milestone)
            reached[r] += len(alive)
            stopped[r] += int((~passed).sum())
            alive = alive[passed]
        epochs += ran
    return Schedule(tuple(rungs), tuple(reached / sweeps), tuple(stopped / sweeps), tuple(epochs / sweeps), max_t)
