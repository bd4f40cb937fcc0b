"""The promoted run on its own workload (``promote.workload``), and its check against its proxy trial.

A sweep tuned on a proxy (a class subset, a lower resolution, fewer epochs) promotes its winner onto
the full task, whose dense baseline the promotion times first (``promoted/baseline.json``).
:func:`transfer_check` sets the promoted run beside the proxy trial it came from, each against its
own dense baseline: the accuracy drop (points of top-1), the counted energy savings and the measured
speedup.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ast_tune.config.spec import to_dict
from ast_tune.promotion.choice import Promotion


def workload_record(promotion: Promotion) -> dict[str, Any]:
    """Which workload the promoted run trained: its data, epochs and workers, and whether the sweep's differs."""
    data = to_dict(promotion.run_spec.data)
    return {"data": data, "epochs": promotion.run_spec.epochs, "workers": promotion.workload.workers,
            "promote_workload": promotion.full_sweep is not None}


def workload_line(promotion: Promotion) -> str:
    """One line naming the promoted run's workload."""
    source = "promote.workload" if promotion.full_sweep is not None else "the sweep's workload"
    return f"workload ({source}): {promotion.workload.describe()}"


def transfer_check(promotion: Promotion, records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """The proxy trial and the promoted run, each against its own dense baseline.

    Returns:
        ``{"proxy_trial": ..., "promoted": ...}``, each with ``val_top1`` and ``baseline_top1`` (%),
        ``accuracy_drop`` (points; NaN without a baseline), ``energy_savings`` (counted, mean over
        epochs, a fraction) and ``speedup`` (measured: the baseline's seconds for these epochs over
        the run's; NaN without a baseline).
    """
    row = promotion.trial_row
    sweep_top1 = promotion.baseline["val_top1"] if promotion.baseline else math.nan
    own = promotion.run_baseline
    seconds = sum(r["train_seconds"] for r in records)
    last = records[-1] if records else {}
    promoted_top1 = last.get("val_top1", math.nan)
    own_top1 = own["val_top1"] if own else math.nan
    return {
        "proxy_trial": {"val_top1": row.get("val_top1", math.nan), "baseline_top1": sweep_top1,
                        "accuracy_drop": sweep_top1 - row.get("val_top1", math.nan),
                        "energy_savings": row.get("energy_savings", math.nan),
                        "speedup": row.get("speedup", math.nan)},
        "promoted": {"val_top1": promoted_top1, "baseline_top1": own_top1, "accuracy_drop": own_top1 - promoted_top1,
                     "energy_savings": (sum(r["energy_savings"] for r in records) / len(records)
                                        if records else math.nan),
                     "speedup": (promotion.baseline_seconds * len(records) / seconds
                                 if promotion.baseline_seconds and seconds > 0 else math.nan)},
    }


def transfer_lines(trial_id: str, check: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The transfer check as a Markdown table, one line per string."""
    lines = ["transfer check (each run against its own dense baseline):",
             "| run | top-1 (%) | dense top-1 (%) | drop (points) | energy savings, counted (%) "
             "| speedup, measured (×) |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, key in ((f"proxy trial {trial_id}", "proxy_trial"), ("promoted run", "promoted")):
        c = check[key]
        lines.append(f"| {label} | {c['val_top1']:.2f} | {c['baseline_top1']:.2f} | {c['accuracy_drop']:+.2f} | "
                     f"{100 * c['energy_savings']:.1f} | {c['speedup']:.2f} |")
    return lines
