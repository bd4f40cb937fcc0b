"""Sweep report and per-run plots on a synthetic ``results/<name>`` built in tmp_path.

Six trials of at most five epochs (ASHA grace 2, η 2 → rungs after epochs 2 and 4):

    trial status      epochs  target  final top-1  savings  speedup   note
    t0    TERMINATED  5       0.4     97.0         ~.50     ~1.7      front (accuracy)
    t1    TERMINATED  5       0.3     96.0         ~.57     ~2.1      front (savings, speed)
    t2    STOPPED     2       0.6     93.0         ~.35     ~1.3      dominated by t0
    t3    TERMINATED  5       0.5     95.0         ~.43     ~1.5      dominated by t0
    t4    ERROR       3       0.2     99.2 at epoch 3, then NaN loss  never ranked, though the best
    t5    ERROR       0       —       failed before its first epoch   never ranked

plus a dense baseline (97.5 % top-1, 10 s/epoch) and a promoted run of t0 with 10 classes.
"""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib import image

from ast_tune import report
from ast_tune.config import columns
from ast_tune.results import page, plots

NAN = math.nan
SIZE = (500, 800)  # plots.FIGSIZE × plots.DPI, rows × columns
SWEEP_PNGS = ("pareto_savings.png", "pareto_speedup.png", "hypervolume.png", "rungs.png",
              *plots.CURVE_FIGURES)
PROMOTED_PNGS = ("promoted.png", "per_class.png")
TRIALS = {  # id: (status, epochs done, target activation, top-1 the curve reaches at epoch 5)
    "t0": ("TERMINATED", 5, 0.4, 97.0), "t1": ("TERMINATED", 5, 0.3, 96.0),
    "t2": ("STOPPED", 2, 0.6, 93.0), "t3": ("TERMINATED", 5, 0.5, 95.0),
    "t4": ("ERROR", 3, 0.2, 104.0), "t5": ("ERROR", 0, 0.4, NAN),
}


def _record(epoch: int, *, epochs: int, target: float, final: float, warmup: int = 1) -> dict:
    """One epoch of a run that learns towards ``final`` top-1 and sparsifies after ``warmup``."""
    row = dict.fromkeys(columns.EPOCH_METRICS, NAN)
    dense = epoch <= warmup
    activation = 1.0 if dense else target + 0.05 / epoch
    seconds = 10.0 if dense else 10.0 * (1 + 3 * activation) / 4
    row.update(epoch=epoch, phase="warmup" if dense else "ast", train_loss=(105 - final) / 3 / epoch,
               val_top1=final - 12.0 * (epochs - epoch) / max(epochs, 1), lr=0.1 / epoch,
               activation_rate=activation, target_activation=target, threshold=1.5 - target * epoch ** 0.5,
               energy_savings=1 - (activation + 0.01 * (1 - activation)), train_seconds=seconds,
               samples_per_second=1797 / seconds, speedup=10.0 / seconds, energy_j=NAN, max_memory_mb=900.0)
    row["val_top5"] = min(100.0, row["val_top1"] + 3)
    return row


def _sweep_epochs() -> pd.DataFrame:
    rows = []
    for epoch in range(0, 6):  # interleaved, as a sweep reports them
        for trial_id, (status, epochs, target, final) in TRIALS.items():
            if (epoch == 0 and epochs == 0) or 1 <= epoch <= epochs:
                record = _record(epoch, epochs=5, target=target, final=final) if epoch else \
                    dict.fromkeys(columns.EPOCH_METRICS, NAN) | {"epoch": 0}
                rows.append({"trial_id": trial_id, "status": status, **record,
                             "param.target_activation": target, "param.kp": 0.01 * (1 + len(rows) % 3)})
    return pd.DataFrame(rows)


