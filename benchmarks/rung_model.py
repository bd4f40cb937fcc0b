"""How many trial-epochs the real schedulers let through, against the cost model's expectation.

``python benchmarks/rung_model.py [--sweeps 200] [--journal RESULTS_DIR ...]`` drives the scheduler classes
of :mod:`ast_tune.tuning.search.schedulers` (``ASHA``, ``MultiObjectiveASHA``) with simulated trials and
prints a Markdown table under its command, date and machine (:mod:`machine`), one row per configuration:

- the real scheduler: the mean trial-epochs (± its standard error) over ``--sweeps`` simulated sweeps, at
  three levels of noise. Each trial has a quality (one standard-normal value per objective, independent),
  and every epoch it reports that quality plus fresh normal noise of the given standard deviation; trials run
  ``search.max_concurrent`` at a time, each epoch lasting a random time (log-normal, σ 0.3, per trial), so
  they reach the rungs out of order, as in a sweep;
- the cost model (:func:`ast_tune.cost.rungs.expected_schedule`) and its error against each;
- the uniform-rank arithmetic the model replaces (each newcomer's rank among a rung's records uniformly
  random; MOASHA keeping ``ceil(m/η)`` of ``m``), for comparison.

``--journal`` adds one row per finished sweep: its measured trial-epochs (distinct trial × epoch pairs of
its journal) against the model for its ``spec.yaml`` (``--sweeps 0``: those rows alone).
"""

from __future__ import annotations

import argparse
import heapq
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from machine import Snapshot, command_line

from ast_tune.config.sweep_spec import load_sweep
from ast_tune.cost.estimate import count_trial_epochs, schedule
from ast_tune.cost.rungs import expected_schedule, milestones
from ast_tune.results.journal import JOURNAL, Journal
from ast_tune.tuning.search.schedulers import ASHA, MultiObjectiveASHA

NOISES = (0.1, 0.3, 1.0)  # per-epoch noise, in units of the spread of trial quality
SPEED_SPREAD = 0.3  # σ of the log of a trial's seconds per epoch


@dataclass(frozen=True)
class Config:
    """One scheduler setting: ``trials`` trials, ``concurrent`` at a time, ranked on ``objectives`` objectives."""

    label: str
    kind: str
    trials: int
    concurrent: int
    grace_period: int
    reduction_factor: float
    max_t: int
    objectives: int


CONFIGS = (
    Config("quickstart.yaml", "moasha", 16, 2, 3, 3, 10, 3),
    Config("lr_schedule.yaml", "moasha", 16, 2, 3, 2, 12, 3),
    Config("pi_gains.yaml", "asha", 64, 4, 3, 3, 30, 1),
    Config("asha, 4 rungs", "asha", 32, 4, 1, 2, 16, 1),
    Config("moasha, 2 objectives", "moasha", 32, 4, 1, 3, 27, 2),
    Config("moasha, 64 trials", "moasha", 64, 4, 3, 3, 30, 3),
)


class _Trial:
    def __init__(self, number: int) -> None:
        self.number = number


def simulate(config: Config, *, noise: float, seed: int) -> int:
    """Trial-epochs of one simulated sweep under the real scheduler class."""
    rng = np.random.default_rng(seed)
    names = [f"m{i}" for i in range(config.objectives)]
    rungs = {"grace_period": config.grace_period, "reduction_factor": config.reduction_factor,
             "max_t": config.max_t, "key": lambda trial: trial.number}
    scheduler = (ASHA(metric=names[0], mode="max", **rungs) if config.kind == "asha"
                 else MultiObjectiveASHA(metrics=names, modes=["max"] * len(names), **rungs))
    quality = rng.standard_normal((config.trials, config.objectives))
    seconds = rng.lognormal(0.0, SPEED_SPREAD, config.trials)
    events: list[tuple[float, int, int]] = []  # (time, trial, epoch it ends)
    started = epochs = 0

    def start(now: float) -> None:
        nonlocal started
        if started < config.trials:
            heapq.heappush(events, (now + seconds[started], started, 1))
            started += 1

    for _ in range(config.concurrent):
        start(0.0)
    while events:
        now, trial, epoch = heapq.heappop(events)
        epochs += 1
        reported = quality[trial] + noise * rng.standard_normal(config.objectives)
        result = {"epoch": epoch, **dict(zip(names, reported, strict=True))}
        action = scheduler.on_trial_result(None, _Trial(trial), result)
        if action == "STOP" or epoch >= config.max_t:
            start(now)
        else:
            heapq.heappush(events, (now + seconds[trial], trial, epoch + 1))
    return epochs


