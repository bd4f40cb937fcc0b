"""Scheduler decisions on hand-made rung tables, driven without a Ray cluster (except the last test).

Most tests use η = 2 and grace_period = 1, so MOASHA's rung 1 keeps the top ceil(n/2) of its n
records (a trial continues when fewer than ceil(n/2) records rank strictly above it), and ASHA's
keeps a trial at or above the median of the earlier records. Rungs rebuilt from a journal's epoch
records must decide as the scheduler that saw them live did.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from ast_tune.config.sweep_spec import load_sweep
from ast_tune.results.pareto import pareto_ranks
from ast_tune.tuning.search.schedulers import ASHA, MultiObjectiveASHA, make_scheduler
from tests.test_faults import QUICKSTART

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP
METRICS = ("val_top1", "energy_savings")


def moasha(modes=("max", "max"), **kwargs) -> MultiObjectiveASHA:
    return MultiObjectiveASHA(metrics=METRICS, modes=modes, grace_period=1, reduction_factor=2,
                              max_t=8, **kwargs)


def result(epoch: int, *values: float) -> dict[str, float]:
    return {"epoch": epoch, **dict(zip(METRICS, values, strict=True))}


def report(scheduler, trial_id: str, epoch: int, *values: float) -> str:
    """One result of ``trial_id``; the scheduler's decision."""
    return scheduler.on_trial_result(None, SimpleNamespace(trial_id=trial_id), result(epoch, *values))


# Four points on one front (both objectives minimised), used by the crowding and rebuild tests.
FRONT = {"a": (0.0, 4.0), "b": (4.0, 0.0), "c": (0.5, 3.5), "d": (3.5, 0.5)}


def front_rung(**kwargs) -> MultiObjectiveASHA:
    scheduler = moasha(modes=("min", "min"), **kwargs)
    for trial_id, point in FRONT.items():
        report(scheduler, trial_id, 1, *point)
    return scheduler


def test_dominated_trials_stop_and_front_trials_continue():
    scheduler = moasha()
    assert report(scheduler, "a", 1, 0.9, 0.20) == CONTINUE  # n=1 < η: nothing to cut
    assert report(scheduler, "b", 1, 0.5, 0.60) == CONTINUE  # n=2, both on the front: tie -> keep
    assert report(scheduler, "c", 1, 0.4, 0.10) == STOP  # rank 2 (under a, b); 2 above it, keep ceil(3/2)=2
    assert report(scheduler, "d", 1, 0.8, 0.15) == STOP  # rank 2 (under a); 2 above it, keep ceil(4/2)=2


def test_tie_on_the_front_is_broken_by_crowding():
    # With (2, 2) added, sorted by x: 0, .5, 2, 3.5, 4 (span 4). Crowding of (2, 2) is
    # 2 * (3.5 - .5)/4 = 1.5 > 1.0 of c and d: only a and b (inf) rank above it; keep ceil(5/2) = 3.
    # (0.25, 3.75) instead sits between a and c: crowding 2 * 0.5/4 = 0.25, below c's 1.625 and
    # d's 1.75, so four records rank above it.
    both = np.array([*FRONT.values(), (2.0, 2.0), (0.25, 3.75)])
    assert pareto_ranks(both, ["min", "min"]).tolist() == [1] * 6  # all on the front
    assert report(front_rung(), "e", 1, 2.0, 2.0) == CONTINUE
    assert report(front_rung(), "e", 1, 0.25, 3.75) == STOP


def test_non_finite_objective_stops_and_is_not_recorded():
    scheduler = moasha()
    assert report(scheduler, "nan", 1, float("nan"), 0.5) == STOP
    assert report(scheduler, "inf", 1, 0.5, float("inf")) == STOP
    assert report(scheduler, "ok", 1, 0.1, 0.1) == CONTINUE  # alone on the rung
    assert dict(scheduler.rungs) == {4: {}, 2: {}, 1: {"ok": [0.1, 0.1]}}


def test_result_without_every_metric_is_ignored():
    scheduler = moasha()
    assert scheduler.on_trial_result(None, SimpleNamespace(trial_id="a"), {"epoch": 1, "val_top1": 0.1}) == CONTINUE
    assert all(not records for _, records in scheduler.rungs)


def test_trial_is_recorded_once_at_each_rung_it_reaches_and_stopped_at_max_t():
    scheduler = moasha()
    decisions = [report(scheduler, "a", epoch, 0.1 * epoch, 0.5) for epoch in range(1, 9)]
    assert decisions == [CONTINUE] * 7 + [STOP]
    # epochs 1, 2 and 4 are milestones; epoch 3 is not, and epoch 8 = max_t stops before recording
    assert dict(scheduler.rungs) == {4: {"a": [0.4, 0.5]}, 2: {"a": [0.2, 0.5]}, 1: {"a": [0.1, 0.5]}}


def test_moasha_rebuilt_from_a_journal_decides_like_the_one_that_saw_it_live():
    live = front_rung()
    rebuilt = moasha(modes=("min", "min"), history=[(t, result(1, *point)) for t, point in FRONT.items()])
    assert report(rebuilt, "e", 1, 0.25, 3.75) == report(live, "e", 1, 0.25, 3.75) == STOP
    assert report(moasha(modes=("min", "min")), "e", 1, 0.25, 3.75) == CONTINUE  # without the records it survives


def asha(**kwargs) -> ASHA:
    return ASHA(metric="val_top1", mode="max", grace_period=1, reduction_factor=2, max_t=8, **kwargs)


