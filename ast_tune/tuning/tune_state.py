"""Tune's saved state after a kill: the newest snapshot that is whole, with any newer torn one set aside.

Tune saves its experiment state in a local staging directory, atomically, and then copies that
directory into ``results/<name>/tune`` file by file. A driver killed during the copy leaves some of
those files empty or cut short, and ``Tuner.restore`` reads the newest of each kind by the
timestamp in its name: ``experiment_state-<ts>.json`` (the trials), ``searcher-state-<ts>.pkl``
(Optuna's searcher) and ``search_gen_state-<ts>.json`` (its wrapper). The files of one timestamp
are one snapshot. :func:`usable_snapshot` keeps the newest snapshot whose files all read to their
end and renames every newer file to ``<name>.torn``, so Tune restores a consistent older state; the
trials it misses come back from the Optuna study (:mod:`ast_tune.tuning.search.reconcile`). Nothing is
unpickled: a pickle is checked with :mod:`pickletools`, which only reads its opcodes.
"""

from __future__ import annotations

import contextlib
import json
import pickletools
import re
from collections.abc import Callable
from pathlib import Path

_STATE_FILE = re.compile(r"(experiment_state|searcher-state|search_gen_state)-(.+)\.(json|pkl)")
TORN_SUFFIX = ".torn"


def whole(path: Path) -> bool:
    """Whether ``path`` is non-empty and reads to its end as JSON or as a pickle."""
    data = path.read_bytes()
    if not data:
        return False
    with contextlib.suppress(ValueError):
        json.loads(data)
        return True
    try:
        for _ in pickletools.genops(data):
            pass
    except (ValueError, EOFError):
        return False
    return True


def usable_snapshot(tune_dir: Path, *, say: Callable[[str], None]) -> bool:
    """Set aside the snapshots newer than the newest whole one; whether a whole one is left to restore.

    Args:
        tune_dir: ``results/<name>/tune`` (or ``promoted/tune``).
        say: gets one line per file set aside.

    Returns:
        True if ``Tuner.restore`` has a whole snapshot (with its experiment state) to read; False if
        none is whole: every state file is set aside, and the run starts a new Tune experiment there.
    """
    snapshots: dict[str, list[Path]] = {}
    for path in tune_dir.iterdir() if tune_dir.is_dir() else ():
        match = _STATE_FILE.fullmatch(path.name)
        if match:
            snapshots.setdefault(match.group(2), []).append(path)
    for stamp in sorted(snapshots, reverse=True):
        files = snapshots[stamp]
        if any(p.name.startswith("experiment_state-") for p in files) and all(whole(p) for p in files):
            return True
        for path in files:
            path.rename(path.with_name(path.name + TORN_SUFFIX))
            say(f"resume: set aside {path} (cut short by a kill while Tune copied its state)")
    return False
