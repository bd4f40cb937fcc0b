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
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ast_tune.config.cli import EXIT_TERMINATED, run_main

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


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
