"""Peak memory is a run's own, also when one process runs several trials one after another."""

from __future__ import annotations

import math
import time

import pytest
import torch

from ast_tune.config.run_spec import DataSpec, RunSpec, SparsitySpec
from ast_tune.core.engine import fit
from ast_tune.core.metrics import PROC_CLEAR_REFS, LoaderWait, data_bound_warning, max_memory_mb, reset_peak_memory
from ast_tune.data.sources import Datasets

CPU = torch.device("cpu")


@pytest.mark.skipif(not PROC_CLEAR_REFS.exists(), reason="needs Linux's /proc/self/clear_refs to reset the peak RSS")
def test_peak_rss_rises_with_a_big_tensor_and_falls_back_after_a_reset():
    reset_peak_memory(CPU)
    before = max_memory_mb(CPU)
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    block += 1
    peak = max_memory_mb(CPU)
    del block
    reset_peak_memory(CPU)
    after = max_memory_mb(CPU)
    assert peak - before > 48  # MiB: the tensor shows up in the peak
    assert peak - after > 48  # the reset forgets it once freed


class _SlowDigits(torch.utils.data.Dataset):
    """8 one-channel 8×8 images of 2 classes; every item takes at least ``delay`` seconds to load."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int):
        time.sleep(self.delay)
        return torch.full((1, 8, 8), float(index % 2)), index % 2


def test_data_seconds_rises_with_a_slow_loader_and_stays_within_the_train_seconds():
    """The loader runs in this process (num_workers 0), so every item's sleep is time spent waiting on data."""
    spec = RunSpec(data=DataSpec(image_size=8, num_workers=0), batch_size=4, epochs=1, warmup_epochs=0,
                   sparsity=SparsitySpec(mode="dense"))
    records = []
    for delay in (0.0, 0.05):
        data = Datasets(train=_SlowDigits(delay), val=_SlowDigits(0.0), num_classes=2, in_channels=1,
                        class_names=("0", "1"))
        fit(spec, datasets=data, device=torch.device("cpu"), report=lambda record, _dir: records.append(record))
    fast, slow = records
    assert slow["data_seconds"] >= 8 * 0.05  # at least the eight sleeps
    assert slow["data_seconds"] <= slow["train_seconds"] and fast["data_seconds"] <= fast["train_seconds"]
    assert fast["data_seconds"] >= 0  # no upper bound on the fast loader's wait: that would race the machine's speed


def test_loader_wait_counts_only_the_waits_and_passes_every_batch_through():
    def batches():
        for i in range(3):
            time.sleep(0.02)
            yield i

    waits = LoaderWait(batches(), torch.device("cpu"))
    assert list(waits) == [0, 1, 2] and waits.seconds >= 3 * 0.02


@pytest.mark.parametrize(("record", "expected"), [
    ({"epoch": 3, "data_seconds": 4.0, "train_seconds": 10.0}, "warning: epoch 3 waited 4.0 of its 10.0 train "
                                                                "seconds (40%) on the data loader"),
    ({"epoch": 3, "data_seconds": 3.0, "train_seconds": 10.0}, None),  # under a third
    ({"epoch": 1, "data_seconds": math.nan, "train_seconds": 10.0}, None),  # not measured
])
def test_data_bound_warning_above_a_third_of_the_epoch(record, expected):
    warning = data_bound_warning(record)
    assert (warning is None) if expected is None else warning.startswith(expected)
