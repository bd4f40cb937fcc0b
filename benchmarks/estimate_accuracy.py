"""How close the ``--probe`` cost estimate comes to the sweep it estimates: trial-epochs and wall time.

``python benchmarks/estimate_accuracy.py [--runs 3] [--spec search_spaces/quickstart.yaml] [--steps 200]
[--root /tmp/estimate_accuracy] [--set KEY=VALUE ...]`` runs the sweep ``--runs`` times, each as
``python -m ast_tune.sweep SPEC --probe STEPS --no-report`` under its own name, and reads each
``run.json``: the ``estimate`` written before the trials and the ``actual`` written at the end;
``--results RESULTS_DIR ...`` reads finished sweeps' ``run.json`` instead of running any.
Prints a Markdown table under its command, date and machine (:mod:`machine`), one row per run and
the mean: estimated and measured trial-epochs and wall time, and the error of each (estimate /
actual − 1). The measured wall time runs from the sweep's start (after the probe) to its end: Ray's
start, the baseline, every trial's start-up, epochs and checkpoints, as the estimate prices them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from machine import Snapshot, command_line


def run_once(spec: Path, root: Path, name: str, steps: int, overrides: Sequence[str]) -> dict:
    """One sweep with ``--probe``; its ``run.json`` (``estimate`` and ``actual``)."""
    shutil.rmtree(root / name, ignore_errors=True)
    command = [sys.executable, "-m", "ast_tune.sweep", str(spec), "--name", name, "--probe", str(steps),
               "--no-report", "--set", f"storage.root={root}", *(f"--set={o}" for o in overrides)]
    print("$", " ".join(command), file=sys.stderr, flush=True)
    if subprocess.run(command, stdout=subprocess.DEVNULL, env=os.environ.copy()).returncode != 0:
        print(f"{name} failed (see above); running it again once", file=sys.stderr, flush=True)
        shutil.rmtree(root / name, ignore_errors=True)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=os.environ.copy())
    return json.loads((root / name / "run.json").read_text())


def row(label: str, estimate: dict, actual: dict) -> str:
    """A table row: estimated, measured and the error, for trial-epochs and wall time (s)."""
    e_epochs, a_epochs = estimate["trial_epochs"], actual["trial_epochs"]
    e_wall, a_wall = estimate["wall_seconds"], actual["wall_seconds"]
    return (f"| {label} | {e_epochs:.1f} | {a_epochs:.0f} | {100 * (e_epochs / a_epochs - 1):+.0f} % | "
            f"{e_wall:.0f} | {a_wall:.0f} | {100 * (e_wall / a_wall - 1):+.0f} % |")


def table(runs: Sequence[dict]) -> str:
    """The Markdown table of ``runs`` (each a ``run.json``): one row per run, then their mean."""
    lines = ["| run | trial-epochs, estimated | measured | error | wall s, estimated | measured | error |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [row(str(i), run["estimate"], run["actual"]) for i, run in enumerate(runs)]
    mean = {side: {key: sum(r[side][key] for r in runs) / len(runs) for key in ("trial_epochs", "wall_seconds")}
            for side in ("estimate", "actual")}
    return "\n".join([*lines, row("mean", mean["estimate"], mean["actual"])])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/estimate_accuracy.py", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--spec", type=Path, default=Path("search_spaces/quickstart.yaml"))
    parser.add_argument("--steps", type=int, default=200, help="--probe steps")
    parser.add_argument("--root", type=Path, default=Path("/tmp/estimate_accuracy"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--results", type=Path, nargs="+", help="finished sweeps' results directories: run none")
    args = parser.parse_args(argv)
    machine = Snapshot.take()
    if args.results:
        runs = [json.loads((path / "run.json").read_text()) for path in args.results]
    else:
        runs = [run_once(args.spec, args.root, f"estimate_{i}", args.steps, args.set) for i in range(args.runs)]
    print(f"{machine.header(command_line('benchmarks/estimate_accuracy.py', argv))}\n\n{table(runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
