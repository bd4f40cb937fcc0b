"""The experiments that choose the quickstart defaults: ``python benchmarks/defaults_experiment.py``.

On the embedded default (digits, small ResNet, the quickstart preset's 10 epochs, equal for every
run, 2 dense warm-up epochs unless a label says otherwise) it trains dense, then ``skip`` and
``inline`` at target activations 0.3 and 0.2, each with and without annealing
(``sparsity.anneal_epochs``), ``inline`` pooled or not, and ``skip`` with 1 or 0 dense warm-up
epochs instead of 2, and (on the chosen ``skip`` and on ``inline`` at 0.3) the knobs ``sparsity.reweight``,
``sparsity.refresh_fraction``, ``sparsity.ki`` and ``sparsity.score_bn``, over ``--seeds``. The runs
go seed by seed, every configuration within a seed in turn, so drift on a shared machine hits them
alike. Every finished run is kept in ``--results`` (JSON, written atomically after each run); a
rerun skips what is there, so a killed experiment resumes. Then it prints a Markdown table under its
command, date and machine (:mod:`machine`), per configuration over its seeds:

- final top-1 (%, mean and min) and its drop below the dense run of the same seed (points, max);
- counted savings: the mean of the epochs' counted ``energy_savings`` (warm-up and annealing
  epochs count with their 0 %), as the sweep's trial table aggregates it;
- measured speedup: the dense run's total train seconds over the run's, same seed;
- time-to-accuracy speedup: the dense run's train seconds until its val top-1 first reaches the
  target over the run's (target: the dense run's final top-1 − 1 point, same seed; "not reached"
  if the run never gets there);
- verdict: the level every seed meets, each seed judged as the sweep judges a trial
  (:func:`ast_tune.results.verdict.outcome` with the same seed's dense run as its baseline: a
  level's speedup is the time-to-accuracy speedup to that level's own accuracy bar).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from machine import Snapshot, command_line

from ast_tune.atomic import write_text
from ast_tune.config.criteria import PLAN_CRITERIA
from ast_tune.config.presets import QUICKSTART
from ast_tune.config.spec import apply_overrides
from ast_tune.core.engine import fit
from ast_tune.data.sources import load_datasets
from ast_tune.results import verdict


def grid() -> dict[str, list[str]]:
    """Configuration label → its ``--set`` overrides of the quickstart preset."""
    configs = {"dense": ["sparsity.mode=dense", "warmup_epochs=2"]}
    for mode in ("skip", "inline"):
        for rate in (0.3, 0.2):
            for anneal in (0, 1):
                for pool in ((False, True) if mode == "inline" else (False,)):
                    label = f"{mode} r={rate}" + " anneal=1" * anneal + " pooled" * pool
                    configs[label] = [f"sparsity.mode={mode}", f"sparsity.target_activation={rate}",
                                      f"sparsity.anneal_epochs={anneal}", f"sparsity.pool={str(pool).lower()}",
                                      "warmup_epochs=2"]
    for rate in (0.3, 0.2):  # fewer dense warm-up epochs than the 2 above: the one cap on skip's speedup
        for warmup in (1, 0):
            configs[f"skip r={rate} warmup={warmup}"] = [*configs[f"skip r={rate}"], f"warmup_epochs={warmup}"]
    knobs = {  # re-measured under today's controller, on the chosen skip and on inline
        "skip r=0.3 warmup=1": {"reweight": "sparsity.reweight=true", "refresh=0.05": "sparsity.refresh_fraction=0.05",
                                "refresh=0.2": "sparsity.refresh_fraction=0.2", "ki=0.1": "sparsity.ki=0.1"},
        "inline r=0.3": {"score_bn=eval": "sparsity.score_bn=eval"}}
    for base, settings in knobs.items():
        for label, setting in settings.items():
            configs[f"{base} {label}"] = [*configs[base], setting]
    return configs


def run_one(overrides: list[str], seed: int, datasets) -> list[dict]:
    """The per-epoch records of one quickstart run with ``overrides`` and ``seed``."""
    spec = apply_overrides(QUICKSTART, [*overrides, f"seed={seed}"])
    records: list[dict] = []
    fit(spec, report=lambda record, _: records.append(record), datasets=datasets, device=torch.device("cpu"))
    return records


def measures(records: list[dict], dense: list[dict]) -> dict[str, float | str]:
    """One run against the dense run of its seed, judged as the sweep judges a trial (:func:`verdict.outcome`,
    the dense run as its baseline): top-1, drop, counted savings, whole-run and time-to-target speedups, verdict."""
    outcome = verdict.outcome(pd.DataFrame(records), {"val_top1": dense[-1]["val_top1"], "epochs": dense},
                              PLAN_CRITERIA)
    return {"top1": records[-1]["val_top1"], "drop": outcome["top1_drop"],
            "savings": statistics.fmean(r["energy_savings"] for r in records),
            "speedup": sum(r["train_seconds"] for r in dense) / sum(r["train_seconds"] for r in records),
            "tta": outcome["speedup_to_target"], "verdict": outcome["verdict"]}


def table(results: dict, configs: list[str], seeds: list[int]) -> str:
    """The Markdown table over the configurations with a result for every seed."""
    lines = ["| configuration | top-1 % (mean, min) | drop vs dense, points (max) | savings, counted (mean) "
             "| speedup, measured (median) | time-to-accuracy speedup (median) | verdict (all seeds) |",
             "|---|---|---|---|---|---|---|"]
    for label in configs:
        if not all(f"{label}|{s}" in results for s in seeds):
            continue
        runs = [measures(results[f"{label}|{s}"], results[f"dense|{s}"]) for s in seeds]
        tta = [m["tta"] for m in runs if m["tta"] == m["tta"]]
        reached = f"{statistics.median(tta):.2f}× ({len(tta)}/{len(runs)} reached)" if tta else "not reached"
        lines.append(f"| {label} | {statistics.fmean(m['top1'] for m in runs):.2f} "
                     f"({min(m['top1'] for m in runs):.2f}) | {max(m['drop'] for m in runs):+.2f} "
                     f"| {100 * statistics.fmean(m['savings'] for m in runs):.1f}% "
                     f"| {statistics.median(m['speedup'] for m in runs):.2f}× | {reached} "
                     f"| {verdict.common_level(m['verdict'] for m in runs)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python benchmarks/defaults_experiment.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", help="labels to run, in this order (default: the whole grid; "
                                                     "dense always, first)")
    parser.add_argument("--results", type=Path, default=Path("defaults_experiment.json"))
    parser.add_argument("--merge", type=Path, nargs="*", default=[],
                        help="more results files (other processes' runs): not rerun, and joined in the table")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    args = parser.parse_args(argv)
    machine = Snapshot.take()
    configs = grid()
    unknown = set(args.configs or ()) - set(configs)
    if unknown:
        parser.error(f"--configs: unknown {sorted(unknown)}; allowed: {list(configs)}")
    chosen = ["dense", *[c for c in (args.configs or configs) if c != "dense"]]
    torch.set_num_threads(args.threads)
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    merged = {k: v for path in args.merge for k, v in json.loads(path.read_text()).items()}
    datasets = load_datasets(QUICKSTART.data)
    for seed in args.seeds:
        for label in chosen:
            key = f"{label}|{seed}"
            if key in results or key in merged:
                continue
            start = time.perf_counter()
            results[key] = run_one(configs[label], seed, datasets)
            write_text(args.results, json.dumps(results))
            print(f"{key}: top-1 {results[key][-1]['val_top1']:.2f}% in {time.perf_counter() - start:.0f} s",
                  file=sys.stderr, flush=True)
    results = {**merged, **results}
    seeds = sorted({int(key.split("|")[1]) for key in results})
    print(f"{machine.header(command_line('benchmarks/defaults_experiment.py', argv))}\n\n"
          f"{table(results, chosen, seeds)}")


if __name__ == "__main__":
    main()
