"""The study as the record, without a Ray cluster: what it is told from the journal, what a start finds, the searcher.

Baseline of the tell tests: 92 % after 3 epochs of 4 s (it reaches 91 % at epoch 3: 12 s); the
target top-1 is 91 % (92 − the 1-point drop of the promotion rule).
"""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from ray.tune.search import Searcher

from ast_tune.config import columns
from ast_tune.config.spec import SpecError
from ast_tune.config.sweep_space import parse_space
from ast_tune.config.sweep_spec import load_sweep
from ast_tune.tuning.search import study as record
from ast_tune.tuning.search.searcher import TRIAL_KEY, StudySearcher

QUICKSTART = Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart.yaml"
BASELINE = {"val_top1": 92.0, "epoch_seconds": 4.0,
            "epochs": [{"epoch": e, "val_top1": v, "train_seconds": 4.0} for e, v in ((1, 60.0), (2, 85.0), (3, 92.0))]}


def _spec(*overrides: str):
    return load_sweep(QUICKSTART, ["scheduler.kind=fifo", "search.sampler=random", *overrides])


def _entries(number: int, top1s: list[float], status: str = "TERMINATED") -> list[dict]:
    """A trial's journal: an epoch of 2 s per top-1 (savings 0.6, speedup 2, activation 0.45 for 0.4), its end."""
    entries = []
    for epoch, top1 in enumerate(top1s, start=1):
        record_ = dict.fromkeys(columns.EPOCH_METRICS, 0.5)
        record_.update(epoch=epoch, phase="ast", val_top1=top1, train_seconds=2.0, energy_savings=0.6, speedup=2.0,
                       activation_rate=0.45, target_activation=0.4)
        entries.append({"event": "epoch", "trial_id": str(number), "params": {}, **record_})
    return [*entries, {"event": "end", "trial_id": str(number), "params": {}, "status": status, "reason": None}]


def _asked(study: optuna.Study, spec) -> optuna.trial.Trial:
    return study.ask(record.distributions(spec))


def test_constraints_are_told_as_violations_the_sampler_reads_also_for_a_trial_an_earlier_driver_asked(tmp_path):
    constraints = yaml.safe_dump([{"metric": "top1_drop", "max": 5}, {"metric": "tracking_error_max", "max": 3}],
                                 default_flow_style=True).strip()
    spec = _spec(f"constraints={constraints}")
    study = record.open_study(spec, tmp_path)
    good, bad = _asked(study, spec), _asked(study, spec)
    record.tell(study, 0, _entries(0, [85.0, 91.5]), spec=spec, baseline=BASELINE, trial=good)  # 0.5 points below
    record.tell(study, 1, _entries(1, [50.0, 80.0]), spec=spec, baseline=BASELINE)  # 12 below; asked "before"
    told = study.get_trials()
    # |0.45 − 0.4| = 5 points of tracking error: both break the 3-point bound
    assert told[0].constraints == pytest.approx({"top1_drop <= 5": -4.5, "tracking_error_max <= 3": 2.0})
    assert told[1].constraints == pytest.approx({"top1_drop <= 5": 7.0, "tracking_error_max <= 3": 2.0})
    assert [t.state for t in told] == [TrialState.COMPLETE] * 2 and told[0].values == [91.5, 0.6, 2.0]
    assert optuna.study._constrained_optimization._get_feasible_trials(told) == []  # what TPE, NSGA-II rank lower
    assert bad.number == 1


def test_outcome_objectives_are_told_from_the_journal_and_the_worst_value_when_not_reached(tmp_path):
    spec = _spec("objectives=[{metric: val_top1, mode: max}, {metric: speedup_to_target, mode: max}]",
                 "constraints=[]")
    study = record.open_study(spec, tmp_path)
    for _ in range(2):
        _asked(study, spec)
    record.tell(study, 0, _entries(0, [91.0, 91.5]), spec=spec, baseline=BASELINE)  # 91 % after 2 s: 12 s / 2 s
    record.tell(study, 1, _entries(1, [50.0, 80.0]), spec=spec, baseline=BASELINE)  # never reached
    assert [t.values for t in study.get_trials()] == [[91.5, 6.0], [80.0, -math.inf]]
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 2  # NaN would have made it FAIL


def test_an_errored_trial_is_told_fail(tmp_path):
    spec = _spec("constraints=[]")
    study = record.open_study(spec, tmp_path)
    _asked(study, spec)
    record.tell(study, 0, _entries(0, [50.0], status="ERROR"), spec=spec, baseline=None)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.FAIL and trial.values is None


def test_a_start_tells_ended_trials_fails_abandoned_ones_and_resumes_the_others_by_number(tmp_path):
    spec = _spec("objectives=[{metric: val_top1, mode: max}, {metric: energy_savings, mode: max}]",
                 "constraints=[]")
    study = record.open_study(spec, tmp_path)
    _asked(study, spec)
    study.tell(0, [70.0, 0.5])  # #0: told before the kill
    _asked(study, spec)  # #1: its end journaled, then the kill before the tell
    bare = study.ask()  # #2: killed while Optuna stored its parameters, one by one
    bare.suggest_float("target_activation", 0.2, 0.5)
    _asked(study, spec)  # #3: asked (perhaps trained a while), never ended
    journal = [*_entries(1, [60.0, 75.0]), *_entries(3, [55.0])[:-1]]
    resume = record.reconcile(study, journal, spec=spec, baseline=None)
    trials = study.get_trials()
    assert [t.number for t in resume] == [3]
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL,
                                         TrialState.RUNNING]
    assert trials[1].values == [75.0, 0.6]  # the last epoch's, from the journal
    assert record.counted(study, record.distributions(spec)) == 3  # the abandoned one does not count


def test_the_searcher_hands_back_resumed_trials_first_then_asks_until_the_budget_then_finishes(tmp_path):
    spec = _spec("constraints=[]")
    study = record.open_study(spec, tmp_path)
    space = record.distributions(spec)
    for _ in range(3):
        study.ask(space)  # #0 .. #2
    study.tell(0, [1.0, 0.5, 1.0])
    study.tell(1, state=TrialState.FAIL)
    bare = study.ask()  # #3: abandoned (no parameters), told FAIL at the start
    study.tell(bare.number, state=TrialState.FAIL)
    searcher = StudySearcher(study, space, num_trials=5, resume=study.get_trials(states=(TrialState.RUNNING,)))
    configs = [searcher.suggest(f"tune{i}") for i in range(4)]
    assert [c[TRIAL_KEY] for c in configs[:3]] == [2, 4, 5] and configs[3] == Searcher.FINISHED
    assert {k: v for k, v in configs[0].items() if k != TRIAL_KEY} == study.get_trials()[2].params
    assert set(searcher.asked) == {4, 5} and len(study.get_trials()) == 6
    searcher.on_trial_complete("tune0", result={"val_top1": 1.0})  # the searcher tells the study nothing
    assert study.get_trials()[2].state == TrialState.RUNNING


def test_the_trial_key_cannot_be_a_parameter_name():
    with pytest.raises(SpecError, match=f"space.{TRIAL_KEY}"):
        parse_space({TRIAL_KEY: {"fixed": 1}})


def test_the_study_file_is_sqlite_and_named_after_the_sweep(tmp_path):
    spec = _spec()
    record.open_study(spec, tmp_path)
    assert (tmp_path / record.STUDY_FILE).read_bytes()[:15] == b"SQLite format 3"
    assert optuna.load_study(study_name=spec.name, storage=f"sqlite:///{tmp_path / record.STUDY_FILE}")
