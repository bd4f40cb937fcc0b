"""The trackers: the edge check, MLflow against a real SQLite store read back with MLflow's client (one run per
trial, its parameters, epochs by step, nothing twice from a second tracker), W&B offline run files read back."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pandas as pd
import pytest

from ast_tune.config.spec import SpecError
from ast_tune.config.sweep_spec import load_sweep
from ast_tune.tracking.trackers import Trackers, check_trackers, run_id

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {"kp": 0.5, "mode": "skip"}


def _spec(*overrides: str):
    return load_sweep(ROOT / "search_spaces" / "quickstart.yaml", overrides)


def _entries(trial: str, epochs: int, status: str = "STOPPED") -> list[dict]:
    rows = [{"event": "epoch", "trial_id": trial, "params": PARAMS, "epoch": e, "phase": "ast",
             "val_top1": 50.0 + e, "energy_savings": 0.6, "speedup": float("nan"), "train_seconds": 1.0}
            for e in range(1, epochs + 1)]
    return [*rows, {"event": "end", "trial_id": trial, "params": PARAMS, "status": status, "reason": None}]


def _log(trackers: Trackers, entries: list[dict]) -> None:
    for entry in entries:
        trackers.record(entry)


TRIALS = pd.DataFrame({"trial_id": ["0", "1"], "on_front": [True, False], "verdict": ["minimum", "none"]})


@pytest.mark.parametrize("name", ["mlflow", "wandb"])
def test_a_tracker_that_is_not_installed_is_one_line_naming_its_key(name, monkeypatch):
    monkeypatch.setitem(sys.modules, name, None)  # its import fails
    tracking = {"mlflow": "tracking.mlflow.uri=sqlite:///x.db", "wandb": "tracking.wandb.project=p"}[name]
    with pytest.raises(SpecError) as err:
        check_trackers(_spec(tracking).tracking)
    assert str(err.value) == (f"tracking.{name}: {name} is not installed: pip install -e '.[{name}]', or remove "
                              f"tracking.{name}")


def test_mlflow_needs_a_store(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(SpecError, match=r"^tracking.mlflow.uri: required when MLFLOW_TRACKING_URI is not set"):
        check_trackers(_spec("tracking.mlflow={experiment: e}").tracking)
    check_trackers(_spec().tracking)  # none named: nothing to check


def test_run_ids_are_the_same_every_time_and_w_and_b_safe():
    assert run_id("quickstart", "3") == run_id("quickstart", "3") != run_id("quickstart", "4")
    assert run_id("a.b", "0") != run_id("a_b", "0") and set(run_id("a.b", "0")) <= set("ab-_0123456789abcdef")


def test_a_failing_tracker_is_warned_about_once_and_the_sweep_goes_on(caplog):
    class Broken:
        knows_history = True

        def epoch(self, *args):
            raise ConnectionError("server gone")

    trackers = Trackers({"mlflow": Broken()})
    with caplog.at_level("WARNING"):
        _log(trackers, _entries("0", 2))
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith("tracking: mlflow failed to log trial 0 epoch 1 (ConnectionError: server gone)")
    assert trackers.trackers == {}


def test_mlflow_one_run_per_trial_with_params_and_epochs_by_step_and_nothing_twice(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = _spec(f"tracking.mlflow.uri={uri}")
    journal = [*_entries("0", 3, "TERMINATED"), *_entries("1", 2, "ERROR")]
    first = Trackers.open(spec, tmp_path)
    _log(first, journal)
    first.finish(TRIALS, "verdict: 1 trial(s) reach minimum")
    again = Trackers.open(spec, tmp_path)  # a resumed sweep: a new process, the same journal replayed
    again.sync(journal)
    _log(again, _entries("0", 3, "TERMINATED"))

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("quickstart")
    runs = {r.data.tags["ast_tune.trial"]: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["0", "1"]
    zero, one = runs["0"], runs["1"]
    assert zero.data.params == {"kp": "0.5", "mode": "skip"} and zero.info.run_name == "quickstart trial 0"
    history = client.get_metric_history(zero.info.run_id, "val_top1")
    assert sorted((m.step, m.value) for m in history) == [(1, 51.0), (2, 52.0), (3, 53.0)]
    assert "speedup" not in zero.data.metrics  # NaN is not logged
    assert zero.data.tags["on_front"] == "true" and zero.data.tags["verdict"] == "minimum"
    assert zero.info.status == "FINISHED" and one.info.status == "FAILED"
    assert one.data.tags["ast_tune.status"] == "ERROR"
    assert experiment.tags["ast_tune.verdict.quickstart"] == "verdict: 1 trial(s) reach minimum"


def _wandb_records(path: Path):
    """The records of a W&B run file: a 7-byte header, then LevelDB log blocks of 32 KiB holding protobufs."""
    from wandb.proto import wandb_internal_pb2

    data, position, block, pending, records = path.read_bytes(), 7, 32768, b"", []
    assert data[:4] == b":W&B"
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        pending += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def _items(items) -> dict[str, str]:
    """A W&B record's items (history, config, summary) as ``{key: JSON text}``."""
    return {item.key or ".".join(item.nested_key): item.value_json for item in items}


def test_wandb_offline_writes_each_trials_run_files_with_its_config_and_epochs(tmp_path, monkeypatch):
    for variable in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / "home"))
    spec = _spec("tracking.wandb={project: sweeps, mode: offline}")
    trackers = Trackers.open(spec, tmp_path / "results")
    _log(trackers, _entries("0", 3, "TERMINATED"))
    trackers.close()  # W&B's service has written the run files when it returns
    (run_dir,) = (tmp_path / "results" / "wandb").glob(f"offline-run-*-{run_id('quickstart', '0')}")
    records = _wandb_records(run_dir / f"run-{run_id('quickstart', '0')}.wandb")
    history = [_items(r.history.item) for r in records if r.HasField("history")]
    assert [(h["_step"], h["epoch"], h["val_top1"]) for h in history] == [("1", "1", "51"), ("2", "2", "52"),
                                                                          ("3", "3", "53")]
    (run,) = [r.run for r in records if r.HasField("run")]
    assert (run.project, run.run_id, run.display_name, run.run_group) == (
        "sweeps", run_id("quickstart", "0"), "trial 0", "quickstart")
    config = _items(run.config.update)
    assert config["kp"] == "0.5" and config["mode"] == '"skip"'
    summary = {k: v for r in records if r.HasField("summary") for k, v in _items(r.summary.update).items()}
    assert summary["status"] == '"TERMINATED"'
    _log(trackers, _entries("0", 3, "TERMINATED"))  # the same epochs again: the run is opened, nothing logged
    trackers.finish(TRIALS[TRIALS["trial_id"] == "0"], "verdict: 1 trial(s) reach minimum")
    trackers.close()
    opened = {d for d in (tmp_path / "results" / "wandb").glob(f"offline-run-*-{run_id('quickstart', '0')}*")}
    assert len(opened) == 3  # each opening of the run is a directory, which wandb sync merges by the run's id
    reopened = [r for d in opened - {run_dir} for r in _wandb_records(d / f"run-{run_id('quickstart', '0')}.wandb")]
    assert not [r for r in reopened if r.HasField("history")]
    final = {k: v for r in reopened if r.HasField("summary") for k, v in _items(r.summary.update).items()}
    assert final["on_front"] == "true" and final["verdict"] == '"minimum"'
    assert ["on_front"] in [list(r.run.tags) for r in reopened if r.HasField("run")]
