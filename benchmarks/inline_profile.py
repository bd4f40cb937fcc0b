"""Where an ``inline`` step's time goes, next to a dense step: ``python benchmarks/inline_profile.py``.

Builds the bench's RunSpec (``ast_tune.bench.BASE``: the quickstart preset, constant LR) at batch 64
in ``inline`` mode, trains two warm-up epochs and one AST epoch so the threshold has settled, then
times, on the same 10 batches and 3 times over, each part of a dense step (forward + backward,
optimizer step) and of an inline step (no-grad scoring forward, selection, forward + backward on
the kept subset, optimizer step). Prints the median milliseconds of each part, its share of a
dense step, and the forward + backward cost per sample of the subset against the full batch. For
pooled inline (``sparsity.pool``: the kept samples of several batches trained on as one full batch)
it prints the speedup these measured parts give per scored batch: dense step over scoring forward +
choice + (kept/batch) of a dense step, since the pool trains full batches at the dense per-sample cost.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

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


def main() -> None:
    parser = argparse.ArgumentParser(prog="python benchmarks/inline_profile.py", description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.4, 0.2])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for rate in args.rates:
        ms = profile(rate, batch=args.batch)
        dense = ms["dense fwd+bwd"] + ms["dense opt"]
        inline = sum(ms[part] for part in PARTS[2:])
        print(f"target r={rate}, batch {args.batch}, {args.threads} threads: median of {ms['kept']:g} kept samples")
        for part in PARTS:
            print(f"  {part:15s} {ms[part]:6.2f} ms  {ms[part] / dense:.2f} of a dense step")
        per_sample = (ms["subset fwd+bwd"] / ms["kept"]) / (ms["dense fwd+bwd"] / args.batch)
        print(f"  speedup {dense / inline:.2f}x; subset fwd+bwd per sample {per_sample:.2f}x the full batch's")
        share = ms["kept"] / args.batch
        pooled = ms["score fwd"] + ms["choose"] + share * dense
        print(f"  pooled: {dense / pooled:.2f}x from these parts, ideal 3/(1+3r) {3 / (1 + 3 * share):.2f}x")


if __name__ == "__main__":
    main()
