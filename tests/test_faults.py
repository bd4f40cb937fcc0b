"""Fault injection without Ray: bad input, torn writes, a full disk while a checkpoint is written.

Killed drivers and workers, corrupt checkpoints and NaN trials (real sweeps, each starting Ray) are
in ``tests/test_kills.py``; ``TINY`` is the shrunk quickstart both use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from ast_tune import export
from ast_tune import report as report_cli
from ast_tune import sweep as sweep_cli
from ast_tune import train as train_cli
from ast_tune.core import checkpoint
from ast_tune.results import tables
from ast_tune.results.journal import Journal, epochs_frame

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"
TINY = ["workload.data.image_size=16", "workload.batch_size=256", "storage.baseline=none", "constraints=[]",
        "objectives=[{metric: val_top1, mode: max}, {metric: energy_savings, mode: max}]",
        "workload.checkpoint_every=1", "space.warmup_epochs={fixed: 1}", "space.mode={fixed: skip}"]
FINISHED = {"TERMINATED", "STOPPED"}


# --- bad input: one line on stderr, exit 2, nothing written ---------------------------------------

SWEEP_SETS = [  # --set overrides of the embedded default, each invalid
    "search.num_trials=0", "search.num_trials=-1", "search.num_trials=abc", "search.num_trials=1.5",
    "search.max_concurrent=0", "search.sampler=cmaes", "search.seed=x",
    "workload.epochs=0", "workload.epochs=-3", "workload.epochs=ten", "workload.batch_size=0",
    "workload.workers=0", "workload.cpus_per_worker=-1", "workload.checkpoint_every=0",
    "workload.model=resnet9000", "workload.precision=fp8", "workload.data.kind=mnist",
    "workload.data.image_size=0", "workload.placement=EVERYWHERE", "workload.bogus=1",
    "space.kp.loguniform=[2.0, 0.05]", "space.kp.loguniform=[-1.0, 1.0]", "space.lr.uniform=[0.3]",
    "space.nonexistent_param={uniform: [0, 1]}", "space.kp={gaussian: [0, 1]}", "space.lr_schedule={choice: []}",
    "space.warmup_epochs.int=[3, 1]", "space=[1, 2]",
    "scheduler.kind=hyperband", "scheduler.reduction_factor=1", "scheduler.grace_period=0",
    "scheduler.metric=bogus", "objectives=[]", "objectives=[{metric: val_top1, mode: up}]",
    "objectives=[{metric: nonexistent}]", "objectives=7",
    "storage.baseline=sometimes", "promote.bogus=1", "promote.epochs=-1", "promote=yes",
    "base=turbo", "unknown.key=1", "name=", "search.num_trials", "=5", "search.num_trials=[1",
]

SPEC_FILES = {  # spec file contents, each invalid
    "empty.yaml": "", "syntax.yaml": "name: [unclosed\n", "list.yaml": "- a\n- b\n",
    "scalar.yaml": "just a string\n", "unknown_top.yaml": "name: x\nbogus: 1\n",
    "binary.yaml": "\x00\x01\x02\xff", "tabs.yaml": "name: x\n\tworkload: {}\n",
}


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("override", SWEEP_SETS)
def test_bad_sweep_override_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, override):
    root = tmp_path / "results"
    assert sweep_cli.main([str(QUICKSTART), "--dry-run", "--set", f"storage.root={root}", "--set", override]) == 2
    assert _one_line(capsys).startswith("error: ")
    assert not root.exists()


@pytest.mark.parametrize("name", sorted(SPEC_FILES))
def test_bad_spec_file_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, name):
    spec = tmp_path / name
    spec.write_text(SPEC_FILES[name], encoding="latin-1")
    root = tmp_path / "results"
    assert sweep_cli.main([str(spec), "--dry-run", "--set", f"storage.root={root}"]) == 2
    assert _one_line(capsys).startswith("error: ")
    assert not root.exists()


@pytest.mark.parametrize("argv", [
    [], ["--bogus"], [str(QUICKSTART), "--set"], [str(QUICKSTART), "--nme", "x"], ["/nonexistent.yaml"],
    [str(ROOT / "search_spaces")], [str(QUICKSTART), "--resume"],
    [str(QUICKSTART), "--set", "workload.data.kind=imagefolder", "--set", "workload.data.root=/nonexistent"],
])
def test_bad_sweep_arguments_are_one_line_exit_2(tmp_path, capsys, argv):
    root = tmp_path / "results"
    assert sweep_cli.main([*argv, "--set", f"storage.root={root}"] if argv else argv) == 2
    _one_line(capsys)
    assert not root.exists()


@pytest.mark.parametrize("args", [
    ["--preset", "turbo"], ["--data", "mnist"], ["--set", "optim.lr=-1"], ["--set", "unknown=1"],
    ["--data", "imagefolder", "--data-root", "/nonexistent"], ["--set", "epochs=0"], ["--set", "batch_size=-2"],
    ["--set", "sparsity.mode=sometimes"],
])
def test_bad_train_input_is_one_line_exit_2(tmp_path, capsys, args):
    out = tmp_path / "run"
    assert train_cli.main([*args, "--out", str(out)]) == 2
    assert _one_line(capsys).startswith("error: ")
    assert not out.exists()


def _results_with(tmp_path: Path, files: dict[str, bytes]) -> Path:
    results = tmp_path / "sweep"
    results.mkdir()
    for name, content in files.items():
        (results / name).write_bytes(content)
    return results


@pytest.mark.parametrize(("cli", "files", "extra"), [
    (export.main, None, []), (export.main, {}, []), (export.main, {"epochs.parquet": b"garbage"}, []),
    (export.main, {}, ["--format", "xml"]), (export.main, {}, ["--format", "parquet"]),
    (export.main, {"epochs.parquet": b""}, ["--bogus"]),
    (report_cli.main, None, []), (report_cli.main, {}, []), (report_cli.main, {"epochs.parquet": b"PAR1"}, []),
    (report_cli.main, {}, ["--bogus"]),
])
def test_bad_export_and_report_input_is_one_line_exit_2(tmp_path, capsys, cli, files, extra):
    results = tmp_path / "missing" if files is None else _results_with(tmp_path, files)
    before = sorted(tmp_path.rglob("*"))
    assert cli([str(results), *extra]) == 2
    _one_line(capsys)
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("argv", [
    ["ast_tune.sweep", str(QUICKSTART), "--set", "workload.epochs=-1"],
    ["ast_tune.sweep", "/nonexistent.yaml"],
    ["ast_tune.train", "--preset", "turbo"],
    ["ast_tune.export", "/nonexistent"],
    ["ast_tune.report", "/nonexistent"],
    ["ast_tune.prepare", "/nonexistent", "copy"],
])
def test_real_cli_rejects_bad_input_in_one_line(tmp_path, argv):
    done = subprocess.run([sys.executable, "-m", *argv], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    err = done.stderr.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []


def test_unreadable_image_is_skipped_with_a_warning_and_training_goes_on(tmp_path, capsys, caplog):
    from PIL import Image

    root = tmp_path / "folder"
    for split, count in (("train", 3), ("val", 1)):
        for label, colour in enumerate(("red", "blue")):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (8, 8), colour).save(folder / f"{i}.jpg")
    (root / "train" / "class0" / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "run"
    args = ["--data", "imagefolder", "--data-root", str(root), "--out", str(out)]
    for pair in ("data.image_size=8", "epochs=1", "warmup_epochs=1", "batch_size=4", "data.num_workers=0"):
        args += ["--set", pair]
    assert train_cli.main(args) == 0
    assert any("broken.jpg" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    assert pd.read_parquet(out / "epochs.parquet")["epoch"].tolist() == [1]


# --- torn writes -------------------------------------------------------------------------------------


def _tiny_epochs(top1: float) -> pd.DataFrame:
    entries = [{"event": "epoch", "trial_id": t, "params": {"kp": k}, "epoch": 1, "val_top1": top1 + k,
                "energy_savings": k} for t, k in (("a", 0.1), ("b", 0.2))]
    entries += [{"event": "end", "trial_id": t, "params": {"kp": k}, "status": "TERMINATED", "reason": None}
                for t, k in (("a", 0.1), ("b", 0.2))]
    return epochs_frame(entries)


OBJECTIVES = [("val_top1", "max"), ("energy_savings", "max")]


@pytest.mark.parametrize("method", ["to_parquet", "to_csv"])
def test_a_write_that_dies_midway_leaves_the_old_tables_readable(tmp_path, monkeypatch, method):
    tables.write_tables(tmp_path, _tiny_epochs(50.0), OBJECTIVES)
    before = {name: (tmp_path / name).read_bytes() for name in ("trials.parquet", "trials.csv")}
    real = getattr(pd.DataFrame, method)

    def dies_midway(self, path, *args, **kwargs):
        real(self, path, *args, **kwargs)
        Path(path).write_bytes(Path(path).read_bytes()[:20])  # half a file, then the crash
        raise OSError("disk gone")

    monkeypatch.setattr(pd.DataFrame, method, dies_midway)
    with pytest.raises(OSError, match="disk gone"):
        tables.write_tables(tmp_path, _tiny_epochs(70.0), OBJECTIVES)
    monkeypatch.undo()
    # each file is whole, old or new; the CSV (written after the Parquet) is the old one either way
    assert (tmp_path / "trials.csv").read_bytes() == before["trials.csv"]
    assert pd.read_parquet(tmp_path / "trials.parquet")["val_top1"].max() in (pytest.approx(50.2), pytest.approx(70.2))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


LOOP = """
import sys
from ast_tune.results import tables
from tests.test_faults import OBJECTIVES, _tiny_epochs
i = 0
while True:
    i += 1
    tables.write_tables(sys.argv[1], _tiny_epochs(float(i)), OBJECTIVES)
    if i == 3:
        print("ready", flush=True)
