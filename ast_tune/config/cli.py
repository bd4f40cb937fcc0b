"""The exit-code contract every ``python -m ast_tune.<cli>`` shares (docs/design.md, "Exit codes").

:class:`CliParser` is argparse with its errors raised as :class:`~ast_tune.config.spec.SpecError`.
:func:`run_main` runs a CLI's body and turns what it raises into one line on stderr and an exit
code: 0 done (or the body's own code), 2 bad input (:class:`~ast_tune.config.spec.SpecError`, printed as
``error: <key.path or file>: <what is wrong>``), 1 a runtime failure the CLI names, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping
from typing import NoReturn

from ast_tune.config.spec import SpecError

logger = logging.getLogger(__name__)

Failures = Mapping[type[Exception], Callable[[Exception], str]]


class CliParser(argparse.ArgumentParser):
    """argparse whose errors raise :class:`SpecError`, so every CLI reports them as one line, exit 2."""

    def error(self, message: str) -> NoReturn:
        raise SpecError("", message)


def run_main(body: Callable[[], int], *, interrupted: str, failures: Failures | None = None,
             log_format: str = "%(levelname)s: %(message)s", log_level: int = logging.WARNING,
             trace_level: int = logging.DEBUG) -> int:
    """Configure logging, run ``body`` and return its exit code, or the code of what it raised.

    Args:
        body: the CLI's work (argument parsing included); returns its exit code.
        interrupted: the line printed on Ctrl-C (exit 130); say how to continue.
        failures: exception types that are runtime failures (exit 1), each with the function that
            makes its one-line message; the first type that matches, in order, wins. Anything else
            propagates with its traceback.
        log_format: the root handler's format (``logging.basicConfig``).
        log_level: the root logger's level.
        trace_level: the level at which a failure's traceback is logged (DEBUG: never shown).
    """
    logging.basicConfig(level=log_level, format=log_format)
    try:
        return body()
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    except Exception as err:
        message = next((say for kind, say in (failures or {}).items() if isinstance(err, kind)), None)
        if message is None:
            raise
        logger.log(trace_level, "%s", type(err).__name__, exc_info=True)
        print(message(err), file=sys.stderr)
        return 1


def os_error_line(err: OSError) -> str:
    """``<file>: <reason>`` of a failed read or write; the bare error when it names no file."""
    return f"{err.filename}: {err.strerror or err}" if err.filename else str(err)
