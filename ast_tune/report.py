"""Write a sweep's report: PNG figures, ``comparison.md`` and one self-contained ``index.html``.

    python -m ast_tune.report results/quickstart               # → results/quickstart/report/
    python -m ast_tune.report results/quickstart --out /tmp/report

What the page holds: :mod:`ast_tune.results.page`. Reads only Parquet, JSON and YAML.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ast_tune.config.cli import CliParser, os_error_line, run_main
from ast_tune.results.page import write_report


def main(argv: Sequence[str] | None = None) -> int:
    """CLI. Returns 0 done; 2 bad input (one line on stderr); 1 a file could not be written; 130 interrupted."""
    return run_main(lambda: _main(argv), interrupted="interrupted: run the same command again",
                    failures={OSError: os_error_line})


def _main(argv: Sequence[str] | None) -> int:
    parser = CliParser(prog="python -m ast_tune.report", description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the sweep's results/<name> directory")
    parser.add_argument("--out", type=Path, help="report directory (default results/<name>/report)")
    args = parser.parse_args(argv)
    print(f"wrote {write_report(args.results, out=args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
