"""Where a sweep stands, from its files alone: counts, the re-estimate, spend, the best trial, run.json's three
estimates and ``python -m ast_tune.status``, on a hand-written journal, run.json and spec."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from ast_tune.config.sweep_spec import load_sweep, to_document
from ast_tune.cost.reestimate import Attempt, attempts_of, reestimate
from ast_tune.cost.run_cost import ACTUAL, HALF, START, cost_line, half_estimate
from ast_tune.cost.status import read_status, status_line, status_lines, status_of
from ast_tune.results.journal import JOURNAL, Journal

ROOT = Path(__file__).resolve().parents[1]
S = datetime(2026, 1, 1, tzinfo=UTC).timestamp()  # the attempt's start
CPUS = 0.95  # quickstart's cpus_per_worker


def _spec(*overrides: str):
    return load_sweep(ROOT / "search_spaces" / "quickstart.yaml",
                      ["scheduler.kind=fifo", "search.num_trials=4", "search.max_concurrent=2", "workload.epochs=3",
                       *overrides])


def _epoch(trial: str, epoch: int, at: float, top1: float) -> dict:
    return {"event": "epoch", "trial_id": trial, "params": {"kp": 1.0}, "time": S + at, "epoch": epoch,
            "phase": "ast", "val_top1": top1, "val_top5": 100.0, "energy_savings": 0.7, "activation_rate": 0.3,
            "target_activation": 0.3, "train_seconds": 0.4, "data_seconds": 0.0, "val_seconds": 0.1,
            "speedup": 1.0, "energy_j": float("nan")}


def _journal() -> list[dict]:
    """Trial 0 ran its 3 epochs and ended; trials 1 and 2 run (2 and 1 epochs); trial 3 has not started."""
    start = {"event": "start", "params": {"kp": 1.0}}
    return [{**start, "trial_id": "0", "time": S + 10}, {**start, "trial_id": "1", "time": S + 10},
            _epoch("0", 1, 12, 86.0), _epoch("1", 1, 13, 80.0), _epoch("0", 2, 14, 88.5), _epoch("0", 3, 16, 89.5),
            _epoch("1", 2, 16, 82.0),
            {"event": "end", "trial_id": "0", "params": {"kp": 1.0}, "status": "TERMINATED", "reason": None,
             "time": S + 16.5},
            {**start, "trial_id": "2", "time": S + 17}, _epoch("2", 1, 19, 70.0)]


BASELINE = {"epoch_seconds": 1.0, "val_top1": 90.0, "val_top5": 100.0, "epochs_timed": 3,
            "epochs": [{"epoch": e, "val_top1": v, "train_seconds": 1.0, "val_seconds": 0.2}
                       for e, v in ((1, 80.0), (2, 85.0), (3, 90.0))]}


def test_counts_pace_eta_and_spend_by_hand():
    """6 of 12 trial-epochs (fifo: 4 trials × 3); left: trial 1 one epoch, trial 2 two, trial 3 three. Pace once
    both slots ran an epoch (at 13 s): 4 epochs in the 6 s to 19 s, so the 6 left take 9 s."""
    status = status_of(_spec(), _journal(), attempts=[Attempt(S, None, 2)], now=S + 20, live=True, baseline=BASELINE)
    t, p = status.trials, status.projection
    assert (t.done, t.running, t.pending) == (1, 2, 1)
    assert (p.epochs_done, p.epochs_expected) == (6, 12)
    assert p.pace == pytest.approx(4 / 6) and p.eta_seconds == pytest.approx(9)
    assert p.elapsed_seconds == 20 and p.device == "CPU"
    assert p.held_hours == pytest.approx(20 * 2 * CPUS / 3600)
    assert p.projected_hours == pytest.approx((20 + 9) * 2 * CPUS / 3600)
    assert p.held_usd is None  # a CPU sweep is not priced per GPU-hour
    # trial 0: 0.5 points below 90 %, 70 % counted, 88 % reached at 0.8 s against the baseline's 3 s: minimum;
    # publication needs 3x to 89 %: 3 s / 1.2 s = 2.5x
    assert status.best == "best: trial 0 at minimum (top-1 89.50%, savings 70.0% counted)"
    line = status_line(status)
    assert line.startswith("status: 1/4 trials done, 2 running, 1 pending · 6/12 epochs · 20 s elapsed, ETA 9 s · ")
    assert "0.01 CPU-h held, 0.02 projected" in line and line.endswith(status.best)


def test_a_gpu_sweep_is_priced_and_a_dead_driver_leaves_its_trials_pending():
    spec = _spec("workload.gpus_per_worker=1", "cost.usd_per_gpu_hour=3.6")
    status = status_of(spec, _journal(), attempts=[Attempt(S, None, 2)], now=S + 500, live=False)
    t, p = status.trials, status.projection
    assert (t.done, t.running, t.pending) == (1, 0, 3)  # the open trials resume with --resume
    assert p.elapsed_seconds == 19  # a killed attempt ends at its last journal entry
    assert p.held_hours == pytest.approx(19 * 2 / 3600) and p.held_usd == pytest.approx(19 * 2 / 3600 * 3.6)
    assert status.best == "best: not judged yet: the dense baseline is not timed yet"  # storage.baseline: auto
    assert status.verdict == "verdict: not judged yet: the dense baseline is not timed yet"
    none = status_of(_spec("storage.baseline=none", "objectives=[{metric: val_top1, mode: max}]", "constraints=[]"),
                     _journal(), attempts=[Attempt(S, None, 2)], now=S + 500, live=False)
    assert none.best == "best: not judged (no dense baseline)" and "storage.baseline: none" in none.verdict


def test_before_any_epoch_the_eta_is_the_start_estimates_less_the_time_spent():
    estimate = {"trial_epochs": 12, "wall_seconds": 100, "parts": [
        {"name": "Ray's start", "epochs": 0, "wall_seconds": 10},
        {"name": "trials (fifo)", "epochs": 12, "wall_seconds": 60},
        {"name": "dense baseline", "epochs": 3, "wall_seconds": 30}]}
    projection = reestimate(_spec(), [], attempts=[Attempt(S, None, 2)], now=S + 25, live=True, estimate=estimate,
                            baseline_due=True)
    assert projection.pace == pytest.approx(12 / 60) and "start estimate" in projection.basis
    assert projection.eta_seconds == pytest.approx(60 + (10 + 30 - 25))
    timed = reestimate(_spec(), [], attempts=[Attempt(S, None, 2)], now=S + 25, live=True, estimate=estimate)
    assert timed.eta_seconds == pytest.approx(60)  # the baseline was timed before: only the start is ahead, spent
    unknown = reestimate(_spec(), [], attempts=[Attempt(S, None, 2)], now=S + 25, live=True)
    assert unknown.eta_seconds is None and unknown.projected_hours is None


def test_a_journal_without_times_is_paced_over_the_wall_time():
    entries = [{k: v for k, v in e.items() if k != "time"} for e in _journal()]
    projection = reestimate(_spec(), entries, attempts=[Attempt(S, S + 30, 2)], now=S + 99, live=False)
    assert projection.pace == pytest.approx(6 / 30) and projection.eta_seconds == pytest.approx(6 / (6 / 30))


def test_attempts_of_a_resumed_run_json_oldest_first():
    run = {"start": "2026-01-01T01:00:00+00:00", "end": None, "trials_at_once": 1,
           "attempts": [{"start": "2026-01-01T00:00:00+00:00", "end": "2026-01-01T00:10:00+00:00",
                         "trials_at_once": 2}]}
    assert attempts_of(run) == [Attempt(S, S + 600, 2), Attempt(S + 3600, None, 1)]


def test_the_half_estimate_is_made_once_half_the_expected_trial_epochs_are_done_and_then_kept():
    start = {"trial_epochs": 12.0, "wall_seconds": 40.0}
    status = status_of(_spec(), _journal(), attempts=[Attempt(S, None, 2)], now=S + 20, live=True)
    due = half_estimate({START: start}, status.projection)  # 6 of the 12 done
    assert due["trial_epochs"] == 12 and due["wall_seconds"] == pytest.approx(29)
    assert due["made_at"] == {"trial_epochs": 6, "elapsed_seconds": 20}
    assert half_estimate({START: {"trial_epochs": 13.0}}, status.projection) is None  # 6 < 6.5
    assert half_estimate({START: {"unavailable": "no figures"}}, status.projection) is None
    assert half_estimate({START: start, HALF: {"trial_epochs": 1}}, status.projection) == {"trial_epochs": 1}


def _write_results(tmp_path: Path, *, journal: list[dict], lock: bool) -> Path:
    results = tmp_path / "quickstart"
    results.mkdir()
    (results / "spec.yaml").write_text(yaml.safe_dump(to_document(_spec()), sort_keys=False))
    run = {"start": datetime.fromtimestamp(S, UTC).isoformat(), "end": None, "trials_at_once": 2,
           "estimate": {"trial_epochs": 12.0, "wall_seconds": 40.0, "device_hours": 0.02, "source": "by hand",
                        "parts": []}}
    (results / "run.json").write_text(json.dumps(run))
    (results / "baseline.json").write_text(json.dumps(BASELINE))
    for entry in journal:
        Journal(results / JOURNAL).append(entry)
    if lock:
        (results / "driver.lock").write_text(json.dumps({"pid": os.getpid(), "host": platform.node()}))
    return results


def test_read_status_reads_the_files_and_the_lock_says_it_runs(tmp_path):
    results = _write_results(tmp_path, journal=_journal(), lock=True)
    status = read_status(results, now=S + 20)
    assert status.live and (status.trials.running, status.projection.eta_seconds) == (2, pytest.approx(9))
    lines = status_lines(status)
    assert lines[0] == "sweep quickstart: running"
    assert lines[1] == "trials: 1 of 4 done, 2 running, 1 pending"
    assert "estimate at the start: 12.0 trial-epochs, 40 s, 0.02 CPU-h (by hand)" in lines
    assert lines[-2] == status.best and lines[-1].startswith("verdict: 1 trial(s) reach minimum")


def test_status_command_prints_a_finished_sweep_without_ray_or_torch(tmp_path):
    ended = [{"event": "end", "trial_id": t, "params": {}, "status": "STOPPED", "reason": None, "time": S + 30}
             for t in ("1", "2", "3")]
    results = _write_results(tmp_path, journal=[*_journal(), ended[0], ended[1],
                                                {"event": "start", "trial_id": "3", "params": {}, "time": S + 25},
                                                ended[2]], lock=False)
    code = ("import sys; from ast_tune.status import main; code = main([sys.argv[1]]); "
            "print(sorted(m for m in ('torch', 'ray') if m in sys.modules)); raise SystemExit(code)")
    done = subprocess.run([sys.executable, "-c", code, str(results)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0] == "sweep quickstart: finished" and out[1] == "trials: 4 of 4 done, 0 running, 0 pending"
    assert out[2].startswith("trial-epochs: 6 of 6.0 expected") and out[-1] == "[]"


def test_status_command_refuses_a_directory_that_is_no_sweep_in_one_line(tmp_path, capsys):
    from ast_tune.status import main

    assert main([str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'nothing'}: not a sweep's results directory (no spec.yaml); give results/<name>"


def test_the_cost_line_sets_the_three_estimates_side_by_side():
    start = {"trial_epochs": 107.5, "wall_seconds": 216.0, "device": "CPU", "device_hours": 0.12, "usd": None,
             "source": "the dense baseline"}
    actual = {"trial_epochs": 108, "wall_seconds": 198.0, "device": "CPU", "device_hours": 0.11, "usd": 12.4}
    assert cost_line({START: start, HALF: None, ACTUAL: actual}) == (
        "cost: estimated 107.5 trial-epochs, 3.6 min, 0.12 CPU-h, from the dense baseline · "
        "actual 108 trial-epochs, 3.3 min, 0.11 CPU-h ($12)")
    assert cost_line({START: {"unavailable": "no cost: figures"}}) == "cost: no estimate at the start"
