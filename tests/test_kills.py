"""Killed drivers and workers, corrupt checkpoints and NaN trials, in real sweeps through the CLI.

They run the embedded default (digits), shrunk to a few trials of a few epochs at 16 px
(``tests.test_faults.TINY``). A SIGKILLed driver cannot shut its Ray down: the next sweep removes the
leftovers (:mod:`ast_tune.tuning.runtime.cleanup`), and every test here reaps what it killed. A test
that interrupts a run waits on a state (a journal entry, a checkpoint, a file), never on its speed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pandas as pd
import psutil
import pytest

from ast_tune.results.journal import Journal
from ast_tune.tuning.runtime import cleanup as ray_cleanup
from tests.test_faults import FINISHED, QUICKSTART, ROOT, TINY

pytestmark = pytest.mark.ray


# --- killed drivers and workers, corrupt checkpoints, NaN (each starts Ray) ---------------------------


def _sweep_argv(results: Path, *overrides: str) -> list[str]:
    argv = [sys.executable, "-m", "ast_tune.sweep", str(QUICKSTART), "--no-report", "--set", f"storage.root={results}"]
    for text in [*TINY, *overrides]:
        argv += ["--set", text]
    return argv


def _start(argv: list[str], log: Path) -> subprocess.Popen:
    with log.open("a") as out:
        return subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _journal(results: Path) -> list[dict]:
    path = results / "quickstart" / "journal.jsonl"
    return Journal(path).read()


def _wait(process: subprocess.Popen, condition: Callable[[], bool], timeout: float = 400) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the sweep ended early with {process.returncode}"
        assert time.monotonic() < deadline, "timed out waiting for the sweep"
        time.sleep(0.05)


def _sigkill(process: subprocess.Popen) -> None:
    """SIGKILL the driver alone, as a crash would; then reap the Ray it leaves behind."""
    process.send_signal(signal.SIGKILL)
    process.wait()
    ray_cleanup.reap_stale("/tmp")


def _epochs(entries: list[dict]) -> dict[tuple[str, int], list[float]]:
    seen: dict[tuple[str, int], list[float]] = {}
    for e in entries:
        if e["event"] == "epoch":
            seen.setdefault((e["trial_id"], e["epoch"]), []).append(e["train_seconds"])
    return seen


def _checkpoints(results: Path) -> list[Path]:
    return sorted(p for p in (results / "quickstart" / "trials").glob("*/checkpoints/epoch_*") if p.is_dir())


def _promoted_epochs(results: Path) -> dict[int, float]:
    """``{epoch: train_seconds}`` of the promoted run so far (``promoted/epochs.parquet``, written atomically)."""
    path = results / "quickstart" / "promoted" / "epochs.parquet"
    if not path.is_file():
        return {}
    frame = pd.read_parquet(path)
    return dict(zip(frame["epoch"], frame["train_seconds"], strict=True))


def test_driver_killed_four_times_loses_and_repeats_no_trial_nor_promoted_epoch(tmp_path):
    results, log = tmp_path / "results", tmp_path / "sweep.log"
    argv = _sweep_argv(results, "workload.epochs=3", "search.num_trials=4", "scheduler.kind=fifo",
                       "promote.enabled=true", "promote.epochs=5", "promote.checkpoint_every=1",
                       "promote.rule.max_accuracy_drop=100")
    kills = [  # after trials started; as a checkpoint appears; after a trial ended; during promotion
        lambda before: any(e["event"] == "epoch" for e in _journal(results)),
        lambda before: len(_checkpoints(results)) > before,
        lambda before: sum(e["event"] == "end" for e in _journal(results)) > 0,
        lambda before: len(_promoted_epochs(results)) >= 2,
    ]
    snapshots, promoted_before = [], {}
    try:
        for number, condition in enumerate(kills):
            process = _start([*argv, "--resume"] if number else argv, log)
            before = len(_checkpoints(results))
            _wait(process, lambda c=condition, b=before: c(b))
            _sigkill(process)
            snapshots.append(_journal(results))
        promoted_before = _promoted_epochs(results)
        final = subprocess.run([*argv, "--resume"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                               capture_output=True, text=True, timeout=600)
    finally:
        ray_cleanup.reap_stale("/tmp")
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
    trials = pd.read_parquet(results / "quickstart" / "trials.parquet")
    assert trials["trial_id"].is_unique and len(trials) == 4 and set(trials["status"]) <= FINISHED
    everything, seen = _journal(results), _epochs(_journal(results))
    for snapshot in snapshots:
        ended = {e["trial_id"]: e for e in snapshot if e["event"] == "end"}
        later = everything[len(snapshot):]
        # a trial that ended before a kill is never run again; were it, it could only replay its checkpoint
        again = [e for e in later if e["trial_id"] in ended and e["event"] == "epoch"]
        assert all(len(set(seen[e["trial_id"], e["epoch"]])) == 1 for e in again), "a finished trial was retrained"
        last = {e["trial_id"]: e for e in snapshot if e["event"] == "epoch"}
        for trial_id in ended:
            row = trials.set_index("trial_id").loc[trial_id]
            assert row["val_top1"] == pytest.approx(last[trial_id]["val_top1"])
        for trial_id, record in last.items():  # epochs before its last checkpointed one are never retrained
            for epoch in range(1, record["epoch"]):
                assert len(set(seen[trial_id, epoch])) == 1, (trial_id, epoch, seen[trial_id, epoch])
    promoted = results / "quickstart" / "promoted"
    assert json.loads((promoted / "summary.json").read_text())["status"] == "finished"
    promoted_after = _promoted_epochs(results)
    assert sorted(promoted_after) == [1, 2, 3, 4, 5]
    for epoch in range(1, max(promoted_before)):  # the promotion continued from its checkpoint
        assert promoted_after[epoch] == promoted_before[epoch], epoch
    assert not list(Path("/tmp").glob(f"*/{ray_cleanup.OWNER_FILE}")) or all(
        ray_cleanup._owner_alive(m) for m in Path("/tmp").glob(f"*/{ray_cleanup.OWNER_FILE}"))


def _processes(driver: subprocess.Popen, title: str) -> list[psutil.Process]:
    children = psutil.Process(driver.pid).children(recursive=True)
    return [p for p in children if title in " ".join(p.cmdline() or [p.name()])]


@contextlib.contextmanager
def frozen(driver: subprocess.Popen, title: str) -> Iterator[list[psutil.Process]]:
    """The driver's processes named ``title`` (its trials, its Train workers) stopped for the block (SIGSTOP).

    A test that interrupts a run at a state freezes it there first, so the run cannot end before the
    signal lands however fast it is (or however slow the test is).
    """
    victims = _processes(driver, title)
    for victim in victims:
        victim.suspend()
    try:
        yield victims
    finally:
        for victim in victims:
            with contextlib.suppress(psutil.NoSuchProcess):
                victim.resume()


@pytest.mark.parametrize(("workers", "title"), [(1, "ImplicitFunc"), (2, "RayTrainWorker")],
                         ids=["trial-process", "ddp-train-worker"])
def test_killed_worker_is_restarted_from_its_checkpoint(tmp_path, workers, title):
    """One worker trains in the Tune trial's own process (Tune retries it); two in Ray Train workers (Train does)."""
    results, log = tmp_path / "results", tmp_path / "sweep.log"
    argv = _sweep_argv(results, "workload.epochs=4", "search.num_trials=1", "scheduler.kind=fifo",
                       f"workload.workers={workers}", f"workload.cpus_per_worker={0.95 / workers}")
    process = _start(argv, log)
    try:
        _wait(process, lambda: any(e.get("epoch") == 2 for e in _journal(results)))
        victims = _processes(process, title)
        assert len(victims) == workers, [p.cmdline() for p in victims]
        victims[0].kill()
        assert process.wait(timeout=600) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            _sigkill(process)
    epochs = pd.read_parquet(results / "quickstart" / "epochs.parquet")
    assert epochs["epoch"].tolist() == [1, 2, 3, 4] and set(epochs["status"]) == {"TERMINATED"}
    seen = _epochs(_journal(results))
    # the restarted worker replays epochs 1-2 from its checkpoint (the journal holds them, so it skips
    # them); trained again from scratch, they would have been appended a second time
    assert [len(seen[epochs["trial_id"].iloc[0], epoch]) for epoch in (1, 2, 3, 4)] == [1, 1, 1, 1]