def _write_sweep(root: Path, *, extras: bool = True) -> Path:
    results = root / "results" / "synth"
    results.mkdir(parents=True)
    _sweep_epochs().to_parquet(results / "epochs.parquet", index=False)
    if not extras:
        return results
    spec = {"name": "synth", "base": "quickstart", "workload": {"epochs": 5},
            "scheduler": {"kind": "asha", "grace_period": 2, "reduction_factor": 2},
            "objectives": [{"metric": "val_top1", "mode": "max"}, {"metric": "energy_savings", "mode": "max"},
                           {"metric": "speedup", "mode": "max"}]}
    (results / "spec.yaml").write_text(yaml.safe_dump(spec))
    baseline = [_record(e, epochs=5, target=1.0, final=97.5, warmup=5) for e in range(1, 6)]
    (results / "baseline.json").write_text(json.dumps(  # the shape baseline.ensure_baseline writes
        {"fingerprint": {"device": "cpu"}, "epoch_seconds": 10.0, "epochs_timed": 5, "val_top1": 97.5,
         "val_top5": 99.9, "spec": {}, "created": "2026-11-25T00:00:00+00:00", "host": "h", "epochs": baseline}))
    promoted = results / "promoted"
    promoted.mkdir()
    pd.DataFrame([_record(e, epochs=8, target=0.4, final=97.2) for e in range(1, 9)]).to_parquet(
        promoted / "epochs.parquet", index=False)
    per_class = [99.0, 98.5, 97.0, 92.0, 99.5, 96.0, 98.0, 94.5, 88.0, 99.0]
    (promoted / "summary.json").write_text(json.dumps(
        {"status": "finished", "trial_id": "t0", "epochs_done": 8, "per_class_top1": per_class,
         "class_names": [f"digit {d}" for d in range(10)]}))
    return results


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.targets += [value for name, value in attrs if name in ("src", "href")]


def _assert_png(path: Path) -> None:
    pixels = image.imread(path)
    assert pixels.shape[:2] == SIZE, path.name
    assert pixels[..., :3].std() > 0.01, f"{path.name} is blank"


def _links(page: Path) -> list[str]:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.targets


def test_report_writes_every_figure_and_the_page_links_only_existing_files(tmp_path):
    results = _write_sweep(tmp_path)
    assert report.main([str(results)]) == 0
    out = results / "report"
    for name in (*SWEEP_PNGS, *PROMOTED_PNGS):
        _assert_png(out / name)
    links = _links(out / "index.html")
    assert {f"{name}" for name in (*SWEEP_PNGS, *PROMOTED_PNGS)} <= set(links)
    assert all((out / link).is_file() for link in links)
    assert not any("://" in link for link in links)


def test_report_from_epochs_parquet_alone_omits_baseline_and_promoted(tmp_path):
    results = _write_sweep(tmp_path, extras=False)
    out = tmp_path / "elsewhere"
    assert report.main([str(results), "--out", str(out)]) == 0
    for name in SWEEP_PNGS:
        _assert_png(out / name)
    assert not (out / "promoted.png").exists()
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "baseline.json absent" in page
    assert all((out / link).is_file() for link in _links(out / "index.html"))
    assert not (results / "report").exists()


def test_comparison_has_baseline_best_front_trial_and_promoted_with_blank_energy(tmp_path):
    table = page.comparison_table(page.load_results(_write_sweep(tmp_path)))
    assert table["run"].tolist() == ["dense baseline", "best front trial (base: quickstart) t0",
                                     "promoted (trial t0)"]
    assert table["val_top1"].tolist() == [97.5, 97.0, 97.2]
    assert table.loc[0, "train_seconds"] == 50.0  # the sum of its 5 dense epochs of 10 s
    assert table.loc[0, "speedup"] == 1.0
    assert table["energy_j"].isna().all()  # CPU: never measured, never invented
    markdown = page.comparison_markdown(table)
    assert "| dense baseline | 5 | 97.50 | 99.90 | 0.0 | 1.00 | 50.0 |  |" in markdown


def test_a_promotion_of_two_seeds_shows_its_first_seed_and_says_so(tmp_path):
    results = _write_sweep(tmp_path)
    promoted = results / "promoted"
    seed0 = pd.read_parquet(promoted / "epochs.parquet").assign(seed=0)
    seed1 = seed0.assign(seed=1, val_top1=50.0)  # the second seed's rows come last and would win a dedupe
    pd.concat([seed0, seed1]).to_parquet(promoted / "epochs.parquet", index=False)
    summary = json.loads((promoted / "summary.json").read_text())
    (promoted / "summary.json").write_text(json.dumps({**summary, "seeds": {"0": {}, "1": {}}}))
    table = page.comparison_table(page.load_results(results))
    assert table["run"].iloc[-1] == "promoted (trial t0, first of 2 seeds)" and table["val_top1"].iloc[-1] == 97.2


