"""Resumes after kills: trials kept once at seeded kill moments, one driver per sweep, the baseline kept.

The multi-kill test runs a real 10-trial sweep of the embedded default (digits) through the CLI, shrunk
as in :mod:`tests.test_faults`, and SIGKILLs its driver at states the seed picks
(``AST_TUNE_KILL_SEED``; the moments are printed, and named in every failed assertion).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pandas as pd
import pytest

from ast_tune import sweep as sweep_cli
from ast_tune.config.spec import SpecError
from ast_tune.core import checkpoint
from ast_tune.results.journal import Journal
from ast_tune.tuning.runtime import cleanup as ray_cleanup
from tests.test_faults import FINISHED, QUICKSTART, ROOT, TINY, _one_line
from tests.test_kills import _checkpoints, _epochs, _journal, _sigkill, _start, _sweep_argv, _wait

# --- many kills at seeded moments: nothing lost, repeated or left open ---------------------------

KILL_SEED = int(os.environ.get("AST_TUNE_KILL_SEED", "13"))  # another seed: other moments, same assertions


def _started(results: Path) -> int:
    """Trials the study has asked for (the searcher asks one as Tune starts a trial), journaled or not."""
    study = results / "quickstart" / "optuna.db"
    for _ in range(100):
        try:
            with contextlib.closing(sqlite3.connect(f"file:{study}?mode=ro", uri=True)) as db:
                return db.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
        except sqlite3.OperationalError:  # not created yet, or written just now
            if not study.is_file():
                return 0
            time.sleep(0.01)
    raise AssertionError(f"{study} stayed unreadable")


def _epoch_records(results: Path) -> int:
    return len({(e["trial_id"], e["epoch"]) for e in _journal(results) if e["event"] == "epoch"})


KILL_STATES = {  # name: the count a kill waits for to grow (by 1..3, the seed chooses)
    "trial starting": _started, "epoch reported": _epoch_records, "checkpoint written": lambda r: len(_checkpoints(r)),
}


RAY_DID_NOT_START = "The current node timed out during startup"  # Ray's fixed 30 s, missed on an overloaded machine


def _run_until(argv: list[str], results: Path, log: Path, condition: Callable[[], bool]) -> subprocess.Popen:
    """The sweep's driver (``--resume`` once there is a sweep to resume), running at ``condition``.

    A driver whose Ray did not start in time is started again (up to 3 times): it had started nothing.
    """
    for _ in range(3):
        resume = ["--resume"] if (results / "quickstart" / "spec.yaml").is_file() else []
        process = _start([*argv, *resume], log)
        try:
            _wait(process, condition, timeout=900)
            return process
        except AssertionError:
            if process.poll() is None or RAY_DID_NOT_START not in log.read_text()[-3000:]:
                raise
    raise AssertionError(f"Ray did not start, 3 times: {log.read_text()[-3000:]}")


def _checkpointed_epochs(results: Path) -> dict[str, int]:
    """Per trial, the most epochs a checkpoint of it that loads holds (its history file is written with it)."""
    held: dict[str, int] = {}
    for path in _checkpoints(results):
        try:
            epochs = len(json.loads((path / "history.json").read_text()))
            checkpoint.load(path)
        except (OSError, ValueError, checkpoint.CheckpointError):
            continue
        trial_id = path.parent.parent.name
        held[trial_id] = max(held.get(trial_id, 0), epochs)
    return held


def _non_dominated(trials: pd.DataFrame, objectives: list[str]) -> set[str]:
    """Finished trials no other finished trial beats on every objective (all maximised), by brute force."""
    done = trials[trials["status"].isin(FINISHED)]
    points = {row["trial_id"]: [row[o] for o in objectives] for _, row in done.iterrows()}
    return {t for t, p in points.items()
            if not any(all(a >= b for a, b in zip(q, p, strict=True)) and q != p for q in points.values())}


@pytest.mark.ray
def test_driver_killed_at_seeded_moments_keeps_every_trial_once_and_closes_every_optuna_trial(tmp_path):
    results, log = tmp_path / "results", tmp_path / "sweep.log"
    argv = _sweep_argv(results, "workload.epochs=4", "search.num_trials=10", "scheduler.grace_period=2",
                       "scheduler.reduction_factor=2")
    rng = random.Random(KILL_SEED)
    kinds = ["trial starting", *rng.choices(sorted(KILL_STATES), k=2)]
    rng.shuffle(kinds)
    moments, held = [], []
    try:
        for kind in kinds:
            count = KILL_STATES[kind]
            target = count(results) + rng.randint(1, 3)
            _sigkill(_run_until(argv, results, log, lambda c=count, t=target: c(results) >= t))
            moments.append(f"{kind} #{target}")
            held.append(_checkpointed_epochs(results))
        print(f"kill seed {KILL_SEED}: killed at {moments}")  # shown with -s, and on failure
        for _ in range(3):
            final = subprocess.run([*argv, "--resume"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                   capture_output=True, text=True, timeout=900)
            if RAY_DID_NOT_START not in final.stderr:
                break
    finally:
        ray_cleanup.reap_stale("/tmp")
    assert final.returncode == 0, (moments, final.stdout[-3000:] + final.stderr[-3000:])
    sweep = results / "quickstart"
    trials = pd.read_parquet(sweep / "trials.parquet")
    assert len(trials) == 10 and trials["trial_id"].is_unique, (moments, trials["trial_id"].tolist())
    assert sorted(p.name for p in (sweep / "trials").iterdir()) == sorted(trials["trial_id"])  # one run directory each
    assert set(trials["status"]) <= {*FINISHED, "ERROR"}
    everything = _journal(results)
    first = {}
    for entry in everything:  # a trial keeps the configuration it started with, through every restore
        assert entry["params"] == first.setdefault(entry["trial_id"], entry["params"]), (moments, entry)
    for _, row in trials.iterrows():
        assert {k: row[f"param.{k}"] for k in first[row["trial_id"]]} == first[row["trial_id"]]
    seen = _epochs(everything)
    for checkpointed in held:  # no epoch that a checkpoint held at a kill was trained again
        for trial_id, epochs in checkpointed.items():
            for epoch in range(1, epochs + 1):
                assert len(set(seen[trial_id, epoch])) == 1, (moments, trial_id, epoch, seen[trial_id, epoch])
    study = optuna.load_study(study_name="quickstart", storage=f"sqlite:///{sweep / 'optuna.db'}")
    asked = [t for t in study.trials if t.params.keys() == first[trials["trial_id"].iloc[0]].keys()]
    # a study trial killed while Optuna stored its parameters never ran: told FAIL, in no table or journal
    assert all(t.state.name == "FAIL" and str(t.number) not in first for t in study.trials if t not in asked)
    states = {str(t.number): t.state.name for t in asked}
    assert len(asked) == 10 and set(states) == set(trials["trial_id"]), (moments, states)
    for _, row in trials.iterrows():
        assert states[row["trial_id"]] == ("FAIL" if row["status"] == "ERROR" else "COMPLETE"), (moments, row)
    front = set(pd.read_parquet(sweep / "pareto.parquet")["trial_id"])
    assert front == _non_dominated(trials, ["val_top1", "energy_savings"]), moments


# --- one driver per sweep ---------------------------------------------------------------------------

HOLD = """
import sys
from pathlib import Path
from ast_tune.results import lock
with lock.hold(Path(sys.argv[1]), say=print):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_a_second_sweep_of_the_same_name_exits_2_naming_the_driver_that_holds_it(tmp_path, capsys):
    import platform

    results = tmp_path / "results"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(results / "quickstart")], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        assert sweep_cli.main([str(QUICKSTART), "--set", f"storage.root={results}"]) == 2
        err = _one_line(capsys)
        assert f"driver.lock: this sweep is run by pid {holder.pid} on {platform.node()}" in err, err
        assert [p.name for p in (results / "quickstart").iterdir()] == ["driver.lock"]  # nothing else written
    finally:
        holder.communicate("\n", timeout=30)
    assert not (results / "quickstart").exists()  # the holder removed its lock, and the directory it made


