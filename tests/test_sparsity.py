"""The Sundew controller, the top-k floor, significance and the skip-mode score table, by hand."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from ast_tune.config.run_spec import RunSpec, SparsitySpec
from ast_tune.config.spec import SpecError
from ast_tune.core.sparsity import (
    BatchSelector,
    SamplePool,
    ScoreTable,
    SundewController,
    min_keep,
    significance,
)

SPEC = SparsitySpec(target_activation=0.4, kp=0.5, ki=0.1, ema_alpha=0.5, initial_threshold=3.0)


def test_threshold_rises_when_activation_above_target():
    controller = SundewController(SPEC)
    # ema = 0.5*0.4 + 0.5*1.0 = 0.7; error = 0.3; integral = 0.3; threshold = 3 + 0.15 + 0.03
    assert controller.update(1.0) == pytest.approx(3.18)
    assert controller.ema == pytest.approx(0.7)
    assert controller.integral == pytest.approx(0.3)


def test_threshold_falls_when_activation_below_target():
    controller = SundewController(SPEC)
    # ema = 0.2; error = -0.2; integral = -0.2; threshold = 3 - 0.1 - 0.02
    assert controller.update(0.0) == pytest.approx(2.88)


def test_integral_carries_the_threshold_when_error_is_zero():
    controller = SundewController(SPEC)
    controller.update(1.0)  # threshold 3.18, ema 0.7, integral 0.3
    # ema = 0.5*0.7 + 0.5*0.1 = 0.4 → error 0; the integral term alone adds 0.1*0.3
    assert controller.update(0.1) == pytest.approx(3.21)


def test_integral_decays_outside_the_anti_windup_band():
    controller = SundewController(SparsitySpec(initial_threshold=0.5, kp=0.0, ki=0.01, ema_alpha=0.1))
    controller.integral = 10.0
    controller.update(controller.spec.target_activation)  # error 0, threshold at the 0.5 floor
    assert controller.integral == pytest.approx(9.0)
    assert controller.threshold == pytest.approx(0.5 + 0.01 * 9.0)


def test_integral_is_clamped_to_plus_minus_100():
    controller = SundewController(SparsitySpec(initial_threshold=5.0, kp=0.0, ki=0.0, ema_alpha=1.0))
    for _ in range(300):
        controller.update(1.0)  # error 0.6 a step, threshold stays inside the band
    assert controller.integral == pytest.approx(100.0)


def test_threshold_is_clamped_to_its_range():
    controller = SundewController(SparsitySpec(initial_threshold=9.9, kp=10.0, ki=0.0, ema_alpha=1.0))
    assert controller.update(1.0) == 10.0
    assert controller.update(0.0) == pytest.approx(6.0)  # 10 + 10*(0 - 0.4)
    assert controller.update(0.0) == pytest.approx(2.0)
    assert controller.update(0.0) == 0.5


@pytest.mark.parametrize(("batch", "fraction", "expected"),
                         [(128, 0.1, 13), (30, 0.1, 3), (5, 0.1, 2), (1, 0.1, 1)])
def test_floor_keeps_max_of_2_and_ten_percent(batch, fraction, expected):
    assert min_keep(batch, fraction) == expected


def test_selector_falls_back_to_top_k_when_too_few_pass():
    selector = BatchSelector(SPEC, SundewController(SPEC), torch.device("cpu"))
    scores = torch.tensor([0.1, 2.0, 0.3, 1.5] + [0.0] * 16)  # none reaches 3.0; floor = max(2, 2) = 2
    keep, kept = selector.choose(scores)
    assert kept == 2
    assert keep.nonzero().flatten().tolist() == [1, 3]


def test_selector_keeps_samples_at_or_above_threshold_and_steps_controller():
    selector = BatchSelector(SPEC, SundewController(SPEC), torch.device("cpu"))
    keep, kept = selector.choose(torch.tensor([3.0, 4.0, 5.0, 0.0, 1.0]))
    assert keep.tolist() == [True, True, True, False, False]
    # activation 0.6: ema 0.5, error 0.1, integral 0.1 → threshold 3 + 0.05 + 0.01
    assert selector.controller.threshold == pytest.approx(3.06)


def test_significance_of_uniform_logits_is_log_classes():
    logits = torch.zeros(2, 4)
    scores = significance(logits, torch.tensor([0, 3]))
    assert scores.tolist() == pytest.approx([math.log(4)] * 2)


def test_significance_weights_loss_and_entropy():
    logits = torch.tensor([[math.log(3.0), 0.0]])  # p = (0.75, 0.25)
    ce = -math.log(0.25)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    score = significance(logits, torch.tensor([1]), loss_weight=0.7, entropy_weight=0.3)
    assert score.item() == pytest.approx(0.7 * ce + 0.3 * entropy)


def test_score_table_skips_low_scores_and_refreshes_a_fraction():
    table = ScoreTable(4, SparsitySpec(refresh_fraction=0.0))
    table.update(torch.tensor([1, 2, 3]), torch.tensor([0.1, 5.0, 0.2]))  # sample 0 never scored: +inf
    indices, refresh = table.plan_epoch(1.0, torch.Generator().manual_seed(0))
    assert indices.tolist() == [0, 2]
    assert not refresh.any()
    table.spec = SparsitySpec(refresh_fraction=1.0)
    indices, refresh = table.plan_epoch(1.0, torch.Generator().manual_seed(0))
    assert indices.tolist() == [0, 1, 2, 3]
    assert refresh.tolist() == [False, True, False, True]


def test_an_epoch_whose_threshold_leaves_too_few_samples_trains_the_top_scored_floor():
    table = ScoreTable(10, SparsitySpec(refresh_fraction=0.0, min_keep_fraction=0.2))
    table.update(torch.arange(10), torch.tensor([0.1, 0.9, 0.2, 0.8, 0.3, 0.4, 0.5, 0.6, 0.7, 0.05]))
    indices, refresh = table.plan_epoch(5.0, torch.Generator().manual_seed(0))  # no score reaches 5 nats
    assert indices.tolist() == [1, 3] and not refresh.any()  # max(2, ceil(0.2 * 10)) = 2: the two highest


def test_score_table_predicts_activation_including_refresh():
    table = ScoreTable(4, SparsitySpec(refresh_fraction=0.5))
    table.update(torch.arange(4), torch.tensor([0.1, 5.0, 0.2, 3.0]))
    table.synchronise(torch.device("cpu"))
    assert table.predicted_activation(1.0) == pytest.approx(0.5 + 0.5 * 0.5)
    assert table.predicted_activation(3.0) == pytest.approx(0.5 + 0.5 * 0.5)  # 3.0 itself counts
    assert table.predicted_activation(3.5) == pytest.approx(0.25 + 0.5 * 0.75)


def test_settle_steps_the_controller_on_the_table_prediction():
    spec = SparsitySpec(refresh_fraction=0.0, target_activation=0.5, initial_threshold=1.0, kp=1.0, ki=0.0,
                        ema_alpha=1.0)
    table = ScoreTable(4, spec)
    table.update(torch.arange(4), torch.tensor([0.6, 0.7, 2.0, 3.0]))
    table.synchronise(torch.device("cpu"))
    controller = SundewController(spec)
    table.settle(controller, steps=2)
    # step 1: 2 of 4 >= 1.0, error 0 → 1.0; step 2 the same
    assert controller.threshold == pytest.approx(1.0)
    controller.threshold = 0.65  # 3 of 4 >= 0.65: error 0.25 → 0.9; then 2 of 4: stays 0.9
    table.settle(controller, steps=2)
    assert controller.threshold == pytest.approx(0.9)


def test_threshold_for_inverts_the_table_prediction():
    table = ScoreTable(10, SparsitySpec(refresh_fraction=0.0))
    table.update(torch.arange(10), torch.arange(1.0, 11.0))  # scores 1..10
    table.synchronise(torch.device("cpu"))
    assert table.threshold_for(0.3) == 8.0  # 8, 9, 10 kept
    assert table.predicted_activation(8.0) == pytest.approx(0.3)
    assert table.threshold_for(1.0) == 1.0 and table.threshold_for(0.0) == math.inf
    refreshed = ScoreTable(10, SparsitySpec(refresh_fraction=0.1))
    refreshed.update(torch.arange(10), torch.arange(1.0, 11.0))
    refreshed.synchronise(torch.device("cpu"))
    # of 0.3, 0.1 of the rest is refresh: (0.3 - 0.1) / 0.9 = 0.22 of 10 → 2 kept (9, 10); 0.2 + 0.1·0.8
    assert refreshed.threshold_for(0.3) == 9.0
    assert refreshed.predicted_activation(9.0) == pytest.approx(0.28)
    assert refreshed.threshold_for(0.05) == math.inf  # below the refresh share: nothing kept by score


def test_start_at_clamps_and_restarts_the_controller_settled():
    spec = SparsitySpec(target_activation=0.3, threshold_min=0.5, threshold_max=10.0)
    controller = SundewController(spec)
    controller.update(1.0)
    controller.start_at(math.inf)
    assert controller.state_dict() == {"threshold": 10.0, "ema": 0.3, "integral": 0.0}
    controller.start_at(0.1)
    assert controller.threshold == 0.5


def test_controller_state_round_trips():
    controller = SundewController(SPEC)
    controller.update(1.0)
    other = SundewController(SPEC)
    other.load_state_dict(controller.state_dict())
    assert other.update(0.2) == controller.update(0.2)


LOG_SPEC = SparsitySpec(target_activation=0.4, kp=0.5, ki=0.1, ema_alpha=0.5, initial_threshold=3.0,
                        threshold_min=1e-3, threshold_update="multiplicative")


def test_multiplicative_threshold_rises_by_exp_of_step_when_activation_above_target():
    controller = SundewController(LOG_SPEC)
    # as the additive case: ema 0.7, error 0.3, integral 0.3 → step 0.15 + 0.03 = 0.18; 3·e^0.18
    assert controller.update(1.0) == pytest.approx(3 * math.exp(0.18))
    assert controller.integral == pytest.approx(0.3)


def test_multiplicative_threshold_falls_by_exp_of_step_when_activation_below_target():
    controller = SundewController(LOG_SPEC)
    # ema 0.2, error -0.2, integral -0.2 → step -0.1 - 0.02 = -0.12; 3·e^-0.12
    assert controller.update(0.0) == pytest.approx(3 * math.exp(-0.12))


def test_multiplicative_step_is_the_same_ratio_at_any_threshold_scale():
    big = SundewController(LOG_SPEC)
    small = SundewController(dataclasses.replace(LOG_SPEC, initial_threshold=0.03))
    for activation in (1.0, 0.0, 0.7):
        big.update(activation)
        small.update(activation)
    assert small.threshold / 0.03 == pytest.approx(big.threshold / 3.0)


def test_multiplicative_threshold_stops_at_its_positive_floor():
    controller = SundewController(dataclasses.replace(LOG_SPEC, initial_threshold=0.002, kp=10.0))
    # ema 0.2, error -0.2 → 0.002·e^(-2 - 0.02) ≈ 0.00027 < floor 0.001
    assert controller.update(0.0) == 1e-3
    assert controller.update(0.0) == 1e-3


def test_multiplicative_update_needs_a_positive_threshold_floor():
    with pytest.raises(SpecError, match="threshold_min"):
        SparsitySpec(threshold_min=0.0, initial_threshold=0.5, threshold_update="multiplicative")


def test_unknown_threshold_update_is_rejected_with_the_allowed_values():
    with pytest.raises(SpecError, match="additive, multiplicative"):
        SparsitySpec(threshold_update="exponential")


def test_pool_is_full_at_size_times_world_and_take_empties_it():
    pool = SamplePool(size=4, world_size=2)  # full at 8 samples over both ranks
    pool.add(torch.tensor([[1.0], [2.0]]), torch.tensor([1, 2]), kept_global=5)  # this rank kept 2 of 5
    assert not pool.full()
    pool.add(torch.tensor([[3.0]]), torch.tensor([3]), kept_global=3)
    assert pool.full() and pool.global_count == 8
    x, y, count = pool.take()
    assert x.flatten().tolist() == [1.0, 2.0, 3.0] and y.tolist() == [1, 2, 3] and count == 8
    assert pool.global_count == 0 and not pool.full()


def test_annealing_takes_only_the_epochs_after_the_warm_up():
    from ast_tune.core.engine import phase_of

    spec = RunSpec(epochs=4, warmup_epochs=2, sparsity=SparsitySpec(anneal_epochs=1))
    assert [phase_of(spec, e) for e in range(4)] == ["warmup", "calibrate", "ast", "anneal"]
    longer = RunSpec(epochs=4, warmup_epochs=2, sparsity=SparsitySpec(anneal_epochs=9))  # e.g. a shortened sweep
    assert [phase_of(longer, e) for e in range(4)] == ["warmup", "calibrate", "anneal", "anneal"]
    with pytest.raises(SpecError, match="anneal_epochs: must be >= 0, got -1"):
        SparsitySpec(anneal_epochs=-1)
