"""The sweep spec and the parts of the sweep CLI that need no Ray: validation, overrides, dry run,
trial resources, the baseline cache, and the epochs table built from the journal."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import yaml

from ast_tune.config import columns
from ast_tune.config.presets import get_preset
from ast_tune.config.spec import SpecError
from ast_tune.config.sweep_spec import load_sweep, parse_sweep, to_document
from ast_tune.sweep import epochs_frame, main
from ast_tune.tuning.runtime.baseline import _cached, baseline_fingerprint
from ast_tune.tuning.runtime.resources import concurrency

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"
QUICKSTART = SPACES / "quickstart.yaml"


@pytest.mark.parametrize("name", ["quickstart", "pi_gains", "lr_schedule"])
def test_every_search_space_validates_and_round_trips_through_spec_yaml(name):
    spec = load_sweep(SPACES / f"{name}.yaml")
    assert spec.name == name
    assert parse_sweep(yaml.safe_load(yaml.safe_dump(to_document(spec), sort_keys=False))) == spec


def test_space_covers_gains_target_lrs_schedule_warmup_and_mode():
    for name in ("quickstart", "pi_gains"):
        paths = {p.path for p in load_sweep(SPACES / f"{name}.yaml").space}
        assert {"sparsity.target_activation", "sparsity.kp", "sparsity.ki", "optim.lr", "optim.warmup_lr",
                "optim.schedule", "warmup_epochs", "sparsity.mode"} <= paths


def test_trial_spec_puts_params_on_base_preset_with_workload_fields():
    spec = load_sweep(SPACES / "pi_gains.yaml", ["workload.data.root=/tiny", "workload.batch_size=16"])
    run = spec.trial_spec({"kp": 0.02, "lr_schedule": "cosine", "warmup_epochs": 3, "mode": "skip"})
    assert (run.sparsity.kp, run.optim.schedule, run.warmup_epochs, run.sparsity.mode) == (0.02, "cosine", 3, "skip")
    assert (run.data.root, run.batch_size, run.epochs, run.precision) == ("/tiny", 16, 30, "amp")
    assert run.optim.momentum == 0.9  # untouched: the conservative preset's


def test_moasha_rungs_rank_on_the_objectives_rank_on_names_in_the_objectives_order():
    every = load_sweep(QUICKSTART, [])
    assert [o.metric for o in every.rung_objectives] == ["val_top1", "energy_savings", "speedup"]
    untimed = load_sweep(QUICKSTART, ["scheduler.rank_on=[energy_savings, val_top1]"])
    assert [(o.metric, o.mode) for o in untimed.rung_objectives] == [("val_top1", "max"), ("energy_savings", "max")]
    assert [o.metric for o in untimed.objectives] == ["val_top1", "energy_savings", "speedup"]  # Optuna: all three


def test_dotted_paths_and_fixed_values_set_their_fields():
    spec = load_sweep(SPACES / "lr_schedule.yaml")
    run = spec.trial_spec({"optim.step_epochs": 4, "mode": "inline", "target_activation": 0.4})
    assert (run.optim.step_epochs, run.sparsity.mode, run.sparsity.target_activation) == (4, "inline", 0.4)


def test_baseline_is_the_base_preset_trained_dense_on_the_workload():
    spec = load_sweep(QUICKSTART, ["workload.epochs=1", "space.warmup_epochs.int=[0, 1]", "scheduler.grace_period=1"])
    baseline = spec.baseline_spec()
    assert (baseline.sparsity.mode, baseline.epochs, baseline.warmup_epochs) == ("dense", 1, 1)
    assert baseline.optim == get_preset("quickstart").optim  # the preset's, not the space's


def test_set_overrides_are_type_checked_against_the_field_they_replace():
    spec = load_sweep(QUICKSTART, ["search.num_trials=3", "space.kp.loguniform=[0.1, 1]"], name="other")
    assert (spec.search.num_trials, spec.name) == (3, "other")
    assert next(p for p in spec.space if p.name == "kp").values == (0.1, 1.0)
    with pytest.raises(SpecError, match=r"^search\.num_trials: must be an integer"):
        load_sweep(QUICKSTART, ["search.num_trials=three"])


BAD_SPECS = [
    (["space.kp.loguniform=[-1, 0.1]"], "space.kp.loguniform: low must be > 0, got -1"),
    (["space.target_activation.uniform=[0.6, 0.2]"], "space.target_activation.uniform: low must be < high"),
    (["space.target_activation.uniform=[0.0, 0.5]"],
     "space.target_activation.uniform: sparsity.target_activation: must be > 0"),
    (["space.lr.loguniform=[0.1]"], "space.lr.loguniform: must be [low, high]"),
    (["space.warmup_epochs.int=[0.5, 2]"], "space.warmup_epochs.int: must be [low, high], two integers"),
    (["space.lr_schedule.choice=[]"], "space.lr_schedule.choice: must be a non-empty list"),
    (["space.lr_schedule.choice=[cosine, bogus]"], "space.lr_schedule.choice: optim.schedule: must be one of"),
    (["space.nonsense={uniform: [0, 1]}"], "space.nonsense: unknown parameter"),
    (["space.batch_size={int: [32, 64]}"], "space.batch_size: batch_size is set by workload.batch_size"),
    (["space.kp={normal: [0, 1]}"], "space.kp: must be a mapping with one key of uniform"),
    (["base=turbo"], "base: must be one of conservative"),
    (["workload.epochs=ten"], "workload.epochs: must be an integer"),
    (["workload.gpus=1"], "workload.gpus: unknown key"),
    (["workload.data.kind=imagenet"], "workload.data.root: required for kind imagenet"),
    (["objectives=[{metric: top1}]"], "objectives[0].metric: must be one of"),
    (["scheduler.metric=accuracy"], "scheduler.metric: must be one of"),
    (["scheduler.grace_period=99"], "scheduler.grace_period: must be <= workload.epochs"),
    (["scheduler.kind=asha", "scheduler.rank_on=[val_top1]"], "scheduler.rank_on: only kind moasha ranks"),
    (["scheduler.rank_on=[val_top1, val_top5]"], "scheduler.rank_on[1]: must be one of the objectives "
                                                  "val_top1, energy_savings, speedup, each once; got 'val_top5'"),
    (["scheduler.rank_on=[speedup, speedup]"], "scheduler.rank_on[1]: must be one of the objectives"),
    (["search.sampler=cmaes"], "search.sampler: must be one of tpe, nsga2, random, gp"),
    (["storage.baseline=none"], "objectives[2].metric: speedup needs storage.baseline: auto"),
    (["name=a/b"], "name: must be a directory name"),
    (["search"], "--set: expected key.path=value"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_SPECS, ids=[m.split(":")[0] for _, m in BAD_SPECS])
def test_bad_spec_exits_2_with_one_line_naming_the_key_and_writes_nothing(overrides, message, tmp_path, capsys):
    argv = [str(QUICKSTART), "--set", f"storage.root={tmp_path / 'results'}"]
    for text in overrides:
        argv += ["--set", text]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {message}"), err
    assert not (tmp_path / "results").exists()


def test_missing_spec_file_is_named(tmp_path, capsys):
    assert main([str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'nope.yaml'}: no such file\n"


def test_resume_without_an_earlier_sweep_is_bad_input(tmp_path, capsys):
    assert main([str(QUICKSTART), "--set", f"storage.root={tmp_path}", "--resume"]) == 2
    assert capsys.readouterr().err.startswith("error: --resume: ")
    assert not (tmp_path / "quickstart").exists()


def test_rerunning_a_name_with_another_spec_is_refused(tmp_path, capsys):
    tune_dir = tmp_path / "quickstart" / "tune"
    tune_dir.mkdir(parents=True)
    (tune_dir / "tuner.pkl").write_bytes(b"")
    spec = load_sweep(QUICKSTART, [f"storage.root={tmp_path}"])
    (tmp_path / "quickstart" / "spec.yaml").write_text(yaml.safe_dump(to_document(spec)))
    assert main([str(QUICKSTART), "--set", f"storage.root={tmp_path}", "--set", "search.num_trials=99"]) == 2
    assert "ran with another spec" in capsys.readouterr().err


def test_dry_run_of_pi_gains_prints_the_spec_and_eight_one_gpu_workers(capsys):
    assert main([str(SPACES / "pi_gains.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "trial resources: 8 × 1 GPU + 8 CPU Ray Train workers" in out
    assert yaml.safe_load(out.rsplit("trial resources", 1)[0])["workload"]["model"] == "resnet50"


def test_concurrency_is_capped_so_every_running_trial_fits():
    quick = load_sweep(QUICKSTART)  # 0.95 CPU per worker + 0.05 per driver
    assert concurrency(quick, {"CPU": 2.0, "GPU": 0.0}, autoscaling=False) == 2
    assert concurrency(quick, {"CPU": 1.5, "GPU": 0.0}, autoscaling=False) == 1
    pi = load_sweep(SPACES / "pi_gains.yaml")  # 8 × (1 GPU + 8 CPU)
    assert concurrency(pi, {"CPU": 192.0, "GPU": 16.0}, autoscaling=False) == 2
    assert concurrency(pi, {"CPU": 128.0, "GPU": 16.0}, autoscaling=False) == 1  # 2 × 64.05 CPUs > 128
    with pytest.raises(SpecError, match="^workload: a trial needs 64.05 CPUs and 8 GPUs"):
        concurrency(pi, {"CPU": 2.0, "GPU": 0.0}, autoscaling=False)
    assert concurrency(pi, {"CPU": 2.0, "GPU": 0.0}, autoscaling=True) == 4
    assert concurrency(pi, {"CPU": 72.0, "GPU": 8.0}, autoscaling=True) == 4  # one trial's pod up: the rest wait


def test_baseline_fingerprint_changes_with_what_its_timing_and_accuracy_depend_on():
    spec = load_sweep(QUICKSTART)
    same = baseline_fingerprint(load_sweep(QUICKSTART, ["search.num_trials=2"]), "cpu: X")
    assert baseline_fingerprint(spec, "cpu: X") == same
    for change in ("workload.batch_size=64", "workload.model=resnet18", "workload.workers=2", "workload.epochs=4",
                   "base=conservative"):
        assert baseline_fingerprint(load_sweep(QUICKSTART, [change]), "cpu: X") != same
    assert baseline_fingerprint(spec, "NVIDIA H100") != same
    assert baseline_fingerprint(spec, "cpu: X", runs_at_once=2) != same


def test_damaged_or_stale_baseline_cache_is_timed_again_and_a_matching_one_is_reused(tmp_path, caplog):
    path = tmp_path / "baseline.json"
    fingerprint = {"model": "small_resnet", "device": "cpu: X"}
    assert _cached(path, fingerprint) is None  # no file yet
    path.write_text('{"fingerprint": {"model": "small_resnet", "dev')  # cut off mid-write
    with caplog.at_level(logging.WARNING, logger="ast_tune.tuning.runtime.baseline"):
        assert _cached(path, fingerprint) is None
    assert str(path) in caplog.text and "timing the dense baseline again" in caplog.text
    cached = {"fingerprint": fingerprint, "epoch_seconds": 1.5, "val_top1": 90.0}
    path.write_text(json.dumps(cached))
    assert _cached(path, fingerprint) == cached
    assert _cached(path, {**fingerprint, "device": "NVIDIA H100"}) is None


def _epoch(trial, epoch, top1, **params):
    return {"event": "epoch", "trial_id": trial, "params": params, "epoch": epoch, "val_top1": top1}


def test_epochs_table_keeps_last_report_of_an_epoch_and_marks_failed_and_unfinished_trials():
    entries = [
        _epoch("a", 1, 50.0, kp=0.1), _epoch("a", 2, 60.0, kp=0.1),
        _epoch("b", 1, 40.0, kp=0.2),
        _epoch("a", 2, 61.0, kp=0.1),  # re-run after a restore: this one counts
        {"event": "end", "trial_id": "a", "params": {"kp": 0.1}, "status": "TERMINATED", "reason": None},
        {"event": "end", "trial_id": "c", "params": {"kp": 0.3}, "status": "ERROR",
         "reason": "NonFiniteLossError: loss is nan"},
    ]
    table = epochs_frame(entries)
    assert list(table.columns[:2]) == list(columns.EPOCH_TABLE_KEYS)
    assert set(columns.EPOCH_METRICS) <= set(table.columns) and "param.kp" in table.columns
    rows = [tuple(r) for r in table[["trial_id", "status", "epoch", "param.kp"]].itertuples(index=False)]
    assert rows == [("a", "TERMINATED", 1, 0.1), ("a", "TERMINATED", 2, 0.1), ("b", "INTERRUPTED", 1, 0.2),
                    ("c", "ERROR", 0, 0.3)]
    assert table["val_top1"].iloc[1] == 61.0 and math.isnan(table["val_top1"].iloc[3])
    assert table["reason"].iloc[3] == "NonFiniteLossError: loss is nan"
