"""Checkpoints: atomic save, weights-only load, the history beside each, fallback past a damaged latest one."""

from __future__ import annotations

import logging
import os
import pickle

import pytest
import torch

from ast_tune.core import checkpoint


def save_epochs(root, epochs):
    """Checkpoints as a run writes them: the state, then the epoch records so far beside it."""
    for epoch in epochs:
        state = {"epoch": epoch, "w": torch.full((2,), float(epoch))}
        directory = checkpoint.save(checkpoint.epoch_dir(root, epoch), state)
        checkpoint.save_history(directory, [{"epoch": e} for e in range(1, epoch + 1)])


def test_resume_point_is_the_newest_checkpoint_with_its_history_and_the_newest_two_are_kept(tmp_path):
    save_epochs(tmp_path, [1, 2, 10])
    directory, history = checkpoint.resume_point(tmp_path, remove_unusable=True)
    assert directory.name == "epoch_0010" and [r["epoch"] for r in history] == list(range(1, 11))
    assert checkpoint.load(directory)["w"].tolist() == [10.0, 10.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_0002", "epoch_0010"]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "no history"])
def test_a_damaged_latest_falls_back_to_the_previous_with_a_warning(tmp_path, caplog, damage):
    save_epochs(tmp_path, [5, 10])
    path = checkpoint.epoch_dir(tmp_path, 10) / checkpoint.STATE_FILE
    if damage == "truncate":
        os.truncate(path, path.stat().st_size // 2)
    elif damage == "garbage":
        path.write_bytes(b"\x00garbage" * 50)
    else:  # killed after the state was saved, before its history was
        (path.parent / checkpoint.HISTORY_FILE).unlink()
    with caplog.at_level(logging.WARNING):
        directory, history = checkpoint.resume_point(tmp_path, remove_unusable=False)
    assert directory.name == "epoch_0005" and len(history) == 5
    assert "epoch_0010" in caplog.text and path.parent.exists()
    assert checkpoint.resume_point(tmp_path, remove_unusable=True)[0].name == "epoch_0005"
    assert not path.parent.exists()


def test_a_history_that_cannot_be_written_is_one_checkpoint_error(tmp_path):
    directory = checkpoint.save(checkpoint.epoch_dir(tmp_path, 1), {"epoch": 1})
    (directory / checkpoint.HISTORY_FILE).mkdir()  # the write's rename onto it fails
    with pytest.raises(checkpoint.CheckpointError, match="previous checkpoint is kept"):
        checkpoint.save_history(directory, [{"epoch": 1}])


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
    checkpoint.save_history(directory, [{"epoch": 1}])
    assert checkpoint.resume_point(tmp_path, remove_unusable=False) == (None, [])


def test_no_checkpoints_means_none(tmp_path):
    assert checkpoint.resume_point(tmp_path / "missing", remove_unusable=True) == (None, [])


def test_save_leaves_no_temporary_files(tmp_path):
    save_epochs(tmp_path, [3])
    assert sorted(p.name for p in checkpoint.epoch_dir(tmp_path, 3).iterdir()) == sorted(
        [checkpoint.STATE_FILE, checkpoint.HISTORY_FILE])
