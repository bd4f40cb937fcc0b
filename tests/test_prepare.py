"""``python -m ast_tune.prepare``: a resized copy that every loader reads as it reads the original.

The trees are a few classes of crops of scikit-learn's two sample photos (640×427), saved at a few
sizes and JPEG qualities, with a PNG, a small image and a corrupt file among them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from sklearn.datasets import load_sample_images

from ast_tune import prepare as command
from ast_tune.config.run_spec import DataSpec, OptimSpec, RunSpec, SparsitySpec, SubsetSpec
from ast_tune.config.spec import SpecError
from ast_tune.core import engine
from ast_tune.data import prepare as prepare_module
from ast_tune.data import sources
from ast_tune.data.inventory import image_counts, subset_classes
from ast_tune.data.loaders import make_loader
from ast_tune.data.prepare import MANIFEST
from ast_tune.data.prepared import copy_record, size_warning
from ast_tune.data.sources import load_datasets, val_short_side
from tests.conftest import write_kaggle_tree

ROOT = Path(__file__).resolve().parents[1]
PX = 64  # the short side the tests prepare to; validation at image_size 56 resizes to it
CLASSES = ("cat", "dog", "eel", "fox")
BROKEN = "train/dog/3.jpg"  # a JPEG header and then nothing a decoder can use
SMALL = "train/eel/0.jpg"  # 60 px short side: copied as it is
PORTRAIT_PNG = "train/fox/2.png"


@pytest.fixture(scope="module")
def photos() -> tuple[Image.Image, ...]:
    return tuple(Image.fromarray(array) for array in load_sample_images().images)


def _photo(photos, path: Path, *, index: int, size: tuple[int, int], quality: int = 90) -> None:
    """A crop of sample photo ``index % 2`` scaled to ``size`` (w, h) px, saved in the format ``path`` names."""
    photo = photos[index % 2]
    left = 37 * index % 200
    crop = photo.crop((left, 0, left + 400, 400 if size[1] > size[0] else 300)).resize(size, Image.Resampling.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    crop.save(path, quality=quality) if path.suffix == ".jpg" else crop.save(path)


@pytest.fixture
def folder_tree(tmp_path: Path, photos) -> Path:
    """4 classes × 4 train images and 2 val images each, photos of 60 to 240 px short side."""
    root = tmp_path / "src"
    for label, name in enumerate(CLASSES):
        for i in range(4):
            _photo(photos, root / "train" / name / f"{i}.jpg", index=label + i,
                   size=(120 + 40 * i, 90 + 30 * label), quality=(75, 90, 95)[i % 3])
        for i in range(2):
            _photo(photos, root / "val" / name / f"{i}.jpg", index=label * 2 + i, size=(200, 150 + 10 * i))
    _photo(photos, root / SMALL, index=0, size=(80, 60))
    (root / PORTRAIT_PNG).with_suffix(".jpg").unlink()
    _photo(photos, root / PORTRAIT_PNG, index=3, size=(100, 160))
    (root / BROKEN).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def _prepare(src: Path, dst: Path, *flags: str) -> int:
    return command.main([str(src), str(dst), "--short-side", str(PX), "--workers", "1", *flags])


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes."""
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*"))
            if path.is_file()}


def _relative(dataset, root: Path) -> list[tuple[str, int]]:
    return [(Path(path).relative_to(root).as_posix(), label) for path, label in dataset.samples]


