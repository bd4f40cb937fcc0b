"""``python -m ast_tune.train``: outputs, resume, and one-line errors with exit code 2."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ast_tune.train import main

TINY = [arg for pair in ("data.image_size=16", "epochs=2", "warmup_epochs=1", "batch_size=64")
        for arg in ("--set", pair)]


@pytest.mark.parametrize(("args", "key"), [
    (["--preset", "nope"], "preset:"),
    (["--set", "sparsity.kpp=1"], "sparsity.kpp:"),
    (["--set", "epochs=x"], "epochs:"),
    (["--set", "sparsity.target_activation=1.5"], "sparsity.target_activation:"),
    (["--preset", "conservative"], "data.root:"),
    (["--data", "imagenet", "--data-root", "/nonexistent"], "data.root:"),
    (["--set", "noequals"], "--set:"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, key):
    out = tmp_path / "run"
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {key}") and "\n" not in err
    assert not out.exists()


def test_run_writes_epochs_summary_checkpoints_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TINY, "--set", "checkpoint_every=1", "--out", str(out)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2 and "(counted)" in lines[0]
    epochs = pd.read_parquet(out / "epochs.parquet")
    assert epochs["epoch"].tolist() == [1, 2]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and len(summary["per_class_top1"]) == 10
    assert {p.suffix for p in (out / "plots").iterdir()} == {".png"}
    assert main([*TINY, "--out", str(out)]) == 2  # refuses to overwrite a run without --resume
    assert main([*TINY, "--set", "epochs=3", "--resume", "--out", str(out)]) == 0
    assert pd.read_parquet(out / "epochs.parquet")["epoch"].tolist() == [1, 2, 3]


def test_a_kill_between_the_checkpoint_and_the_epochs_file_loses_no_epoch_row(tmp_path):
    """The state a kill leaves after epoch 2's checkpoint and history were written, before epochs.parquet was."""
    out = tmp_path / "run"
    assert main([*TINY, "--set", "checkpoint_every=1", "--out", str(out)]) == 0
    epochs = pd.read_parquet(out / "epochs.parquet")
    epochs[epochs["epoch"] == 1].to_parquet(out / "epochs.parquet")
    assert main([*TINY, "--set", "checkpoint_every=1", "--set", "epochs=3", "--resume", "--out", str(out)]) == 0
    resumed = pd.read_parquet(out / "epochs.parquet")
    assert resumed["epoch"].tolist() == [1, 2, 3]
    assert resumed["train_seconds"].iloc[1] == epochs["train_seconds"].iloc[1]  # epoch 2 kept, not retrained
