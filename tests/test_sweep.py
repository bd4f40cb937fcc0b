"""End-to-end sweeps through the CLI, on CPU: tiny, few trials, few epochs (each starts Ray)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from ast_tune.sweep import _write_run
from tests.test_kills import frozen

ROOT = Path(__file__).resolve().parents[1]
SPACES = ROOT / "search_spaces"
pytestmark = pytest.mark.ray

SMALL_CPU = ["workload.model=small_resnet", "workload.precision=fp32", "workload.gpus_per_worker=0",
             "workload.cpus_per_worker=0.95", "workload.data.num_workers=0", "workload.checkpoint_every=1"]


def _argv(spec: str, results: Path, *overrides: str) -> list[str]:
    argv = [sys.executable, "-m", "ast_tune.sweep", str(SPACES / spec), "--set", f"storage.root={results}"]
    for text in overrides:
        argv += ["--set", text]
    return argv


def _run(argv: list[str], timeout: float = 400) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_pi_gains_on_a_tiny_kaggle_tree_runs_ddp_trials_and_writes_every_result(tmp_path, kaggle_tree_factory):
    """Two DDP trials on a 2-class proxy at 12 px; the winner is promoted onto all 3 classes at 16 px (2 workers)."""
    tree = kaggle_tree_factory(tmp_path / "imagenet", size=16)
    results = tmp_path / "results"
    done = _run(_argv("pi_gains.yaml", results, *SMALL_CPU, f"workload.data.root={tree}",
                      "workload.data.image_size=12", "workload.data.subset={classes: 2}", "workload.batch_size=4",
                      "workload.epochs=2", "workload.workers=2", "space.warmup_epochs.int=[0, 1]",
                      "search.num_trials=2", "scheduler.grace_period=1", "promote.epochs=2",
                      "promote.checkpoint_every=1", "promote.rule.max_accuracy_drop=100",
                      "promote.workload={image_size: 16, workers: 2, num_workers: 0, baseline: none}",
                      "promote.seeds=1", "constraints=[]"), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = results / "pi_gains"
    for name in ("spec.yaml", "run.json", "baseline.json", "trials.parquet", "trials.csv", "epochs.parquet",
                 "pareto.csv", "pareto.parquet", "pareto.md", "optuna.db", "tune", "promoted/summary.json",
                 "report/index.html"):
        assert (sweep / name).exists(), name
    assert list((sweep / "tune").glob("trial_*/events.out.tfevents.*"))  # tensorboard --logdir works
    study = optuna.load_study(study_name="pi_gains", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert [d.name for d in study.directions] == ["MAXIMIZE"] * 3
    assert len(study.trials) == 2
    epochs = pd.read_parquet(sweep / "epochs.parquet")
    assert epochs["trial_id"].nunique() == 2 and set(epochs["status"]) <= {"TERMINATED", "STOPPED"}
    assert {f"param.{name}" for name in ("kp", "ki", "target_activation", "lr_schedule")} <= set(epochs.columns)
    assert epochs["speedup"].notna().all()
    baseline = json.loads((sweep / "baseline.json").read_text())
    assert baseline["fingerprint"]["world_size"] == 2 and len(baseline["epochs"]) == 2
    assert "epoch 1/2: top1" in done.stdout and "| trial |" in done.stdout
    classes = json.loads((sweep / "run.json").read_text())["subset_classes"]
    assert len(classes) == 2 and set(classes) < {"n01440764", "n01443537", "n01484850"}
    assert baseline["spec"]["data"]["subset"]["classes"] == 2
    summary = json.loads((sweep / "promoted" / "summary.json").read_text())
    assert summary["workload"]["data"]["subset"] is None and summary["workload"]["data"]["image_size"] == 16
    assert len(summary["per_class_top1"]) == 3  # the full tree
    # the promoted workload's own dense baseline is switched off here (tests/test_transfer.py times one)
    assert not (sweep / "promoted" / "baseline.json").exists() and summary["baseline_epoch_seconds"] is None
    assert summary["transfer"]["proxy_trial"]["baseline_top1"] == baseline["val_top1"]
    assert "transfer check" in done.stdout and "workload (promote.workload)" in done.stdout


def test_non_finite_loss_ends_the_trial_as_error_with_its_reason(tmp_path):
    results = tmp_path / "results"
    done = _run(_argv("quickstart.yaml", results, "workload.epochs=1", "space.warmup_epochs={fixed: 0}",
                      "space.lr={fixed: 1.0e+8}", "space.warmup_lr={fixed: 1.0e+8}", "search.num_trials=1",
                      "scheduler.kind=fifo", "constraints=[]",
                      "storage.baseline=none", "objectives=[{metric: val_top1}, {metric: energy_savings}]"))
    assert done.returncode == 1 and "no trial finished" in done.stderr
    trials = pd.read_csv(results / "quickstart" / "trials.csv")
    assert list(trials["status"]) == ["ERROR"]
    assert trials["reason"].iloc[0].startswith("NonFiniteLossError: ")


def test_interrupted_sweep_resumes_without_rerunning_or_repeating_trials(tmp_path):
    """FIFO, one trial at a time: an uninterrupted run finishes both trials; so must this one. Its MLflow
    runs (one per study trial) hold each epoch once; the resumed run, --quiet, prints status lines only."""
    results = tmp_path / "results"
    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = _argv("quickstart.yaml", results, "workload.epochs=3", "workload.data.image_size=16",
                 "space.warmup_epochs.int=[0, 1]",
                 "search.num_trials=2", "search.max_concurrent=1", "scheduler.kind=fifo",
                 "workload.checkpoint_every=1", f"tracking.mlflow.uri={mlflow_uri}")
    journal = results / "quickstart" / "journal.jsonl"
    process = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600  # a safety net for a broken run, not a speed
    while not (journal.is_file() and '"epoch": 1' in journal.read_text()):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.1)
    with frozen(process, "ImplicitFunc") as trials:  # held at this state: the sweep cannot end before Ctrl-C
        assert trials
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=300)
    assert process.returncode == 130, err[-3000:]
    assert "--resume" in err
    baseline = (results / "quickstart" / "baseline.json").read_text()
    first = pd.read_parquet(results / "quickstart" / "epochs.parquet")
    assert list(first["status"].unique()) == ["INTERRUPTED"] and first["trial_id"].nunique() == 1

    resumed = _run([*argv, "--resume", "--quiet"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "status: 2/2 trials done, 0 running, 0 pending" in resumed.stdout
    assert " epoch 2/3" not in resumed.stdout and "trial 1 started" not in resumed.stdout  # --quiet
    assert "cost: estimated" in resumed.stdout and " · actual " in resumed.stdout
    trials = pd.read_csv(results / "quickstart" / "trials.csv")
    assert len(trials) == 2 and trials["trial_id"].is_unique and set(trials["status"]) == {"TERMINATED"}
    epochs = pd.read_parquet(results / "quickstart" / "epochs.parquet")
    assert sorted(epochs.groupby("trial_id")["epoch"].apply(list).tolist()) == [[1, 2, 3]] * 2
    interrupted = first.loc[first["status"] == "INTERRUPTED", "trial_id"].iloc[0]
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    first_epochs = [e for e in events if e["trial_id"] == interrupted and e["event"] == "epoch" and e["epoch"] == 1]
    # continued from its checkpoint, not from scratch: epoch 1 was not trained again (the journal skips a
    # replayed epoch it holds; a retrained one would be appended, with other seconds)
    assert len({(e["train_seconds"], e["val_top1"]) for e in first_epochs}) == 1
    assert (results / "quickstart" / "baseline.json").read_text() == baseline  # cached, not re-timed
    study = optuna.load_study(study_name="quickstart", storage=f"sqlite:///{results / 'quickstart' / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2
    run = json.loads((results / "quickstart" / "run.json").read_text())
    assert run["status"] == "done" and [attempt["status"] for attempt in run["attempts"]] == ["interrupted"]
    assert run["estimate"]["trial_epochs"] == 6 and run["actual"]["trial_epochs"] == 6  # FIFO: 2 trials × 3

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    experiment = client.get_experiment_by_name("quickstart")
    runs = {r.data.tags["ast_tune.trial"]: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["0", "1"]  # one run per study trial: the resumed one was continued, not duplicated
    for number, tracked in runs.items():
        steps = [m.step for m in client.get_metric_history(tracked.info.run_id, "val_top1")]
        assert sorted(steps) == [1, 2, 3], number  # each epoch once
        assert "kp" in tracked.data.params and tracked.data.tags["on_front"] in {"true", "false"}


def test_run_json_keeps_the_earlier_attempts_of_a_resumed_sweep_oldest_first(tmp_path):
    first, second = {"start": "2026-01-01T10:00:00", "status": "running"}, {"start": "2026-01-02T10:00:00"}
    _write_run(tmp_path, first)
    _write_run(tmp_path, {**first, "status": "interrupted"})  # the same attempt's end: no earlier attempt yet
    assert json.loads((tmp_path / "run.json").read_text())["attempts"] == []
    _write_run(tmp_path, second)
    run = json.loads((tmp_path / "run.json").read_text())
    assert run == {**second, "attempts": [{**first, "status": "interrupted"}]}


def test_run_json_that_keeps_earlier_attempts_under_previous_is_read(tmp_path):
    older = {"start": "2026-01-01T10:00:00", "status": "interrupted"}
    (tmp_path / "run.json").write_text(json.dumps({"start": "2026-01-02T10:00:00", "previous": [older]}))
    _write_run(tmp_path, {"start": "2026-01-03T10:00:00"})
    assert json.loads((tmp_path / "run.json").read_text())["attempts"] == [older, {"start": "2026-01-02T10:00:00"}]
