"""Precision and CUDA paths: AMP with GradScaler, bf16, channels_last, NVML energy, nvJPEG decoding.

Only the bf16 autocast test runs on a CPU; the rest are skipped there, with the reason.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from ast_tune.config.run_spec import DataSpec, RunSpec, SparsitySpec
from ast_tune.core.engine import _autocast, fit
from ast_tune.core.run_state import RunState
from ast_tune.data.loaders import make_loader
from ast_tune.data.normalise import normalised
from ast_tune.data.sources import load_datasets

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")

SPEC = RunSpec(data=DataSpec(kind="digits", image_size=32), batch_size=128, epochs=2, warmup_epochs=1,
               precision="amp", sparsity=SparsitySpec(mode="inline", initial_threshold=0.5, threshold_min=0.0,
                                                      kp=0.2, ki=0.005, ema_alpha=0.5))


def test_bf16_autocasts_without_a_grad_scaler_on_the_cpu() -> None:
    spec = dataclasses.replace(SPEC, data=DataSpec(kind="digits", image_size=8), precision="bf16")
    run = RunState.create(spec, load_datasets(spec.data), torch.device("cpu"))
    assert run.amp and run.amp_dtype == torch.bfloat16 and not run.scaler.is_enabled()
    with _autocast(run):
        logits = run.model(torch.randn(4, 1, 8, 8))
    assert logits.dtype == torch.bfloat16 and logits.shape == (4, 10)


def test_fp16_amp_falls_back_to_fp32_on_the_cpu() -> None:
    spec = dataclasses.replace(SPEC, data=DataSpec(kind="digits", image_size=8))
    run = RunState.create(spec, load_datasets(spec.data), torch.device("cpu"))
    assert not run.amp and not run.scaler.is_enabled() and not run.channels_last


@needs_cuda
@pytest.mark.parametrize("mode", ["dense", "inline", "skip"])
def test_amp_run_on_gpu_reports_measured_energy_and_cuda_memory(mode):
    records = []
    fit(dataclasses.replace(SPEC, sparsity=dataclasses.replace(SPEC.sparsity, mode=mode)),
        report=lambda r, c: records.append(r))
    last = records[-1]
    assert math.isfinite(last["train_loss"]) and last["val_top1"] > 20
    assert last["max_memory_mb"] > 0
    assert last["energy_j"] > 0 or math.isnan(last["energy_j"])  # NaN only where the GPU has no counter


@needs_cuda
@pytest.mark.parametrize("channels_last", [True, False])
def test_bf16_run_on_gpu_learns_without_a_scaler(channels_last):
    spec = dataclasses.replace(SPEC, precision="bf16", channels_last=channels_last)
    run = RunState.create(spec, load_datasets(spec.data), torch.device("cuda"))
    assert run.amp_dtype == torch.bfloat16 and not run.scaler.is_enabled() and run.channels_last == channels_last
    records = []
    fit(spec, report=lambda r, c: records.append(r))
    assert math.isfinite(records[-1]["train_loss"]) and records[-1]["val_top1"] > 20


@needs_cuda
def test_torchvision_decoder_decodes_on_the_gpu_like_the_cpu(tmp_path: Path):
    for split in ("train", "val"):
        for i, colour in enumerate(((200, 40, 90), (30, 160, 220))):
            path = tmp_path / split / f"c{i}" / "0.jpg"
            path.parent.mkdir(parents=True)
            Image.new("RGB", (50, 40), colour).save(path, quality=100)
    data = load_datasets(DataSpec(kind="imagefolder", root=str(tmp_path), image_size=16, decoder="torchvision"))
    (x, y, idx), = list(make_loader(data.val, batch_size=2, train=False, num_workers=0, device=torch.device("cuda")))
    assert x.device.type == "cuda" and x.shape == (2, 3, 16, 16) and x.dtype == torch.uint8 and idx.tolist() == [0, 1]
    on_cpu = torch.stack([data.val[i][0] for i in range(2)])
    assert (x.cpu().int() - on_cpu.int()).abs().max() <= 3  # nvJPEG and libjpeg may differ by a level or two
    assert torch.allclose(normalised(x).cpu(), normalised(on_cpu), atol=0.05)
    skipped = list(make_loader(data.train, batch_size=2, train=True, indices=[1], num_workers=0,
                               device=torch.device("cuda")))
    assert [b[2].tolist() for b in skipped] == [[1]]
