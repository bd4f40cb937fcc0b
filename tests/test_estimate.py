"""The cost estimate: the rung rules and the model of what they let through, epoch seconds from the spec,
the fixed costs and the totals, by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ray.tune.schedulers.async_hyperband import _Bracket

from ast_tune.config.spec import SpecError
from ast_tune.config.sweep_spec import load_sweep
from ast_tune.cost.epoch_cost import epoch_costs
from ast_tune.cost.estimate import EpochCosts, checkpoint_writes, estimate, milestones
from ast_tune.cost.overheads import MEASURED, Overheads, overheads
from ast_tune.cost.run_cost import sweep_estimate
from ast_tune.cost.rungs import Schedule, asha_passes, expected_schedule, moasha_passes
from ast_tune.tuning.search.schedulers import ASHA, MultiObjectiveASHA

ROOT = Path(__file__).resolve().parents[1]


def _spec(*overrides: str):
    return load_sweep(ROOT / "search_spaces" / "quickstart.yaml", overrides)


@pytest.mark.parametrize(("kind", "grace", "eta", "max_t", "expected"), [
    ("asha", 3, 3, 30, [3, 9, 27]),
    ("asha", 3, 3, 27, [3, 9]),  # a rung at max_t stops no one: the trial ends there anyway
    ("asha", 1, 2, 4, [1, 2]),
    ("moasha", 3, 3, 10, [3, 9]),
    ("moasha", 2, 2.5, 20, [2, 5, 12.5]),
    ("fifo", 1, 3, 10, []),
])
def test_milestones_are_the_schedulers_rungs_below_max_t(kind, grace, eta, max_t, expected):
    assert milestones(kind, grace_period=grace, reduction_factor=eta, max_t=max_t) == pytest.approx(expected)


def test_asha_milestones_are_those_of_rays_bracket():
    for grace, eta, max_t in ((1, 3, 10), (3, 3, 30), (1, 2, 16), (2, 4, 100)):
        ray_rungs = sorted(m for m, _ in _Bracket(grace, max_t, eta, 0)._rungs if m < max_t)
        assert milestones("asha", grace_period=grace, reduction_factor=eta, max_t=max_t) == ray_rungs


def test_asha_rule_is_rays_cutoff():
    assert asha_passes([], 0.0, 3)  # an empty rung stops no one
    assert asha_passes([1.0], 1.0, 3) and not asha_passes([1.0], 0.9, 3)  # at least the one record
    assert asha_passes([0.0, 3.0], 2.0, 3) and not asha_passes([0.0, 3.0], 1.9, 3)  # the 2/3 percentile: 2.0
    assert asha_passes([0.0, 3.0], 0.9, 3, mode="min") and not asha_passes([0.0, 3.0], 1.1, 3, mode="min")  # <= 1


def test_moasha_rule_keeps_the_top_third_by_rank_then_crowding_ties_favouring_the_newcomer():
    modes = ["max"] * 3
    assert moasha_passes([[1, 1, 1], [0, 0, 0]], modes, 3)  # two records < η: nothing is cut yet
    assert not moasha_passes([[1, 1, 1], [2, 2, 2], [0, 0, 0]], modes, 3)  # dominated: 2 ahead of it, 1 may be
    # three mutually non-dominated extremes: every crowding distance infinite, so none is ahead of the newcomer
    # (a uniformly random rank would keep it one time in three)
    assert moasha_passes([[1, 0, 0], [0, 1, 0], [0, 0, 1]], modes, 3)
    two = [[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.6, 0.6]]  # the newcomer dominates the middle one, but
    assert not moasha_passes(two, ["max", "max"], 2)  # its front's two extremes (infinite crowding) are ahead


def test_model_rules_decide_as_the_scheduler_classes():
    """The rules the model simulates are the schedulers': the same decision on random rungs."""
    rng = np.random.default_rng(3)
    for _ in range(40):
        vectors = rng.random((int(rng.integers(1, 12)), 3)).tolist()
        eta = float(rng.choice([2, 3, 4]))
        moasha = MultiObjectiveASHA(metrics=["a", "b", "c"], modes=["max", "min", "max"], reduction_factor=eta,
                                    grace_period=1, max_t=10)
        asha = ASHA(metric="a", mode="min", reduction_factor=eta, grace_period=1, max_t=10)
        assert moasha.passes(vectors[:-1], vectors[-1]) == moasha_passes(vectors, ["max", "min", "max"], eta)
        column = [v[0] for v in vectors]
        assert asha.passes([[v] for v in column[:-1]], [column[-1]]) == asha_passes(column[:-1], column[-1], eta,
                                                                                   mode="min")


