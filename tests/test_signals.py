"""SIGTERM (a pod stop, a cancelled job) is handled as Ctrl-C: what is written stays whole, the command
that continues is printed, and the exit code is 143; a second SIGTERM ends the process at once.

A test that signals a run waits on a state (a marker file, a checkpoint) and freezes the run there
(SIGSTOP) before it signals, so the run cannot end first however fast it is.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from ast_tune.config.cli import EXIT_TERMINATED, run_main
from ast_tune.results.journal import JOURNAL, Journal
from ast_tune.results.lock import LOCK_FILE
from ast_tune.tuning.runtime.session import _sigterm_held, fit
from tests.test_kills import _sweep_argv, frozen

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(autouse=True)
def python_sigint_handler() -> Iterator[None]:
    """Python's own SIGINT handler, as a new command starts with, whatever an earlier test left in this process."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"ended early with {process.returncode}: {process.stderr.read()}"
        assert time.monotonic() < deadline, "timed out waiting for the state"
        time.sleep(0.05)


def test_sigterm_is_handled_as_ctrl_c_and_exits_143_with_the_continue_line(capsys):
    def body() -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler raises KeyboardInterrupt here, at the next bytecode
            time.sleep(0.01)
        return 0

    before = signal.getsignal(signal.SIGTERM)
    assert run_main(body, interrupted="interrupted; continue with: x --resume") == EXIT_TERMINATED == 143
    assert capsys.readouterr().err == "interrupted; continue with: x --resume\n"
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is the command's only
    assert run_main(lambda: 130, interrupted="stop") == 130  # a Ctrl-C is still 130


def test_sigterm_stops_a_command_started_with_sigint_ignored(capsys):
    # `cmd &` in a script (no job control) starts cmd with SIGINT ignored; SIGTERM must still stop it
    def body() -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            time.sleep(0.01)
        return 0

    sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert run_main(body, interrupted="stopped") == 143
    finally:
        signal.signal(signal.SIGINT, sigint)
    assert capsys.readouterr().err == "stopped\n"


SLOW_CLEANUP = """
import sys, time
from pathlib import Path
from ast_tune.config.cli import run_main

def body():
    try:
        Path(sys.argv[1]).write_text("running")
        time.sleep(600)
    except KeyboardInterrupt:
        Path(sys.argv[2]).write_text("cleaning up")
        time.sleep(600)  # a cleanup that would hang
    return 0

sys.exit(run_main(body, interrupted="interrupted"))
"""


