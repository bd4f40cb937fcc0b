"""When and on what a benchmark ran: the header line above each benchmark script's Markdown table.

A script takes a :class:`Snapshot` when it starts, before its own work loads the machine, and prints
``snapshot.header(command)`` above its table, e.g.::

    `python benchmarks/loader_bench.py` · 2026-12-03 13:05 UTC · 2 cores, AMD EPYC, idle (load average 0.21)

so ``docs/benchmarks.md`` can take the table as printed, with its command, date and machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

#: 1-minute load average per core below which the machine counts as idle
IDLE_LOAD_PER_CORE = 0.25


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name from ``cpuinfo`` (Linux), else what :mod:`platform` knows."""
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """How the script was invoked: ``python <script> <args>``, the arguments shell-quoted.

    Args:
        script: the invocation without arguments, e.g. ``benchmarks/loader_bench.py``.
        argv: the arguments given to ``main``; ``None`` means the process's own (``sys.argv[1:]``).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", script, *([shlex.join(args)] if args else [])])


@dataclass(frozen=True)
class Snapshot:
    """The machine at a moment: UTC time, cores, CPU model, 1-minute load average."""

    when: datetime
    cores: int
    cpu: str
    load: float  # 1-minute load average

    @classmethod
    def take(cls) -> Snapshot:
        """This machine, now."""
        return cls(when=datetime.now(UTC), cores=cores(), cpu=cpu_model(), load=os.getloadavg()[0])

    @property
    def idle(self) -> bool:
        """Whether the load average says nothing else was running (under a quarter of a core per core)."""
        return self.load < IDLE_LOAD_PER_CORE * self.cores

    def describe(self) -> str:
        """E.g. ``2 cores, AMD EPYC, loaded (load average 3.40)``."""
        return f"{self.cores} cores, {self.cpu}, {'idle' if self.idle else 'loaded'} (load average {self.load:.2f})"

    def header(self, command: str) -> str:
        """The line above a table: the command, the date and time (UTC), the machine."""
        return f"`{command}` · {self.when:%Y-%m-%d %H:%M} UTC · {self.describe()}"

    def as_dict(self, command: str) -> dict[str, object]:
        """The same for a JSON report."""
        return {"command": command, "date": f"{self.when:%Y-%m-%d %H:%M} UTC", "cores": self.cores,
                "cpu": self.cpu, "load_average": self.load, "idle": self.idle}


def sweeps_table(script: str, argv: Sequence[str] | None, *, description: str, header: str,
                 row: Callable[[Path], str]) -> int:
    """The main of a script that tabulates finished sweeps: ``python <script> RESULTS_DIR [RESULTS_DIR ...]``
    prints this machine's header line, ``header`` and one ``row`` per sweep; a directory without ``run.json``
    is refused (argparse's exit 2)."""
    parser = argparse.ArgumentParser(prog=f"python {script}", description=description)
    parser.add_argument("results", type=Path, nargs="+", help="a sweep's results directory, e.g. results/quickstart")
    args = parser.parse_args(argv)
    missing = [str(path) for path in args.results if not (path / "run.json").is_file()]
    if missing:
        parser.error(f"results: not a sweep's results directory (no run.json): {', '.join(missing)}")
    print(f"{Snapshot.take().header(command_line(script, argv))}\n\n{header}")
    for path in args.results:
        print(row(path))
    return 0