def test_one_trial_passes_every_rung_and_fifo_runs_every_trial_to_max_t():
    one = expected_schedule("asha", trials=1, grace_period=1.5, reduction_factor=2, max_t=4)
    assert one.milestones == (1.5, 3.0) and one.trial_epochs == 4 and one.stopped == (0, 0)
    assert expected_schedule("fifo", trials=5, grace_period=1, reduction_factor=3, max_t=7).trial_epochs == 35
    few = expected_schedule("moasha", trials=2, grace_period=1, reduction_factor=3, max_t=9, objectives=3)
    assert few.trial_epochs == 18  # fewer trials than η: no one is cut


def test_asha_second_trial_passes_half_the_time():
    """Rung 1 of max_t 3 (η 3): the first trial passes; the second beats it half the time: 3 + (3 + 1) / 2 = 5."""
    plan = expected_schedule("asha", trials=2, grace_period=1, reduction_factor=3, max_t=3)
    assert plan.milestones == (1,) and plan.reached == (2,)
    assert plan.per_trial[0] == 3 and plan.trial_epochs == pytest.approx(5, abs=0.15)
    assert plan.stopped[0] == pytest.approx(0.5, abs=0.08)


def test_a_stopped_trial_costs_the_whole_epoch_its_fractional_rung_is_judged_at():
    plan = expected_schedule("asha", trials=2, grace_period=1.5, reduction_factor=10, max_t=4)
    assert plan.trial_epochs == pytest.approx(4 + 0.5 * 2 + 0.5 * 4, abs=0.15)  # stopped at ceil(1.5) = 2


def test_remaining_epochs_of_a_running_trial_by_hand():
    """Rungs 3 and 9 of max_t 10; half pass rung 3, half of those rung 9."""
    plan = Schedule((3, 9), (16, 8), (8, 4), (6.5,) * 16, 10)
    assert plan.remaining(0) == pytest.approx(3 + 0.5 * 6 + 0.25 * 1)
    assert plan.remaining(3) == pytest.approx(6 + 0.5 * 1)  # it passed rung 3 (still running)
    assert plan.remaining(5) == pytest.approx(4 + 0.5 * 1)
    assert plan.remaining(9) == 1 and plan.remaining(10) == 0


def test_later_trials_expect_fewer_epochs_and_the_schedule_is_the_same_each_time():
    plan = expected_schedule("moasha", trials=16, grace_period=3, reduction_factor=3, max_t=10, objectives=3)
    assert plan.per_trial[0] == 10 and plan.per_trial[-1] < plan.per_trial[1]
    assert expected_schedule.__wrapped__("moasha", trials=16, grace_period=3, reduction_factor=3, max_t=10,
                                         objectives=3) == plan  # a fixed seed, not the cache


FIXED = Overheads(ray_start=10.0, baseline_startup=20.0, trial_startup=1.0, epoch_overhead=0.5, checkpoint=2.0,
                  source="test")
NONE = Overheads(0.0, 0.0, 0.0, 0.0, 0.0, "none")