def test_copy_has_the_same_classes_samples_order_subset_and_epochs(folder_tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    assert _prepare(folder_tree, dst) == 0
    for subset in (None, SubsetSpec(classes=2, per_class=3, seed=5)):
        specs = [DataSpec(kind="imagefolder", root=str(root), image_size=16, subset=subset)
                 for root in (folder_tree, dst)]
        original, copy = (load_datasets(spec) for spec in specs)
        assert copy.class_names == original.class_names
        for split in ("train", "val"):
            assert (_relative(getattr(copy, split), dst) == _relative(getattr(original, split), folder_tree))
        assert subset_classes(specs[1]) == subset_classes(specs[0])
        assert image_counts(specs[1]) == image_counts(specs[0])
        for epoch in (0, 1):  # a dense epoch's samples, in the order the loader gives them
            orders = [[data.train.samples[i][0] for _, _, idx in
                       make_loader(data.train, batch_size=4, train=True, seed=3, epoch=epoch, num_workers=0)
                       for i in idx.tolist()] for data in (original, copy)]
            assert [Path(p).relative_to(folder_tree) for p in orders[0]] == [
                Path(p).relative_to(dst) for p in orders[1]]
    assert len(load_datasets(specs[1]).train) == 3 * 2  # the subset: 2 classes × 3 images


def test_images_are_scaled_down_never_up_and_keep_name_format_and_orientation(folder_tree: Path,
                                                                              tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° to view"; the loaders ignore it
    rotated = folder_tree / "train" / "cat" / "0.jpg"
    Image.open(rotated).save(rotated, exif=exif, quality=90)
    dst = tmp_path / "dst"
    assert _prepare(folder_tree, dst) == 0
    for path in sorted((folder_tree / "train").rglob("*.*")):
        relative = path.relative_to(folder_tree).as_posix()
        if relative == BROKEN:
            continue
        with Image.open(path) as before, Image.open(dst / relative) as after:
            if min(before.size) <= PX:
                assert (dst / relative).read_bytes() == path.read_bytes(), relative
            else:
                assert min(after.size) == PX and after.format == before.format, relative
                assert after.size[0] / after.size[1] == pytest.approx(before.size[0] / before.size[1], rel=0.02)
    assert Image.open(dst / PORTRAIT_PNG).size == (PX, round(160 * PX / 100))
    with Image.open(dst / "train" / "cat" / "0.jpg") as after:
        assert after.size == (round(120 * PX / 90), PX) and after.getexif()[0x0112] == 6  # pixels not turned
    assert (dst / SMALL).stat().st_mode & 0o444 == 0o444  # readable as a cp copy, not private


def test_unreadable_file_is_copied_as_it_is_and_listed_in_the_manifest(folder_tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    assert _prepare(folder_tree, dst, "--quality", "80") == 0
    assert (dst / BROKEN).read_bytes() == (folder_tree / BROKEN).read_bytes()
    manifest = json.loads((dst / MANIFEST).read_text())
    assert [entry["path"] for entry in manifest["unreadable"]] == [BROKEN]
    assert manifest["unreadable"][0]["reason"]
    assert {key: manifest[key] for key in ("version", "source", "kind", "short_side", "quality", "max_image_size")} == {
        "version": 1, "source": str(folder_tree), "kind": "imagefolder", "short_side": PX, "quality": 80,
        "max_image_size": 56}
    # train: 16 images, the small one kept, the broken one unreadable; val: 8 photos of 150+ px
    assert manifest["splits"] == {"train": {"images": 16, "resized": 14, "kept": 1, "unreadable": 1},
                                  "val": {"images": 8, "resized": 8, "kept": 0, "unreadable": 0}}


def test_default_short_side_is_what_validation_resizes_to_at_the_image_size(folder_tree: Path, tmp_path: Path,
                                                                            photos) -> None:
    assert (val_short_side(160), val_short_side(224)) == (183, 256)
    _photo(photos, folder_tree / "train" / "cat" / "4.jpg", index=0, size=(320, 240))  # the one above 183 px
    assert command.main([str(folder_tree), str(tmp_path / "dst"), "--image-size", "160", "--workers", "1"]) == 0
    manifest = json.loads((tmp_path / "dst" / MANIFEST).read_text())
    assert (manifest["short_side"], manifest["max_image_size"]) == (183, 160)
    assert manifest["splits"]["train"]["resized"] == 1
    assert Image.open(tmp_path / "dst" / "train" / "cat" / "4.jpg").size == (244, 183)  # 320 · 183/240


def test_kaggle_tree_copy_keeps_the_flat_val_labels_and_tables(tmp_path: Path, photos) -> None:
    src = write_kaggle_tree(tmp_path / "src", size=8)
    for index, path in enumerate(sorted(src.rglob("*.JPEG"))):
        _photo(photos, path, index=index, size=(150, 100 + 10 * (index % 3)))
    dst = tmp_path / "dst"
    assert _prepare(src, dst) == 0
    original, copy = (load_datasets(DataSpec(kind="imagenet", root=str(root))) for root in (src, dst))
    assert copy.class_names == original.class_names == ("class 0", "class 1", "class 2")
    assert _relative(copy.val, dst) == _relative(original.val, src)
    assert _relative(copy.train, dst) == _relative(original.train, src)
    for table in ("LOC_val_solution.csv", "LOC_synset_mapping.txt"):
        assert (dst / table).read_bytes() == (src / table).read_bytes()
    assert json.loads((dst / MANIFEST).read_text())["kind"] == "imagenet"


def test_a_skip_epoch_on_the_copy_opens_only_the_samples_it_trains_on(folder_tree: Path, tmp_path: Path,
                                                                       monkeypatch) -> None:
    (folder_tree / BROKEN).unlink()  # its replacement would be read twice; tests/test_data.py checks that rule
    dst = tmp_path / "dst"
    assert _prepare(folder_tree, dst) == 0
    opened: list[str] = []  # every image file the datasets' reader opens, in order
    reader = sources.reader
    monkeypatch.setattr(sources, "reader", lambda decoder: lambda path: opened.append(path) or reader(decoder)(path))
    plans = []  # the indices each loader was asked for: the val loader's, then each epoch's
    real = engine.make_loader
    monkeypatch.setattr(engine, "make_loader", lambda data, **kw: plans.append(kw.get("indices")) or real(data, **kw))
    spec = RunSpec(data=DataSpec(kind="imagefolder", root=str(dst), image_size=16, num_workers=0),
                   model="small_resnet", batch_size=4, epochs=3, warmup_epochs=1, checkpoint_every=3,
                   sparsity=SparsitySpec(mode="skip", target_activation=0.5),
                   optim=OptimSpec(schedule="cosine", lr=0.05))
    ends = []  # len(opened) at each epoch's end
    engine.fit(spec, report=lambda record, checkpoint_dir: ends.append(len(opened)))
    train = [path for path, _ in load_datasets(spec.data).train.samples]
    epochs = [[path for path in opened[start:end] if path in train]
              for start, end in zip([0, *ends], ends, strict=False)]
    assert all(path.startswith(str(dst)) for path in opened)
    assert sorted(epochs[0]) == sorted(train) and plans[1] is None  # the warm-up epoch is dense
    for reads, plan in zip(epochs[1:], plans[2:], strict=True):
        wanted = sorted(train[i] for i in plan.tolist())
        assert sorted(reads) == wanted and 0 < len(wanted) < len(train)


def test_killed_prepare_run_again_equals_an_uninterrupted_one(folder_tree: Path, tmp_path: Path, photos) -> None:
    """The kill comes once several files are done, while one worker waits on a FIFO the test holds shut."""
    blocker = folder_tree / "train" / "cat" / "9.jpg"
    os.mkfifo(blocker)
    dst = tmp_path / "dst"
    args = [sys.executable, "-m", "ast_tune.prepare", str(folder_tree), str(dst), "--short-side", str(PX),
            "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    journal = dst / ".prepare" / "done.jsonl"
    try:
        deadline = time.monotonic() + 300
        while not (journal.is_file() and len(journal.read_text().splitlines()) >= 6):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "prepare finished no file"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert not (dst / MANIFEST).exists()
    (dst / "train" / "dog" / ".0.jpg.abc123.tmp").write_bytes(b"half a file")  # what a kill mid-write leaves
    with journal.open("a") as torn:
        torn.write('{"path": "train/dog/1.jp')
    blocker.unlink()
    _photo(photos, blocker, index=1, size=(200, 120))
    assert command.main(args[3:]) == 0  # the same command, run again
    reference = tmp_path / "reference"
    assert _prepare(folder_tree, reference) == 0
    assert _files(dst) == _files(reference)


def test_interrupted_prepare_exits_130_and_the_same_command_finishes_it(folder_tree: Path, tmp_path: Path,
                                                                        monkeypatch, capsys) -> None:
    real, calls = prepare_module.shrink_file, []

    def interrupted_at_the_fifth(source: Path, target: Path, **kwargs):
        calls.append(source)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(source, target, **kwargs)

    monkeypatch.setattr(prepare_module, "shrink_file", interrupted_at_the_fifth)
    dst = tmp_path / "dst"
    assert _prepare(folder_tree, dst) == 130
    assert "run the same command to continue" in capsys.readouterr().err
    assert not (dst / MANIFEST).exists() and len(list(dst.rglob("*.jpg"))) == 4
    assert _prepare(folder_tree, dst) == 0
    assert len(calls) == 5 + 24 - 4  # the rerun did only what was left
    reference = tmp_path / "reference"
    assert _prepare(folder_tree, reference) == 0
    assert _files(dst) == _files(reference)


def test_rerun_is_already_prepared_and_other_settings_are_refused(folder_tree: Path, tmp_path: Path,
                                                                  capsys) -> None:
    dst = tmp_path / "dst"
    assert _prepare(folder_tree, dst) == 0
    before = _files(dst)
    capsys.readouterr()
    assert _prepare(folder_tree, dst) == 0
    assert "already prepared" in capsys.readouterr().out
    assert _prepare(folder_tree, dst, "--quality", "70") == 2
    assert capsys.readouterr().err.strip() == (
        "error: DST: holds a copy made with other settings (quality 90 there, 70 asked); "
        "choose another DST or the same settings")
    assert _files(dst) == before


@pytest.mark.parametrize(("flags", "key"), [
    (["--short-side", "4"], "--short-side"),
    (["--quality", "0"], "--quality"),
    (["--quality", "96"], "--quality"),
    (["--workers", "0"], "--workers"),
    (["--image-size", "224", "--short-side", "200"], "--short-side"),
    (["--image-size", "4"], "--image-size"),
    (["--quality", "high"], "argument --quality"),
])
def test_bad_flags_exit_2_naming_the_flag_and_write_nothing(folder_tree: Path, tmp_path: Path, capsys,
                                                            flags: list[str], key: str) -> None:
    assert command.main([str(folder_tree), str(tmp_path / "dst"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {key}") and err.count("\n") == 1
    assert not (tmp_path / "dst").exists()


@pytest.mark.parametrize(("src", "dst", "key"), [
    ("missing", "dst", "SRC: no such directory"),
    ("src/train", "dst", "SRC: "),  # a folder, but neither layout
    ("src", "src", "DST: must lie outside SRC"),
    ("src", "src/val/copy", "DST: must lie outside SRC"),
    ("src", "full", "DST: "),  # not empty, not a copy
])
def test_bad_paths_exit_2_naming_src_or_dst_and_write_nothing(folder_tree: Path, tmp_path: Path, capsys,
                                                              src: str, dst: str, key: str) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    before = _files(tmp_path)
    assert command.main([str(tmp_path / src), str(tmp_path / dst), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {key}") and err.count("\n") == 1
    assert _files(tmp_path) == before and not (tmp_path / "dst").exists()


def test_a_tree_the_loaders_refuse_is_refused_naming_src(folder_tree: Path, tmp_path: Path, capsys) -> None:
    (folder_tree / "val" / "owl").mkdir()
    (folder_tree / "val" / "owl" / "0.jpg").write_bytes((folder_tree / SMALL).read_bytes())
    assert _prepare(folder_tree, tmp_path / "dst") == 2
    assert capsys.readouterr().err.strip() == "error: SRC: val class owl is not among the train classes"
    assert not (tmp_path / "dst").exists()


def test_the_copy_is_the_same_with_one_worker_or_several(folder_tree: Path, tmp_path: Path) -> None:
    assert _prepare(folder_tree, tmp_path / "one") == 0
    assert command.main([str(folder_tree), str(tmp_path / "two"), "--short-side", str(PX), "--workers", "2"]) == 0
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


def test_run_json_records_the_copys_manifest_and_a_larger_image_size_is_warned_about(tmp_path: Path) -> None:
    manifest = {"version": 1, "source": "/data/src", "kind": "imagefolder", "short_side": 183, "quality": 90,
                "max_image_size": 160, "splits": {"train": {"images": 3}},
                "unreadable": [{"path": "train/a/1.jpg", "reason": "truncated"}]}
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    data = DataSpec(kind="imagefolder", root=str(tmp_path), image_size=160)
    record = copy_record(data)
    assert record == {"root": str(tmp_path), **{k: v for k, v in manifest.items() if k != "unreadable"},
                      "unreadable_files": 1}
    assert size_warning(data, record) is None
    larger = DataSpec(kind="imagefolder", root=str(tmp_path), image_size=224)
    assert size_warning(larger, record) == (
        f"warning: data.image_size 224 px exceeds the 160 px the copy at {tmp_path} serves (prepared at short "
        "side 183 px): validation upsamples its images; prepare a copy with python -m ast_tune.prepare SRC DST "
        "--image-size 224")
    assert copy_record(DataSpec(kind="imagefolder", root=str(tmp_path / "original"))) is None
    (tmp_path / MANIFEST).write_text("[1, 2]")
    with pytest.raises(SpecError, match=r"^data.root: .*manifest.json: the prepared copy's manifest must be a JSON"):
        copy_record(data)
