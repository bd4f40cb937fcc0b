"""The sweep spec's sections for tuning on a proxy: ``promote.workload`` and ``cost``.

:class:`PromoteWorkload` is the promoted run's workload where it differs from the sweep's (the data
subset off, another image size, more workers); :class:`CostSpec` holds the figures ``--dry-run``'s
cost estimate (:mod:`ast_tune.tuning.estimate`) uses when ``--probe`` does not time them.
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
class WorkloadCost:
    """What one epoch of a workload costs, for ``--dry-run``'s estimate; every field optional.

    ``epoch_seconds`` wins over ``images_per_second``; the image counts are counted from
    ``data.root`` when they are not given (and it exists).
    """

    epoch_seconds: float | None = None  # s, one epoch (training + validation) of one run
    images_per_second: float | None = None  # training images/s per GPU (per worker on a CPU)
    train_images: int | None = None  # training images per epoch
    val_images: int | None = None  # validation images per epoch

    def __post_init__(self) -> None:
        for key in ("epoch_seconds", "images_per_second"):
            if getattr(self, key) is not None:
                check_range(key, getattr(self, key), low=0, low_open=True)
        for key in ("train_images", "val_images"):
            if getattr(self, key) is not None:
                check_range(key, getattr(self, key), low=1)


@dataclasses.dataclass(frozen=True)
class CostSpec(WorkloadCost):
    """The sweep workload's cost (the inherited fields), the promoted run's, and the price of a GPU-hour."""

    promote: WorkloadCost = WorkloadCost()  # missing figures: the sweep's, scaled by pixels and images
    usd_per_gpu_hour: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.usd_per_gpu_hour is not None:
            check_range("usd_per_gpu_hour", self.usd_per_gpu_hour, low=0)
