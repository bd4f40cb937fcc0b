"""Learning-rate schedules as pure functions of training progress.

Because the LR is a function of (epoch, step) alone, a resumed run needs no scheduler state: it
recomputes the same LR from the epoch it restarts at.
"""

from __future__ import annotations

import math

from ast_tune.config.run_spec import OptimSpec

ONECYCLE_PCT_START = 0.3  # share of training spent rising to the peak LR
ONECYCLE_DIV = 25.0  # start LR = peak / 25
ONECYCLE_FINAL_DIV = 1e4  # final LR = start / 1e4


def lr_at(optim: OptimSpec, *, progress: float, epochs: int, warmup_epochs: int) -> float:
    """The LR after ``progress`` epochs (a float: 2.5 = halfway through the third epoch).

    ``two_stage``: ``warmup_lr`` during the warm-up epochs, then ``lr``. ``constant``, ``step``,
    ``cosine`` and ``onecycle`` span all ``epochs`` from ``lr`` (``onecycle`` peaks at ``lr``).
    """
    if optim.schedule == "two_stage":
        return optim.warmup_lr if progress < warmup_epochs else optim.lr
    if optim.schedule == "constant":
        return optim.lr
    if optim.schedule == "step":
        return optim.lr * optim.gamma ** math.floor(progress / optim.step_epochs)
    fraction = min(max(progress / epochs, 0.0), 1.0)
    if optim.schedule == "cosine":
        return optim.lr * 0.5 * (1 + math.cos(math.pi * fraction))
    return _onecycle(optim.lr, fraction)


def _onecycle(peak: float, fraction: float) -> float:
    """torchvision/fast.ai one-cycle with cosine phases: rise to ``peak``, then anneal."""
    start = peak / ONECYCLE_DIV
    end = start / ONECYCLE_FINAL_DIV
    if fraction < ONECYCLE_PCT_START:
        t = fraction / ONECYCLE_PCT_START
        return start + (peak - start) * 0.5 * (1 - math.cos(math.pi * t))
    t = (fraction - ONECYCLE_PCT_START) / (1 - ONECYCLE_PCT_START)
    return end + (peak - end) * 0.5 * (1 + math.cos(math.pi * t))
