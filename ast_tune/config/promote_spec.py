"""The sweep spec's ``promote:`` section: which trial runs to full length afterwards, and on what.

:class:`PromoteRule` chooses the trial (``python -m ast_tune.promote``); :class:`PromoteWorkload` is
the promoted run's workload where it differs from the sweep's (tune on a proxy, confirm on the full
task: the data subset off, another image size, more workers).
"""

from __future__ import annotations

import dataclasses

from ast_tune.config.keys import check_keys, key, like
from ast_tune.config.run_spec import DataSpec

#: ``baseline:``: train a dense baseline to measure speedups against (auto), or none.
BASELINES = ("auto", "none")


@dataclasses.dataclass(frozen=True)
class PromoteWorkload:
    """The promoted run's workload where it differs from the sweep's: tune on a proxy, confirm on the full task.

    Its epochs are ``promote.epochs``. With ``baseline: auto`` a dense baseline is trained on this
    workload for those epochs (cached in ``promoted/baseline.json``): it gives the promoted run's
    measured speedup and its accuracy drop.
    """

    root: str | None = like(DataSpec, "root", default=None, meaning="data.root of the promoted run, e.g. a copy "
                            "`python -m ast_tune.prepare` made for its image size; null: workload.data.root")
    subset: bool = key(False, "true: keep workload.data.subset; false: every class and image of the data set")
    image_size: int | None = like(DataSpec, "image_size", default=None,
                                  meaning="side of the square network input; null: workload.data.image_size")
    workers: int | None = key(None, "Ray Train workers (DDP ranks); null: workload.workers", unit="workers", low=1)
    num_workers: int | None = like(DataSpec, "num_workers", default=None, meaning="DataLoader worker processes "
                                   "per training worker; null: workload.data.num_workers")
    baseline: str = key("auto", "auto: train a dense baseline on this workload for promote.epochs, which gives "
                        "the promoted run's measured speedup and accuracy drop; none: no baseline", choices=BASELINES)

    def __post_init__(self) -> None:
        check_keys(self)


@dataclasses.dataclass(frozen=True)
class PromoteRule:
    """How the promoted trial is chosen: the best on ``prefer`` among the front trials within the drop."""

    max_accuracy_drop: float = key(1.0, "most val_top1 below the dense baseline's (without one: the best front "
                                   "trial's); also sets the default time-to-accuracy target", unit="points", low=0)
    prefer: str = key("energy_savings", "the objective metric maximised among the trials within the drop")

    def __post_init__(self) -> None:
        check_keys(self)


@dataclasses.dataclass(frozen=True)
class PromoteSpec:
    """Which trial to run to full length afterwards (``python -m ast_tune.promote``)."""

    enabled: bool = key(False, "whether the sweep promotes a trial once its trials end (python -m ast_tune.promote "
                        "promotes one on demand)")
    epochs: int | None = key(None, "epochs of the promoted run; null: the base preset's", unit="epochs", low=1)
    checkpoint_every: int = key(10, "epochs between the promoted run's checkpoints", unit="epochs", low=1)
    seeds: int = key(1, "runs of the promoted configuration, random seeds the trial's, +1, ...: side by side as "
                     "resources allow", unit="runs", low=1)
    rule: PromoteRule = key(PromoteRule(), "which trial is promoted")
    workload: PromoteWorkload | None = key(None, "the promoted run's workload where it differs from the sweep's; "
                                           "null: the sweep's")

    def __post_init__(self) -> None:
        check_keys(self)