def test_a_promotion_onto_its_own_workload_is_judged_against_that_workloads_baseline(tmp_path):
    results = _write_sweep(tmp_path)
    before = page.comparison_table(page.load_results(results)).iloc[-1]
    assert before["speedup_to_target"] > 0  # reaches the sweep baseline's 97.5 - 1 points
    (results / "promoted" / "baseline.json").write_text(json.dumps(  # the full task's dense run: 99.9 % at epoch 1
        {"epoch_seconds": 10.0, "val_top1": 99.9, "fingerprint": {},
         "epochs": [{"epoch": 1, "val_top1": 99.9, "train_seconds": 10.0}]}))
    after = page.comparison_table(page.load_results(results)).iloc[-1]
    assert math.isnan(after["speedup_to_target"])  # 97.2 % never reaches 99.9 - 1


def test_comparison_lists_each_preset_when_trials_carry_one(tmp_path):
    results = _write_sweep(tmp_path)
    epochs = pd.read_parquet(results / "epochs.parquet")
    epochs["param.base"] = np.where(epochs["trial_id"].isin(["t0", "t2"]), "conservative", "aggressive")
    epochs.to_parquet(results / "epochs.parquet", index=False)
    table = page.comparison_table(page.load_results(results))
    assert table["run"].tolist()[1:3] == ["preset aggressive: best front trial t1",
                                     "preset conservative: best front trial t0"]


def test_hypervolume_reference_is_zero_for_maximised_objectives():
    trials = pd.DataFrame({"val_top1": [90.0], "train_seconds": [20.0]})
    assert page.sweep_plots.reference_point(trials, [("val_top1", "max"), ("train_seconds", "min")]) == \
        [0.0, pytest.approx(22.0)]


def test_asha_rungs_are_grace_times_powers_of_eta_below_the_run_length():
    spec = {"scheduler": {"grace_period": 2, "reduction_factor": 3}, "workload": {"epochs": 30}}
    assert page.sweep_plots.asha_rungs(spec) == [2, 6, 18]
    assert page.sweep_plots.asha_rungs({}) == []
    fifo = {"scheduler": {"kind": "fifo", "grace_period": 1, "reduction_factor": 3}, "workload": {"epochs": 9}}
    assert page.sweep_plots.asha_rungs(fifo) == []
    fractional = {"scheduler": {"kind": "moasha", "grace_period": 1, "reduction_factor": 2.5},
                  "workload": {"epochs": 10}}
    assert page.sweep_plots.asha_rungs(fractional) == [1, 3, 7]  # 1, 2.5, 6.25 rounded up


def test_write_run_plots_draws_a_single_run_with_its_per_class_chart(tmp_path):
    epochs = pd.DataFrame([_record(e, epochs=3, target=0.4, final=95.0) for e in range(1, 4)])
    summary = {"per_class_top1": list(np.linspace(50, 100, 30)),
               "class_names": [f"n{i:08d}" for i in range(30)]}
    paths = plots.write_run_plots(epochs, tmp_path / "run", summary=summary)
    assert [p.name for p in paths] == [*plots.CURVE_FIGURES, "per_class.png"]
    for path in paths:
        _assert_png(path)
    assert [p.name for p in plots.write_run_plots(epochs, tmp_path / "bare")] == list(plots.CURVE_FIGURES)


@pytest.mark.parametrize("make", ["missing_dir", "missing_epochs"])
def test_missing_input_is_one_line_and_exit_2(tmp_path, capsys, make):
    target = tmp_path / "results" / "none"
    if make == "missing_epochs":
        target.mkdir(parents=True)
    assert report.main([str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(target) in err
    assert not (target / "report").exists()


def test_short_labels_drop_the_shared_ray_prefix_only():
    assert plots.short_labels(["train_fn_3f2a1_00014", "train_fn_3f2a1_00028"]) == {
        "train_fn_3f2a1_00014": "00014", "train_fn_3f2a1_00028": "00028"}
    assert plots.short_labels(["t0", "t1"]) == {"t0": "t0", "t1": "t1"}
    assert plots.short_labels(["run"]) == {"run": "run"}
