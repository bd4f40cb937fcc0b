"""Promotion: the rule on a hand-made trials table, the CLI's input errors, and one real resumed run.

Trials table of the rule tests (objectives val_top1, energy_savings, speedup; all max):

    trial    status      top-1  savings  speedup  front
    failed   ERROR       99.5   0.90     5.0      no (rank 0)  best numbers, but errored
    shadow   TERMINATED  97.7   0.45     1.1      no (rank 2)  dominated by modest
    sloppy   TERMINATED  95.0   0.80     2.5      yes          3.5 points below the baseline
    modest   STOPPED     98.2   0.50     1.4      yes          most accurate
    thrifty  TERMINATED  97.6   0.60     1.2      yes          saves most among the accurate

With the baseline at 98.5 % and a 1-point drop, modest and thrifty qualify.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from ast_tune.config import columns
from ast_tune.config.promote_spec import PromoteRule
from ast_tune.config.sweep_spec import load_sweep, to_document
from ast_tune.promote import _runs, main, promote
from ast_tune.promotion.choice import NoCandidateError, choose_trial
from ast_tune.results.journal import Journal
from ast_tune.tuning.runtime.worker import REPLAYED
from ast_tune.tuning.search.callbacks import JournalCallback
from tests.test_kills import frozen

ROOT = Path(__file__).resolve().parents[1]
TRIALS = [  # trial_id, status, val_top1, energy_savings, speedup, pareto_rank
    ("failed", "ERROR", 99.5, 0.90, 5.0, 0),
    ("shadow", "TERMINATED", 97.7, 0.45, 1.1, 2),
    ("sloppy", "TERMINATED", 95.0, 0.80, 2.5, 1),
    ("modest", "STOPPED", 98.2, 0.50, 1.4, 1),
    ("thrifty", "TERMINATED", 97.6, 0.60, 1.2, 1),
]


def _trials(**changes: dict[str, float]) -> pd.DataFrame:
    frame = pd.DataFrame(TRIALS, columns=["trial_id", "status", "val_top1", "energy_savings", "speedup",
                                          "pareto_rank"])
    for trial, values in changes.items():
        for column, value in values.items():
            frame.loc[frame["trial_id"] == trial, column] = value
    return frame.assign(on_front=frame["pareto_rank"] == 1)


def _choose(trials: pd.DataFrame, baseline: float | None = 98.5, *, drop: float = 1.0, prefer: str = "energy_savings",
            mode: str = "max") -> str:
    return choose_trial(trials, baseline_top1=baseline, rule=PromoteRule(max_accuracy_drop=drop, prefer=prefer),
                        prefer_mode=mode)


def test_rule_takes_the_front_trial_that_saves_most_within_the_accuracy_drop():
    assert _choose(_trials()) == "thrifty"  # sloppy saves more but is 3.5 points below the baseline


@pytest.mark.parametrize(("prefer", "mode", "expected"), [("speedup", "max", "modest"), ("speedup", "min", "thrifty")])
def test_rule_ranks_the_close_trials_on_the_preferred_objective_in_its_mode(prefer, mode, expected):
    assert _choose(_trials(), prefer=prefer, mode=mode) == expected


def test_errored_and_dominated_trials_are_never_promoted_whatever_their_numbers():
    assert _choose(_trials(), drop=100.0) == "sloppy"  # failed (0.90) and shadow are off the front
    assert _choose(_trials(shadow={"energy_savings": 0.95}), drop=100.0) == "sloppy"


def test_ties_on_the_preferred_objective_go_to_higher_top1_then_smaller_trial_id():
    assert _choose(_trials(thrifty={"energy_savings": 0.5})) == "modest"
    assert _choose(_trials(thrifty={"energy_savings": 0.5, "val_top1": 98.2})) == "modest"


def test_a_tie_between_study_numbers_goes_to_the_smaller_number_not_the_smaller_text():
    trials = _trials()
    trials["trial_id"] = trials["trial_id"].map({"thrifty": "10", "modest": "9"}).fillna(trials["trial_id"])
    trials.loc[trials["trial_id"].isin(["9", "10"]), ["energy_savings", "val_top1"]] = [0.5, 98.2]
    assert _choose(trials) == "9"


def test_without_a_baseline_the_drop_is_measured_from_the_most_accurate_front_trial():
    assert _choose(_trials(), None, drop=0.5) == "modest"  # floor 97.7: thrifty (97.6) is out
    assert _choose(_trials(), None, drop=0.6) == "thrifty"


def test_no_trial_within_the_drop_raises_naming_the_most_accurate_front_trial():
    with pytest.raises(NoCandidateError, match=r"trial modest, has 98\.20%.*--trial"):
        _choose(_trials(), 99.5)


# --- a results directory written by hand ----------------------------------------------------

PARAMS = {"target_activation": 0.4, "kp": 0.3, "ki": 0.01, "warmup_lr": 0.05, "lr": 0.05, "lr_schedule": "cosine",
          "warmup_epochs": 1, "mode": "inline"}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A quickstart sweep's results: trial t0 finished (97 %), t1 errored; baseline 97.5 %, 2 s/epoch."""
    out = tmp_path / "quickstart"
    out.mkdir()
    spec = load_sweep(ROOT / "search_spaces" / "quickstart.yaml",
                      ["workload.data.image_size=16", "workload.cpus_per_worker=0.95", "promote.checkpoint_every=1"])
    (out / "spec.yaml").write_text(yaml.safe_dump(to_document(spec), sort_keys=False))
    rows = []
    for trial, status, top1 in (("t0", "TERMINATED", 97.0), ("t1", "ERROR", 99.0)):
        for epoch in (1, 2):
            row = dict.fromkeys(columns.EPOCH_METRICS, math.nan)
            row.update(trial_id=trial, status=status, epoch=epoch, phase="ast", val_top1=top1, val_top5=100.0,
                       energy_savings=0.4, activation_rate=0.6, speedup=1.5, train_seconds=1.0, reason=None)
            rows.append({**row, **{f"{columns.PARAM_PREFIX}{k}": v for k, v in PARAMS.items()}})
    pd.DataFrame(rows).to_parquet(out / "epochs.parquet", index=False)
    (out / "baseline.json").write_text(json.dumps({"epoch_seconds": 2.0, "val_top1": 97.5, "fingerprint": {}}))
    return out


