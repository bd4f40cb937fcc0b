"""The small shared pieces of the results layer: the progress line, the epochs-table writer and
``baseline.json`` (one module builds, checks, writes and reads it)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from ast_tune.config import columns
from ast_tune.config.spec import SpecError
from ast_tune.results.baseline_file import baseline_curve, make_baseline, read_baseline, write_baseline
from ast_tune.results.progress import epoch_line
from ast_tune.results.tables import write_epochs

RECORD = {"epoch": 3, "phase": "ast", "train_loss": 0.12345, "val_top1": 97.5, "val_top5": 99.9,
          "activation_rate": 0.4012, "target_activation": 0.4, "threshold": 1.5, "energy_savings": 0.594,
          "train_seconds": 2.0, "samples_per_second": 719.6, "speedup": 1.6}


def test_epoch_line_labels_counted_and_measured_and_prints_missing_numbers_as_na():
    assert epoch_line(RECORD, 10, who="trial t1 ") == (
        "trial t1 epoch 3/10: top1 97.50% act 0.401 (target 0.40) savings 59.4% (counted) "
        "speedup 1.60x (measured) loss 0.1235 thr 1.500 2.00 s 720 samples/s [ast]")
    line = epoch_line({**RECORD, "speedup": math.nan, "val_top1": None}, 10)
    assert line.startswith("epoch 3/10: top1 n/a ") and "speedup n/a (measured)" in line


def test_write_epochs_keeps_the_epoch_columns_in_order(tmp_path):
    path = tmp_path / "epochs.parquet"
    write_epochs(path, [{**RECORD, "extra": 1}, {**RECORD, "epoch": 4}])
    frame = pd.read_parquet(path)
    assert list(frame.columns) == list(columns.EPOCH_METRICS) and frame["epoch"].tolist() == [3, 4]
    assert frame["energy_j"].isna().all()  # not in the records: NaN, not invented


def test_baseline_round_trips_and_a_bad_one_is_refused_on_write_and_on_read(tmp_path):
    runs = [[{**RECORD, "epoch": 1, "train_seconds": 3.0}, {**RECORD, "epoch": 2, "train_seconds": 1.0}],
            [{**RECORD, "epoch": 1, "train_seconds": 2.5}, {**RECORD, "epoch": 2, "train_seconds": 2.0}]]
    baseline = make_baseline({"device": "cpu"}, {"epochs": 2}, runs)
    assert (baseline["epoch_seconds"], baseline["epochs_timed"], baseline["val_top1"]) == (2.25, 4, 97.5)
    path = tmp_path / "baseline.json"
    write_baseline(path, baseline)
    assert read_baseline(path) == json.loads(json.dumps(baseline))
    assert baseline_curve(read_baseline(path))["epoch"].tolist() == [1, 2]
    with pytest.raises(SpecError, match=r"other\.json: epoch_seconds: missing or not a number"):
        write_baseline(tmp_path / "other.json", {**baseline, "epoch_seconds": None})
    assert not (tmp_path / "other.json").exists()
    path.write_text(json.dumps({"epoch_seconds": "fast", "val_top1": 90}))
    with pytest.raises(SpecError, match=r"epoch_seconds: missing or not a number"):
        read_baseline(path)
    assert read_baseline(tmp_path / "absent.json") is None
