"""The benchmark's arithmetic and output shape (its speed figures live in docs/benchmarks.md, not here)."""

from __future__ import annotations

import json

import pytest

from ast_tune.bench import configurations, ideal_speedup, main


def test_ideal_speedups_follow_the_cost_model():
    assert ideal_speedup("inline", 0.4) == pytest.approx(3 / 2.2)
    assert ideal_speedup("skip", 0.2) == pytest.approx(5.0)
    assert ideal_speedup("mask", 0.4) == 1.0
    assert ideal_speedup("inline+pool", 0.2) == pytest.approx(3 / 1.6)


def test_configurations_cover_dense_mask_and_both_modes_at_each_rate():
    assert configurations([0.4, 0.2]) == [("dense", 1.0), ("mask", 0.4), ("inline", 0.4), ("inline+pool", 0.4),
                                          ("skip", 0.4), ("inline", 0.2), ("inline+pool", 0.2), ("skip", 0.2)]


def test_bench_json_reports_paired_speedups_against_the_ideal(capsys):
    args = ["--json", "--repeats", "1", "--epochs", "1", "--rates", "0.5", "--threads", "1",
            "--set", "data.image_size=8", "--set", "batch_size=256"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["command"].startswith("python -m ast_tune.bench --json")
    rows = {row["mode"]: row for row in report["results"]}
    assert set(rows) == {"dense", "mask", "inline", "inline+pool", "skip"}
    assert rows["dense"]["speedup"] == 1.0
    for row in rows.values():
        assert row["ratio_to_ideal"] == pytest.approx(row["speedup"] / row["ideal"])
        assert 0 < row["activation"] <= 1


def test_bench_rejects_bad_rates_with_exit_2(capsys):
    assert main(["--rates", "1.5"]) == 2
    assert capsys.readouterr().err.startswith("error: --repeats/--epochs/--rates")
