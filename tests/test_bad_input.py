"""Bad input stops before anything runs, results are never unpickled, bad images never empty a batch.

Each bad value exits 2 with one line naming its key and leaves ``storage.root`` unwritten; a
``results/<name>/`` that an older version made is refused on ``--resume`` in one line, and nothing a
command reads is unpickled; an unreadable image is replaced by the next sample, so two gloo ranks
with ``batch_size: 1`` both train every step.
"""

from __future__ import annotations

import json
import pickle
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from PIL import Image
from test_promote import results  # noqa: F401 (the fixture: a sweep's tables, no Tune state)

from ast_tune import export as export_cli
from ast_tune import promote as promote_cli
from ast_tune import report as report_cli
from ast_tune import sweep as sweep_cli
from ast_tune.config.run_spec import DataSpec, RunSpec, SparsitySpec
from ast_tune.config.spec import build, to_dict
from ast_tune.config.sweep_spec import load_sweep, to_document
from ast_tune.core.engine import fit
from ast_tune.results.journal import Journal, epochs_frame

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"

NON_FINITE = [
    "space.target_activation={fixed: .nan}", "space.target_activation={uniform: [.nan, 0.5]}",
    "space.target_activation={uniform: [0.2, .inf]}", "space.kp={loguniform: [1.0e-4, .inf]}",
    "space.lr={choice: [0.1, .nan]}", "space.warmup_lr={fixed: -.inf}", "workload.gpus_per_worker=.inf",
    "workload.cpus_per_worker=.nan", "promote.rule.max_accuracy_drop=.nan", "scheduler.reduction_factor=.inf",
]
OUT_OF_RANGE = [
    "search.seed=-1", "search.seed=4294967296", "scheduler.reduction_factor=1.0000001",
    "scheduler.reduction_factor=1", "storage.root=s3://bucket/results", "storage.root=file:///tmp/results",
    "objectives=[{metric: train_loss, mode: min}]",  # a metric the tables cannot rank: refused up front
]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("override", NON_FINITE + OUT_OF_RANGE)
def test_bad_value_exits_2_in_one_line_naming_its_key_and_writes_nothing(tmp_path, capsys, override):
    root = tmp_path / "results"
    argv = [str(QUICKSTART), "--set", f"storage.root={root}", "--set", override]
    assert sweep_cli.main(argv) == 2
    err = _one_line(capsys)
    key = override.split("=")[0].removeprefix("space.")
    assert err.startswith("error: ") and key.split(".")[-1] in err, err
    assert not root.exists() and not Path("s3:").exists()


def test_non_finite_numbers_in_a_spec_file_are_refused_too(tmp_path, capsys):
    document = yaml.safe_load(QUICKSTART.read_text())
    document["space"]["target_activation"] = {"fixed": float("nan")}
    spec = tmp_path / "nan.yaml"
    spec.write_text(yaml.safe_dump(document))
    assert sweep_cli.main([str(spec), "--set", f"storage.root={tmp_path / 'results'}"]) == 2
    assert "space.target_activation.fixed: must be a finite number, got nan" in _one_line(capsys)