def test_estimate_totals_by_hand():
    spec = _spec("scheduler.kind=fifo", "search.num_trials=4", "search.max_concurrent=2", "workload.epochs=5",
                 "workload.workers=2", "workload.gpus_per_worker=1", "cost.usd_per_gpu_hour=2.5")
    result = estimate(spec, EpochCosts(36.0, None, "test"), NONE)
    start, trials, baseline = result["parts"]
    assert trials["epochs"] == 20 and trials["wall_seconds"] == pytest.approx(20 * 36 / 2)  # two trials at once
    assert baseline["epochs"] == 5 and baseline["wall_seconds"] == pytest.approx(180) and start["wall_seconds"] == 0
    assert result["wall_seconds"] == pytest.approx(540) and result["device"] == "GPU"
    assert result["device_hours"] == pytest.approx(540 * 2 * 2 / 3600)  # two trials of two GPUs held throughout
    assert result["usd"] == pytest.approx(result["device_hours"] * 2.5)


def test_fixed_costs_by_hand():
    """4 trials of 5 epochs, 2 at once, checkpoints every 2 epochs and at the last: 3 writes each."""
    spec = _spec("scheduler.kind=fifo", "search.num_trials=4", "search.max_concurrent=2", "workload.epochs=5",
                 "workload.checkpoint_every=2")
    result = estimate(spec, EpochCosts(4.0, None, "test"), FIXED)
    start, trials, baseline = result["parts"]
    assert start["wall_seconds"] == 10
    assert trials["wall_seconds"] == pytest.approx((20 * (4 + 0.5) + 12 * 2 + 4 * 1) / 2)
    assert baseline["wall_seconds"] == pytest.approx(5 * (4 + 0.5) + 3 * 2 + 20)
    assert result["device"] == "CPU" and result["usd"] is None  # a CPU sweep is not priced per GPU-hour
    assert result["device_hours"] == pytest.approx(result["wall_seconds"] * 2 * 0.95 / 3600)


def test_checkpoint_writes_of_stopped_and_finished_trials():
    plan = Schedule((3, 9), (16, 8), (8, 4), (6.5,) * 16, 10)
    # every 2 epochs: stopped at 3 → 1 write, at 9 → 4, finished at 10 → 5
    assert checkpoint_writes(plan, 16, 2) == 8 * 1 + 4 * 4 + 4 * 5
    assert checkpoint_writes(plan, 16, 4) == 8 * 0 + 4 * 2 + 4 * 3  # 10 is not a multiple of 4: +1 at the end


def test_estimate_adds_the_promoted_baseline_and_run():
    spec = _spec("scheduler.kind=fifo", "search.num_trials=1", "workload.epochs=2", "promote.enabled=true",
                 "promote.epochs=3", "promote.workload={workers: 2, baseline: auto}", "workload.checkpoint_every=2",
                 "promote.checkpoint_every=3")
    names = [(p["name"], p["epochs"], p["wall_seconds"])
             for p in estimate(spec, EpochCosts(1.0, 10.0, "t"), NONE)["parts"]]
    assert names == [("Ray's start", 0, 0), ("trials (fifo)", 2, 2), ("dense baseline", 2, 2),
                     ("promoted-workload dense baseline", 3, 30), ("promoted run", 3, 30)]


def test_epoch_seconds_from_images_per_second_and_scaled_by_pixels_for_the_promotion():
    spec = _spec("workload.workers=2", "cost.images_per_second=100", "cost.train_images=1000", "cost.val_images=300",
                 "promote.enabled=true", "promote.workload={image_size: 64, workers: 4}",
                 "cost.promote={train_images: 2000, val_images: 400}")
    costs = epoch_costs(spec)
    assert costs.sweep == pytest.approx((1000 / 100 + 300 / 300) / 2)  # validation at 3× the training rate
    per_image = (64 / 32) ** 2 / 100  # 4× the pixels of 32 px
    assert costs.promoted == pytest.approx((2000 * per_image + 400 * per_image / 3) / 4)
    assert "scaled by pixels to 64 px" in costs.source


