"""The sweep spec's ``cost:`` section: the figures ``--dry-run``'s estimate uses when ``--probe`` does not time them.

See :mod:`ast_tune.cost.estimate` and :mod:`ast_tune.cost.epoch_cost`.
"""

from __future__ import annotations

import dataclasses

from ast_tune.config.keys import check_keys, key


@dataclasses.dataclass(frozen=True)
class WorkloadCost:
    """What one epoch of a workload costs, for ``--dry-run``'s estimate; every field optional.

    ``epoch_seconds`` wins over ``images_per_second``; the image counts are counted from
    ``data.root`` when they are not given (and it exists).
    """

    epoch_seconds: float | None = key(None, "one epoch (training + validation) of one run; wins over "
                                      "images_per_second", unit="s", low=0, low_open=True)
    images_per_second: float | None = key(None, "training throughput per GPU (per worker on a CPU)",
                                          unit="images/s", low=0, low_open=True)
    train_images: int | None = key(None, "training images per epoch; null: counted from data.root",
                                   unit="images", low=1)
    val_images: int | None = key(None, "validation images per epoch; null: counted from data.root",
                                 unit="images", low=1)

    def __post_init__(self) -> None:
        check_keys(self)


@dataclasses.dataclass(frozen=True)
class CostSpec(WorkloadCost):
    """The sweep workload's cost (the inherited fields), the promoted run's, the price of a GPU-hour and the
    fixed costs beside the epochs (:mod:`ast_tune.cost.overheads`)."""

    promote: WorkloadCost = key(WorkloadCost(), "the promoted run's figures; a missing one is the sweep's, "
                                "scaled by pixels and images")
    usd_per_gpu_hour: float | None = key(None, "price of one GPU-hour; null: the estimate gives no price",
                                         unit="USD", low=0)
    ray_start_seconds: float | None = key(None, "once per driver run, its start to its first trial less the "
                                          "baseline (Ray, Tune); null: the measured default", unit="s", low=0)
    baseline_startup_seconds: float | None = key(None, "the dense baseline's Ray Train run less its epochs; null: "
                                                 "the measured default", unit="s", low=0)
    trial_startup_seconds: float | None = key(None, "a trial's start until its first epoch, with the hand-over of "
                                              "its slot; null: the measured default for its workers", unit="s", low=0)
    epoch_overhead_seconds: float | None = key(None, "per trial-epoch, beside training and validation: reporting, "
                                               "the loader's start; null: the measured default", unit="s", low=0)
    checkpoint_seconds: float | None = key(None, "one checkpoint write; null: --probe's timing, else the measured "
                                           "default", unit="s", low=0)
