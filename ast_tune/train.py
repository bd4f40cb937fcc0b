"""One training run without Ray Tune: ``python -m ast_tune.train --preset quickstart``.

Writes ``epochs.parquet`` (rewritten after every epoch), ``summary.json``, checkpoints
(``checkpoints/epoch_NNNN``, the newest two) and the run's figures (``plots/*.png``) to ``--out``, and
prints one progress line per epoch. ``--resume`` continues from the newest usable checkpoint, with the
epoch records it holds (:func:`ast_tune.core.checkpoint.resume_point`).
Exit codes: 0 done, 1 the run failed (e.g. the loss became NaN), 2 bad input (one line naming the
key), 130 interrupted by Ctrl-C, 143 by SIGTERM (both print the command that continues the run).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ast_tune.atomic import write_text
from ast_tune.config.cli import CliParser, continue_command, run_main
from ast_tune.config.presets import PRESETS, get_preset
from ast_tune.config.run_spec import RunSpec
from ast_tune.config.spec import SpecError, apply_overrides, to_dict
from ast_tune.core import checkpoint
from ast_tune.core.engine import NonFiniteLossError, fit
from ast_tune.core.metrics import data_bound_warning
from ast_tune.data.sources import load_datasets
from ast_tune.results.plots import write_run_plots
from ast_tune.results.progress import epoch_line
from ast_tune.results.tables import write_epochs


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = CliParser(prog="python -m ast_tune.train", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quickstart", help=f"one of {', '.join(PRESETS)}")
    parser.add_argument("--data", help="data.kind: digits | imagefolder | imagenet")
    parser.add_argument("--data-root", help="data.root: the dataset directory")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a RunSpec field, e.g. --set sparsity.mode=skip (repeatable)")
    parser.add_argument("--out", type=Path, help="output directory (default runs/<preset>)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest valid checkpoint")
    return parser.parse_args(argv)


def resolve_spec(args: argparse.Namespace) -> RunSpec:
    """The preset with ``--data``, ``--data-root`` and then every ``--set`` applied, validated once."""
    assignments = [f"data.kind={args.data}"] * bool(args.data) + [f"data.root={args.data_root}"] * bool(
        args.data_root)
    return apply_overrides(get_preset(args.preset), [*assignments, *args.set])


def run(args: argparse.Namespace) -> int:
    spec = resolve_spec(args)
    datasets = load_datasets(spec.data)  # bad roots fail here, before anything is written
    out = args.out or Path("runs") / args.preset
    ckpt_root = out / "checkpoints"
    if not args.resume and ckpt_root.exists():
        raise SpecError("--out", f"{out} already holds a run; pass --resume or another --out")
    resume_from, rows = checkpoint.resume_point(ckpt_root, remove_unusable=True) if args.resume else (None, [])
    warned: list[str] = []
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "spec.json", json.dumps(to_dict(spec), indent=2))
    if rows:  # the epochs the checkpoint holds; later ones are trained again
        write_epochs(out / "epochs.parquet", rows)

    def report(record: dict, checkpoint_dir: Path | None) -> None:
        rows.append(record)
        if checkpoint_dir is not None:
            checkpoint.save_history(checkpoint_dir, rows)
        write_epochs(out / "epochs.parquet", rows)
        print(epoch_line(record, spec.epochs), flush=True)
        if not warned and (warning := data_bound_warning(record)):
            warned.append(warning)
            print(warning, file=sys.stderr, flush=True)

    summary = {"status": "finished"}
    try:
        summary.update(fit(spec, report=report, resume_from=resume_from,
                           checkpoint_root=ckpt_root, datasets=datasets))
    except NonFiniteLossError as err:
        summary.update(status="failed", reason=str(err))
    write_text(out / "summary.json", json.dumps(summary, indent=2, default=float))
    if rows:
        write_run_plots(pd.DataFrame(rows), out / "plots", summary=summary)
    print(f"{summary['status']}: wrote {out}/epochs.parquet, summary.json, checkpoints/, plots/", flush=True)
    return 0 if summary["status"] == "finished" else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    again = continue_command("ast_tune.train", argv)
    return run_main(lambda: run(parse_args(argv)),
                    interrupted=f"interrupted: the checkpoints so far are kept; continue with: {again}",
                    failures={checkpoint.CheckpointError: str},
                    log_format="%(levelname)s %(name)s: %(message)s")


if __name__ == "__main__":
    raise SystemExit(main())
