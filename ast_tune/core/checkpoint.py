"""Checkpoints: one ``state.pt`` per directory, written atomically, loaded weights-only.

A run's checkpoints live in ``<root>/epoch_0010/state.pt`` and so on. :func:`latest_valid` returns
the newest that loads, falling back past corrupt ones with a warning, so a kill mid-save or a
damaged file costs at most the epochs since the previous checkpoint. Loading uses
``torch.load(weights_only=True)``: a checkpoint carrying pickled code is refused, not executed.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
from pathlib import Path
from typing import Any

import torch

from ast_tune.atomic import atomic_path

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"


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


def latest_valid(root: str | Path) -> tuple[dict[str, Any], Path] | None:
    """The newest checkpoint under ``root`` that loads, with its directory; None if there is none."""
    candidates = sorted(Path(root).glob("epoch_*"), reverse=True) if Path(root).is_dir() else []
    for directory in candidates:
        try:
            state = load(directory)
        except CheckpointError as err:
            log.warning("skipping unreadable checkpoint %s", err)
            continue
        log.info("resuming from %s", directory)
        return state, directory
    return None
