"""Time-to-accuracy, tracking error and the plan's verdict on hand-made epoch tables."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import yaml

from ast_tune.config import columns
from ast_tune.config.criteria import Constraint, Criteria, Level, SuccessSpec, criteria_from
from ast_tune.config.promote_spec import PromoteRule
from ast_tune.config.spec import SpecError
from ast_tune.export import main as export_main
from ast_tune.promotion.choice import choose_trial
from ast_tune.results import verdict
from ast_tune.results.tables import trials_table

PLAN = Criteria()


def rows(top1, seconds, *, savings=0.0, activation=None, target=0.4, phases=None, trial="t"):
    n = len(top1)
    return pd.DataFrame({"trial_id": trial, "epoch": range(1, n + 1), "val_top1": top1, "train_seconds": seconds,
                         "energy_savings": savings, "phase": phases or ["ast"] * n,
                         "activation_rate": activation or [target] * n, "target_activation": target})


# the baseline: 4 s per epoch, 60 % → 85 % → 92 % top-1 (final 92)
BASELINE = {"val_top1": 92.0, "epoch_seconds": 4.0,
            "epochs": [{"epoch": e, "val_top1": v, "train_seconds": 4.0} for e, v in ((3, 92.0), (1, 60.0), (2, 85.0))]}


def test_time_to_target_is_the_seconds_to_the_end_of_the_first_epoch_that_reaches_it():
    run = rows([50.0, 80.0, 78.0, 90.0], [1.0, 2.0, 3.0, 4.0])
    assert verdict.time_to_target(run, 80.0) == 3.0  # epochs 1 and 2
    assert verdict.time_to_target(run, 79.999999999999) == 3.0  # within rounding
    assert verdict.time_to_target(run, 85.0) == 10.0
    assert math.isnan(verdict.time_to_target(run, 95.0))  # never reached
    assert math.isnan(verdict.time_to_target(run, None))  # no target (no baseline)


def test_speedup_to_target_divides_the_baseline_time_by_the_trials_and_is_nan_when_not_reached():
    base = verdict.baseline_epochs(BASELINE)
    assert base["epoch"].tolist() == [1, 2, 3]  # sorted by epoch
    run = rows([50.0, 80.0, 91.0], [1.0, 2.0, 3.0])
    assert verdict.speedup_to(run, base, 80.0) == pytest.approx(8.0 / 3.0)  # baseline: 2 epochs; trial: 3 s
    assert math.isnan(verdict.speedup_to(run, base, 91.5))  # the trial never gets there
    assert math.isnan(verdict.speedup_to(run, base, 95.0))  # neither does the baseline
    assert math.isnan(verdict.speedup_to(run, None, 80.0))  # no baseline records


def test_tracking_error_is_in_points_over_ast_epochs_only():
    run = rows([1.0, 2.0, 3.0], [1, 1, 1], activation=[1.0, 0.30, 0.45], phases=["warmup", "ast", "ast"])
    assert verdict.tracking_error(run) == pytest.approx((7.5, 10.0))
    dense = rows([1.0], [1], activation=[1.0], phases=["warmup"])
    assert all(math.isnan(v) for v in verdict.tracking_error(dense))


@pytest.mark.parametrize(("drop", "savings", "speedups", "expected"), [
    (2.0, 0.60, 2.0, "minimum"),  # every bound of minimum exactly
    (2.01, 0.60, 2.0, "none"),
    (2.0, 0.599, 2.0, "none"),
    (2.0, 0.60, 1.99, "none"),
    (1.0, 0.60, 3.0, "publication"),  # publication exactly
    (1.0, 0.60, 2.99, "minimum"),
    (1.01, 0.65, 3.5, "minimum"),
    (0.0, 0.70, 5.0, "stretch"),  # stretch exactly
    (0.0, 0.69, 5.0, "publication"),
    (0.01, 0.70, 5.0, "publication"),
    (-0.5, 0.80, 6.0, "stretch"),  # better than the baseline
    (math.nan, 0.80, 6.0, "none"),  # no baseline: nothing to judge against
])
def test_verdict_boundaries_of_each_level(drop, savings, speedups, expected):
    assert verdict.verdict(drop, savings, dict.fromkeys(("stretch", "publication", "minimum"), speedups),
                           PLAN) == expected


def test_each_level_uses_the_speedup_to_its_own_accuracy_bar():
    # reaches 90 % (minimum's bar, 92 − 2) after 2 s; never 91 % (publication's) nor 92 %
    run = rows([85.0, 90.0, 90.5], [1.0, 1.0, 1.0], savings=0.65)
    speedups = verdict.level_speedups(run, verdict.baseline_epochs(BASELINE), 92.0, PLAN)
    assert speedups["minimum"] == pytest.approx(12.0 / 2.0)  # the baseline first has >= 90 % at epoch 3
    assert math.isnan(speedups["publication"]) and math.isnan(speedups["stretch"])
    result = verdict.outcome(run, BASELINE, PLAN)
    assert result["verdict"] == "minimum"
    assert result["top1_drop"] == pytest.approx(1.5)
    assert math.isnan(result["speedup_to_target"])  # target 91 % (92 − promote's 1 point): not reached
    assert math.isnan(result["time_to_target_s"])


def test_target_top1_from_the_spec_wins_over_the_baseline_minus_the_drop():
    criteria = Criteria(SuccessSpec(target_top1=80.0))
    run = rows([85.0, 90.0], [1.0, 1.0])
    result = verdict.outcome(run, BASELINE, criteria)
    assert result["time_to_target_s"] == 1.0 and result["speedup_to_target"] == pytest.approx(8.0)
    assert verdict.target_top1(BASELINE, Criteria(max_accuracy_drop=2.5)) == 89.5
    assert verdict.target_top1(None, PLAN) is None


def test_outcomes_has_one_row_per_trial():
    table = pd.concat([rows([85.0, 92.0], [1.0, 1.0], savings=0.75, trial="a"),
                       rows([50.0, 60.0], [1.0, 1.0], trial="b")])
    out = verdict.outcomes(table, BASELINE, PLAN)
    assert out.index.tolist() == ["a", "b"]
    assert out.loc["a", "verdict"] == "stretch"  # 92 % at 2 s vs the baseline's 12 s: 6x
    assert out.loc["b", "verdict"] == "none"


def test_common_level_is_what_every_seed_meets():
    assert verdict.common_level(["stretch", "publication", "minimum"]) == "minimum"
    assert verdict.common_level(["publication", "publication"]) == "publication"
    assert verdict.common_level(["stretch", "none"]) == "none"
    assert verdict.common_level([]) == "none"


def test_conclusion_names_the_best_trial_or_how_closely_minimum_was_missed():
    table = pd.concat([rows([85.0, 91.72], [3.0, 3.0], savings=0.54, trial="a"),
                       rows([50.0, 60.0], [1.0, 1.0], savings=0.7, trial="b")])
    trials = verdict.outcomes(table, BASELINE, PLAN).rename_axis("trial_id").reset_index()
    trials["val_top1"] = [91.72, 60.0]
    trials["energy_savings"] = [0.54, 0.7]
    line = verdict.conclusion(trials, table, BASELINE, PLAN)
    assert line.startswith("verdict: no trial reaches minimum")
    assert "the closest, trial a, misses: savings 54.0% counted (needs 60%)" in line
    assert "top-1" not in line.split("misses:")[1]  # a's 0.28-point drop is within 2
    table = pd.concat([table, rows([91.0, 92.0], [1.0, 1.0], savings=0.65, trial="c")])
    trials = verdict.outcomes(table, BASELINE, PLAN).rename_axis("trial_id").reset_index()
    trials["val_top1"], trials["energy_savings"] = [91.72, 60.0, 92.0], [0.54, 0.7, 0.65]
    line = verdict.conclusion(trials, table, BASELINE, PLAN)
    assert line.startswith("verdict: 1 trial(s) reach publication (none higher); the most accurate, trial c")
    assert "12.00x sooner to 91.00%" in line
    assert "no dense baseline" in verdict.conclusion(trials, table, None, PLAN)


def test_success_and_constraints_sections_are_checked_naming_the_key():
    criteria = criteria_from({"success": {"minimum": {"max_accuracy_drop": 3, "min_savings": 0.5, "min_speedup": 1.5}},
                              "constraints": [{"metric": "top1_drop", "max": 5}],
                              "promote": {"rule": {"max_accuracy_drop": 2}}})
    assert criteria.success.minimum == Level(3.0, 0.5, 1.5)
    assert criteria.constraints == (Constraint("top1_drop", max=5.0),)
    assert criteria.max_accuracy_drop == 2.0
    assert criteria_from({}) == Criteria()
    with pytest.raises(SpecError, match=r"^spec.yaml: success.publication.max_accuracy_drop: must be at least as"):
        criteria_from({"success": {"publication": {"max_accuracy_drop": 3, "min_savings": 0.6, "min_speedup": 3}}},
                      source="spec.yaml")
    with pytest.raises(SpecError, match=r"^constraints\[0\].metric: must be one of .*top1_drop"):
        criteria_from({"constraints": [{"metric": "loss", "max": 1}]})
    with pytest.raises(SpecError, match=r"^constraints\[0\].max: give exactly one of max, min"):
        criteria_from({"constraints": [{"metric": "top1_drop"}]})


def test_constraint_violation_is_positive_past_the_bound_and_infinite_for_nan():
    assert Constraint("top1_drop", max=5.0).violation(6.5) == 1.5
    assert Constraint("top1_drop", max=5.0).violation(4.0) == -1.0
    assert Constraint("val_top1", min=80.0).violation(70.0) == 10.0
    assert Constraint("val_top1", min=80.0).violation(math.nan) == math.inf


def _epochs_table() -> pd.DataFrame:
    """Three finished trials against BASELINE (92 % after 3 × 4 s):

    a: 91.5 % at 2 s (reaches 91 % first: 12 / 2 = 6x), 65 % savings, tracking 5 / 10 points → publication
    b: 95 % at 1 s, but 20 % savings → none
    c: 80 %: 12 points below, infeasible under top1_drop <= 5
    """
    frames = [rows([85.0, 91.5], [1.0, 1.0], savings=0.65, activation=[0.45, 0.5], trial="a"),
              rows([95.0], [1.0], savings=0.2, trial="b"),
              rows([80.0], [1.0], savings=0.9, activation=[0.1], trial="c")]
    table = pd.concat(frames, ignore_index=True)
    for name in columns.EPOCH_METRICS:
        if name not in table:
            table[name] = 1.0 if name == "speedup" else math.nan
    return table.assign(status="TERMINATED", reason=None)


def test_export_rebuilds_every_new_column_from_epochs_and_baseline_alone(tmp_path, capsys):
    _epochs_table().to_parquet(tmp_path / "epochs.parquet", index=False)
    (tmp_path / "baseline.json").write_text(json.dumps(BASELINE))
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({"constraints": [{"metric": "top1_drop", "max": 5}]}))
    assert export_main([str(tmp_path)]) == 0
    trials = pd.read_parquet(tmp_path / "trials.parquet").set_index("trial_id")
    assert trials.loc["a", "time_to_target_s"] == 2.0 and trials.loc["a", "speedup_to_target"] == pytest.approx(6.0)
    assert trials.loc["a", "tracking_error_mean"] == pytest.approx(7.5)
    assert trials.loc["a", "tracking_error_max"] == pytest.approx(10.0)
    assert trials.loc["a", "top1_drop"] == pytest.approx(0.5)
    assert trials["verdict"].to_dict() == {"a": "publication", "b": "none", "c": "none"}
    # c: infeasible, so in the table but off the front, whatever its savings
    assert trials["feasible"].to_dict() == {"a": True, "b": True, "c": False}
    assert not trials.loc["c", "on_front"] and trials.loc["c", "pareto_rank"] == 0
    front = pd.read_parquet(tmp_path / "pareto.parquet")
    assert front["trial_id"].tolist() == ["b", "a"]
    markdown = (tmp_path / "pareto.md").read_text()
    assert "| publication |" in markdown and "91.00% top-1" in markdown and "| c |" not in markdown
    assert capsys.readouterr().out == markdown


def test_an_infeasible_trial_is_kept_off_the_promotion():
    trials = trials_table(_epochs_table(), [("val_top1", "max"), ("energy_savings", "max")], baseline=BASELINE,
                          criteria=criteria_from({"constraints": [{"metric": "top1_drop", "max": 5}]}))
    rule = PromoteRule(max_accuracy_drop=100, prefer="energy_savings")  # c saves most, but is infeasible
    assert choose_trial(trials, baseline_top1=92.0, rule=rule) == "a"
