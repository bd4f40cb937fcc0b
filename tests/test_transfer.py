"""Promotion onto the full task after a proxy sweep (``promote.workload``): the promotion, and one real run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ast_tune.config import columns
from ast_tune.config.sweep_spec import load_sweep, to_document
from ast_tune.promote import promote
from ast_tune.promotion.choice import decide_promotion
from tests.conftest import write_kaggle_tree

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {"target_activation": 0.5, "kp": 1.0, "ki": 0.1, "warmup_lr": 0.1, "lr": 0.1,
          "lr_schedule": "cosine", "warmup_epochs": 1, "mode": "inline"}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A finished proxy sweep on 2 of a Kaggle tree's 3 classes at 8 px; trial t0 finished at 60 %."""
    tree = write_kaggle_tree(tmp_path / "imagenet", size=16)
    out = tmp_path / "proxy"
    out.mkdir()
    spec = load_sweep(ROOT / "search_spaces" / "quickstart.yaml", [
        "workload.data.kind=imagenet", f"workload.data.root={tree}", "workload.data.image_size=8",
        "workload.data.subset={classes: 2}", "workload.batch_size=4", "promote.enabled=true",
        "promote.checkpoint_every=1", "promote.workload={image_size: 16, baseline: auto}"])
    (out / "spec.yaml").write_text(yaml.safe_dump(to_document(spec), sort_keys=False))
    rows = []
    for epoch in (1, 2):
        row = dict.fromkeys(columns.EPOCH_METRICS, math.nan)
        row.update(trial_id="t0", status="TERMINATED", epoch=epoch, phase="ast", val_top1=60.0, val_top5=100.0,
                   energy_savings=0.4, activation_rate=0.6, speedup=1.5, train_seconds=1.0, reason=None)
        rows.append({**row, **{f"{columns.PARAM_PREFIX}{k}": v for k, v in PARAMS.items()}})
    pd.DataFrame(rows).to_parquet(out / "epochs.parquet", index=False)
    (out / "baseline.json").write_text(json.dumps({"epoch_seconds": 2.0, "val_top1": 60.5, "fingerprint": {}}))
    return out


def test_the_promotion_trains_the_trial_on_the_promoted_workload(results: Path):
    promotion = decide_promotion(results, epochs=2)
    assert promotion.run_spec.data.subset is None and promotion.run_spec.data.image_size == 16
    assert promotion.run_spec.epochs == 2 and promotion.workload.epochs == 2
    assert promotion.run_spec.sparsity.kp == PARAMS["kp"]
    assert promotion.full_sweep is not None and promotion.full_sweep.baseline_spec().data == promotion.run_spec.data
    assert promotion.baseline_seconds is None  # the promoted workload's baseline is not timed yet
    assert promotion.trial_row["val_top1"] == 60.0


def test_without_promote_workload_the_sweeps_workload_and_baseline_are_used(results: Path):
    document = yaml.safe_load((results / "spec.yaml").read_text())
    document["promote"]["workload"] = None
    (results / "spec.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    promotion = decide_promotion(results, epochs=2)
    assert promotion.run_spec.data.subset.classes == 2 and promotion.run_spec.data.image_size == 8
    assert promotion.full_sweep is None and promotion.baseline_seconds == 2.0


@pytest.mark.ray
def test_a_promotion_onto_the_full_tree_times_its_own_baseline_and_reports_the_transfer(results, ray_cluster, capsys):
    out = promote(results, epochs=2)
    lines = capsys.readouterr().out.splitlines()
    full = json.loads((out / "baseline.json").read_text())
    assert full["spec"]["data"]["subset"] is None and full["spec"]["data"]["image_size"] == 16
    assert full["epochs_timed"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and len(summary["per_class_top1"]) == 3  # every class
    assert summary["workload"]["data"]["subset"] is None and summary["workload"]["promote_workload"]
    assert summary["baseline_epoch_seconds"] == full["epoch_seconds"]
    check = summary["transfer"]
    assert check["proxy_trial"] == {"val_top1": 60.0, "baseline_top1": 60.5, "accuracy_drop": pytest.approx(0.5),
                                    "energy_savings": pytest.approx(0.4), "speedup": pytest.approx(1.5)}
    epochs = pd.read_parquet(out / "epochs.parquet")
    assert check["promoted"]["val_top1"] == epochs["val_top1"].iloc[-1]
    assert check["promoted"]["accuracy_drop"] == pytest.approx(full["val_top1"] - epochs["val_top1"].iloc[-1])
    assert check["promoted"]["speedup"] == pytest.approx(2 * full["epoch_seconds"] / epochs["train_seconds"].sum())
    assert epochs["data_seconds"].notna().all()
    assert any(line.startswith("workload (promote.workload): imagenet") for line in lines)
    assert any(line.startswith("transfer check") for line in lines)
