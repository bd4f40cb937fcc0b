"""Checkpoints: one ``state.pt`` per directory, written atomically, loaded weights-only, with the run's history.

A run's checkpoints live in ``<root>/epoch_0010/`` and so on: the engine's ``state.pt`` and
``history.json``, the run's epoch records up to that epoch (:func:`save_history`, written after the
state, so a directory whose history reads was saved whole). :func:`resume_point` returns the newest
usable one with its history, falling back past damaged ones with a warning, so a kill at any moment
costs at most the epochs since the previous checkpoint, and a run continued from it holds each epoch
record once. Loading uses ``torch.load(weights_only=True)``: a checkpoint carrying pickled code is
refused, not executed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch

from ast_tune.atomic import atomic_path, write_text

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
HISTORY_FILE = "history.json"  # the run's epoch records up to the checkpoint beside it
KEEP = 2  # checkpoints per run: the newest, and the one before in case it is damaged


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded (truncated, garbage, or not weights-only), or written (a full disk)."""


def epoch_dir(root: str | Path, epoch: int) -> Path:
    """``<root>/epoch_0007`` for epoch 7 (1-based count of finished epochs)."""
    return Path(root) / f"epoch_{epoch:04d}"


def save(directory: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) to ``directory/state.pt``.

    Raises:
        CheckpointError: it could not be written (e.g. the disk is full); no part of it is left,
            and earlier checkpoints are untouched.
    """
    path = Path(directory) / STATE_FILE
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except OSError as err:
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # the directory, if this call made it: left empty, it is no checkpoint
        raise CheckpointError(f"{path}: not written ({err.strerror or err}); the previous checkpoint is kept") \
            from None
    return Path(directory)


def load(directory: str | Path) -> dict[str, Any]:
    """Load ``directory/state.pt`` weights-only onto the CPU.

    Raises:
        CheckpointError: the file is missing, truncated, garbage, or holds anything but data.
    """
    path = Path(directory) / STATE_FILE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: {first_line}") from None


def save_history(directory: str | Path, records: list[dict[str, Any]]) -> None:
    """Write the run's epoch ``records`` so far beside the checkpoint in ``directory``, which makes it usable,
    then remove all but the newest :data:`KEEP` checkpoints under its parent.

    Raises:
        CheckpointError: it could not be written (e.g. the disk is full); the previous checkpoint is kept.
    """
    try:
        write_text(Path(directory) / HISTORY_FILE, json.dumps(records))
    except OSError as err:
        raise CheckpointError(f"{directory}: not written ({err.strerror or err}); the previous checkpoint is kept") \
            from None
    for older in sorted(Path(directory).parent.glob("epoch_*"))[:-KEEP]:
        shutil.rmtree(older, ignore_errors=True)


def resume_point(root: str | Path, *, remove_unusable: bool) -> tuple[Path | None, list[dict[str, Any]]]:
    """The newest usable checkpoint directory under ``root`` (most epochs first) and its history;
    ``(None, [])`` if there is none.

    A directory is usable iff its ``state.pt`` loads weights-only and its history reads. Each unusable
    directory newer than the one returned is named in a warning and, with ``remove_unusable`` (the
    process that writes the checkpoints), removed: the run writes its epochs again from there.
    """
    candidates = sorted(Path(root).glob("epoch_*"), reverse=True) if Path(root).is_dir() else []
    for directory in candidates:
        try:
            load(directory)
            history = json.loads((directory / HISTORY_FILE).read_text())
        except (CheckpointError, OSError, ValueError) as err:
            log.warning("checkpoint %s does not load (%s); trying the one with the next most epochs", directory, err)
            if remove_unusable:
                shutil.rmtree(directory, ignore_errors=True)
            continue
        (log.warning if directory != candidates[0] else log.info)(
            "resuming from checkpoint %s (%d epochs)", directory, len(history))
        return directory, history
    if candidates:
        log.warning("no checkpoint of this run loads; training from epoch 0")
    return None, []
