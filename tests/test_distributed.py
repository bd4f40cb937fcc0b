"""AST under DDP (gloo, 2 CPU processes, no Ray): one threshold on every rank, global activation.

Two ranks of batch b see, step by step, the same samples as one process of batch 2b (the loader
splits one permutation by stride), so the global activation must match a single-process run within
a tolerance (BatchNorm statistics are per rank, so the models drift slightly apart).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ast_tune.config.run_spec import DataSpec, OptimSpec, RunSpec, SparsitySpec
from ast_tune.core.engine import fit
from ast_tune.core.sparsity import BatchSelector, SundewController

SPEC = RunSpec(data=DataSpec(kind="digits", image_size=16), batch_size=32, epochs=3, warmup_epochs=1,
               sparsity=SparsitySpec(mode="inline", target_activation=0.4, initial_threshold=0.5,
                                     threshold_min=0.0, kp=0.2, ki=0.005, ema_alpha=0.5),
               optim=OptimSpec(schedule="constant", lr=0.05))


def _rank_main(rank: int, world: int, init_file: str, out_dir: str, spec_dict: dict) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        from ast_tune.config.spec import build

        records = []
        fit(build(RunSpec, spec_dict), report=lambda r, c: records.append(r))
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(records))
    finally:
        dist.destroy_process_group()


def run_ranks(spec: RunSpec, tmp_path: Path, world: int = 2) -> list[list[dict]]:
    mp.spawn(_rank_main, args=(world, str(tmp_path / "init"), str(tmp_path), dataclasses.asdict(spec)),
             nprocs=world, join=True)
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]


@pytest.mark.parametrize("mode", ["inline", "skip", "inline-pool"])
def test_every_rank_holds_the_same_threshold_and_activation(tmp_path, mode):
    # inline-pool: the ranks' pools fill unevenly, yet every rank must run the same forward+backward
    # passes (DDP all-reduces in each backward; a rank stepping alone would hang or diverge)
    pool = mode == "inline-pool"
    spec = dataclasses.replace(SPEC, sparsity=dataclasses.replace(SPEC.sparsity, mode=mode.removesuffix("-pool"),
                                                                  pool=pool, pool_size=20 * pool))
    rank0, rank1 = run_ranks(spec, tmp_path)
    for a, b in zip(rank0, rank1, strict=True):
        assert a["threshold"] == b["threshold"]
        assert a["activation_rate"] == b["activation_rate"]
        assert a["val_top1"] == b["val_top1"]  # evaluation is all-reduced too


def _selector_main(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        selector = BatchSelector(SPEC.sparsity, SundewController(SPEC.sparsity), torch.device("cpu"))
        keep, kept = selector.choose(SCORES[rank::world])
        Path(out_dir, f"sel{rank}.json").write_text(json.dumps([kept, selector.controller.threshold]))
    finally:
        dist.destroy_process_group()


# 6 of 12 reach the 0.5 threshold, 3 on each rank, so no rank falls back to its top-k floor
SCORES = torch.tensor([0.9, 0.7, 0.1, 0.6, 0.55, 0.2, 0.8, 0.05, 0.3, 0.65, 0.4, 0.0])


def test_activation_fed_to_the_controller_is_the_global_fraction(tmp_path):
    mp.spawn(_selector_main, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"sel{r}.json").read_text()) for r in range(2)]
    single = BatchSelector(SPEC.sparsity, SundewController(SPEC.sparsity), torch.device("cpu"))
    _, kept = single.choose(SCORES)
    assert kept == 6
    assert results == [[6.0, single.controller.threshold]] * 2  # both ranks: the whole batch's step


def test_global_activation_matches_a_single_process_run(tmp_path):
    torch.set_num_threads(1)
    rank0, _ = run_ranks(SPEC, tmp_path)
    single = []
    fit(dataclasses.replace(SPEC, batch_size=2 * SPEC.batch_size), report=lambda r, c: single.append(r))
    first_ast = SPEC.warmup_epochs  # later epochs drift apart with the per-rank BatchNorm statistics
    ddp, one = rank0[first_ast]["activation_rate"], single[first_ast]["activation_rate"]
    assert ddp == pytest.approx(one, abs=0.05)