def test_a_two_worker_trial_resumes_from_its_own_checkpoint_in_a_new_tune_run_without_tunes_files(tmp_path):
    """The driver of a 2-rank (Ray Train) trial is killed after epoch 2's checkpoint; Tune's directory is then
    deleted. ``--resume`` starts a new Tune run, the Train run named by the study number, and its ranks continue
    from the run's own checkpoint: epochs 1-2 are replayed, not trained again."""
    results, log = tmp_path / "results", tmp_path / "sweep.log"
    argv = _sweep_argv(results, "workload.epochs=4", "search.num_trials=1", "scheduler.kind=fifo",
                       "workload.workers=2", "workload.cpus_per_worker=0.45")
    process = _start(argv, log)
    try:
        _wait(process, lambda: any(e.get("epoch") == 2 for e in _journal(results)))
        _sigkill(process)
        shutil.rmtree(results / "quickstart" / "tune")  # Tune's scratch: nothing in it is needed to resume
        resumed = subprocess.run([*argv, "--resume"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                 capture_output=True, text=True, timeout=600)
    finally:
        ray_cleanup.reap_stale("/tmp")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "resume: trial(s) 0 continue" in resumed.stdout
    epochs = pd.read_parquet(results / "quickstart" / "epochs.parquet")
    assert epochs["epoch"].tolist() == [1, 2, 3, 4] and set(epochs["status"]) == {"TERMINATED"}
    seen = _epochs(_journal(results))
    assert [len(seen["0", epoch]) for epoch in (1, 2, 3, 4)] == [1, 1, 1, 1]
    assert (results / "quickstart" / "train" / "trial_0").is_dir()  # the Train run, named by the study number
    assert sorted(p.name for p in (results / "quickstart" / "trials" / "0" / "checkpoints").iterdir()) == [
        "epoch_0003", "epoch_0004"]


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    results, log = tmp_path / "results", tmp_path / "sweep.log"
    argv = _sweep_argv(results, "workload.epochs=4", "search.num_trials=1", "scheduler.kind=fifo")
    process = _start(argv, log)
    try:
        _wait(process, lambda: any(e.get("epoch") == 3 for e in _journal(results)))
        with frozen(process, "ImplicitFunc") as trials:
            assert trials and not any(e.get("epoch") == 4 for e in _journal(results))
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=300) == 130
        held = {p: json.loads((p / "history.json").read_text())[-1]["epoch"] for p in _checkpoints(results)}
        newest = max(held, key=held.get)
        broken = held[newest]
        state = newest / "state.pt"
        state.write_bytes(state.read_bytes()[:100])  # truncated mid-write
        before = _epochs(_journal(results))
        resumed = subprocess.run([*argv, "--resume", "--verbose"], cwd=ROOT, capture_output=True, text=True,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    finally:
        ray_cleanup.reap_stale("/tmp")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"checkpoint {newest} does not load" in resumed.stdout + resumed.stderr, resumed.stderr[-3000:]
    assert "resuming from checkpoint" in resumed.stdout + resumed.stderr, resumed.stderr[-3000:]
    epochs = pd.read_parquet(results / "quickstart" / "epochs.parquet")
    assert epochs["epoch"].tolist() == [1, 2, 3, 4]
    trial_id, after = epochs["trial_id"].iloc[0], _epochs(_journal(results))
    for epoch in range(1, broken):  # from the previous checkpoint: replayed, unchanged, not trained again
        assert set(after[trial_id, epoch]) == set(before[trial_id, epoch])
    # the epoch of the broken checkpoint was trained after the resume (a worker may have saved it after the kill)
    assert set(after[trial_id, broken]) - set(before.get((trial_id, broken), []))


def test_nan_trials_are_errors_off_the_front_and_failed_in_optuna(tmp_path):
    results = tmp_path / "results"
    done = subprocess.run(_sweep_argv(results, "workload.epochs=2", "search.num_trials=4", "search.sampler=random",
                                      "search.max_concurrent=1", "scheduler.kind=fifo",
                                      "space.lr={choice: [1.0e+8, 0.05]}", "space.lr_schedule={fixed: cosine}",
                                      "space.warmup_epochs={fixed: 0}", "space.mode={fixed: inline}"),
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = pd.read_csv(results / "quickstart" / "trials.csv")
    errors = trials[trials["status"] == "ERROR"]
    assert 0 < len(errors) < len(trials) == 4
    assert errors["reason"].str.startswith("NonFiniteLossError: ").all() and not errors["on_front"].any()
    assert not set(errors["trial_id"]) & set(pd.read_csv(results / "quickstart" / "pareto.csv")["trial_id"])
    study = optuna.load_study(study_name="quickstart", storage=f"sqlite:///{results / 'quickstart' / 'optuna.db'}")
    states = [t.state.name for t in study.trials]
    assert states.count("FAIL") == len(errors) and states.count("COMPLETE") == len(trials) - len(errors)
    assert all(t.values is None for t in study.trials if t.state.name == "FAIL")
