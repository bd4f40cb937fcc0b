"""The sweep spec's ``promote:`` section: which trial runs to full length afterwards, and on what.

:class:`PromoteRule` chooses the trial (``python -m ast_tune.promote``); :class:`PromoteWorkload` is
the promoted run's workload where it differs from the sweep's (tune on a proxy, confirm on the full
task: the data subset off, another image size, more workers).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ast_tune.config.spec import check_choice, check_range

if TYPE_CHECKING:
    from ast_tune.config.sweep_spec import Workload


@dataclasses.dataclass(frozen=True)
class PromoteWorkload:
    """The promoted run's workload where it differs from the sweep's: tune on a proxy, confirm on the full task.

    Its epochs are ``promote.epochs``. With ``baseline: auto`` a dense baseline is trained on this
    workload for those epochs (cached in ``promoted/baseline.json``): it gives the promoted run's
    measured speedup and its accuracy drop.
    """

    subset: bool = False  # keep workload.data.subset; false: every class and image of the data set
    image_size: int | None = None  # px; None: workload.data.image_size
    workers: int | None = None  # Ray Train workers; None: workload.workers
    num_workers: int | None = None  # DataLoader processes per worker; None: workload.data.num_workers
    baseline: str = "auto"  # auto: time a dense baseline on this workload | none

    def __post_init__(self) -> None:
        if self.image_size is not None:
            check_range("image_size", self.image_size, low=8)
        if self.workers is not None:
            check_range("workers", self.workers, low=1)
        if self.num_workers is not None:
            check_range("num_workers", self.num_workers, low=-1)
        check_choice("baseline", self.baseline, ("auto", "none"))

    def apply(self, workload: Workload) -> Workload:
        """``workload`` with these overrides."""
        data = workload.data
        data = dataclasses.replace(data, subset=data.subset if self.subset else None,
                                   image_size=self.image_size or data.image_size,
                                   num_workers=data.num_workers if self.num_workers is None else self.num_workers)
        return dataclasses.replace(workload, data=data, workers=self.workers or workload.workers)


@dataclasses.dataclass(frozen=True)
class PromoteRule:
    max_accuracy_drop: float = 1.0  # points of val_top1 below the dense baseline (the best front trial if none)
    prefer: str = "energy_savings"  # objective metric to maximise among the trials within the drop


@dataclasses.dataclass(frozen=True)
class PromoteSpec:
    """Which trial to run to full length afterwards (``python -m ast_tune.promote``)."""

    enabled: bool = False
    epochs: int | None = None  # None = the base preset's epochs
    checkpoint_every: int = 10
    seeds: int = 1  # runs of the promoted configuration, seeds trial seed, +1, ...: side by side as resources allow
    rule: PromoteRule = PromoteRule()
    workload: PromoteWorkload | None = None  # None: the promoted run trains on the sweep's workload

    def __post_init__(self) -> None:
        if self.epochs is not None:
            check_range("epochs", self.epochs, low=1)
        check_range("checkpoint_every", self.checkpoint_every, low=1)
        check_range("seeds", self.seeds, low=1)
        check_range("rule.max_accuracy_drop", self.rule.max_accuracy_drop, low=0)
