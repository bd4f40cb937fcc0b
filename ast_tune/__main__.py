"""The commands of ast_tune: ``python -m ast_tune`` lists them, ``python -m ast_tune COMMAND ...`` runs one.

``python -m ast_tune COMMAND ARGS`` is ``python -m ast_tune.COMMAND ARGS``. Each command's line in the
list is the first line of its module's docstring, read from the source without importing it, so the
list comes without torch or Ray.
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
from collections.abc import Sequence
from pathlib import Path

#: the commands, in the order a user meets them
COMMANDS = ("train", "sweep", "status", "export", "report", "promote", "prepare", "bench")
USAGE = "usage: python -m ast_tune COMMAND [ARGS ...]   (the same as python -m ast_tune.COMMAND [ARGS ...])"


def summary(command: str) -> str:
    """The first line of ``ast_tune/<command>.py``'s docstring, without a trailing ``: ``python ...``.`` usage."""
    source = (Path(__file__).resolve().parent / f"{command}.py").read_text()
    lines = (ast.get_docstring(ast.parse(source)) or "").splitlines()
    first = re.sub(r":\s*``python [^`]*``\.?$", "", lines[0] if lines else "")
    return first.replace("``", "").rstrip(".")


def listing() -> str:
    """The usage line and every command with its summary, one a line."""
    width = max(map(len, COMMANDS))
    rows = [f"  {command:<{width}}  {summary(command)}" for command in COMMANDS]
    return "\n".join([USAGE, "", "commands:", *rows, "",
                      "python -m ast_tune COMMAND --help gives a command's options."])


def main(argv: Sequence[str] | None = None) -> int:
    """List the commands (exit 0), run the one named (its exit code), or refuse an unknown one (exit 2)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(listing())
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(listing(), file=sys.stderr)
        print(f"error: command: unknown {command!r}; allowed: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return importlib.import_module(f"ast_tune.{command}").main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
