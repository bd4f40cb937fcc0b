"""The training loop on tiny digits runs: modes, resume, NaN handling."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from ast_tune.config.run_spec import DataSpec, OptimSpec, RunSpec, SparsitySpec
from ast_tune.core import checkpoint
from ast_tune.core.engine import NonFiniteLossError, fit
from ast_tune.core.run_state import RunState
from ast_tune.data.sources import load_datasets

TINY = RunSpec(data=DataSpec(kind="digits", image_size=16), model="small_resnet", batch_size=64, epochs=3,
               warmup_epochs=1, checkpoint_every=1,
               sparsity=SparsitySpec(mode="inline", target_activation=0.4, initial_threshold=0.5,
                                     threshold_min=0.0, kp=0.2, ki=0.01),
               optim=OptimSpec(schedule="cosine", lr=0.05))


@pytest.fixture(scope="module")
def digits():
    return load_datasets(TINY.data)


def with_mode(mode: str, **changes) -> RunSpec:
    return dataclasses.replace(TINY, sparsity=dataclasses.replace(TINY.sparsity, mode=mode), **changes)


def test_a_uint8_batch_of_photos_is_normalised_on_the_device_and_a_float_batch_passes_as_it_is(digits):
    run = RunState.create(TINY, digits, torch.device("cpu"))
    photos = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2).expand(2, 3, 1, 2)
    x = run.to_device(photos)
    assert x.dtype == torch.float32 and x.shape == (2, 3, 1, 2)
    # green: (0 - 0.456) / 0.224 and (1 - 0.456) / 0.224
    assert x[1, 1, 0].tolist() == pytest.approx([-2.0357, 2.4286], abs=1e-4)
    floats = digits.train.images[:4]
    assert torch.equal(run.to_device(floats), floats)


def test_inline_trains_only_on_the_selected_subset(digits, monkeypatch):
    from ast_tune.core import run_state

    grad_batches: list[int] = []

    def count(module, inputs, output):
        if torch.is_grad_enabled():  # the scoring forward runs under no_grad and is not counted
            grad_batches.append(inputs[0].shape[0])

    def build_and_hook(*args, **kwargs):
        model = real_build(*args, **kwargs)
        model.register_forward_hook(count)
        return model

    real_build = run_state.build_model
    monkeypatch.setattr(run_state, "build_model", build_and_hook)
    records = []
    fit(with_mode("inline", epochs=2), report=lambda r, c: records.append(r), datasets=digits)
    steps = math.ceil(len(digits.train) / TINY.batch_size)
    warmup, ast = grad_batches[:steps], grad_batches[steps:]
    assert sum(warmup) == len(digits.train)  # dense warm-up trains on everything
    assert sum(ast) == pytest.approx(records[1]["activation_rate"] * len(digits.train))
    assert sum(ast) < 0.9 * len(digits.train)


@pytest.mark.parametrize("mode", ["dense", "mask", "inline", "skip"])
def test_every_mode_reports_every_epoch_with_counted_savings(digits, mode):
    records = []
    fit(with_mode(mode), report=lambda r, c: records.append(r), datasets=digits)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[0]["phase"] == "warmup" and records[0]["activation_rate"] == 1.0
    last = records[-1]
    assert 0 < last["activation_rate"] <= 1
    rate = last["activation_rate"]
    assert last["energy_savings"] == pytest.approx(1 - (rate + 0.01 * (1 - rate)))
    assert math.isnan(last["speedup"])  # no baseline was timed, so none is claimed
    assert math.isnan(last["energy_j"])  # CPU: no energy counter, none invented
    if mode == "dense":
        assert last["activation_rate"] == 1.0 and math.isnan(last["threshold"])
    else:
        assert last["activation_rate"] < 1.0


def test_skip_mode_does_not_load_skipped_samples(digits, monkeypatch):
    from ast_tune.core import engine

    loaded = []
    real = engine.make_loader

    def spy(dataset, **kwargs):
        loaded.append(kwargs.get("indices"))
        return real(dataset, **kwargs)

    monkeypatch.setattr(engine, "make_loader", spy)
    records = []
    fit(with_mode("skip"), report=lambda r, c: records.append(r), datasets=digits)
    train_plans = loaded[1:]  # the first call builds the val loader
    assert train_plans[0] is None  # warm-up is dense
    for plan, record in zip(train_plans[1:], records[1:], strict=True):
        assert len(plan) == pytest.approx(record["activation_rate"] * len(digits.train))
        assert len(plan) < len(digits.train)


@pytest.mark.parametrize("warmup", [0, 1])
def test_skip_selects_at_its_target_from_the_first_epoch_with_every_score(digits, warmup):
    # No refresh, so an epoch trains on exactly the samples at or above the threshold: the
    # controller starts at the table's 40 % quantile once every sample has a score.
    spec = dataclasses.replace(with_mode("skip", warmup_epochs=warmup, epochs=2),
                               sparsity=dataclasses.replace(TINY.sparsity, mode="skip", refresh_fraction=0.0))
    records = []
    fit(spec, report=lambda r, c: records.append(r), datasets=digits)
    assert records[0]["activation_rate"] == 1.0  # dense warm-up, or (warmup 0) every sample unscored
    assert records[1]["activation_rate"] == pytest.approx(0.4, abs=1 / len(digits.train))


@pytest.mark.parametrize("mode", ["skip", "inline-pool"])
def test_resume_gives_the_same_next_epoch_as_an_uninterrupted_run(digits, tmp_path, mode):
    torch.set_num_threads(1)
    spec = pooled() if mode == "inline-pool" else with_mode(mode)
    full = []
    fit(spec, report=lambda r, c: full.append(r), datasets=digits, checkpoint_root=tmp_path / "a")
    first = []
    fit(spec, report=lambda r, c: first.append(r), datasets=digits, checkpoint_root=tmp_path / "b")
    resumed = []
    fit(spec, report=lambda r, c: resumed.append(r), datasets=digits,
        resume_from=checkpoint.epoch_dir(tmp_path / "b", 2))
    assert [r["epoch"] for r in resumed] == [3]
    for key in ("train_loss", "val_top1", "activation_rate", "threshold"):
        assert resumed[0][key] == full[2][key], key


def pooled(**changes) -> RunSpec:
    """inline with a pool of one batch (64 samples)."""
    return dataclasses.replace(with_mode("inline"), **changes,
                               sparsity=dataclasses.replace(TINY.sparsity, pool=True))


def _grad_forwards(monkeypatch) -> list[int]:
    """Batch sizes of every forward run with grad (training forwards, not the no-grad scoring ones)."""
    from ast_tune.core import run_state

    sizes: list[int] = []
    real_build = run_state.build_model

    def build_and_hook(*args, **kwargs):
        model = real_build(*args, **kwargs)
        model.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]) if torch.is_grad_enabled() else None)
        return model

    monkeypatch.setattr(run_state, "build_model", build_and_hook)
    return sizes


def test_pool_trains_full_pools_and_flushes_the_rest_at_the_epoch_end(digits, monkeypatch):
    sizes = _grad_forwards(monkeypatch)
    steps = []
    from ast_tune.core.run_state import RunState

    real_step = RunState.optimizer_step
    monkeypatch.setattr(RunState, "optimizer_step", lambda self: (steps.append(len(sizes)), real_step(self)))
    records = []
    fit(pooled(epochs=2), report=lambda r, c: records.append(r), datasets=digits)
    batches = math.ceil(len(digits.train) / TINY.batch_size)
    ast = sizes[batches:]  # after the dense warm-up epoch's one forward per batch
    kept = round(records[1]["activation_rate"] * len(digits.train))
    assert sum(ast) == kept  # every selected sample is trained on: none is lost at the epoch end
    assert all(n >= TINY.batch_size for n in ast[:-1])  # full pools; only the flushed remainder is smaller
    assert ast[-1] > 0 and len(ast) <= kept // TINY.batch_size + 1
    assert steps == list(range(1, len(sizes) + 1))  # one optimizer step per training forward, the flush included


@pytest.mark.parametrize("mode", ["inline", "skip"])
def test_annealing_trains_the_last_epochs_dense_with_the_controller_frozen(digits, mode, monkeypatch):
    sizes = _grad_forwards(monkeypatch)
    spec = dataclasses.replace(with_mode(mode, epochs=4),
                               sparsity=dataclasses.replace(TINY.sparsity, mode=mode, anneal_epochs=2))
    records = []
    fit(spec, report=lambda r, c: records.append(r), datasets=digits)
    assert [r["phase"] for r in records] == ["warmup", "ast", "anneal", "anneal"]
    assert records[1]["activation_rate"] < 0.9
    for r in records[2:]:  # dense, and counted as such: no saving claimed for an annealing epoch
        assert r["activation_rate"] == 1.0 and r["energy_savings"] == 0.0
        assert r["threshold"] == records[1]["threshold"]  # neither stepped nor reset
    batches = math.ceil(len(digits.train) / TINY.batch_size)
    assert sum(sizes[-2 * batches:]) == 2 * len(digits.train)  # both annealing epochs see every sample
    run_savings = sum(r["energy_savings"] for r in records) / len(records)  # the trial table's mean
    assert run_savings == pytest.approx(records[1]["energy_savings"] / 4)


def test_nan_loss_stops_the_run_with_a_clear_error(digits):
    spec = with_mode("dense", optim=OptimSpec(schedule="constant", lr=1e6))
    with pytest.raises(NonFiniteLossError, match="training loss became"):
        fit(spec, datasets=digits)


def test_checkpoints_every_n_epochs_and_at_the_end(digits, tmp_path):
    spec = with_mode("inline", epochs=3, checkpoint_every=2)
    seen = []
    fit(spec, report=lambda r, c: seen.append(c is not None), datasets=digits, checkpoint_root=tmp_path)
    assert seen == [False, True, True]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_0002", "epoch_0003"]
