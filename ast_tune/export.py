"""Rebuild a sweep's result tables from its ``epochs.parquet`` and ``baseline.json``; print (or write) the front.

    python -m ast_tune.export results/quickstart                  # the front as Markdown
    python -m ast_tune.export results/quickstart --format csv --out front.csv

Reads only Parquet, YAML and JSON: safe on results copied from elsewhere. The time-to-target and
verdict columns come from ``baseline.json``'s per-epoch records and ``spec.yaml``'s ``success:``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ast_tune import atomic
from ast_tune.config.cli import CliParser, os_error_line, run_main
from ast_tune.config.criteria import criteria_from
from ast_tune.config.spec import SpecError, load_yaml
from ast_tune.results.baseline_file import BASELINE_FILE, read_baseline
from ast_tune.results.tables import (
    FORMATS,
    Objective,
    front_markdown,
    read_epochs,
    read_objectives,
    write_frame,
    write_tables,
)
from ast_tune.results.verdict import target_top1


def _parser() -> argparse.ArgumentParser:
    parser = CliParser(prog="python -m ast_tune.export", description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, help="the sweep's results/<name> directory")
    parser.add_argument("--format", choices=FORMATS, default="md", help="of the front (default md)")
    parser.add_argument("--out", type=Path, help="write the front here instead of stdout")
    return parser


def _render(front: pd.DataFrame, objectives: Sequence[Objective], fmt: str, target: float | None) -> str:
    if fmt == "md":
        return front_markdown(front, objectives, target=target)
    if fmt == "csv":
        return front.to_csv(index=False)
    return front.to_json(orient="records", indent=1) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Rebuild every table from ``epochs.parquet`` and print (or ``--out``) the front.

    Returns:
        0 on success; 2 on bad input (one line on stderr naming the path or flag; nothing is
        written); 1 if writing fails; 130 if interrupted.
    """
    return run_main(lambda: _main(argv),
                    interrupted="interrupted: each table is whole or untouched; run the command again",
                    failures={OSError: os_error_line}, log_level=logging.INFO)


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.format == "parquet" and args.out is None:
        raise SpecError("--format parquet", "binary output needs --out FILE")
    epochs = read_epochs(args.results)
    spec_path = args.results / "spec.yaml"
    objectives = read_objectives(spec_path)
    criteria = criteria_from(load_yaml(spec_path) if spec_path.exists() else {}, source=str(spec_path))
    baseline = read_baseline(args.results / BASELINE_FILE)
    front = write_tables(args.results, epochs, objectives, baseline=baseline, criteria=criteria)
    target = target_top1(baseline, criteria)
    if args.out is None:
        sys.stdout.write(_render(front, objectives, args.format, target))
    elif args.format == "parquet":
        write_frame(args.out, front, "parquet")
    else:
        atomic.write_text(args.out, _render(front, objectives, args.format, target))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
