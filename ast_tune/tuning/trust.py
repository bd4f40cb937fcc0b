"""Whether a sweep's Tune experiment may be restored: nothing the user did not make is unpickled.

Restoring unpickles ``tune/tuner.pkl`` and the searcher's state, and the journal unpickles trials'
errors: any code those pickles name would run. :func:`check_restorable` allows it only for a
results directory that the current user owns and that nobody else can write (every directory and
file in it, links not followed), and whose pickles name only modules this version of ast_tune has
(a sweep made by another version may name one it lacks, e.g. ``ast_tune.worker``). The pickles are read with
:mod:`pickletools`, which lists what they would import without running any of it.
:func:`check_results` decides what a sweep does with an existing ``results/<name>/``: restore it
(``--resume``), show it (finished), or refuse (another spec, or unfinished without ``--resume``).
"""

from __future__ import annotations

import contextlib
import grp
import importlib.util
import json
import os
import pickletools
import pwd
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import yaml

from ast_tune.config.spec import SpecError
from ast_tune.config.sweep_spec import SweepSpec, to_document

_OUR_MODULE = re.compile(r"ast_tune(\.[A-Za-z_]\w*)*")


def _private_group(gid: int, uid: int) -> bool:
    """Whether group ``gid`` is ``uid``'s own (named after the user, no other member): its write bit is safe."""
    try:
        group, user = grp.getgrgid(gid), pwd.getpwuid(uid)
    except KeyError:
        return False
    return group.gr_name == user.pw_name and set(group.gr_mem) <= {user.pw_name}


def stranger_writable(root: Path) -> str | None:
    """Why ``root`` or something in it is not the current user's alone (another owner, writable by
    another user), or None if it is."""
    uid = os.getuid()
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        if info.st_uid != uid:
            return f"{path} is owned by uid {info.st_uid}, not by you (uid {uid})"
        others = info.st_mode & stat.S_IWOTH or (info.st_mode & stat.S_IWGRP and not _private_group(info.st_gid, uid))
        if others and not stat.S_ISLNK(info.st_mode):  # a link's own mode bits mean nothing
            return f"{path} can be written by other users (mode {stat.filemode(info.st_mode)})"
    return None


def _named_modules(pickle_file: Path) -> Iterator[str]:
    """The ast_tune modules a pickle would import, read from its opcodes (nothing is unpickled).

    A pickle cut short by a kill is read up to the cut: an unpickler would stop there too.
    """
    with open(pickle_file, "rb") as handle, contextlib.suppress(ValueError, EOFError):
        for _, arg, _ in pickletools.genops(handle):
            if isinstance(arg, str):
                yield from (word for word in arg.split() if _OUR_MODULE.fullmatch(word))


def missing_modules(tune_dir: Path) -> list[str]:
    """The ast_tune modules named by the pickles under ``tune_dir`` that this version does not have."""
    names = {name for path in tune_dir.rglob("*.pkl") for name in _named_modules(path)}
    return sorted(name for name in names if not _importable(name))


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent is a module, not a package
        return False


def check_restorable(results: Path, *, key: str = "--resume",
                     instead: str = "read it with export or report, or start a new sweep with --name") -> None:
    """Raise :class:`SpecError` (``key``; its message ends with ``instead``) unless the Tune experiment
    under ``results/tune`` may be unpickled."""
    why = stranger_writable(results)
    if why:
        raise SpecError(key, f"not restoring Tune state you do not own alone: {why}; {instead}")
    try:
        missing = missing_modules(results / "tune")
    except OSError as err:
        raise SpecError(key, f"{results / 'tune'} holds an unreadable file ({err}); {instead}") from None
    if missing:
        raise SpecError(key, f"{results} was made by an older version of ast_tune (its Tune state names "
                             f"{', '.join(missing)}, which no longer exist); it cannot be resumed: {instead}")


def check_results(spec: SweepSpec, results: Path, *, resume: bool) -> bool:
    """Whether to restore the Tune experiment in ``results`` (only with ``resume``, and only one that
    :func:`check_restorable` allows); SpecError if it holds another spec, or an unfinished sweep
    and no ``resume``. Reads only YAML and JSON."""
    restorable = (results / "tune" / "tuner.pkl").is_file()
    if resume and not restorable:
        raise SpecError("--resume", f"{results / 'tune'} holds no sweep to resume")
    stored = results / "spec.yaml"
    if restorable and stored.is_file() and yaml.safe_load(stored.read_text()) != to_document(spec):
        raise SpecError(str(stored), f"sweep {spec.name!r} ran with another spec; resume it unchanged "
                                     "or start a new one with --name")
    if restorable and not resume and not finished(results):
        raise SpecError("--resume", f"{results} holds an unfinished sweep {spec.name!r}: continue it with "
                                    "--resume, or start a new one with --name NEW")
    if resume:
        check_restorable(results)
    return resume


def finished(results: Path) -> bool:
    """Whether ``run.json`` says the sweep in ``results`` ran to its end."""
    try:
        return json.loads((results / "run.json").read_text()).get("status") == "done"
    except (OSError, ValueError, AttributeError):
        return False
