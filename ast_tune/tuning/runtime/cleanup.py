"""Clean up after a local Ray whose driver was killed: SIGKILL leaves no chance to ``ray.shutdown()``.

:func:`ast_tune.tuning.runtime.session.ray_session` gives each local Ray a temp dir of its own and :func:`mark`\\ s it
with the driver's pid and start time. :func:`reap_stale` finds marked dirs whose driver is gone,
kills the processes started for that Ray (those whose command line names the dir — GCS, raylet,
dashboard — and their children, e.g. the workers) and removes the dir. Only dirs this package
marked are touched, and never while their driver lives, so no one else's cluster is.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

OWNER_FILE = "ast_tune_owner.json"  # in the Ray temp dir: the pid and start time of its driver


def mark(temp_dir: str | Path) -> None:
    """Record this process as the driver that owns ``temp_dir``."""
    me = psutil.Process(os.getpid())
    (Path(temp_dir) / OWNER_FILE).write_text(json.dumps({"pid": me.pid, "started": me.create_time()}))


def _owner_alive(marker: Path) -> bool:
    try:
        owner = json.loads(marker.read_text())
        return abs(psutil.Process(owner["pid"]).create_time() - owner["started"]) < 1e-3
    except psutil.NoSuchProcess:
        return False
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        return True  # unreadable or not ours to judge: leave it alone


def _names_dir(command: list[str], directory: str) -> bool:
    return any(arg == directory or arg.endswith(f"={directory}") or f"{directory}/" in arg for arg in command)


def ray_processes(temp_dir: str | Path) -> list[psutil.Process]:
    """This user's processes whose command line names ``temp_dir``, and all their descendants."""
    directory, found = str(temp_dir), {}
    for process in psutil.process_iter(["cmdline", "uids"]):
        with contextlib.suppress(psutil.Error):
            if process.info["uids"] and process.info["uids"].real == os.getuid() and \
                    _names_dir(process.info["cmdline"] or [], directory):
                for member in [process, *process.children(recursive=True)]:
                    found[member.pid] = member
    return list(found.values())


def reap_stale(parent: str | Path = "/tmp") -> list[Path]:
    """Kill the processes of every marked Ray temp dir under ``parent`` whose driver is dead; remove the dirs.

    Returns:
        The temp dirs removed.
    """
    reaped = []
    for marker in Path(parent).glob(f"*/{OWNER_FILE}"):
        if _owner_alive(marker):
            continue
        processes = ray_processes(marker.parent)
        for process in processes:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(processes, timeout=10)
        shutil.rmtree(marker.parent, ignore_errors=True)
        log.warning("removed the Ray of a killed sweep: %d processes, %s", len(processes), marker.parent)
        reaped.append(marker.parent)
    return reaped