def test_a_second_sigterm_ends_the_command_at_once(tmp_path):
    running, cleaning = tmp_path / "running", tmp_path / "cleaning"
    process = subprocess.Popen([sys.executable, "-c", SLOW_CLEANUP, str(running), str(cleaning)], env=ENV,
                               stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(running.is_file, process)
        process.send_signal(signal.SIGTERM)
        _wait_for(cleaning.is_file, process)  # the first SIGTERM stopped the work like Ctrl-C
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 143
    finally:
        if process.poll() is None:
            process.kill()


def test_train_sent_sigterm_exits_143_prints_the_resume_command_and_it_finishes_the_run(tmp_path):
    out = tmp_path / "run"
    argv = ["--set", "data.image_size=16", "--set", "epochs=4", "--set", "warmup_epochs=1", "--set",
            "batch_size=64", "--set", "checkpoint_every=1", "--out", str(out)]
    process = subprocess.Popen([sys.executable, "-m", "ast_tune.train", *argv], cwd=ROOT, env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (out / "checkpoints" / "epoch_0001" / "state.pt").is_file()
                  and (out / "epochs.parquet").is_file(), process)
        process.send_signal(signal.SIGSTOP)  # frozen at this state: it cannot finish before the signal
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGCONT)
        _, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, err[-2000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("interrupted: the checkpoints so far are kept; continue with: "), line
    command = shlex.split(line.split("continue with: ", 1)[1])
    assert command[:3] == ["python", "-m", "ast_tune.train"] and command[-1] == "--resume"
    first = pd.read_parquet(out / "epochs.parquet")
    assert 1 <= len(first) < 4  # stopped mid-run; what was written is whole
    resumed = subprocess.run([sys.executable, *command[1:]], cwd=ROOT, env=ENV, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    epochs = pd.read_parquet(out / "epochs.parquet")
    assert epochs["epoch"].tolist() == [1, 2, 3, 4]
    assert epochs["train_seconds"].iloc[0] == first["train_seconds"].iloc[0]  # epoch 1 was not trained again


# --- sweep and promote: Ray's own SIGTERM handler is kept off, and the printed command finishes the run ----------


def _continue_line(err: str, prefix: str) -> list[str]:
    """The command of the last stderr line, which must start with ``prefix``."""
    line = err.strip().splitlines()[-1]
    assert line.startswith(prefix), err[-3000:]
    return shlex.split(line[len(prefix):])


def _sigterm_frozen(process: subprocess.Popen, title: str) -> str:
    """SIGTERM to ``process`` while its processes named ``title`` (the trials) are frozen; its stderr."""
    with frozen(process, title) as trials:  # held at this state: the run cannot end before the signal
        assert trials
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=300)
    return err


def _epochs_once(entries: list[dict]) -> dict[tuple[str, int], set[float]]:
    seen: dict[tuple[str, int], set[float]] = {}
    for e in entries:
        if e["event"] == "epoch":
            seen.setdefault((e["trial_id"], e["epoch"]), set()).add(e["train_seconds"])
    return seen


@pytest.mark.ray
def test_sweep_and_promote_sent_sigterm_exit_143_and_their_printed_commands_finish_them(tmp_path):
    results = tmp_path / "results"
    argv = _sweep_argv(results, "workload.epochs=2", "search.num_trials=2", "scheduler.kind=fifo",
                       "promote.checkpoint_every=1", "promote.rule.max_accuracy_drop=100")
    journal = Journal(results / "quickstart" / JOURNAL)
    process = subprocess.Popen(argv, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: any(e["event"] == "epoch" for e in journal.read()), process)
    err = _sigterm_frozen(process, "ImplicitFunc")
    assert process.returncode == 143, err[-3000:]
    command = _continue_line(err, "interrupted; continue with: ")
    assert command == ["python", "-m", "ast_tune.sweep", *argv[3:], "--resume"]
    before = _epochs_once(journal.read())
    assert pd.read_parquet(results / "quickstart" / "epochs.parquet")["status"].eq("INTERRUPTED").all()

    resumed = subprocess.run([sys.executable, *command[1:]], cwd=ROOT, env=ENV, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = pd.read_csv(results / "quickstart" / "trials.csv")
    assert len(trials) == 2 and trials["trial_id"].is_unique and set(trials["status"]) == {"TERMINATED"}
    epochs = pd.read_parquet(results / "quickstart" / "epochs.parquet")
    assert sorted(epochs.groupby("trial_id")["epoch"].apply(list).tolist()) == [[1, 2]] * 2
    after = _epochs_once(journal.read())
    assert all(after[key] == seconds for key, seconds in before.items())  # nothing trained before was trained again

    promoted = results / "quickstart" / "promoted"
    promote_argv = [sys.executable, "-m", "ast_tune.promote", str(results / "quickstart"), "--epochs", "2"]
    process = subprocess.Popen(promote_argv, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    _wait_for((promoted / "epochs.parquet").is_file, process)
    err = _sigterm_frozen(process, "ImplicitFunc")
    assert process.returncode == 143, err[-3000:]
    command = _continue_line(err, "interrupted: the last checkpoint is kept; continue with the same command: ")
    assert command == ["python", "-m", "ast_tune.promote", *promote_argv[3:]]
    first = pd.read_parquet(promoted / "epochs.parquet")
    again = subprocess.run([sys.executable, *command[1:]], cwd=ROOT, env=ENV, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    done = pd.read_parquet(promoted / "epochs.parquet")
    assert done["epoch"].tolist() == [1, 2] and done["train_seconds"].iloc[0] == first["train_seconds"].iloc[0]


@pytest.mark.ray
def test_a_sweep_sent_sigterm_before_ray_starts_exits_143_and_its_printed_command_runs_it(tmp_path):
    """The state: ``driver.lock`` taken (Ray starts after it); the driver is frozen there before the signal."""
    results = tmp_path / "results"
    argv = _sweep_argv(results, "workload.epochs=1", "search.num_trials=1", "scheduler.kind=fifo")
    sweep_dir = results / "quickstart"
    process = subprocess.Popen(argv, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for((sweep_dir / LOCK_FILE).is_file, process, timeout=120)
    process.send_signal(signal.SIGSTOP)
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGCONT)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 143, err[-3000:]
    command = _continue_line(err, "interrupted; continue with: ")
    exists = (sweep_dir / "spec.yaml").is_file()  # --resume once the sweep exists; before, the same command
    assert command == ["python", "-m", "ast_tune.sweep", *argv[3:], *["--resume"] * exists]
    assert not (sweep_dir / LOCK_FILE).exists()
    done = subprocess.run([sys.executable, *command[1:]], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert pd.read_csv(sweep_dir / "trials.csv")["status"].tolist() == ["TERMINATED"]


def test_the_sigint_handler_a_tune_run_leaves_behind_is_replaced_by_the_one_before_it():
    class Tuner:  # as Tune's fit does: it installs its handler and leaves it there
        def fit(self) -> str:
            signal.signal(signal.SIGINT, lambda signum, frame: None)
            return "grid"

    before = signal.getsignal(signal.SIGINT)
    assert fit(Tuner()) == "grid"
    assert signal.getsignal(signal.SIGINT) is before


def test_a_sigterm_while_ray_starts_waits_until_it_has_started_then_stops_the_command(capsys):
    # an interrupt raised while ray.init forks could be lost in an at-fork hook: it waits for the end of the start
    reached = []

    def body() -> int:
        with _sigterm_held():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100):
                time.sleep(0.001)
            reached.append("started")
        reached.append("after")
        return 0

    assert run_main(body, interrupted="stopped") == 143
    assert reached == ["started"] and capsys.readouterr().err == "stopped\n"
