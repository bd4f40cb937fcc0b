"""LR schedules at hand-checkable points."""

from __future__ import annotations

import pytest

from ast_tune.config.run_spec import OptimSpec
from ast_tune.core.lr_schedule import lr_at


def test_two_stage_uses_warmup_lr_then_ast_lr():
    optim = OptimSpec(schedule="two_stage", warmup_lr=0.01, lr=0.005)
    assert lr_at(optim, progress=9.99, epochs=100, warmup_epochs=10) == 0.01
    assert lr_at(optim, progress=10.0, epochs=100, warmup_epochs=10) == 0.005


def test_step_multiplies_by_gamma_every_step_epochs():
    optim = OptimSpec(schedule="step", lr=0.1, step_epochs=30, gamma=0.1)
    assert lr_at(optim, progress=29.9, epochs=90, warmup_epochs=0) == pytest.approx(0.1)
    assert lr_at(optim, progress=60.0, epochs=90, warmup_epochs=0) == pytest.approx(0.001)


def test_cosine_starts_at_lr_halves_midway_and_ends_at_zero():
    optim = OptimSpec(schedule="cosine", lr=0.2)
    assert lr_at(optim, progress=0, epochs=10, warmup_epochs=2) == pytest.approx(0.2)
    assert lr_at(optim, progress=5, epochs=10, warmup_epochs=2) == pytest.approx(0.1)
    assert lr_at(optim, progress=10, epochs=10, warmup_epochs=2) == pytest.approx(0.0)


def test_onecycle_rises_to_peak_at_30_percent_then_anneals():
    optim = OptimSpec(schedule="onecycle", lr=0.4)
    assert lr_at(optim, progress=0, epochs=10, warmup_epochs=0) == pytest.approx(0.4 / 25)
    assert lr_at(optim, progress=3, epochs=10, warmup_epochs=0) == pytest.approx(0.4)
    assert lr_at(optim, progress=10, epochs=10, warmup_epochs=0) == pytest.approx(0.4 / 25 / 1e4)