def test_a_lock_left_by_a_dead_driver_on_this_host_is_taken_over_and_said_so(tmp_path):
    import platform

    from ast_tune.results import lock

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / lock.LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": platform.node(), "since": "x"}))
    said: list[str] = []
    with lock.hold(tmp_path, say=said.append):
        assert json.loads((tmp_path / lock.LOCK_FILE).read_text())["pid"] == os.getpid()
        with lock.hold(tmp_path, say=said.append):  # the same process again (a sweep's own promotion)
            pass
        assert (tmp_path / lock.LOCK_FILE).is_file()
    assert said == [f"lock: {tmp_path / lock.LOCK_FILE} was held by pid {dead.pid} on {platform.node()}, which is "
                    "gone; taking it over"]
    assert not (tmp_path / lock.LOCK_FILE).exists()
    (tmp_path / lock.LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": "another-host", "since": "x"}))
    with pytest.raises(SpecError, match=f"run by pid {dead.pid} on another-host"), lock.hold(tmp_path, say=said.append):
        pass  # a pid of another host cannot be checked: never taken over


# --- a resumed sweep keeps the baseline it started with ---------------------------------------------


def test_a_sweep_resumed_on_another_device_warns_and_keeps_its_baseline(tmp_path, monkeypatch, caplog):
    from ast_tune.config.sweep_spec import load_sweep
    from ast_tune.tuning.runtime import baseline

    spec = load_sweep(QUICKSTART, TINY)
    stored = {**baseline.baseline_fingerprint(spec, "cpu: the first machine", runs_at_once=2)}
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"fingerprint": stored, "epoch_seconds": 2.0, "val_top1": 90.0}))
    before = path.read_text()
    monkeypatch.setattr(baseline, "probe_device", lambda workload: "cpu: another machine")
    with caplog.at_level("WARNING"):
        kept = baseline.ensure_baseline(spec, path, storage_path=tmp_path / "train", runs_at_once=1, stored="keep")
    assert kept["epoch_seconds"] == 2.0 and path.read_text() == before
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "device 'cpu: the first machine' -> 'cpu: another machine'" in warning
    assert "runs_at_once 2 -> 1" in warning and "keeps it" in warning and "--new-baseline" in warning
    current = baseline.baseline_fingerprint(spec, "cpu: another machine")
    assert baseline._cached(path, current, keep=False) is None  # a new sweep would time its own


def test_every_speedup_in_the_tables_divides_the_one_baseline_of_the_sweep(tmp_path):
    from ast_tune.config.sweep_spec import load_sweep

    spec = load_sweep(QUICKSTART, TINY)
    journal = Journal(tmp_path / "journal.jsonl")
    for trial_id, speedup, seconds in (("a", 1.0, 2.0), ("b", 3.0, 4.0)):  # each timed against another baseline
        journal.append({"event": "epoch", "trial_id": trial_id, "params": {}, "epoch": 1, "train_seconds": seconds,
                         "speedup": speedup, "val_top1": 50.0 + seconds, "energy_savings": 0.5})
        journal.append({"event": "end", "trial_id": trial_id, "params": {}, "status": "TERMINATED", "reason": None})
    sweep_cli._write_tables(spec, tmp_path, journal, 8.0)
    trials = pd.read_parquet(tmp_path / "trials.parquet").set_index("trial_id")
    assert trials.loc["a", "speedup"] == pytest.approx(4.0) and trials.loc["b", "speedup"] == pytest.approx(2.0)
