"""AST under Ray Train with 2 CPU workers (gloo): a 2-rank run trains, and resumes from its checkpoint.

That every rank holds the same threshold is checked without Ray in tests/test_distributed.py; here
the same engine runs inside Ray Train's process group, so what is checked is the Ray path itself.
"""

from __future__ import annotations

import dataclasses

import pytest

from ast_tune.config.run_spec import DataSpec, OptimSpec, RunSpec, SparsitySpec
from ast_tune.config.sweep_spec import Workload
from ast_tune.tuning.runtime.worker import run_training

SPEC = RunSpec(data=DataSpec(kind="digits", image_size=16), batch_size=32, epochs=2, warmup_epochs=1,
               checkpoint_every=1,
               sparsity=SparsitySpec(mode="skip", target_activation=0.4, initial_threshold=0.5,
                                     threshold_min=0.0, kp=0.3, ki=0.01, ema_alpha=0.5),
               optim=OptimSpec(schedule="constant", lr=0.05))
TWO_WORKERS = Workload(workers=2, cpus_per_worker=0.9)


@pytest.mark.ray
def test_two_worker_run_selects_and_resumes_from_its_checkpoint(ray_cluster, tmp_path):
    first = run_training(SPEC, workload=TWO_WORKERS, name="ddp", storage_path=tmp_path)
    assert [r["epoch"] for r in first["records"]] == [1, 2]
    assert first["records"][1]["activation_rate"] < 1.0  # selection ran on the global table
    longer = dataclasses.replace(SPEC, epochs=3)
    second = run_training(longer, workload=TWO_WORKERS, name="ddp", storage_path=tmp_path)
    records = second["records"]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[1]["train_seconds"] == first["records"][1]["train_seconds"]  # epoch 2 not redone
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == ["epoch_0002", "epoch_0003"]
