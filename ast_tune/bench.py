"""Speed benchmark: measured wall-clock speedup of each selection mode over dense, side by side.

``python -m ast_tune.bench [--json] [--repeats 5] [--epochs 2] [--rates 0.4 0.2]``

One process, one model, one dataset, one batch size. Every configuration starts from the same
dense-trained weights, runs one untimed calibration epoch (the controller settles, the skip table
fills), and is then timed for ``--epochs`` training epochs per repeat, the configurations interleaved within
each repeat so that drift on a shared machine hits them alike. The speedup of a repeat is the dense
epoch's train seconds over the mode's, from the same repeat. ``inline+pool`` is ``inline`` with
``sparsity.pool`` on (the selected samples pooled to a full batch before each forward+backward),
``inline`` without. The ideal is computed from the *measured* activation r: 3/(1+3r) for
``inline`` (a no-grad forward is ~1/3 of a step), 1/r for ``skip``, 1 for ``mask``. Reported:
median and min–max over repeats, with n.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shlex
import statistics
import sys
from collections.abc import Sequence

import torch

from ast_tune.config.cli import CliParser
from ast_tune.config.presets import QUICKSTART
from ast_tune.config.run_spec import OptimSpec, RunSpec
from ast_tune.config.spec import SpecError, apply_overrides
from ast_tune.core.engine import default_device, train_one_epoch
from ast_tune.core.run_state import RunState
from ast_tune.data.sources import Datasets, load_datasets

BASE = dataclasses.replace(QUICKSTART, epochs=1000, warmup_epochs=1,
                           optim=OptimSpec(schedule="constant", lr=0.02))


def ideal_speedup(mode: str, activation: float) -> float:
    """The speedup a mode would reach at activation ``r`` if only its arithmetic cost time."""
    inline = 3 / (1 + 3 * activation)
    return {"dense": 1.0, "mask": 1.0, "inline": inline, "inline+pool": inline, "skip": 1 / activation}[mode]


def configurations(rates: Sequence[float]) -> list[tuple[str, float]]:
    """dense, mask at the first rate, then inline unpooled and pooled, and skip, at every rate."""
    return [("dense", 1.0), ("mask", rates[0])] + [(m, r) for r in rates for m in ("inline", "inline+pool", "skip")]


def _state(base: RunSpec, data: Datasets, device: torch.device, mode: str, rate: float,
           weights: dict) -> RunState:
    sparsity = dataclasses.replace(base.sparsity, mode=mode.removesuffix("+pool"), pool=mode.endswith("+pool"),
                                   target_activation=min(rate, 1.0))
    run = RunState.create(dataclasses.replace(base, sparsity=sparsity), data, device)
    run.net.load_state_dict(copy.deepcopy(weights))
    train_one_epoch(run, 0)  # calibration: warm-up epoch, untimed
    return run


def run_bench(base: RunSpec, *, repeats: int, rates: Sequence[float], epochs: int = 2,
              pretrain_epochs: int = 2) -> list[dict]:
    """Time every configuration ``repeats`` times, interleaved; one row of results per configuration.

    One timing is ``epochs`` consecutive training epochs, their train seconds summed.
    """
    device = default_device()
    data = load_datasets(base.data)
    torch.manual_seed(base.seed)
    dense_spec = dataclasses.replace(base, sparsity=dataclasses.replace(base.sparsity, mode="dense"))
    dense = RunState.create(dense_spec, data, device)
    for epoch in range(pretrain_epochs):
        train_one_epoch(dense, epoch)
    weights = dense.net.state_dict()
    configs = configurations(rates)
    runs = {c: _state(base, data, device, *c, weights) for c in configs}
    seconds = {c: [] for c in configs}
    activation = {c: [] for c in configs}
    for repeat in range(repeats):
        for config in configs:  # interleaved
            stats = [train_one_epoch(runs[config], 1 + repeat * epochs + e) for e in range(epochs)]
            seconds[config].append(sum(s["train_seconds"] for s in stats))
            activation[config].append(statistics.fmean(s["activation_rate"] for s in stats))
        print(f"repeat {repeat + 1}/{repeats} done", file=sys.stderr, flush=True)
    return [_summarise(config, seconds, activation, epochs * len(data.train)) for config in configs]


def _summarise(config, seconds, activation, samples: int) -> dict:
    mode, _ = config
    dense = seconds[("dense", 1.0)]
    speedups = [d / s for d, s in zip(dense, seconds[config], strict=True)]
    rate = statistics.median(activation[config])
    ideal = ideal_speedup(mode, rate)
    return {"mode": mode, "target": config[1] if mode != "dense" else 1.0, "activation": rate,
            "samples_per_second": samples / statistics.median(seconds[config]),
            "speedup": statistics.median(speedups),
            "speedup_min": min(speedups), "speedup_max": max(speedups),
            "ideal": ideal, "ratio_to_ideal": statistics.median(speedups) / ideal, "n": len(speedups)}


def markdown(rows: list[dict]) -> str:
    """The results as a Markdown table; speedups are measured, in ×."""
    lines = ["| mode | target r | measured r | samples/s | speedup (measured) | ideal | ratio to ideal |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['target']:.2f} | {r['activation']:.3f} "
                     f"| {r['samples_per_second']:.0f} "
                     f"| {r['speedup']:.2f}× ({r['speedup_min']:.2f}–{r['speedup_max']:.2f}, n={r['n']}) "
                     f"| {r['ideal']:.2f}× | {r['ratio_to_ideal']:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = CliParser(prog="python -m ast_tune.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    parser.add_argument("--repeats", type=int, default=5, help="timings per configuration (default 5)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs per timing (default 2)")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.4, 0.2], help="target activations")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override the benchmarked RunSpec, e.g. --set batch_size=256")
    try:
        args = parser.parse_args(argv)
        if min(args.repeats, args.epochs) < 1 or not all(0 < r <= 1 for r in args.rates):
            raise SpecError("--repeats/--epochs/--rates", "repeats and epochs must be >= 1, rates in (0, 1]")
        base = apply_overrides(BASE, args.set)
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    rows = run_bench(base, repeats=args.repeats, rates=args.rates, epochs=args.epochs)
    command = "python -m ast_tune.bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU x{args.threads} threads"
    if args.json:
        print(json.dumps({"command": command.strip(), "device": device, "results": rows}, indent=2))
    else:
        print(f"{device}; {base.model} on {base.data.kind} at {base.data.image_size} px, "
              f"batch {base.batch_size}")
        print(markdown(rows))
        print(f"reproduce: {command.strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
