"""The fixed costs a sweep pays beside its epochs' training and validation, for the cost estimate.

- ``ray_start``: once per driver run, from its start (``run.json``'s) to its first trial, less the dense
  baseline: Ray's first worker processes, Tune's start, the first trial's process;
- ``baseline_startup``: the dense baseline's Ray Train run, less its epochs: the ``TorchTrainer``'s
  controller and workers, their imports and data, Train's reporting;
- ``trial_startup``: a trial's start until its first epoch begins, plus the hand-over of its slot to the
  next trial: a one-worker trial runs in the Tune trial's own process (its data cached there), a
  multi-worker trial starts a Ray Train ``TorchTrainer`` with its worker processes;
- ``epoch_overhead``: per trial-epoch, what lies between one epoch's validation and the next epoch's
  training: the report through Tune (and Train), the journal, the loader's start;
- ``checkpoint``: one checkpoint write (``workload.checkpoint_every``, and the last epoch).

Each comes from the spec's ``cost:`` (``cost.<name>_seconds``), else ``--probe``'s timing (the checkpoint
write), else the defaults below, measured by ``benchmarks/fixed_costs.py`` (docs/benchmarks.md, "Fixed
costs").
"""

from __future__ import annotations

import dataclasses

from ast_tune.config.cost_spec import CostSpec
from ast_tune.config.sweep_spec import Workload


@dataclasses.dataclass(frozen=True)
class Overheads:
    """Seconds of each fixed cost (module docstring) and where the figures come from."""

    ray_start: float
    baseline_startup: float  # per dense baseline
    trial_startup: float  # per trial
    epoch_overhead: float  # per trial-epoch
    checkpoint: float  # per checkpoint write
    source: str


#: Measured defaults, by how a trial runs: ``process`` (one worker, in the Tune trial's process) or
#: ``trainer`` (several workers, a TorchTrainer): docs/benchmarks.md, "Fixed costs".
MEASURED = {
    "process": Overheads(ray_start=8.4, baseline_startup=33.7, trial_startup=0.2, epoch_overhead=0.01,
                         checkpoint=0.02, source="measured defaults (docs/benchmarks.md, Fixed costs)"),
    "trainer": Overheads(ray_start=0.0, baseline_startup=30.0, trial_startup=30.0, epoch_overhead=1.1,
                         checkpoint=0.02, source="measured defaults (docs/benchmarks.md, Fixed costs)"),
}


FIXED_COSTS = ("ray_start", "baseline_startup", "trial_startup", "epoch_overhead", "checkpoint")  # cost.<name>_seconds


def placement(workload: Workload) -> str:
    """``process`` for a one-worker trial (it runs in its Tune trial's process), ``trainer`` for several."""
    return "process" if workload.workers == 1 else "trainer"


def overheads(cost: CostSpec, workload: Workload, *, checkpoint: float | None = None) -> Overheads:
    """The fixed costs of ``workload``'s trials: each from ``cost:``, else (the checkpoint write)
    ``checkpoint``, a probe's timing in seconds, else the measured default."""
    default = MEASURED[placement(workload)]
    figures, named = {}, []
    for name in FIXED_COSTS:
        given = getattr(cost, f"{name}_seconds")
        if given is not None:
            figures[name] = given
            named.append(f"cost.{name}_seconds")
        elif name == "checkpoint" and checkpoint is not None:
            figures[name] = checkpoint
            named.append("the checkpoint write --probe timed")
        else:
            figures[name] = getattr(default, name)
    source = "; ".join([*named, f"{'the rest: ' if named else ''}{default.source}"])
    return Overheads(**figures, source=source)
