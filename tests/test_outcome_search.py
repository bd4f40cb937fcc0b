"""OutcomeSearch tells Optuna the whole-run outcome and the constraint violations (no Ray cluster needed)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
import yaml

from ast_tune.config import columns
from ast_tune.config.sweep_spec import load_sweep
from ast_tune.tuning.search import tuner

QUICKSTART = Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart.yaml"
# baseline: 92 % after 3 epochs of 4 s (reaches 91 % at epoch 3: 12 s)
BASELINE = {"val_top1": 92.0, "epoch_seconds": 4.0,
            "epochs": [{"epoch": e, "val_top1": v, "train_seconds": 4.0} for e, v in ((1, 60.0), (2, 85.0), (3, 92.0))]}


def _record(epoch, top1, seconds):
    record = dict.fromkeys(columns.EPOCH_METRICS, 0.5)
    record.update(epoch=epoch, phase="ast", val_top1=top1, train_seconds=seconds, energy_savings=0.6, speedup=2.0,
                  activation_rate=0.45, target_activation=0.4)
    return record


def _search(tmp_path, *overrides):
    spec = load_sweep(QUICKSTART, ["scheduler.kind=fifo", "search.sampler=tpe", *overrides])
    (tmp_path / "baseline.json").write_text(json.dumps(BASELINE))
    return tuner.OutcomeSearch(space={p.name: tuner._distribution(p) for p in spec.space},
                               metric=[o.metric for o in spec.objectives], mode=[o.mode for o in spec.objectives],
                               sampler=tuner._sampler(spec), sweep=spec, results=tmp_path)


def _finish(search, tmp_path, trial_id, top1s):
    search.suggest(trial_id)
    records = [_record(e, t, 2.0) for e, t in enumerate(top1s, start=1)]
    journal = tmp_path / "tune" / "journal.jsonl"
    journal.parent.mkdir(exist_ok=True)
    with journal.open("a") as handle:
        for record in records[:-1]:  # the last epoch reaches the search before the journal: it is in `result`
            handle.write(json.dumps({"event": "epoch", "trial_id": trial_id, "params": {}, **record}) + "\n")
    search.on_trial_complete(trial_id, result=records[-1])
    return search._ot_study.get_trials()[-1]


def test_constraints_are_violations_the_sampler_stores(tmp_path):
    constraints = yaml.safe_dump([{"metric": "top1_drop", "max": 5}, {"metric": "tracking_error_max", "max": 3}],
                                 default_flow_style=True).strip()
    search = _search(tmp_path, f"constraints={constraints}")
    good = _finish(search, tmp_path, "a", [85.0, 91.5])  # 0.5 points below; |0.45 − 0.4| = 5 points
    bad = _finish(search, tmp_path, "b", [50.0, 80.0])  # 12 points below
    assert good.constraints == pytest.approx({"top1_drop <= 5": -4.5, "tracking_error_max <= 3": 2.0})
    assert bad.constraints == pytest.approx({"top1_drop <= 5": 7.0, "tracking_error_max <= 3": 2.0})
    assert good.state == optuna.trial.TrialState.COMPLETE
    feasible = optuna.study._constrained_optimization._get_feasible_trials(search._ot_study.get_trials())
    assert feasible == []  # both break the tracking bound: what TPE and NSGA-II rank below feasible ones


def test_outcome_objectives_are_told_from_the_journal_and_worst_when_not_reached(tmp_path):
    search = _search(tmp_path, "objectives=[{metric: val_top1, mode: max}, {metric: speedup_to_target, mode: max}]")
    reached = _finish(search, tmp_path, "a", [91.0, 91.5])  # target 91 % (92 − 1): 2 s vs the baseline's 12 s
    missed = _finish(search, tmp_path, "b", [50.0, 80.0])
    assert reached.values == [91.5, 6.0]
    assert missed.values == [80.0, -math.inf]
