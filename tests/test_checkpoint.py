"""Checkpoints: atomic save, weights-only load, fallback past a corrupt latest one."""

from __future__ import annotations

import logging
import os
import pickle

import pytest
import torch

from ast_tune.core import checkpoint


def save_epochs(root, epochs):
    for epoch in epochs:
        state = {"epoch": epoch, "w": torch.full((2,), float(epoch))}
        checkpoint.save(checkpoint.epoch_dir(root, epoch), state)


def test_latest_valid_returns_the_newest_checkpoint(tmp_path):
    save_epochs(tmp_path, [1, 2, 10])
    state, directory = checkpoint.latest_valid(tmp_path)
    assert state["epoch"] == 10 and directory.name == "epoch_0010"
    assert state["w"].tolist() == [10.0, 10.0]


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_latest_falls_back_to_previous_with_a_warning(tmp_path, caplog, damage):
    save_epochs(tmp_path, [5, 10])
    path = checkpoint.epoch_dir(tmp_path, 10) / checkpoint.STATE_FILE
    if damage == "truncate":
        os.truncate(path, path.stat().st_size // 2)
    else:
        path.write_bytes(b"\x00garbage" * 50)
    with caplog.at_level(logging.WARNING):
        state, directory = checkpoint.latest_valid(tmp_path)
    assert state["epoch"] == 5 and directory.name == "epoch_0005"
    assert "epoch_0010" in caplog.text


class Hostile:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_a_pickle_carrying_code_is_refused(tmp_path):
    directory = tmp_path / "epoch_0001"
    directory.mkdir()
    with open(directory / checkpoint.STATE_FILE, "wb") as handle:
        pickle.dump({"epoch": 1, "payload": Hostile()}, handle, protocol=2)
    with pytest.raises(checkpoint.CheckpointError, match="state.pt"):
        checkpoint.load(directory)
    assert checkpoint.latest_valid(tmp_path) is None


def test_no_checkpoints_means_none(tmp_path):
    assert checkpoint.latest_valid(tmp_path / "missing") is None


def test_save_leaves_no_temporary_files(tmp_path):
    save_epochs(tmp_path, [3])
    assert [p.name for p in checkpoint.epoch_dir(tmp_path, 3).iterdir()] == [checkpoint.STATE_FILE]
