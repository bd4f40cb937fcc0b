"""One driver per sweep: ``results/<name>/driver.lock`` names the process (pid, host) that runs it.

The lock is taken by hard-linking a fully written temporary file to ``driver.lock``: ``link`` fails
when the name exists, atomically, also on NFS (v2 and later; where the server's reply is lost, the
link count tells). A second ``sweep`` or ``promote`` of the same name is refused (:class:`SpecError`,
exit 2) naming the holder; a lock whose process is dead on this host (a SIGKILLed driver) is taken
over, and the caller is told so. The same process may take the lock again (a sweep's promotion).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ast_tune import atomic
from ast_tune.config.spec import SpecError

LOCK_FILE = "driver.lock"


@contextlib.contextmanager
def hold(directory: Path, *, say: Callable[[str], None]) -> Iterator[None]:
    """Hold ``directory/driver.lock`` for the block; ``say`` is told of a stale lock taken over.

    Raises:
        SpecError: a live process (or one on another host) holds it.
    """
    directory = Path(directory)
    made = [p for p in (directory, *directory.parents) if not p.exists()]  # by the lock, unless more is written
    taken = _acquire(directory / LOCK_FILE, say)
    try:
        yield
    finally:
        if taken and _is_mine(_read(directory / LOCK_FILE)):
            (directory / LOCK_FILE).unlink(missing_ok=True)
            for empty in made:  # bad input found under the lock leaves nothing behind
                with contextlib.suppress(OSError):
                    empty.rmdir()


def holder(directory: Path) -> dict[str, Any] | None:
    """The driver that runs the sweep in ``directory`` now (``driver.lock``'s pid, host, since, command), or
    None: no lock, or one left by a process that is gone on this host. A lock of another host counts as held."""
    found = _read(Path(directory) / LOCK_FILE)
    if not found or (found.get("host") == platform.node() and not _alive(found.get("pid"))):
        return None
    return found


def _acquire(path: Path, say: Callable[[str], None]) -> bool:
    """Take the lock at ``path``; False if this process holds it already."""
    while not _link(path, {**_me(), "since": datetime.now(UTC).isoformat(timespec="seconds"), "command": sys.argv}):
        holder = _read(path)
        if holder is None:  # released meanwhile: try again
            continue
        if _is_mine(holder):
            return False
        if not holder:
            raise SpecError(str(path), "unreadable (left by a crash?); remove it if no other driver runs this sweep")
        if holder.get("host") != platform.node() or _alive(holder.get("pid")):
            raise SpecError(str(path), f"this sweep is run by pid {holder.get('pid')} on {holder.get('host')} "
                                       f"since {holder.get('since')}; wait for it to end, or stop it")
        say(f"lock: {path} was held by pid {holder['pid']} on {holder['host']}, which is gone; taking it over")
        path.unlink(missing_ok=True)
    return True


def _me() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": platform.node()}


def _is_mine(holder: dict[str, Any] | None) -> bool:
    return holder is not None and {key: holder.get(key) for key in ("pid", "host")} == _me()


def _link(path: Path, holder: dict[str, Any]) -> bool:
    """Create ``path`` holding ``holder`` if it does not exist; whether this call created it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{holder['host']}.{holder['pid']}.tmp")
    atomic.write_text(tmp, json.dumps(holder) + "\n")  # whole and on disk before it is linked
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # NFS: the link may have been made although the reply was lost
        return tmp.stat().st_nlink == 2
    finally:
        tmp.unlink(missing_ok=True)


def _read(path: Path) -> dict[str, Any] | None:
    """The holder recorded in ``path``; None if there is no lock; ``{}`` if it does not parse."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _alive(pid: Any) -> bool:
    """Whether process ``pid`` of this host exists; an unreadable pid counts as alive (never steal it)."""
    if not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