def _tree(root: Path, classes: tuple[str, ...], *, images: int = 2, broken: int = 0) -> Path:
    for split in ("train", "val"):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(images):
                Image.new("RGB", (8, 8), (80 * label, 40 * i, 200)).save(folder / f"{i}.jpg")
            for i in range(broken if split == "train" else 0):
                (folder / f"broken{i}.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return root


@pytest.mark.parametrize(("classes", "images", "expected"), [
    ((), 0, "must hold two or more class folders; found 0"),
    (("only",), 2, "must hold two or more class folders; found 1"),
    (("a", "b"), 0, "holds no image"),
])
def test_empty_or_one_class_data_exits_2_before_results_exist(tmp_path, capsys, classes, images, expected):
    tree = tmp_path / "data"
    (tree / "train").mkdir(parents=True)
    _tree(tree, classes, images=images)
    root = tmp_path / "results"
    argv = [str(QUICKSTART), "--set", f"storage.root={root}", "--set", "workload.data.kind=imagefolder",
            "--set", f"workload.data.root={tree}"]
    assert sweep_cli.main(argv) == 2
    err = _one_line(capsys)
    assert "workload.data.root" in err and expected in err, err
    assert not root.exists()


def test_a_promoted_root_without_data_exits_2_naming_promote_workload_root(tmp_path, capsys):
    root, tree, empty = tmp_path / "results", _tree(tmp_path / "data", ("a", "b")), tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    argv = [str(QUICKSTART), "--set", f"storage.root={root}", "--set", "workload.data.kind=imagefolder",
            "--set", f"workload.data.root={tree}", "--set", f"promote={{enabled: true, workload: {{root: {empty}}}}}"]
    assert sweep_cli.main(argv) == 2
    err = _one_line(capsys)
    assert err.startswith("error: promote.workload.root: ") and "two or more class folders" in err, err
    assert not root.exists()


@pytest.mark.parametrize("every", ["-1", "soon", "inf"])
def test_a_bad_status_every_exits_2_in_one_line_naming_the_flag(tmp_path, capsys, every):
    root = tmp_path / "results"
    assert sweep_cli.main([str(QUICKSTART), "--set", f"storage.root={root}", "--status-every", every]) == 2
    err = _one_line(capsys)
    assert err.startswith("error: argument --status-every: must be a number of seconds, 0 or more"), err
    assert not root.exists()


def test_a_tracker_that_is_not_installed_exits_2_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # its import fails
    root = tmp_path / "results"
    assert sweep_cli.main([str(QUICKSTART), "--set", f"storage.root={root}", "--set",
                           "tracking.wandb.project=p"]) == 2
    assert _one_line(capsys).startswith("error: tracking.wandb: wandb is not installed: pip install -e '.[wandb]'")
    assert not root.exists()


def test_the_promoted_workload_reads_its_own_root_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = sweep_cli._absolute(load_sweep(QUICKSTART, ["workload.data.kind=imagefolder", "workload.data.root=proxy",
                                                       "promote.workload={root: full, image_size: 24}"]))
    assert spec.workload.data.root == str(tmp_path / "proxy")
    promoted = spec.promoted_sweep(3).workload.data
    assert (promoted.root, promoted.image_size) == (str(tmp_path / "full"), 24)
    assert spec.promoted_sweep(3).baseline_spec().data.root == str(tmp_path / "full")


# --- results from elsewhere --------------------------------------------------------------------------


def _stored_sweep(tmp_path: Path, *, status: str) -> tuple[list[str], Path]:
    """A results/<name>/ as a sweep leaves it: spec.yaml, run.json and pareto.md."""
    root = tmp_path / "results"
    argv = [str(QUICKSTART), "--set", f"storage.root={root}"]
    spec = load_sweep(QUICKSTART, [f"storage.root={root}"])
    stored = root / spec.name
    stored.mkdir(parents=True)
    (stored / "spec.yaml").write_text(yaml.safe_dump(to_document(sweep_cli._absolute(spec)), sort_keys=False))
    (stored / "run.json").write_text(json.dumps({"status": status}))
    (stored / "pareto.md").write_text("| trial | val_top1 |\n")
    return argv, stored


def test_a_finished_sweep_run_again_shows_its_front_and_restores_nothing(tmp_path, capsys):
    argv, stored = _stored_sweep(tmp_path, status="done")
    assert sweep_cli.main(argv) == 0  # `make demo` twice in a row
    out = capsys.readouterr().out
    assert "| trial | val_top1 |" in out and "already finished" in out and "--name" in out


def test_an_unfinished_sweep_is_not_restored_without_resume(tmp_path, capsys):
    argv, _ = _stored_sweep(tmp_path, status="interrupted")
    assert sweep_cli.main(argv) == 2
    err = _one_line(capsys)
    assert "--resume" in err and "--name" in err


class _Bomb:
    def __reduce__(self):
        return (Path.touch, (BOMB,))


BOMB = Path("/tmp/ast_tune_bad_input_bomb")


def _older_results(stored: Path) -> None:
    """What an older version left: its journal in tune/, keyed by Tune's hex trial ids, Tune's pickles beside it."""
    journal = Journal(stored / "tune" / "journal.jsonl")
    for trial_id, top1 in (("3f2a_00000", 80.0), ("3f2a_00001", 90.0)):
        record = {"event": "epoch", "trial_id": trial_id, "params": {"kp": 0.5}, "epoch": 1, "val_top1": top1,
                  "val_top5": 99.0, "energy_savings": 0.5, "speedup": 1.0, "train_seconds": 1.0}
        journal.append(record)
        journal.append({"event": "end", "trial_id": trial_id, "params": {"kp": 0.5}, "status": "TERMINATED",
                        "reason": None})
    epochs_frame(journal.read()).to_parquet(stored / "epochs.parquet", index=False)
    for name in ("tuner.pkl", "searcher-state-2026-01-01.pkl", "trial_3f2a_00000/error.pkl"):
        (stored / "tune" / name).parent.mkdir(parents=True, exist_ok=True)
        (stored / "tune" / name).write_bytes(pickle.dumps(_Bomb()))


@pytest.mark.parametrize("status", ["interrupted", "done"])
def test_resume_of_results_an_older_version_made_exits_2_in_one_line_and_export_and_report_read_them(
        tmp_path, capsys, status):
    BOMB.unlink(missing_ok=True)
    argv, stored = _stored_sweep(tmp_path, status=status)
    _older_results(stored)
    before = sorted(stored.rglob("*"))
    assert sweep_cli.main([*argv, "--resume"]) == 2
    err = _one_line(capsys)
    assert "made by an older version of ast_tune" in err and "export and report still read it" in err, err
    assert "--name" in err and sorted(stored.rglob("*")) == before
    if status == "interrupted":  # without --resume too: it cannot be continued
        assert sweep_cli.main(argv) == 2 and "made by an older version" in _one_line(capsys)
    assert export_cli.main([str(stored), "--format", "md"]) == 0
    assert (stored / "trials.csv").read_text().count("3f2a_0000") == 2
    assert report_cli.main([str(stored)]) == 0
    assert not BOMB.exists()


# --- unreadable images under DDP --------------------------------------------------------------------------


def _rank(rank: int, world: int, init_file: str, out_dir: str, spec_dict: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        records = []
        fit(build(RunSpec, spec_dict), report=lambda record, checkpoint: records.append(record))
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps([r["epoch"] for r in records]))
    finally:
        dist.destroy_process_group()


def test_unreadable_images_never_empty_a_batch_on_two_gloo_ranks(tmp_path):
    tree = _tree(tmp_path / "data", ("a", "b"), images=1, broken=3)  # 6 of 8 train files unreadable
    spec = RunSpec(data=DataSpec(kind="imagefolder", root=str(tree), image_size=32, num_workers=0),
                   batch_size=1, epochs=1, warmup_epochs=0, checkpoint_every=5,
                   sparsity=SparsitySpec(mode="inline"))
    context = mp.start_processes(_rank, args=(2, str(tmp_path / "init"), str(tmp_path), to_dict(spec)),
                                 nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + 900  # a watchdog for a hang (the old empty batch), not a speed goal
    try:
        while not context.join(timeout=10) and time.monotonic() < deadline:
            pass
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    assert [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)] == [[1], [1]]
    shutil.rmtree(tree)


def test_export_report_and_promote_dry_run_on_foreign_results_unpickle_nothing(results, capsys):  # noqa: F811
    BOMB.unlink(missing_ok=True)
    (results / "tune").mkdir()
    for name in ("tune/tuner.pkl", "tune/searcher-state.pkl", "tune/error.pkl"):
        (results / name).write_bytes(pickle.dumps(_Bomb()))
    before = sorted(results.rglob("*"))
    assert promote_cli.main([str(results), "--dry-run"]) == 0
    assert '"trial_id": "t0"' in capsys.readouterr().out and sorted(results.rglob("*")) == before
    assert export_cli.main([str(results), "--format", "md"]) == 0
    assert report_cli.main([str(results)]) == 0
    assert not BOMB.exists()
