"""Result tables on a hand-built epochs frame (objectives: val_top1, energy_savings, speedup; all max).

    trial status      epochs: (val_top1 %, energy_savings, speedup, train_seconds, energy_j)   → trial
    a     TERMINATED  (90, .4, 1.0, 10, 100), (92, .6, 3.0, 5, nan)  → 92, .5, 25/15 = 1.667   front
    b     STOPPED     (95, .2, 1.2, 8, 80)   stopped early at epoch 1 → 95, .2, 1.2            front
    c     TERMINATED  (97, .2, 1.0, 10, 50), (85, .4, 1.2, 10, 60)   → 85, .3, 22/20 = 1.1    rank 2 (a)
    d     ERROR       (99, .9, 5.0, 2, 10)   best numbers, but errored                         rank 0
    e     TERMINATED  (98, .8, nan, 4, 40)   no speedup                                        rank 0
    f     ERROR       epoch 0 only (failed before its first epoch), reason "CUDA OOM"          rank 0

If d counted, it would push a, b and c down a front; if val_top1 were the best epoch's, c (97)
would be on the front.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from ast_tune.config import columns
from ast_tune.export import main
from ast_tune.results.tables import (
    DEFAULT_OBJECTIVES,
    front_markdown,
    front_table,
    trials_table,
    write_tables,
)

NAN = float("nan")


def _row(trial, status, epoch, val, savings, speedup, seconds, energy, kp, schedule, reason=None):
    row = dict.fromkeys(columns.EPOCH_METRICS, NAN)
    row.update(trial_id=trial, status=status, epoch=epoch, phase="ast", val_top1=val,
               val_top5=min(val + 4, 100.0) if val == val else NAN, energy_savings=savings,
               activation_rate=1 - savings if savings == savings else NAN, speedup=speedup,
               train_seconds=seconds, energy_j=energy)
    row.update({"param.kp": kp, "param.lr_schedule": schedule, "reason": reason})
    return row


@pytest.fixture
def epochs() -> pd.DataFrame:
    rows = [
        _row("a", "TERMINATED", 1, 90.0, 0.4, 1.0, 10.0, 100.0, 0.001234, "cosine"),
        _row("b", "STOPPED", 1, 95.0, 0.2, 1.2, 8.0, 80.0, 0.05, "step"),
        _row("c", "TERMINATED", 1, 97.0, 0.2, 1.0, 10.0, 50.0, 0.002, "cosine"),
        _row("a", "TERMINATED", 2, 92.0, 0.6, 3.0, 5.0, NAN, 0.001234, "cosine"),
        _row("c", "TERMINATED", 2, 85.0, 0.4, 1.2, 10.0, 60.0, 0.002, "cosine"),
        _row("d", "ERROR", 1, 99.0, 0.9, 5.0, 2.0, 10.0, 0.1, "onecycle", reason="NaN loss"),
        _row("e", "TERMINATED", 1, 98.0, 0.8, NAN, 4.0, 40.0, 0.01, "step"),
        _row("f", "ERROR", 0, NAN, NAN, NAN, NAN, NAN, 0.3, "step", reason="CUDA OOM"),
    ]
    order = [*columns.EPOCH_TABLE_KEYS, *columns.EPOCH_METRICS, "param.kp", "param.lr_schedule", "reason"]
    return pd.DataFrame(rows)[order]


@pytest.fixture
def trials(epochs) -> pd.DataFrame:
    return trials_table(epochs, DEFAULT_OBJECTIVES).set_index("trial_id")


def test_trials_table_has_contract_columns_then_params_one_row_per_trial(epochs):
    table = trials_table(epochs, DEFAULT_OBJECTIVES)
    assert list(table.columns) == [*columns.TRIAL_COLUMNS, "param.kp", "param.lr_schedule", "reason"]
    assert table["trial_id"].tolist() == ["a", "b", "c", "d", "e", "f"]
    assert table["epochs_done"].tolist() == [2, 1, 2, 1, 1, 0]


def test_accuracy_is_the_last_epochs_not_the_best(trials):
    assert trials.loc["c", "val_top1"] == 85.0
    assert trials.loc["c", "val_top5"] == 89.0
    assert trials.loc["a", "val_top1"] == 92.0


def test_speedup_is_total_baseline_time_over_total_trial_time(trials):
    # a: baseline seconds 1.0*10 + 3.0*5 = 25 over 15 trial seconds; the plain mean would be 2.0.
    assert trials.loc["a", "speedup"] == pytest.approx(25 / 15)
    assert trials.loc["c", "speedup"] == pytest.approx(22 / 20)
    assert np.isnan(trials.loc["e", "speedup"])


def test_savings_and_activation_are_epoch_means_and_seconds_add_up(trials):
    assert trials.loc["a", "energy_savings"] == pytest.approx(0.5)
    assert trials.loc["a", "activation_rate"] == pytest.approx(0.5)
    assert trials.loc["c", "energy_savings"] == pytest.approx(0.3)
    assert trials.loc["a", "train_seconds"] == 15.0
    assert trials.loc["c", "train_seconds"] == 20.0


def test_energy_is_summed_and_nan_when_any_epoch_lacks_it(trials):
    assert trials.loc["c", "energy_j"] == 110.0
    assert np.isnan(trials.loc["a", "energy_j"])


def test_trial_failed_before_first_epoch_keeps_status_reason_and_params(trials):
    f = trials.loc["f"]
    assert (f["status"], f["reason"], f["epochs_done"], f["param.kp"]) == ("ERROR", "CUDA OOM", 0, 0.3)
    assert np.isnan(f[["val_top1", "energy_savings", "speedup", "train_seconds"]].astype(float)).all()
    assert (f["pareto_rank"], f["on_front"]) == (0, False)


def test_error_trial_with_best_numbers_is_unranked_and_dominates_nobody(trials):
    assert trials["pareto_rank"].to_dict() == {"a": 1, "b": 1, "c": 2, "d": 0, "e": 0, "f": 0}
    assert trials.index[trials["on_front"]].tolist() == ["a", "b"]


def test_trial_with_a_nan_objective_never_enters_the_front(trials):
    assert trials.loc["e", "val_top1"] == 98.0  # would dominate a and b on accuracy and savings
    assert (trials.loc["e", "pareto_rank"], trials.loc["e", "on_front"]) == (0, False)


def test_scheduler_stopped_trial_may_be_on_the_front(trials):
    assert columns.may_rank("STOPPED") and columns.may_rank("terminated")
    assert not any(map(columns.may_rank, ("ERROR", "INTERRUPTED", "FINISHED", "RUNNING")))
    assert trials.loc["b", "status"] == "STOPPED" and trials.loc["b", "on_front"]


def test_duplicate_epoch_after_restore_keeps_the_last_report(epochs):
    rerun = epochs[epochs["trial_id"] == "b"].assign(val_top1=96.0, train_seconds=9.0)
    table = trials_table(pd.concat([epochs, rerun]), DEFAULT_OBJECTIVES).set_index("trial_id")
    assert (table.loc["b", "val_top1"], table.loc["b", "train_seconds"], table.loc["b", "epochs_done"]) \
        == (96.0, 9.0, 1)


def test_front_is_sorted_by_first_objective_best_first(epochs):
    assert front_table(trials_table(epochs, DEFAULT_OBJECTIVES), DEFAULT_OBJECTIVES)["trial_id"].tolist() \
        == ["b", "a"]
    # Minimising accuracy, maximising savings: c (85, .3) beats b (95, .2); a (92, .5) stays, and
    # e (98, .8) joins now that its missing speedup is not an objective.
    flipped = (("val_top1", "min"), ("energy_savings", "max"))
    assert front_table(trials_table(epochs, flipped), flipped)["trial_id"].tolist() == ["c", "a", "e"]


def test_unknown_objective_metric_is_rejected_with_allowed_values(epochs):
    with pytest.raises(ValueError, match=r"objectives\[1\]\.metric: must be one of val_top1, .*; got 'acc'"):
        trials_table(epochs, [("val_top1", "max"), ("acc", "max")])


def test_missing_epoch_column_is_named(epochs):
    with pytest.raises(ValueError, match=r"epochs: missing column\(s\) speedup"):
        trials_table(epochs.drop(columns="speedup"), DEFAULT_OBJECTIVES)


def test_markdown_names_counted_and_measured_and_formats_rows(epochs):
    trials = trials_table(epochs, DEFAULT_OBJECTIVES)
    lines = front_markdown(front_table(trials, DEFAULT_OBJECTIVES), DEFAULT_OBJECTIVES).splitlines()
    assert lines[0].startswith("Pareto front over val_top1 (max), energy_savings (max), speedup (max).")
    assert "*counted*" in lines[0] and "*measured*" in lines[0]
    assert lines[1].startswith("Speedup to target: the dense baseline's train time to the target (no baseline: ")
    assert lines[3] == ("| trial | top-1 (%) | top-5 (%) | energy savings, counted (%) | "
                        "speedup, measured (×) | activation (%) | epochs | speedup to target, measured (×) | "
                        "time to target (s) | tracking error, mean (points) | tracking error, max (points) | "
                        "verdict | kp | lr_schedule |")
    assert lines[4] == "|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|:---|"
    # no baseline: no target, so no time to it and no verdict; tracking error: |activation − NaN target|
    assert lines[5] == "| b | 95.00 | 99.00 | 20.0 | 1.20 | 80.0 | 1 | — | — | — | — | none | 0.05 | step |"
    assert lines[6] == "| a | 92.00 | 96.00 | 50.0 | 1.67 | 50.0 | 2 | — | — | — | — | none | 0.001234 | cosine |"
    assert len(lines) == 7


def test_a_trial_that_waited_on_its_loader_is_marked_beside_its_speedup(epochs):
    waits = {"a": 6.0, "b": 1.0, "c": 0.0}  # seconds per epoch row: a waits 12 of its 15 s (80 %), b 1 of 8
    epochs = epochs.assign(data_seconds=epochs["trial_id"].map(waits))
    trials = trials_table(epochs, DEFAULT_OBJECTIVES).set_index("trial_id")
    assert trials.loc["a", "data_wait"] == pytest.approx(12 / 15) and trials.loc["b", "data_wait"] == 1 / 8
    assert np.isnan(trials.loc["e", "data_wait"])  # not measured
    lines = front_markdown(front_table(trials.reset_index(), DEFAULT_OBJECTIVES), DEFAULT_OBJECTIVES).splitlines()
    assert lines[2].startswith("(loader-bound): the trial waited more than 33% of its train time on its data loader")
    assert lines[6] == "| b | 95.00 | 99.00 | 20.0 | 1.20 | 80.0 | 1 | — | — | — | — | none | 0.05 | step |"
    assert lines[7].startswith("| a | 92.00 | 96.00 | 50.0 | 1.67 (loader-bound) | 50.0 | 2 |")


def test_markdown_prints_missing_values_as_a_dash(epochs):
    row = trials_table(epochs, DEFAULT_OBJECTIVES).iloc[[5]]  # f: no epochs, NaN metrics
    assert front_markdown(row, DEFAULT_OBJECTIVES).splitlines()[-1] \
        == "| f | — | — | — | — | — | 0 | — | — | — | — | none | 0.3 | step |"


def _brute_force_front(trials: pd.DataFrame, objectives) -> list[str]:
    """Ids of the eligible, finite trials that no other eligible, finite trial dominates."""
    signs = np.array([1.0 if mode == "max" else -1.0 for _, mode in objectives])
    ok = trials["status"].str.upper().isin(["TERMINATED", "STOPPED", "FINISHED"])
    values = trials[[metric for metric, _ in objectives]].to_numpy(float) * signs
    ok &= np.isfinite(values).all(axis=1)
    front = []
    for i in np.flatnonzero(ok):
        dominated = any(np.all(values[j] >= values[i]) and np.any(values[j] > values[i])
                        for j in np.flatnonzero(ok) if j != i)
        if not dominated:
            front.append(trials["trial_id"].iloc[i])
    return front


def test_written_trials_agree_with_brute_force_non_dominance(epochs, tmp_path):
    write_tables(tmp_path, epochs, DEFAULT_OBJECTIVES)
    trials = pd.read_parquet(tmp_path / "trials.parquet")
    assert _brute_force_front(trials, DEFAULT_OBJECTIVES) == trials["trial_id"][trials["on_front"]].tolist()


def test_random_sweep_agrees_with_brute_force_non_dominance(tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    values = rng.integers(0, 5, size=(n, 3)).astype(float)  # small ints: ties and duplicates
    values[rng.random((n, 3)) < 0.05] = NAN
    frame = pd.DataFrame({
        "trial_id": [f"t{i:02d}" for i in range(n)],
        "status": rng.choice(["TERMINATED", "STOPPED", "ERROR", "RUNNING"], size=n, p=[.5, .2, .2, .1]),
        "epoch": 1, "val_top1": values[:, 0], "val_top5": 99.0, "energy_savings": values[:, 1],
        "speedup": values[:, 2], "activation_rate": 0.5, "train_seconds": 1.0, "energy_j": NAN,
    })
    objectives = (("val_top1", "max"), ("energy_savings", "min"), ("speedup", "max"))
    write_tables(tmp_path, frame, objectives)
    trials = pd.read_parquet(tmp_path / "trials.parquet")
    expected = _brute_force_front(trials, objectives)
    assert 0 < len(expected) < n
    assert expected == trials["trial_id"][trials["on_front"]].tolist()


def test_write_tables_writes_every_file_readably_and_atomically(epochs, tmp_path):
    front = write_tables(tmp_path, epochs, DEFAULT_OBJECTIVES)
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["epochs.parquet", "pareto.csv", "pareto.md", "pareto.parquet", "trials.csv",
                     "trials.parquet"]  # and no leftover temporary files
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "pareto.parquet"), front)
    assert pd.read_csv(tmp_path / "pareto.csv")["trial_id"].tolist() == ["b", "a"]
    assert pd.read_csv(tmp_path / "trials.csv")["pareto_rank"].tolist() == [1, 1, 2, 0, 0, 0]
    assert (tmp_path / "pareto.md").read_text() == front_markdown(front, DEFAULT_OBJECTIVES)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "epochs.parquet"), epochs,
                                  check_dtype=False)


def test_epochs_parquet_is_rewritten_only_when_its_content_changes(epochs, tmp_path):
    write_tables(tmp_path, epochs, DEFAULT_OBJECTIVES)
    path = tmp_path / "epochs.parquet"
    inode = path.stat().st_ino
    write_tables(tmp_path, pd.read_parquet(path), DEFAULT_OBJECTIVES)
    assert path.stat().st_ino == inode  # same content: left alone
    write_tables(tmp_path, epochs.iloc[:3], DEFAULT_OBJECTIVES)
    assert len(pd.read_parquet(path)) == 3


def test_cli_rebuilds_every_table_from_epochs_parquet_alone(epochs, tmp_path, capsys):
    write_tables(tmp_path, epochs, DEFAULT_OBJECTIVES)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    for name in before:
        if name != "epochs.parquet":
            (tmp_path / name).unlink()
    assert main([str(tmp_path)]) == 0
    assert capsys.readouterr().out == before["pareto.md"].decode()
    for name in ("trials.parquet", "pareto.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / name), pd.read_parquet(
            io.BytesIO(before[name])))
    for name in ("trials.csv", "pareto.csv", "pareto.md", "epochs.parquet"):
        assert (tmp_path / name).read_bytes() == before[name], name


def test_cli_takes_objectives_from_spec_yaml(epochs, tmp_path, capsys):
    write_tables(tmp_path, epochs, DEFAULT_OBJECTIVES)
    (tmp_path / "spec.yaml").write_text(
        "name: x\nobjectives: [{metric: val_top1, mode: min}, {metric: energy_savings, mode: max}]\n")
    assert main([str(tmp_path), "--format", "csv"]) == 0
    assert pd.read_csv(io.StringIO(capsys.readouterr().out))["trial_id"].tolist() == ["c", "a", "e"]
    assert pd.read_parquet(tmp_path / "trials.parquet").set_index("trial_id")["pareto_rank"]["b"] == 2


@pytest.mark.parametrize("fmt", ["json", "parquet", "csv", "md"])
def test_cli_writes_the_front_to_out_in_each_format(epochs, tmp_path, fmt):
    results = tmp_path / "run"
    write_tables(results, epochs, DEFAULT_OBJECTIVES)
    out = tmp_path / f"front.{fmt}"
    assert main([str(results), "--format", fmt, "--out", str(out)]) == 0
    if fmt == "json":
        assert [row["trial_id"] for row in json.loads(out.read_text())] == ["b", "a"]
    elif fmt == "parquet":
        assert pd.read_parquet(out)["trial_id"].tolist() == ["b", "a"]
    elif fmt == "csv":
        assert pd.read_csv(out)["trial_id"].tolist() == ["b", "a"]
    else:
        assert out.read_text() == (results / "pareto.md").read_text()


def _corrupt(results):
    (results / "epochs.parquet").write_bytes(b"PAR1 not really parquet")


def _missing_column(results):
    pd.DataFrame({"trial_id": ["a"], "status": ["TERMINATED"], "epoch": [1]}).to_parquet(
        results / "epochs.parquet")


def _bad_objective(results):
    pd.DataFrame([_row("a", "TERMINATED", 1, 90.0, 0.4, 1.0, 10.0, 1.0, 0.1, "step")]).to_parquet(
        results / "epochs.parquet")
    (results / "spec.yaml").write_text("objectives: [{metric: top1, mode: max}]\n")


@pytest.mark.parametrize(("setup", "args", "named"), [
    (None, ["missing"], "missing: not a directory"),
    (None, [], "epochs.parquet: not found"),
    (_corrupt, [], "epochs.parquet: cannot read Parquet"),
    (_missing_column, [], "epochs.parquet: missing column(s) val_top1"),
    (_bad_objective, [], "spec.yaml: objectives[0].metric: must be one of val_top1"),
    (None, ["--format", "xml"], "--format"),
    (None, ["--format", "parquet"], "--format parquet: binary output needs --out FILE"),
])
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, setup, args, named):
    results = tmp_path / "results"
    results.mkdir()
    if setup is not None:
        setup(results)
    before = sorted(path.name for path in results.iterdir())
    target = [str(tmp_path / args[0])] if args[:1] == ["missing"] else [str(results), *args]
    assert main(target) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and named in err, err
    assert sorted(path.name for path in results.iterdir()) == before

