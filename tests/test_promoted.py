"""The promoted run over its seeds (``results.promoted``), on hand-made epoch tables."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ast_tune.config import columns
from ast_tune.config.criteria import PLAN_CRITERIA
from ast_tune.results.promoted import over_seeds, seed_numbers, summary_line

#: Dense baseline: 2 s per epoch, 90 % after epoch 2 (80 % after epoch 1).
BASELINE = {"val_top1": 90.0, "epoch_seconds": 2.0,
            "epochs": [{"epoch": 1, "val_top1": 80.0, "train_seconds": 2.0},
                       {"epoch": 2, "val_top1": 90.0, "train_seconds": 2.0}]}


def _run(top1: tuple[float, float], seconds: float, savings: float) -> pd.DataFrame:
    """Two AST epochs of ``seconds`` each at 0.3 activation (target 0.3), counted ``savings``."""
    rows = []
    for epoch, accuracy in enumerate(top1, 1):
        row = dict.fromkeys(columns.EPOCH_METRICS, math.nan)
        row.update(epoch=epoch, phase="ast", val_top1=accuracy, val_top5=100.0, train_seconds=seconds,
                   energy_savings=savings, activation_rate=0.3, target_activation=0.3, speedup=2.0 / seconds)
        rows.append(row)
    return pd.DataFrame(rows)


def test_each_seed_is_judged_alone_and_the_verdict_is_the_level_every_seed_meets():
    # seed 0: 89.5 % (0.5 below), 70 % savings, 4x (0.5 s vs 2 s an epoch) -> publication (not stretch: a loss)
    # seed 1: 88.5 % (1.5 below), 70 % savings, 4x -> minimum
    runs = {0: _run((85.0, 89.5), 0.5, 0.7), 1: _run((85.0, 88.5), 0.5, 0.7)}
    numbers = seed_numbers(runs, BASELINE, PLAN_CRITERIA)
    assert numbers[0]["verdict"] == "publication" and numbers[1]["verdict"] == "minimum"
    assert numbers[0]["speedup"] == pytest.approx(4.0) and numbers[0]["epochs_done"] == 2
    assert numbers[1]["train_seconds"] == pytest.approx(1.0)
    summary = over_seeds(numbers, failed=False)
    assert summary["verdict"] == "minimum"
    assert summary["mean"]["val_top1"] == pytest.approx(89.0)
    assert summary["std"]["val_top1"] == pytest.approx(math.sqrt(0.5))  # ddof 1 of 89.5, 88.5
    assert set(summary["seeds"]) == {"0", "1"}


def test_one_seed_has_no_std_and_a_failed_seed_means_no_verdict():
    numbers = seed_numbers({0: _run((85.0, 89.5), 0.5, 0.7)}, BASELINE, PLAN_CRITERIA)
    assert over_seeds(numbers, failed=False)["std"] == {}
    assert over_seeds(numbers, failed=True)["verdict"] == "none"
    assert seed_numbers({0: _run((85.0, 89.5), 0.5, 0.7).iloc[:0]}, BASELINE, PLAN_CRITERIA) == {}


def test_the_closing_line_gives_mean_and_std_and_says_not_reached():
    # both seeds stay below the target (90 - 1 = 89 %): no speedup to target
    numbers = seed_numbers({0: _run((80.0, 88.0), 0.5, 0.7), 1: _run((80.0, 87.0), 0.5, 0.7)}, BASELINE,
                           PLAN_CRITERIA)
    line = summary_line("t0", over_seeds(numbers, failed=False))
    assert line.startswith("promoted trial t0 (mean ± std over 2 seeds): top1 87.50 ± 0.71%")
    assert "savings 70.0 ± 0.0% (counted)" in line and "to target not reached" in line
    assert line.endswith("verdict none (every seed)")