def uniform_rank(config: Config) -> float:
    """Trial-epochs when each newcomer's rank among a rung's records is uniformly random."""
    def chance(earlier: int) -> float:
        if config.kind == "asha":
            q = 1 - 1 / config.reduction_factor
            return 1.0 if earlier == 0 else (earlier - q * (earlier - 1)) / (earlier + 1)
        m = earlier + 1
        return 1.0 if m < config.reduction_factor else math.ceil(m / config.reduction_factor) / m

    reached, epochs = float(config.trials), 0.0
    for milestone in milestones(config.kind, grace_period=config.grace_period,
                                reduction_factor=config.reduction_factor, max_t=config.max_t):
        whole = math.floor(reached)
        passed = sum(chance(n) for n in range(whole)) + (reached - whole) * chance(whole)
        epochs += (reached - passed) * math.ceil(milestone)
        reached = passed
    return epochs + reached * config.max_t


def model(config: Config) -> float:
    return expected_schedule(config.kind, trials=config.trials, grace_period=config.grace_period,
                             reduction_factor=config.reduction_factor, max_t=config.max_t,
                             objectives=config.objectives).trial_epochs


def _error(estimate: float, actual: float) -> str:
    return f"{100 * (estimate / actual - 1):+.1f} %"


def config_row(config: Config, sweeps: int) -> str:
    expected = model(config)
    cells = []
    for noise in NOISES:
        runs = np.array([simulate(config, noise=noise, seed=seed) for seed in range(sweeps)])
        mean, error = runs.mean(), runs.std(ddof=1) / math.sqrt(len(runs))
        cells.append(f"{mean:.1f} ± {error:.1f} ({_error(expected, mean)})")
    setting = (f"{config.kind}, {config.trials} trials, {config.concurrent} at once, rungs "
               f"{config.grace_period}·{config.reduction_factor:g}^k < {config.max_t}, {config.objectives} obj.")
    return f"| {config.label} | {setting} | {' | '.join(cells)} | {expected:.1f} | {uniform_rank(config):.1f} |"


def journal_row(results: Path) -> str:
    """A finished sweep's measured trial-epochs against the model for its spec."""
    spec = load_sweep(results / "spec.yaml")
    measured = count_trial_epochs(Journal(results / JOURNAL).read())
    expected = schedule(spec).trial_epochs
    return (f"| {results.name} (a real sweep) | {spec.scheduler.kind}, {spec.search.num_trials} trials | "
            f"{measured} measured | | | {expected:.1f} ({_error(expected, measured)}) | |")


HEADER = ("| configuration | scheduler | real scheduler, noise 0.1 (model's error) | noise 0.3 | noise 1.0 "
          "| model | uniform rank |\n|---|---|---:|---:|---:|---:|---:|")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/rung_model.py", description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=200,
                        help="simulated sweeps per configuration and noise (0: the --journal rows alone)")
    parser.add_argument("--journal", type=Path, nargs="*", default=[], help="finished sweeps' results directories")
    args = parser.parse_args(argv)
    machine = Snapshot.take()
    simulated = [config_row(config, args.sweeps) for config in CONFIGS if args.sweeps]
    rows = simulated + [journal_row(path) for path in args.journal]
    print(f"{machine.header(command_line('benchmarks/rung_model.py', argv))}\n\n{HEADER}\n" + "\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
