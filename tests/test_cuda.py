"""CUDA paths: AMP with GradScaler, channels_last, NVML energy. Skipped, with the reason, on CPU."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from ast_tune.config.run_spec import DataSpec, RunSpec, SparsitySpec
from ast_tune.core.engine import fit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")

SPEC = RunSpec(data=DataSpec(kind="digits", image_size=32), batch_size=128, epochs=2, warmup_epochs=1,
               precision="amp", sparsity=SparsitySpec(mode="inline", initial_threshold=0.5, threshold_min=0.0,
                                                      kp=0.2, ki=0.005, ema_alpha=0.5))


@pytest.mark.parametrize("mode", ["dense", "inline", "skip"])
def test_amp_run_on_gpu_reports_measured_energy_and_cuda_memory(mode):
    records = []
    fit(dataclasses.replace(SPEC, sparsity=dataclasses.replace(SPEC.sparsity, mode=mode)),
        report=lambda r, c: records.append(r))
    last = records[-1]
    assert math.isfinite(last["train_loss"]) and last["val_top1"] > 20
    assert last["max_memory_mb"] > 0
    assert last["energy_j"] > 0 or math.isnan(last["energy_j"])  # NaN only where the GPU has no counter
