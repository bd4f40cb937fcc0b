"""Scheduler decisions on hand-made rung tables, driven without a Ray cluster (except the last test).

Most tests use η = 2 and grace_period = 1, so rung 1 keeps the top ceil(n/2) of its n records;
a trial continues when fewer than ceil(n/2) records rank strictly above it.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from ast_tune.results.pareto import pareto_ranks
from ast_tune.tuning.search.schedulers import MultiObjectiveASHA, PersistentASHA, make_scheduler

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP
METRICS = ("val_top1", "energy_savings")


def moasha(modes=("max", "max"), **kwargs) -> MultiObjectiveASHA:
    return MultiObjectiveASHA(metrics=METRICS, modes=modes, grace_period=1, reduction_factor=2,
                              max_t=8, **kwargs)


def report(scheduler, trial_id: str, epoch: int, *values: float) -> str:
    """One result of ``trial_id``; the scheduler's decision."""
    return scheduler.on_trial_result(None, SimpleNamespace(trial_id=trial_id),
                                     {"epoch": epoch, **dict(zip(METRICS, values, strict=True))})


# Four points on one front (both objectives minimised), used by the crowding and restore tests.
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


def test_non_finite_objective_stops_and_is_not_recorded(tmp_path):
    state_file = tmp_path / "moasha.json"
    scheduler = moasha(state_file=state_file)
    assert report(scheduler, "nan", 1, float("nan"), 0.5) == STOP
    assert report(scheduler, "inf", 1, 0.5, float("inf")) == STOP
    assert not state_file.exists()
    assert report(scheduler, "ok", 1, 0.1, 0.1) == CONTINUE  # alone on the rung
    saved = json.loads(state_file.read_text())["brackets"]
    assert saved == [[[8, {}], [4, {}], [2, {}], [1, {"ok": [0.1, 0.1]}]]]


def test_result_without_every_metric_is_ignored(tmp_path):
    state_file = tmp_path / "moasha.json"
    scheduler = moasha(state_file=state_file)
    result = {"epoch": 1, "val_top1": 0.1}  # no energy_savings
    assert scheduler.on_trial_result(None, SimpleNamespace(trial_id="a"), result) == CONTINUE
    assert not state_file.exists()


def test_trial_is_recorded_once_at_each_rung_it_reaches_and_stopped_at_max_t(tmp_path):
    state_file = tmp_path / "moasha.json"
    scheduler = moasha(state_file=state_file)
    decisions = [report(scheduler, "a", epoch, 0.1 * epoch, 0.5) for epoch in range(1, 9)]
    assert decisions == [CONTINUE] * 7 + [STOP]
    rungs = dict(json.loads(state_file.read_text())["brackets"][0])
    # epochs 1, 2 and 4 are milestones; epoch 3 is not, and epoch 8 = max_t stops before recording
    assert rungs == {8: {}, 4: {"a": [0.4, 0.5]}, 2: {"a": [0.2, 0.5]}, 1: {"a": [0.1, 0.5]}}


def test_moasha_restored_from_state_file_decides_like_the_original(tmp_path):
    state_file = tmp_path / "moasha.json"
    original = front_rung(state_file=state_file)
    restored = moasha(modes=("min", "min"), state_file=state_file)
    fresh = moasha(modes=("min", "min"))
    assert report(restored, "e", 1, 0.25, 3.75) == STOP
    assert report(original, "e", 1, 0.25, 3.75) == STOP
    assert report(fresh, "e", 1, 0.25, 3.75) == CONTINUE  # without the records it would survive
    assert [p.name for p in tmp_path.iterdir()] == ["moasha.json"]  # no temp files left behind


def asha(state_file) -> PersistentASHA:
    return PersistentASHA(time_attr="epoch", metric="val_top1", mode="max", grace_period=1,
                          reduction_factor=2, max_t=8, state_file=state_file)


def asha_report(scheduler: PersistentASHA, trial_id: str, val_top1: float) -> str:
    trial = SimpleNamespace(trial_id=trial_id)
    scheduler.on_trial_add(None, trial)
    return scheduler.on_trial_result(None, trial, {"epoch": 1, "val_top1": val_top1})


def test_persistent_asha_restored_from_state_file_decides_like_the_original(tmp_path):
    state_file = tmp_path / "asha.json"
    original = asha(state_file)
    for trial_id, accuracy in {"a": 0.9, "b": 0.5, "c": 0.7, "d": 0.6}.items():
        asha_report(original, trial_id, accuracy)
    restored = asha(state_file)
    # Ray's cutoff: median of (0.9, 0.5, 0.7, 0.6) = 0.65 > 0.55 -> STOP; with no records, CONTINUE.
    assert asha_report(restored, "e", 0.55) == STOP
    assert asha_report(original, "e", 0.55) == STOP
    assert asha_report(asha(None), "e", 0.55) == CONTINUE