def _own_ray_env() -> dict[str, str]:
    """This environment without RAY_ADDRESS (a Ray another test started), so the CLI starts its own."""
    return {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "PYTHONPATH": str(ROOT)}


def _listing(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


@pytest.mark.parametrize(("argv", "names"), [
    (["{r}/missing"], "missing: not a directory"),
    (["{r}", "--trial", "nope"], "--trial: no trial 'nope'"),
    (["{r}", "--trial", "t1"], "--trial: trial t1 is ERROR"),
    (["{r}", "--epochs", "0"], "--epochs: the trial's RunSpec with 0 epochs is invalid: epochs: must be >= 1"),
    (["{r}", "--epochs", "two"], "invalid int value"),
    (["{r}", "--colour", "red"], "unrecognized arguments: --colour"),
])
def test_bad_input_exits_2_with_one_line_naming_it_and_writes_nothing(results, capsys, argv, names):
    before = _listing(results.parent)
    assert main([a.format(r=results) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and names in err
    assert _listing(results.parent) == before


@pytest.mark.parametrize("name", ["epochs.parquet", "spec.yaml"])
def test_a_missing_input_file_exits_2_naming_its_path(results, capsys, name):
    (results / name).unlink()
    assert main([str(results)]) == 2
    assert str(results / name) in capsys.readouterr().err
    assert not (results / "promoted").exists()


def test_no_trial_close_enough_exits_1_without_writing(results, capsys):
    (results / "baseline.json").write_text(json.dumps({"epoch_seconds": 2.0, "val_top1": 99.9}))
    assert main([str(results)]) == 1
    assert "nothing promoted: no front trial is within 1 points" in capsys.readouterr().err
    assert not (results / "promoted").exists()


def _epoch(epoch: int, seconds: float, **extra: object) -> dict:
    return {**dict.fromkeys(columns.EPOCH_METRICS, 0.5), "epoch": epoch, "phase": "ast", "train_seconds": seconds,
            **extra}


def _seed_journal(path: Path) -> JournalCallback:
    """A promotion's journal callback: a run is known by its seed, whatever Tune's trial id."""
    return JournalCallback(Journal(path), epochs=3, key=lambda config: f"promoted_t0_seed{config['seed']}",
                           run_dir=lambda config: path.parent)


def test_a_promotion_started_anew_neither_repeats_nor_doubles_a_seeds_epochs(tmp_path, capsys):
    """A new Tune run gives seed 0 another Tune trial id: the epochs it replays from its checkpoint are
    not journaled or printed again, and an epoch it trained again replaces the earlier one."""
    first = _seed_journal(tmp_path / "journal.jsonl")
    for epoch in (1, 2):
        first.on_trial_result(0, [], SimpleNamespace(trial_id="a", config={"seed": 0}), _epoch(epoch, 1.0))
    capsys.readouterr()
    again = _seed_journal(tmp_path / "journal.jsonl")  # the next call's journal
    new = SimpleNamespace(trial_id="b", config={"seed": 0})
    again.on_trial_result(0, [], new, _epoch(1, 1.0, **{REPLAYED: True}))  # from the epoch-1 checkpoint
    again.on_trial_result(0, [], new, _epoch(2, 5.0))  # epoch 2 was not checkpointed: trained again
    again.on_trial_result(0, [], new, _epoch(3, 5.0))
    out = capsys.readouterr().out
    assert "epoch 1/3" not in out and "epoch 2/3" in out and "epoch 3/3" in out
    assert [e["epoch"] for e in again.journal.read()] == [1, 2, 2, 3]
    runs = _runs(SimpleNamespace(seeds=(0,)), again.journal.read())
    assert runs[0]["epoch"].tolist() == [1, 2, 3] and runs[0]["train_seconds"].tolist() == [1.0, 5.0, 5.0]


@pytest.mark.ray
def test_interrupted_promotion_of_two_seeds_continues_each_from_its_checkpoint_and_then_is_done(
        results, request, capsys, tmp_path):
    """``promote.seeds: 2``: both seeds train side by side. Ctrl-C lands while the runs cannot end: at the
    state "an epoch reached the driver" (``epochs.parquet``) the trials' processes are stopped (SIGSTOP),
    so the test waits on states, never on the run's speed."""
    spec = yaml.safe_load((results / "spec.yaml").read_text())
    spec["promote"]["seeds"] = 2
    (results / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    argv = [sys.executable, "-m", "ast_tune.promote", str(results), "--epochs", "3"]
    out_file, err_file = tmp_path / "stdout", tmp_path / "stderr"
    with out_file.open("w") as out, err_file.open("w") as err:
        process = subprocess.Popen(argv, cwd=ROOT, env=_own_ray_env(), stdout=out, stderr=err, text=True)
    epochs_path = results / "promoted" / "epochs.parquet"
    try:
        deadline = time.monotonic() + 600  # a safety net for a broken run, not a speed
        while not epochs_path.is_file():
            assert process.poll() is None and time.monotonic() < deadline, err_file.read_text()[-2000:]
            time.sleep(0.02)
        with frozen(process, "ImplicitFunc") as trials:  # the Tune trials' processes, which train
            first = pd.read_parquet(epochs_path)
            assert trials and first.groupby("seed").size().max() < 3, "the run outran the test: no state to stop at"
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=300) == 130, err_file.read_text()[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    out = out_file.read_text()
    assert "epoch 1/3: top1" in out and "epoch 3/3" not in out, out
    first = pd.read_parquet(epochs_path)

    request.getfixturevalue("ray_cluster")  # a Ray of its own, started after the CLI's has gone
    capsys.readouterr()
    assert promote(results, epochs=3) == (results / "promoted").resolve()
    lines = capsys.readouterr().out.splitlines()
    for seed in (0, 1):
        assert any(f"promoted trial t0 seed {seed} epoch 3/3" in line for line in lines), lines
    printed_before = {(row.seed, row.epoch) for row in first.itertuples()}
    assert not any(f"seed {seed} epoch {epoch}/3" in line for seed, epoch in printed_before for line in lines)
    epochs = pd.read_parquet(epochs_path)
    assert sorted(zip(epochs["seed"], epochs["epoch"], strict=True)) == [(s, e) for s in (0, 1) for e in (1, 2, 3)]
    assert list(epochs.columns) == [*columns.EPOCH_METRICS, "seed"] and epochs["speedup"].notna().all()
    # each seed continued from its checkpoint, not from scratch: its epochs on file before are unchanged
    merged = first.merge(epochs, on=["seed", "epoch"], suffixes=("_before", "_after"))
    assert len(merged) == len(first) and (merged["train_seconds_before"] == merged["train_seconds_after"]).all()
    summary = json.loads((results / "promoted" / "summary.json").read_text())
    assert summary["trial_id"] == "t0" and summary["status"] == "finished" and summary["params"] == PARAMS
    assert len(summary["per_class_top1"]) == len(summary["class_names"]) == 10
    assert set(summary["seeds"]) == {"0", "1"} and set(summary["std"]) == set(summary["mean"])
    final = epochs[epochs["epoch"] == 3].set_index("seed")["val_top1"]
    assert summary["mean"]["val_top1"] == pytest.approx(final.mean())
    assert summary["std"]["val_top1"] == pytest.approx(final.std(ddof=1))
    for seed in (0, 1):
        name = "promoted_t0" if seed == 0 else "promoted_t0_seed1"
        assert list((results / "promoted" / "runs" / name / "checkpoints").glob("epoch_*/state.pt"))
    assert (results / "promoted" / "plots" / "accuracy.png").is_file()

    capsys.readouterr()
    assert main([str(results), "--epochs", "3"]) == 0  # done before: nothing runs again
    assert "was promoted before" in capsys.readouterr().out
    assert main([str(results), "--epochs", "4"]) == 2  # another length would mix two LR schedules
    assert "promotion.json: " in capsys.readouterr().err
