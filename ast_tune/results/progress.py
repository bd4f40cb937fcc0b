"""The progress line of one epoch, as ``train``, ``promote`` and a sweep's journal print it.

One formatter, so every command reports an epoch alike: counted savings and measured speedup are
labelled, and a missing or NaN number prints as ``n/a``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any


def number(value: Any, fmt: str, *, scale: float = 1, suffix: str = "") -> str:
    """``value * scale`` formatted as ``fmt`` with ``suffix``; ``n/a`` for None, NaN or a non-number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        return "n/a"
    return f"{value * scale:{fmt}}{suffix}"


def epoch_line(record: Mapping[str, Any], epochs: int, *, who: str = "") -> str:
    """One line for an epoch ``record`` (``columns.EPOCH_METRICS``) of a run of ``epochs`` epochs.

    ``who`` starts the line, e.g. ``"trial 3f2a "``. Units: top-1 in %, activation and its target
    as fractions, savings (counted) in %, speedup (measured) as ×, loss and threshold in nats,
    train seconds of the epoch, samples per second.
    """
    get = record.get
    return (f"{who}epoch {get('epoch')}/{epochs}: top1 {number(get('val_top1'), '.2f', suffix='%')} "
            f"act {number(get('activation_rate'), '.3f')} (target {number(get('target_activation'), '.2f')}) "
            f"savings {number(get('energy_savings'), '.1f', scale=100, suffix='%')} (counted) "
            f"speedup {number(get('speedup'), '.2f', suffix='x')} (measured) "
            f"loss {number(get('train_loss'), '.4f')} thr {number(get('threshold'), '.3f')} "
            f"{number(get('train_seconds'), '.2f', suffix=' s')} "
            f"{number(get('samples_per_second'), '.0f')} samples/s [{get('phase', 'n/a')}]")