def test_schedulers_pickled_before_any_record_reload_their_rungs_when_unpickled(tmp_path):
    """What ``Tuner.restore`` does: unpickle the copy ``tuner.pkl`` took when the Tuner was created."""
    from ray import cloudpickle

    moasha_file, asha_file = tmp_path / "moasha.json", tmp_path / "asha.json"
    originals = [front_rung(state_file=moasha_file), asha(asha_file)]
    pickled = [cloudpickle.dumps(moasha(modes=("min", "min"), state_file=moasha_file)),
               cloudpickle.dumps(asha(asha_file))]  # rungs still empty, as at Tuner creation
    for trial_id, accuracy in {"a": 0.9, "b": 0.5, "c": 0.7, "d": 0.6}.items():
        asha_report(originals[1], trial_id, accuracy)
    restored_moasha, restored_asha = (cloudpickle.loads(blob) for blob in pickled)
    assert report(restored_moasha, "e", 1, 0.25, 3.75) == report(originals[0], "e", 1, 0.25, 3.75) == STOP
    assert asha_report(restored_asha, "e", 0.55) == asha_report(originals[1], "e", 0.55) == STOP
    # the restored copies' first saves keep the earlier records instead of overwriting them
    assert set(json.loads(moasha_file.read_text())["brackets"][0][-1][1]) == {"a", "b", "c", "d", "e"}
    assert set(json.loads(asha_file.read_text())["brackets"][0][-1][1]) == {"a", "b", "c", "d", "e"}


def test_state_file_of_another_scheduler_or_other_rungs_is_rejected(tmp_path):
    state_file = tmp_path / "state.json"
    front_rung(state_file=state_file)
    with pytest.raises(ValueError, match="delete the file"):
        MultiObjectiveASHA(metrics=METRICS, modes=("min", "min"), reduction_factor=3, max_t=8,
                           state_file=state_file)
    with pytest.raises(ValueError, match="holds MultiObjectiveASHA rungs"):
        asha(state_file)


def test_moasha_rejects_bad_modes_and_a_tune_config_metric():
    with pytest.raises(ValueError, match=r"modes\[1\]: must be one of min, max; got 'up'"):
        moasha(modes=("max", "up"))
    with pytest.raises(ValueError, match="metrics: must be one name per mode"):
        MultiObjectiveASHA(metrics=["val_top1"], modes=["max", "max"])
    assert moasha().set_search_properties("val_top1", "max") is False
    assert moasha().set_search_properties(None, None) is True


def test_make_scheduler_builds_each_kind_and_lists_allowed_kinds(tmp_path):
    common = dict(grace_period=1, reduction_factor=2, max_t=8, state_file=tmp_path / "s.json")
    assert type(make_scheduler("fifo", **common)) is FIFOScheduler
    assert isinstance(make_scheduler("asha", metric="val_top1", mode="max", **common), PersistentASHA)
    assert isinstance(make_scheduler("moasha", metrics=METRICS, modes=("max", "max"), **common),
                      MultiObjectiveASHA)
    with pytest.raises(ValueError, match="scheduler.kind: must be one of fifo, asha, moasha; got 'hb'"):
        make_scheduler("hb", **common)
    with pytest.raises(ValueError, match="kind 'asha' needs a metric"):
        make_scheduler("asha", **common)


@pytest.mark.ray
def test_moasha_stops_dominated_trials_in_a_real_tuner(ray_cluster, tmp_path):
    from ray import tune

    def trainable(config):
        accuracy, savings = config["point"]
        for epoch in range(1, 5):
            tune.report({"epoch": epoch, "val_top1": accuracy, "energy_savings": savings})

    points = [(0.9, 0.2), (0.5, 0.6), (0.4, 0.1), (0.8, 0.15)]  # as in the first test
    scheduler = MultiObjectiveASHA(metrics=METRICS, modes=("max", "max"), grace_period=1,
                                   reduction_factor=2, max_t=4, state_file=tmp_path / "moasha.json")
    tuner = tune.Tuner(trainable, param_space={"point": tune.grid_search(points)},
                       tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=1),
                       run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0))
    results = tuner.fit()
    epochs = {tuple(r.config["point"]): r.metrics["epoch"] for r in results}
    assert epochs == {points[0]: 4, points[1]: 4, points[2]: 1, points[3]: 1}
    assert len(json.loads((tmp_path / "moasha.json").read_text())["brackets"][0][-1][1]) == 4
