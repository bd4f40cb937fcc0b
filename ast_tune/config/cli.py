"""The exit-code contract every ``python -m ast_tune.<cli>`` shares (docs/design.md, "Exit codes").

:class:`CliParser` is argparse with its errors raised as :class:`~ast_tune.config.spec.SpecError`.
:func:`run_main` runs a CLI's body and turns what it raises into one line on stderr and an exit
code: 0 done (or the body's own code), 2 bad input (:class:`~ast_tune.config.spec.SpecError`, printed as
``error: <key.path or file>: <what is wrong>``), 1 a runtime failure the CLI names, 130 interrupted by
Ctrl-C (SIGINT), 143 stopped by SIGTERM (a pod stop, a cancelled job). SIGTERM is handled as Ctrl-C is
(:func:`terminate_as_interrupt`): the same tables are written and the same continue line is printed;
a second SIGTERM ends the process at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from ast_tune.config.spec import SpecError

logger = logging.getLogger(__name__)

Failures = Mapping[type[Exception], Callable[[Exception], str]]

EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT): 128 + 2
EXIT_TERMINATED = 143  # SIGTERM: 128 + 15


class _Termination:
    """Whether this process has been sent SIGTERM (set by the handler :func:`terminate_as_interrupt` installs)."""

    received = False


def _on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM: the first is turned into Ctrl-C (whoever handles SIGINT now stops the work); a second exits.

    A process started in the background by a shell without job control has SIGINT ignored, so the
    SIGINT handler is called here rather than the signal raised; where none is installed, the
    handler is Python's own (KeyboardInterrupt).
    """
    if _Termination.received:
        os._exit(EXIT_TERMINATED)
    _Termination.received = True
    on_interrupt = signal.getsignal(signal.SIGINT)
    if not callable(on_interrupt):
        on_interrupt = signal.default_int_handler
    on_interrupt(signal.SIGINT, frame)


def terminate_as_interrupt() -> None:
    """Handle SIGTERM as Ctrl-C from now on, in the main thread (libraries such as Ray install their own).

    The SIGINT handler in place (Python's KeyboardInterrupt, or Tune's graceful stop) then does the
    stopping, and :func:`run_main` exits 143 instead of 130.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


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
        interrupted: the line printed on Ctrl-C (exit 130) or SIGTERM (exit 143); say how to continue.
        failures: exception types that are runtime failures (exit 1), each with the function that
            makes its one-line message; the first type that matches, in order, wins. Anything else
            propagates with its traceback.
        log_format: the root handler's format (``logging.basicConfig``).
        log_level: the root logger's level.
        trace_level: the level at which a failure's traceback is logged (DEBUG: never shown).
    """
    logging.basicConfig(level=log_level, format=log_format)
    previous = signal.getsignal(signal.SIGTERM)
    _Termination.received = False
    terminate_as_interrupt()
    try:
        code = body()
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        code = EXIT_INTERRUPTED
    except Exception as err:
        message = next((say for kind, say in (failures or {}).items() if isinstance(err, kind)), None)
        if message is None:
            raise
        logger.log(trace_level, "%s", type(err).__name__, exc_info=True)
        print(message(err), file=sys.stderr)
        return 1
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
    return EXIT_TERMINATED if code == EXIT_INTERRUPTED and _Termination.received else code


def os_error_line(err: OSError) -> str:
    """``<file>: <reason>`` of a failed read or write; the bare error when it names no file."""
    return f"{err.filename}: {err.strerror or err}" if err.filename else str(err)


def continue_command(module: str, argv: Sequence[str], *, flag: str | None = "--resume") -> str:
    """The shell-quoted command that continues an interrupted ``python -m <module> argv``: ``argv`` with ``flag``
    (once, last), or ``argv`` as it is when ``flag`` is None (the same command continues)."""
    kept = [a for a in argv if a != flag]
    return shlex.join(["python", "-m", module, *kept, *([flag] if flag else [])])
