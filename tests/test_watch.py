"""The sweep's status line: printed at each trial's end, and after ``every`` seconds of Tune's steps."""

from __future__ import annotations

from pathlib import Path

from ast_tune.config.sweep_spec import load_sweep
from ast_tune.cost.reestimate import Attempt
from ast_tune.cost.status import status_of
from ast_tune.tuning.search.watch import StatusCallback

QUICKSTART = Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart.yaml"


def test_the_status_line_comes_at_trial_ends_and_after_every_seconds(capsys):
    spec = load_sweep(QUICKSTART, [])
    now = [0.0]
    seen = []
    callback = StatusCallback(lambda: status_of(spec, [], attempts=[Attempt(0.0, None, 2)], now=now[0], live=True),
                              every=60, on_status=seen.append, clock=lambda: now[0])
    now[0] = 59.0
    callback.on_step(1, [])  # not yet
    assert capsys.readouterr().out == "" and not seen
    now[0] = 60.0
    callback.on_step(2, [])
    now[0] = 70.0
    callback.on_trial_complete(3, [], trial=None)
    callback.on_step(4, [])  # 0 s after the last line
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(seen) == 2
    assert lines[0].startswith("status: 0/16 trials done, 0 running, 16 pending · 0/") and " 60 s elapsed" in lines[0]
    assert " 70 s elapsed" in lines[1]


def test_every_zero_prints_only_at_trial_ends(capsys):
    spec = load_sweep(QUICKSTART, [])
    callback = StatusCallback(lambda: status_of(spec, [], attempts=[Attempt(0.0, None, 1)], now=5.0, live=True),
                              every=0, clock=lambda: 1e9)
    callback.on_step(1, [])
    assert capsys.readouterr().out == ""
    callback.on_trial_error(2, [], trial=None)
    assert capsys.readouterr().out.startswith("status: 0/16 trials done")