def asha_report(scheduler: ASHA, trial_id: str, val_top1: float, epoch: int = 1) -> str:
    return scheduler.on_trial_result(None, SimpleNamespace(trial_id=trial_id), {"epoch": epoch, "val_top1": val_top1})


ACCURACIES = {"a": 0.9, "b": 0.5, "c": 0.7, "d": 0.6}


def test_asha_rebuilt_from_a_journal_decides_like_the_one_that_saw_it_live():
    live = asha()
    for trial_id, accuracy in ACCURACIES.items():
        asha_report(live, trial_id, accuracy)
    rebuilt = asha(history=[(t, {"epoch": 1, "val_top1": v}) for t, v in ACCURACIES.items()])
    # the median of (0.9, 0.5, 0.7, 0.6) is 0.65 > 0.55: STOP; with no records: CONTINUE
    assert asha_report(rebuilt, "e", 0.55) == asha_report(live, "e", 0.55) == STOP
    assert asha_report(asha(), "e", 0.55) == CONTINUE


def test_asha_decides_as_rays_async_hyperband_with_one_bracket():
    ours = asha()
    rays = AsyncHyperBandScheduler(time_attr="epoch", metric="val_top1", mode="max", grace_period=1,
                                   reduction_factor=2, max_t=8)
    for trial_id, accuracy in {**ACCURACIES, "e": 0.55, "f": 0.95, "g": 0.6}.items():
        trial = SimpleNamespace(trial_id=trial_id)
        rays.on_trial_add(None, trial)
        assert asha_report(ours, trial_id, accuracy) == rays.on_trial_result(
            None, trial, {"epoch": 1, "val_top1": accuracy}), trial_id


def test_a_trial_replaying_its_checkpoint_gets_the_decision_it_got_before_the_kill():
    """b stopped at rung 1 before the kill (below a); a passed it first. Rebuilt from the journal and
    replayed, b stops again; a still passes, though against every record now it would not."""
    history = [(t, {"epoch": 1, "val_top1": v}) for t, v in {"a": 0.5, "b": 0.4, "c": 0.9, "d": 0.7}.items()]
    live = asha()
    assert [asha_report(live, t, r["val_top1"]) for t, r in history] == [CONTINUE, STOP, CONTINUE, CONTINUE]
    rebuilt = asha(history=history)
    assert asha_report(rebuilt, "b", 0.4) == STOP
    assert asha_report(rebuilt, "a", 0.5) == CONTINUE  # median of (0.4, 0.9, 0.7) is 0.7 > 0.5
    assert asha_report(rebuilt, "a", 0.1, epoch=2) == CONTINUE  # rung 2 is empty: it passes there
    assert asha_report(rebuilt, "a", 0.1, epoch=3) == CONTINUE  # judged on its rung-2 record, not on epoch 3


def test_rungs_are_keyed_by_study_number_across_tune_runs():
    number = lambda trial: str(trial.config["trial"])  # noqa: E731 (what the sweep keys its rungs by)
    history = [(str(n), result(1, *point)) for n, point in enumerate(FRONT.values())]
    rebuilt = moasha(modes=("min", "min"), key=number, history=history)
    again = SimpleNamespace(trial_id="another tune id", config={"trial": 2})  # study trial 2 (c), resumed
    # as when c came third: a and b (crowding inf) rank above it, and ceil(3/2) = 2 are kept
    assert rebuilt.on_trial_result(None, again, result(1, *FRONT["c"])) == STOP
    assert [len(records) for _, records in rebuilt.rungs] == [0, 0, 4]  # recorded once, under its number


def test_moasha_rejects_bad_modes_and_a_tune_config_metric():
    with pytest.raises(ValueError, match=r"modes\[1\]: must be one of min, max; got 'up'"):
        moasha(modes=("max", "up"))
    with pytest.raises(ValueError, match="metrics: must be one name per mode"):
        MultiObjectiveASHA(metrics=["val_top1"], modes=["max", "max"])
    assert moasha().set_search_properties("val_top1", "max") is False
    assert moasha().set_search_properties(None, None) is True


@pytest.mark.parametrize(("kind", "expected", "rungs"), [("fifo", FIFOScheduler, None), ("asha", ASHA, [2, 1]),
                                                         ("moasha", MultiObjectiveASHA, [2, 1])])
def test_make_scheduler_builds_the_kind_a_spec_names_with_its_rungs(kind, expected, rungs):
    spec = load_sweep(QUICKSTART, [f"scheduler.kind={kind}", "scheduler.grace_period=1", "scheduler.reduction_factor=2",
                                   "workload.epochs=4"])
    scheduler = make_scheduler(spec)
    assert type(scheduler) is expected
    assert rungs is None or [milestone for milestone, _ in scheduler.rungs] == rungs


@pytest.mark.ray
def test_moasha_stops_dominated_trials_in_a_real_tuner(ray_cluster, tmp_path):
    from ray import tune

    def trainable(config):
        accuracy, savings = config["point"]
        for epoch in range(1, 5):
            tune.report({"epoch": epoch, "val_top1": accuracy, "energy_savings": savings})

    points = [(0.9, 0.2), (0.5, 0.6), (0.4, 0.1), (0.8, 0.15)]  # as in the first test
    scheduler = MultiObjectiveASHA(metrics=METRICS, modes=("max", "max"), grace_period=1,
                                   reduction_factor=2, max_t=4)
    tuner = tune.Tuner(trainable, param_space={"point": tune.grid_search(points)},
                       tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=1),
                       run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0))
    results = tuner.fit()
    epochs = {tuple(r.config["point"]): r.metrics["epoch"] for r in results}
    assert epochs == {points[0]: 4, points[1]: 4, points[2]: 1, points[3]: 1}
