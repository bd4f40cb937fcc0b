"""Search quality: final hypervolume of several sampler + scheduler pairs, by running the real sweep CLI.

``python benchmarks/search_quality.py --seeds 0 1 --trials 10 --fifo-trials 4 --out sq.md`` runs
``python -m ast_tune.sweep SPEC --set search.sampler=... --set scheduler.kind=... --set search.seed=...``
once per pair × seed, one after another, reads each sweep's ``trials.parquet`` and ``epochs.parquet``
and prints a Markdown table under its command, date and machine (:mod:`machine`): the hypervolume
of the finished trials against a FIXED reference point (median, min–max over seeds), the epochs
trained, and the wall time. The first sweep times the dense
baseline; every later sweep gets a copy of its ``baseline.json``, so all pairs share one baseline
(same speedup denominator) and none spends time re-timing it.

``speedup`` is timed, so it moves with the machine's load (the baseline is timed once, in the
first sweep); the table therefore also gives the hypervolume of the two untimed objectives,
``val_top1`` and ``energy_savings`` (counted), against the first two reference values.

"Equal budget in epochs": FIFO trains every trial to the full epoch count, so it gets
``--fifo-trials`` trials; the early-stopping pairs get ``--trials`` trials, chosen so their total
epochs come close. The epochs each sweep really trained are reported beside the hypervolume.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from machine import Snapshot, command_line

from ast_tune.results.pareto import hypervolume
from ast_tune.results.tables import read_objectives

#: pair name → the ``--set`` overrides that make it; "-untimed": MOASHA's rungs rank on top-1 and
#: counted savings only, not on the timed speedup (Optuna is still told all three objectives)
PAIRS = {"random+fifo": {"search.sampler": "random", "scheduler.kind": "fifo"},
         "tpe+asha": {"search.sampler": "tpe", "scheduler.kind": "asha"},
         "tpe+moasha": {"search.sampler": "tpe", "scheduler.kind": "moasha"},
         "tpe+moasha-untimed": {"search.sampler": "tpe", "scheduler.kind": "moasha",
                                "scheduler.rank_on": "[val_top1, energy_savings]"},
         "nsga2+moasha": {"search.sampler": "nsga2", "scheduler.kind": "moasha"}}
#: worst acceptable value of each objective: val_top1 50 %, energy_savings 0 (fraction), speedup 0.5×
REFERENCE = (50.0, 0.0, 0.5)
FINISHED = ("TERMINATED", "STOPPED")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python benchmarks/search_quality.py", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=Path("search_spaces/quickstart.yaml"))
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=16, help="trials per early-stopping sweep")
    parser.add_argument("--fifo-trials", type=int, default=6, help="trials per FIFO sweep (each trains all epochs)")
    parser.add_argument("--root", type=Path, default=Path("/tmp/ast_search_quality"), help="storage.root")
    parser.add_argument("--reference", type=float, nargs="+", default=list(REFERENCE),
                        help="hypervolume reference point, one value per objective, in their units")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per sweep before it is killed")
    parser.add_argument("--baseline", type=Path, help="a baseline.json every sweep starts from (default: the "
                        "first sweep times one and the others copy it)")
    parser.add_argument("--report-only", action="store_true", help="tabulate the sweeps already under --root")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.fifo_trials < 1:
        parser.error(f"--trials, --fifo-trials: must be >= 1; got {args.trials}, {args.fifo_trials}")
    if args.baseline is not None and not args.baseline.is_file():
        parser.error(f"--baseline: no such file {args.baseline}")
    if not args.spec.is_file():
        parser.error(f"--spec: no such file {args.spec}")
    return args


def sweep_name(pair: str, seed: int) -> str:
    """The results directory name of one sweep, e.g. ``sq_tpe-moasha_s0``."""
    return f"sq_{pair.replace('+', '-')}_s{seed}"


def sweep_command(spec: Path, pair: str, seed: int, *, trials: int, root: Path) -> list[str]:
    """The sweep CLI invocation for ``pair`` (a key of :data:`PAIRS`) at ``seed``."""
    sets = {**PAIRS[pair], "search.seed": seed, "search.num_trials": trials, "storage.root": root}
    command = [sys.executable, "-m", "ast_tune.sweep", str(spec), "--name", sweep_name(pair, seed)]
    for key, value in sets.items():
        command += ["--set", f"{key}={value}"]
    return command


def run_sweep(command: list[str], results: Path, *, baseline: Path | None, timeout: float) -> float:
    """Run one sweep (fresh: an old ``results`` is removed); its wall seconds, written to ``bench.json``."""
    shutil.rmtree(results, ignore_errors=True)
    if baseline is not None:
        results.mkdir(parents=True)
        shutil.copy(baseline, results / "baseline.json")
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          timeout=timeout, check=False)
    seconds = time.perf_counter() - start
    results.mkdir(parents=True, exist_ok=True)
    (results / "bench.json").write_text(json.dumps({"command": command, "rc": done.returncode,
                                                    "wall_seconds": seconds}) + "\n")
    if done.returncode != 0:
        print(f"  exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
    return seconds


def score(results: Path, reference: Sequence[float]) -> dict[str, float]:
    """Hypervolume of the finished trials (all, and full-length only), epochs trained, trials, wall s."""
    objectives = read_objectives(results / "spec.yaml")
    metrics, modes = [m for m, _ in objectives], [m for _, m in objectives]
    trials = pd.read_parquet(results / "trials.parquet")
    finished = trials[trials["status"].isin(FINISHED)]
    full = finished[finished["status"] == "TERMINATED"]
    epochs = pd.read_parquet(results / "epochs.parquet")
    bench = json.loads((results / "bench.json").read_text())
    untimed = [i for i, metric in enumerate(metrics) if metric != "speedup"]
    values = finished[[metrics[i] for i in untimed]].to_numpy(dtype=float)
    return {"hv": hypervolume(finished[metrics].to_numpy(dtype=float), modes, reference=reference),
            "hv_untimed": hypervolume(values, [modes[i] for i in untimed], reference=[reference[i] for i in untimed]),
            "hv_full": hypervolume(full[metrics].to_numpy(dtype=float), modes, reference=reference),
            "epochs": int((epochs["epoch"] >= 1).sum()), "trials": len(trials),
            "best_top1": float(finished["val_top1"].max()), "wall_s": bench["wall_seconds"]}


def _spread(values: list[float], fmt: str) -> str:
    if not values:
        return "—"
    middle = format(statistics.median(values), fmt)
    return middle if len(values) == 1 else f"{middle} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def table(scores: dict[str, list[dict[str, float]]], *, reference: Sequence[float]) -> str:
    """Markdown: one row per pair; median (min–max) over seeds; hypervolume relative to random+fifo."""
    random = scores.get("random+fifo")

    def ratio(runs: list[dict[str, float]], key: str) -> str:
        """The median of ``key`` over the median of random+fifo's."""
        return f"{statistics.median(s[key] for s in runs) / statistics.median(s[key] for s in random):.2f}" \
            if random else "—"

    lines = [f"Hypervolume of finished trials vs reference {list(reference)} "
             "(val_top1 %, energy_savings fraction, speedup ×); median (min–max) over seeds.", "",
             "| pair | seeds | trials | epochs trained | HV (all finished) | HV / random | HV (full-length only) "
             "| HV untimed (top1, savings) | HV untimed / random | best top1 % | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for pair, runs in scores.items():
        lines.append(f"| {pair} | {len(runs)} | {_spread([s['trials'] for s in runs], '.0f')} "
                     f"| {_spread([s['epochs'] for s in runs], '.0f')} | {_spread([s['hv'] for s in runs], '.1f')} "
                     f"| {ratio(runs, 'hv')} | {_spread([s['hv_full'] for s in runs], '.1f')} "
                     f"| {_spread([s['hv_untimed'] for s in runs], '.1f')} | {ratio(runs, 'hv_untimed')} "
                     f"| {_spread([s['best_top1'] for s in runs], '.2f')} "
                     f"| {_spread([s['wall_s'] for s in runs], '.0f')} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    machine = Snapshot.take()
    root = args.root.resolve()
    baseline: Path | None = args.baseline
    scores: dict[str, list[dict[str, float]]] = {pair: [] for pair in args.pairs}
    for seed in args.seeds:  # seeds outermost: a cut-short run still has every pair at seed 0
        for pair in args.pairs:
            results = root / sweep_name(pair, seed)
            if not args.report_only:
                trials = args.fifo_trials if PAIRS[pair]["scheduler.kind"] == "fifo" else args.trials
                command = sweep_command(args.spec, pair, seed, trials=trials, root=root)
                print(f"{pair} seed {seed}: {' '.join(command[1:])}", flush=True)
                seconds = run_sweep(command, results, baseline=baseline, timeout=args.timeout)
                print(f"  {seconds:.0f} s", flush=True)
            if baseline is None and (results / "baseline.json").is_file():
                baseline = results / "baseline.json"
            if (results / "trials.parquet").is_file() and (results / "bench.json").is_file():
                scores[pair].append(score(results, args.reference))
    markdown = (f"{machine.header(command_line('benchmarks/search_quality.py', argv))}\n\n"
                f"{table({pair: runs for pair, runs in scores.items() if runs}, reference=args.reference)}")
    print(markdown)
    if args.out:
        args.out.write_text(markdown)
    return 0 if any(scores.values()) else 1


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
