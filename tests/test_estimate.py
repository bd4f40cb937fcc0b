"""The cost estimate: rung arithmetic on hand-computed tables, epoch seconds from the spec, and the totals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ray.tune.schedulers.async_hyperband import _Bracket

from ast_tune.config.spec import SpecError
from ast_tune.config.sweep_spec import load_sweep
from ast_tune.cost.epoch_cost import epoch_costs
from ast_tune.cost.estimate import EpochCosts, estimate, milestones, pass_probability, rung_table

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


@pytest.mark.parametrize("earlier", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("eta", [2, 3, 4])
def test_asha_pass_probability_is_rays_cutoff_over_a_uniform_rank(earlier, eta):
    """Earlier records at 0..n-1; the newcomer anywhere in [-1, n] (n + 1 gaps of width 1) on a fine grid."""
    bracket = _Bracket(1, 10, eta, 0)
    cutoff = bracket.cutoff({str(i): float(i) for i in range(earlier)})
    grid = np.linspace(-1, earlier, 200_001)
    assert pass_probability("asha", earlier, eta) == pytest.approx(float(np.mean(grid >= cutoff)), abs=1e-4)


def test_pass_probabilities_by_hand():
    assert pass_probability("asha", 0, 3) == 1
    assert pass_probability("asha", 1, 3) == pytest.approx(1 / 2)  # must beat the one record
    assert pass_probability("asha", 2, 3) == pytest.approx(4 / 9)  # (2 - (2/3)·1) / 3
    assert pass_probability("moasha", 1, 3) == 1  # 2 records < η: nothing is cut yet
    assert pass_probability("moasha", 2, 3) == pytest.approx(1 / 3)  # top ceil(3/3) = 1 of 3
    assert pass_probability("moasha", 3, 3) == pytest.approx(2 / 4)  # top ceil(4/3) = 2 of 4


def test_asha_rung_table_by_hand():
    """4 trials, rungs 1 and 2 (η 2, max_t 4): 4 reach rung 1, 1 + 1/2 + 1/2 + 1/2 = 5/2 pass; at rung 2
    1 + 1/2 + (1/2)(1/2) = 7/4 pass; epochs 1.5·1 + 0.75·2 + 1.75·4 = 10."""
    rungs, epochs = rung_table("asha", trials=4, grace_period=1, reduction_factor=2, max_t=4)
    assert [value for r in rungs for value in (r.milestone, r.reached, r.stopped)] == pytest.approx(
        [1, 4, 1.5, 2, 2.5, 0.75])
    assert epochs == pytest.approx(10)


def test_moasha_rung_table_by_hand():
    """Rung 1: 1 + 1/2 + 2/3 + 1/2 = 8/3 pass; rung 2: 1 + 1/2 + (2/3)(2/3) = 35/18; epochs 190/18."""
    rungs, epochs = rung_table("moasha", trials=4, grace_period=1, reduction_factor=2, max_t=4)
    assert [r.reached for r in rungs] == pytest.approx([4, 8 / 3])
    assert epochs == pytest.approx((4 - 8 / 3) * 1 + (8 / 3 - 35 / 18) * 2 + 35 / 18 * 4)


def test_a_rung_at_a_fractional_epoch_costs_the_whole_epoch_it_is_judged_at():
    rungs, epochs = rung_table("asha", trials=1, grace_period=1.5, reduction_factor=2, max_t=4)
    assert [r.milestone for r in rungs] == [1.5, 3.0] and epochs == pytest.approx(4)  # one trial always passes
    rungs, epochs = rung_table("asha", trials=2, grace_period=1.5, reduction_factor=10, max_t=4)
    assert epochs == pytest.approx(0.5 * 2 + 1.5 * 4)  # the second stops at epoch ceil(1.5) half the time


def test_fifo_runs_every_trial_to_max_t():
    assert rung_table("fifo", trials=5, grace_period=1, reduction_factor=3, max_t=7) == ([], 35)


def test_estimate_totals_by_hand():
    spec = _spec("scheduler.kind=fifo", "search.num_trials=4", "search.max_concurrent=2", "workload.epochs=5",
                 "workload.workers=2", "workload.gpus_per_worker=1", "cost.usd_per_gpu_hour=2.5")
    result = estimate(spec, EpochCosts(36.0, None, "test"))
    trials, baseline = result["parts"]
    assert trials["epochs"] == 20 and trials["gpu_hours"] == pytest.approx(20 * 36 * 2 / 3600)
    assert trials["wall_seconds"] == pytest.approx(20 * 36 / 2)  # two trials at once
    assert baseline["epochs"] == 5 and baseline["wall_seconds"] == pytest.approx(180)
    assert result["gpu_hours"] == pytest.approx(0.5) and result["usd"] == pytest.approx(1.25)
    assert result["wall_seconds"] == pytest.approx(540)


def test_estimate_adds_the_promoted_baseline_and_run():
    spec = _spec("scheduler.kind=fifo", "search.num_trials=1", "workload.epochs=2", "promote.enabled=true",
                 "promote.epochs=3", "promote.workload={workers: 2, baseline: auto}")
    names = [(p["name"], p["epochs"], p["wall_seconds"]) for p in estimate(spec, EpochCosts(1.0, 10.0, "t"))["parts"]]
    assert names == [("trials (fifo)", 2, 2), ("dense baseline", 2, 2), ("promoted-workload dense baseline", 3, 30),
                     ("promoted run", 3, 30)]


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
