"""Where an ``inline`` step's time goes, next to a dense step: ``python benchmarks/inline_profile.py``.

Builds the bench's RunSpec (``ast_tune.bench.BASE``: the quickstart preset, constant LR) at batch 64
in ``inline`` mode, trains two warm-up epochs and one AST epoch so the threshold has settled, then
times, on the same 10 batches and 3 times over, each part of a dense step (forward + backward,
optimizer step) and of an inline step (no-grad scoring forward, selection, forward + backward on
the kept subset, optimizer step). Prints, as Markdown under its command, date and machine
(:mod:`machine`), the median milliseconds of each part, its share of a dense step, and the forward +
backward cost per sample of the subset against the full batch. For pooled inline (``sparsity.pool``:
the kept samples of several batches trained on as one full batch) it prints the speedup these
measured parts give per scored batch: dense step over scoring forward + choice + (kept/batch) of a
dense step, since the pool trains full batches at the dense per-sample cost.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from machine import Snapshot, command_line

from ast_tune.bench import BASE
from ast_tune.core.engine import _score, train_one_epoch
from ast_tune.core.run_state import RunState
from ast_tune.data.sources import load_datasets

PARTS = ("dense fwd+bwd", "dense opt", "score fwd", "choose", "subset fwd+bwd", "subset opt")


def _timed(call: Callable[..., object], *args: object) -> tuple[float, object]:
    """Seconds ``call(*args)`` took on the CPU, and what it returned."""
    start = time.perf_counter()
    out = call(*args)
    return time.perf_counter() - start, out


def _train_step(run: RunState, x: torch.Tensor, y: torch.Tensor) -> None:
    F.cross_entropy(run.model(x), y).backward()


def profile(rate: float, *, batch: int, batches: int = 10, repeats: int = 3) -> dict[str, float]:
    """Median milliseconds of each part of ``PARTS`` at target activation ``rate``, plus ``kept``."""
    sparsity = dataclasses.replace(BASE.sparsity, mode="inline", target_activation=rate)
    spec = dataclasses.replace(BASE, batch_size=batch, sparsity=sparsity)
    data = load_datasets(spec.data)
    run = RunState.create(spec, data, torch.device("cpu"))
    for epoch in range(3):  # warm-up, calibration, one AST epoch: the threshold has settled
        train_one_epoch(run, epoch)
    samples = [data.train[i] for i in range(batches * batch)]
    xs, ys = torch.stack([s[0] for s in samples]), torch.tensor([s[1] for s in samples])
    times: dict[str, list[float]] = {part: [] for part in PARTS}
    kept: list[int] = []
    for _ in range(repeats):
        for b in range(batches):
            x, y = xs[b * batch:(b + 1) * batch], ys[b * batch:(b + 1) * batch]
            times["dense fwd+bwd"].append(_timed(_train_step, run, x, y)[0])
            times["dense opt"].append(_timed(run.optimizer_step)[0])
            seconds, scores = _timed(_score, run, x, y)
            times["score fwd"].append(seconds)
            seconds, (keep, _) = _timed(run.selector.choose, scores)
            times["choose"].append(seconds)
            kept.append(int(keep.sum()))
            times["subset fwd+bwd"].append(_timed(_train_step, run, x[keep], y[keep])[0])
            times["subset opt"].append(_timed(run.optimizer_step)[0])
    return {**{part: 1000 * statistics.median(v) for part, v in times.items()}, "kept": statistics.median(kept)}


def markdown(profiles: dict[float, dict[str, float]], *, batch: int) -> str:
    """Two Markdown tables of :func:`profile` results by target rate: each part's ms, then what they add up to.

    Per rate: an ``inline`` step's speedup (a dense step over the sum of the inline parts), the subset's
    forward + backward per sample against the full batch's, and the pooled speedup these parts give per
    scored batch (scoring forward + choice + kept/batch of a dense step) beside its ideal 3/(1+3r).
    """
    rates = list(profiles)
    parts = ["| part | " + " | ".join(f"r={r}: ms | share of a dense step" for r in rates) + " |",
             "|---|" + "---:|---:|" * len(rates)]
    dense = {r: ms["dense fwd+bwd"] + ms["dense opt"] for r, ms in profiles.items()}
    for part in PARTS:
        parts.append(f"| {part} | " + " | ".join(f"{profiles[r][part]:.2f} | {profiles[r][part] / dense[r]:.2f}"
                                                 for r in rates) + " |")
    sums = ["| target r | kept samples (median) | inline step speedup | subset fwd+bwd per sample, × full batch's "
            "| pooled speedup from the parts | ideal 3/(1+3r) |", "|---:|---:|---:|---:|---:|---:|"]
    for r, ms in profiles.items():
        share = ms["kept"] / batch
        per_sample = (ms["subset fwd+bwd"] / ms["kept"]) / (ms["dense fwd+bwd"] / batch)
        pooled = ms["score fwd"] + ms["choose"] + share * dense[r]
        sums.append(f"| {r} | {ms['kept']:g} | {dense[r] / sum(ms[p] for p in PARTS[2:]):.2f}× | {per_sample:.2f}× "
                    f"| {dense[r] / pooled:.2f}× | {3 / (1 + 3 * share):.2f}× |")
    return "\n".join([*parts, "", *sums])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python benchmarks/inline_profile.py", description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.4, 0.2])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    machine = Snapshot.take()
    torch.set_num_threads(args.threads)
    profiles = {rate: profile(rate, batch=args.batch) for rate in args.rates}
    print(f"{machine.header(command_line('benchmarks/inline_profile.py', argv))}\n\n"
          f"batch {args.batch}, {args.threads} threads; median over 10 batches × 3\n\n"
          f"{markdown(profiles, batch=args.batch)}")


if __name__ == "__main__":
    main()
