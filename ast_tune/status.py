"""Where a sweep stands, running or finished: ``python -m ast_tune.status results/<name> [--line]``.

Prints, from the sweep's files alone (``spec.yaml``, ``run.json``, ``journal.jsonl``, ``baseline.json``,
``driver.lock``) and without starting Ray: its trials done, running and pending; trial-epochs trained of
those expected; the time elapsed and the ETA; the device-hours held so far and projected (USD at
``cost.usd_per_gpu_hour``); the estimate made at the start; and the best trial so far at the highest of
the plan's levels it meets (docs/design.md, "The status line and the estimate"). ``--line`` prints the
one-line form a running sweep prints. Exit codes: 0, or 2 when the directory is not a sweep's results.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from pathlib import Path

from ast_tune.config.cli import CliParser, run_main
from ast_tune.cost.status import read_status, status_line, status_lines


def _main(argv: Sequence[str]) -> int:
    parser = CliParser(prog="python -m ast_tune.status", description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a sweep's results directory, e.g. results/quickstart")
    parser.add_argument("--line", action="store_true", help="the one-line form a running sweep prints")
    args = parser.parse_args(argv)
    status = read_status(args.results)
    print(status_line(status) if args.line else "\n".join(status_lines(status)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(functools.partial(_main, list(sys.argv[1:] if argv is None else argv)),
                    interrupted="interrupted")


if __name__ == "__main__":
    sys.exit(main())