"""


def test_sigkill_during_export_never_leaves_a_truncated_table(tmp_path):
    for kill in range(5):
        loop = subprocess.Popen([sys.executable, "-c", LOOP, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                                text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert loop.stdout.readline().strip() == "ready"
        time.sleep(0.05 * kill)
        loop.kill()
        loop.wait()
        for name in ("trials.parquet", "pareto.parquet", "epochs.parquet"):
            assert len(pd.read_parquet(tmp_path / name)) >= 1
        for name in ("trials.csv", "pareto.csv"):
            assert set(pd.read_csv(tmp_path / name)["trial_id"]) <= {"a", "b"}


def test_a_torn_journal_line_is_skipped_with_a_warning_and_never_swallows_the_next_record(tmp_path, caplog):
    journal = Journal(tmp_path / "journal.jsonl")
    journal.append({"event": "end", "trial_id": "a", "status": "TERMINATED"})
    with journal.path.open("a") as handle:  # a kill (or a full disk) mid-write
        handle.write('{"event": "epoch", "trial_id": "b", "ep')
    journal.append({"event": "end", "trial_id": "b", "status": "ERROR"})
    lines = journal.path.read_text().splitlines()
    assert lines[1] == '{"event": "epoch", "trial_id": "b", "ep' and json.loads(lines[2])["trial_id"] == "b"
    with journal.path.open("a") as handle:  # torn, then a record on the same line (an older writer)
        handle.write('{"event": "ep' + json.dumps({"event": "end", "trial_id": "c", "status": "STOPPED"}) + "\n")
    with caplog.at_level("WARNING"):
        entries = journal.read()
    assert [(e["trial_id"], e["status"]) for e in entries] == [("a", "TERMINATED"), ("b", "ERROR"), ("c", "STOPPED")]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and "line 2 is torn" in warnings[0] and "line 4 is torn" in warnings[1]
    assert str(journal.path) in warnings[0]


# --- a full disk while a checkpoint is written ------------------------------------------------------


def test_a_full_disk_while_a_checkpoint_is_written_keeps_the_previous_one_and_fails_the_trial_saying_why(
        tmp_path, monkeypatch):
    import errno

    import torch

    from ast_tune.config.run_spec import DataSpec, RunSpec
    from ast_tune.config.spec import to_dict
    from ast_tune.tuning.runtime import worker

    run_dir, reports = tmp_path / "trial", []
    checkpoints = run_dir / worker.CHECKPOINTS
    session = worker.Session(lambda record: reports.append(record["epoch"]), lambda: torch.device("cpu"))
    spec = RunSpec(data=DataSpec(kind="digits", image_size=16), model="small_resnet", batch_size=256, epochs=3,
                   warmup_epochs=1, checkpoint_every=1)
    config = {"run_spec": to_dict(spec), "threads": 1, "baseline_epoch_seconds": None, "run_dir": str(run_dir),
              "marker": None, "nodes": []}
    real_save, saves = torch.save, []

    def save_until_the_disk_is_full(state, path, *args, **kwargs):
        saves.append(path)
        if len(saves) == 2:
            Path(path).write_bytes(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(state, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_the_disk_is_full)
    run_dir.mkdir()
    result = worker.train_loop(config, session)
    assert result["error"].startswith("CheckpointError: ") and "No space left on device" in result["error"]
    assert "the previous checkpoint is kept" in result["error"]
    assert reports == [1] and [p.name for p in checkpoints.iterdir()] == ["epoch_0001"]
    assert checkpoint.load(checkpoints / "epoch_0001")["epoch"] == 1  # whole, and loadable
    assert not list(Path(saves[1]).parent.glob("*.tmp"))  # no half-written file left beside it
    monkeypatch.setattr(torch, "save", real_save)  # space freed: the run continues from that checkpoint
    assert "error" not in worker.train_loop(config, session)
    assert reports == [1, 1, 2, 3]  # epoch 1 re-reported from the checkpoint, not trained again