def test_epoch_seconds_given_directly_and_counted_from_the_data():
    assert epoch_costs(_spec("cost.epoch_seconds=7")).sweep == 7
    counted = epoch_costs(_spec("cost.images_per_second=1000"))  # digits: 1,437 train and 360 val images
    assert counted.sweep == pytest.approx(1437 / 1000 + 360 / 3000)


def test_without_any_figure_the_estimate_names_the_cost_keys():
    with pytest.raises(SpecError, match=r"^cost: give cost.epoch_seconds or cost.images_per_second"):
        epoch_costs(_spec())
    with pytest.raises(SpecError, match=r"^cost.promote: give cost.promote.epoch_seconds"):
        epoch_costs(_spec("cost.epoch_seconds=7", "promote.enabled=true", "promote.workload={image_size: 64}"))


def test_the_probe_times_the_step_the_loader_alone_and_a_checkpoint():
    from ast_tune.cost.epoch_cost import probe

    measured = probe(_spec(), steps=4)
    assert measured.per_image.train > 0 and measured.per_image.val > 0 and measured.checkpoint >= 0
    assert measured.binds in ("loader", "compute") and f"the {measured.binds} binds" in measured.per_image.source


def test_the_probes_copy_of_an_image_list_reads_with_the_lists_decoder():
    from ast_tune.cost.epoch_cost import _repeated
    from ast_tune.data.sources import ImageList

    def decoder(path):
        return path

    images = ImageList([("a.jpg", 0), ("b.jpg", 1)], transform=lambda image: image, loader=decoder)
    copy = _repeated(images, 3)
    assert copy.loader is decoder and [path for path, _ in copy.samples] == ["a.jpg", "b.jpg", "a.jpg"]


def test_epoch_seconds_from_the_dense_baseline_the_sweep_timed():
    """Digits: 1,437 training and 360 validation images; the baseline's median train 2.0 s, validation 0.6 s."""
    baseline = {"epoch_seconds": 2.0, "epochs_timed": 3,
                "epochs": [{"val_seconds": 0.5}, {"val_seconds": 0.7}, {"val_seconds": 0.6}]}
    result = sweep_estimate(_spec(), baseline=baseline)
    assert result["seconds_per_epoch"]["sweep"] == pytest.approx(2.6)
    assert result["source"] == "the dense baseline this sweep timed (3 epochs)"
    older = sweep_estimate(_spec(), baseline={"epoch_seconds": 2.0, "epochs_timed": 3})  # no validation timed
    assert older["seconds_per_epoch"]["sweep"] == pytest.approx(2.0 + 360 * (2.0 / 1437) / 3)
    assert sweep_estimate(_spec(), baseline=baseline | {"epoch_seconds": 9.0}) != result
    given = sweep_estimate(_spec("cost.epoch_seconds=7"), baseline=baseline)  # cost: wins over the baseline
    assert given["seconds_per_epoch"]["sweep"] == 7 and given["source"] == "cost.epoch_seconds"
    assert "unavailable" in sweep_estimate(_spec())  # neither: known once the baseline is timed


def test_fixed_costs_from_the_spec_the_probe_and_the_measured_defaults():
    one = overheads(_spec().cost, _spec().workload)
    assert one == MEASURED["process"]
    several = _spec("workload.workers=2", "cost.trial_startup_seconds=5", "cost.ray_start_seconds=0")
    chosen = overheads(several.cost, several.workload, checkpoint=0.25)
    assert (chosen.ray_start, chosen.trial_startup, chosen.checkpoint) == (0, 5, 0.25)
    assert chosen.epoch_overhead == MEASURED["trainer"].epoch_overhead  # a TorchTrainer's default
    assert chosen.source.startswith("cost.ray_start_seconds; cost.trial_startup_seconds; the checkpoint write "
                                    "--probe timed; the rest: measured defaults")
