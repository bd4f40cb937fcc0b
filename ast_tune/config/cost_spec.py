"""The sweep spec's ``cost:`` section: the figures ``--dry-run``'s estimate uses when ``--probe`` does not time them.

See :mod:`ast_tune.tuning.estimate` and :mod:`ast_tune.tuning.epoch_cost`.
"""

from __future__ import annotations

import dataclasses

from ast_tune.config.spec import check_range


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
