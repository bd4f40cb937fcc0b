"""Peak memory is a run's own, also when one process runs several trials one after another."""

from __future__ import annotations

import pytest
import torch

from ast_tune.core.metrics import PROC_CLEAR_REFS, max_memory_mb, reset_peak_memory

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
