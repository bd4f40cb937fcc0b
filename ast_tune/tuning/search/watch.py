"""The sweep's status line while it runs: at each trial's end, and at least every ``--status-every`` seconds.

:class:`StatusCallback` asks for the sweep's status (:func:`ast_tune.cost.status.status_of`, built by the
sweep from its journal and ``run.json``), prints its one line (:func:`ast_tune.cost.status.status_line`:
trials done, running and pending; epochs; elapsed and ETA; device-hours held and projected; the best
trial so far) and hands the status on (the sweep records ``run.json``'s half-way estimate from it).
Plain lines, so a log or CI shows them as a terminal does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ray import tune

from ast_tune.cost.status import SweepStatus, status_line


class StatusCallback(tune.Callback):
    """Prints the status line at each trial's end and, with ``every`` > 0, when ``every`` seconds have passed
    since the last one (checked at each step of Tune's loop).

    Args:
        status: the sweep's status now.
        every: s, the longest gap between two lines while trials run; 0: only at trial ends.
        on_status: called with each status printed.
        clock: s, monotonic (a test's own clock).
    """

    def __init__(self, status: Callable[[], SweepStatus], *, every: float,
                 on_status: Callable[[SweepStatus], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.status, self.every, self.on_status, self.clock = status, every, on_status, clock
        self.last = clock()

    def on_step(self, iteration: int, trials: list, **info: Any) -> None:
        if self.every > 0 and self.clock() - self.last >= self.every:
            self.emit()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.emit()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.emit()

    def emit(self) -> None:
        """Print the status line now."""
        status = self.status()
        self.last = self.clock()
        print(status_line(status), flush=True)
        if self.on_status is not None:
            self.on_status(status)
