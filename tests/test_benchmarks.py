"""The benchmark scripts' arithmetic and arguments, on hand-made files (no sweep is run)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from ast_tune.config.sweep_spec import load_sweep, to_document

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
QUICKSTART = BENCHMARKS.parent / "search_spaces" / "quickstart.yaml"


def _load(name: str):
    sys.path.insert(0, str(BENCHMARKS))  # the scripts import their sibling machine.py
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up by name
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


machine = _load("machine")
search_quality = _load("search_quality")
trial_overhead = _load("trial_overhead")
inline_profile = _load("inline_profile")
estimate_accuracy = _load("estimate_accuracy")
photos = _load("photos")
loader_tables = _load("loader_tables")
loader_bench = _load("loader_bench")
rung_model = _load("rung_model")
fixed_costs = _load("fixed_costs")

#: a header line: `command` · YYYY-MM-DD HH:MM UTC · N cores, CPU, idle|loaded (load average X)
HEADER = re.compile(r"^`(?P<command>[^`]+)` · \d{4}-\d\d-\d\d \d\d:\d\d UTC · (?P<cores>\d+) cores, "
                    r"(?P<cpu>.+), (?P<state>idle|loaded) \(load average \d+\.\d\d\)$")


def _snapshot(load: float, cores: int = 2) -> object:
    return machine.Snapshot(when=datetime(2026, 12, 3, 13, 5, 59, tzinfo=UTC), cores=cores, cpu="AMD EPYC",
                            load=load)


def test_cpu_model_is_the_model_name_line_of_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7763 64-Core Processor\n"
                       "processor\t: 1\nmodel name\t: AMD EPYC 7763 64-Core Processor\n")
    assert machine.cpu_model(cpuinfo) == "AMD EPYC 7763 64-Core Processor"
    assert machine.cpu_model(tmp_path / "absent") != ""  # falls back to what platform knows


def test_load_under_a_quarter_core_per_core_is_idle() -> None:
    assert _snapshot(0.49).idle and not _snapshot(0.5).idle  # 2 cores: idle below 0.5
    assert _snapshot(1.9, cores=8).idle and not _snapshot(2.0, cores=8).idle


def test_header_names_command_utc_minute_cores_cpu_and_load() -> None:
    assert _snapshot(3.456).header("python benchmarks/x.py --n 2") == (
        "`python benchmarks/x.py --n 2` · 2026-12-03 13:05 UTC · 2 cores, AMD EPYC, loaded (load average 3.46)")
    assert _snapshot(0.1).as_dict("c") == {"command": "c", "date": "2026-12-03 13:05 UTC", "cores": 2,
                                           "cpu": "AMD EPYC", "load_average": 0.1, "idle": True}


def test_command_line_quotes_the_arguments_it_was_given() -> None:
    assert machine.command_line("benchmarks/x.py", ["--set", "a=b c"]) == "python benchmarks/x.py --set 'a=b c'"
    assert machine.command_line("benchmarks/x.py", []) == "python benchmarks/x.py"


def test_a_snapshot_of_this_machine_makes_a_well_formed_header() -> None:
    match = HEADER.match(machine.Snapshot.take().header("python benchmarks/x.py"))
    assert match and int(match["cores"]) >= 1 and match["command"] == "python benchmarks/x.py"


def test_sweep_command_sets_sampler_scheduler_seed_and_trials(tmp_path: Path) -> None:
    command = search_quality.sweep_command(Path("q.yaml"), "nsga2+moasha", 2, trials=7, root=tmp_path)
    assert command[1:6] == ["-m", "ast_tune.sweep", "q.yaml", "--name", "sq_nsga2-moasha_s2"]
    sets = [command[i + 1] for i, arg in enumerate(command) if arg == "--set"]
    assert sets == ["search.sampler=nsga2", "scheduler.kind=moasha", "search.seed=2", "search.num_trials=7",
                    f"storage.root={tmp_path}"]


@pytest.mark.parametrize("pair", list(search_quality.PAIRS))
def test_every_pair_is_a_valid_quickstart_sweep(pair: str, tmp_path: Path) -> None:
    command = search_quality.sweep_command(QUICKSTART, pair, 0, trials=4, root=tmp_path)
    sets = [command[i + 1] for i, arg in enumerate(command) if arg == "--set"]
    spec = load_sweep(QUICKSTART, sets)
    assert spec.scheduler.kind == search_quality.PAIRS[pair]["scheduler.kind"]
    assert len(spec.rung_objectives) == (2 if pair.endswith("-untimed") else 3)


def test_zero_trials_is_rejected_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "q.yaml"
    spec.write_text("name: q\n")
    with pytest.raises(SystemExit) as exit_info:
        search_quality.parse_args(["--spec", str(spec), "--trials", "0"])
    assert exit_info.value.code == 2
    assert "--trials" in capsys.readouterr().err


def test_score_counts_finished_trials_only_against_the_fixed_reference(tmp_path: Path) -> None:
    objectives = [{"metric": "val_top1", "mode": "max"}, {"metric": "energy_savings", "mode": "max"},
                  {"metric": "speedup", "mode": "max"}]
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({"objectives": objectives}))
    pd.DataFrame({"trial_id": ["a", "b", "c"], "status": ["TERMINATED", "STOPPED", "ERROR"],
                  "val_top1": [60.0, 90.0, 100.0], "energy_savings": [0.5, 0.1, 1.0],
                  "speedup": [1.5, 0.6, 10.0]}).to_parquet(tmp_path / "trials.parquet")
    pd.DataFrame({"trial_id": ["a", "a", "b", "c"], "epoch": [1, 2, 1, 0]}).to_parquet(tmp_path / "epochs.parquet")
    (tmp_path / "bench.json").write_text(json.dumps({"wall_seconds": 12.5}))
    result = search_quality.score(tmp_path, (50.0, 0.0, 0.5))
    # a: 10 × 0.5 × 1.0 = 5; b: 40 × 0.1 × 0.1 = 0.4; overlap 10 × 0.1 × 0.1 = 0.1; c errored
    assert result["hv"] == pytest.approx(5.3)
    assert result["hv_full"] == pytest.approx(5.0)
    # without speedup: a 10 × 0.5 = 5, b 40 × 0.1 = 4, overlap 10 × 0.1 = 1
    assert result["hv_untimed"] == pytest.approx(8.0)
    assert (result["epochs"], result["trials"], result["wall_s"]) == (3, 3, 12.5)


def test_startup_is_first_report_minus_the_first_epochs_own_time() -> None:
    rows = [{"time_total_s": 30.0, "time_this_iter_s": 30.0, "train_seconds": 2.0},
            {"time_total_s": 33.0, "time_this_iter_s": 3.0, "train_seconds": 2.5},
            {"time_total_s": 36.0, "time_this_iter_s": 3.0, "train_seconds": 2.0}]
    timing = trial_overhead.trial_timing("t", 100.0, 136.0, rows)
    # eval + report = median(0.5, 1.0) = 0.75 s, so epoch 1 took 2.75 s of the first 30 s
    assert timing.startup_s == pytest.approx(27.25)
    assert timing.epoch_wall_s == pytest.approx(8.75)


def test_handover_pairs_each_later_start_with_the_earliest_free_slot() -> None:
    def timing(start: float, end: float):
        return trial_overhead.TrialTiming("t", start, end, 0.0, 1, 1.0)

    timings = [timing(0, 50), timing(1, 40), timing(45, 90), timing(52, 95)]
    assert trial_overhead.handovers(timings, concurrency=2) == [5, 2]
    # 2 slots × 95 s span − 4 s of epochs, over 4 trials
    assert trial_overhead.idle_per_trial(timings, concurrency=2) == pytest.approx(46.5)


def test_inline_profile_times_every_part_and_keeps_at_most_the_batch() -> None:
    ms = inline_profile.profile(0.4, batch=16, batches=2, repeats=1)
    assert set(inline_profile.PARTS) <= set(ms)
    assert all(ms[part] > 0 for part in inline_profile.PARTS)
    assert 2 <= ms["kept"] <= 16  # the top-k floor keeps at least 2; never more than the batch


def test_table_gives_each_pairs_median_hypervolumes_over_random_searchs() -> None:
    def run(hv: float, untimed: float) -> dict[str, float]:
        return {"hv": hv, "hv_untimed": untimed, "hv_full": hv, "epochs": 100, "trials": 10, "best_top1": 99.0,
                "wall_s": 60.0}

    scores = {"random+fifo": [run(2.0, 10.0), run(4.0, 30.0)], "tpe+moasha": [run(6.0, 15.0)]}
    rows = search_quality.table(scores, reference=(50.0, 0.0, 0.5)).splitlines()
    random_row, tpe_row = rows[-2].split(" | "), rows[-1].split(" | ")
    assert random_row[5] == "1.00" and random_row[8] == "1.00"
    assert tpe_row[4:9] == ["6.0", "2.00", "6.0", "15.0", "0.75"]  # 6 / median(2, 4); 15 / median(10, 30)


def _trial_rows(*epochs: tuple[float, float, float]) -> str:
    """result.json lines for (time_total_s, time_this_iter_s, train_seconds) per epoch."""
    return "".join(json.dumps({"epoch": i + 1, "time_total_s": total, "time_this_iter_s": this,
                               "train_seconds": train}) + "\n" for i, (total, this, train) in enumerate(epochs))


def test_trial_overhead_prints_its_header_then_one_row_per_sweep(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "ov"
    (results / "tune" / "trial_0").mkdir(parents=True)  # a trial's Tune directory is named by its study number
    (results / "tune" / "trial_1").mkdir()
    (results / "run.json").write_text(json.dumps({"start": "2026-12-03T12:57:46+00:00", "trials_at_once": 1,
                                                  "hardware": {"cpus": 2.0, "device": "cpu: AMD EPYC"}}))
    trials = [[json.dumps({"trial_id": "a", "relative_logdir": "trial_0"}),
               json.dumps({"start_time": 100.0, "last_result_time": 110.0})],
              [json.dumps({"trial_id": "b", "relative_logdir": "trial_1"}),
               json.dumps({"start_time": 112.0, "last_result_time": 120.0})]]
    (results / "tune" / "experiment_state-1.json").write_text(json.dumps({"trial_data": trials}))
    (results / "tune" / "trial_0" / "result.json").write_text(_trial_rows((5.0, 5.0, 2.0), (8.0, 3.0, 2.0)))
    (results / "tune" / "trial_1" / "result.json").write_text(_trial_rows((4.0, 4.0, 2.0), (7.0, 3.0, 2.0)))
    assert trial_overhead.main([str(results)]) == 0
    header, blank, *table = capsys.readouterr().out.splitlines()
    assert HEADER.match(header)["command"] == f"python benchmarks/trial_overhead.py {results}"
    assert blank == "" and table[:2] == trial_overhead.HEADER.splitlines()
    # a: epoch 1 is 2 s train + 1 s eval, so startup 5 - 3 = 2 s; b: 4 - 3 = 1 s; handover 112 - 110 = 2 s
    assert table[2] == ("| ov | 2026-12-03 12:57 | cpu: AMD EPYC, 2 CPUs | 2 | 1.5 (1.0–2.0) | 2.0 (2.0–2.0) "
                        "| 3.5 | 4.0 | 3.00 |")


def test_inline_profile_tables_give_each_parts_share_and_the_pooled_speedup() -> None:
    ms = {"dense fwd+bwd": 9.0, "dense opt": 1.0, "score fwd": 3.0, "choose": 0.5, "subset fwd+bwd": 4.5,
          "subset opt": 1.0, "kept": 16}
    lines = inline_profile.markdown({0.25: ms}, batch=64).splitlines()
    assert lines[0] == "| part | r=0.25: ms | share of a dense step |"
    assert "| score fwd | 3.00 | 0.30 |" in lines
    # inline: 10 / (3 + 0.5 + 4.5 + 1) = 1.11; per sample (4.5 / 16) / (9 / 64) = 2.0;
    # pooled: 10 / (3 + 0.5 + 16/64 × 10) = 1.67; ideal 3 / (1 + 3/4) = 1.71
    assert lines[-1] == "| 0.25 | 16 | 1.11× | 2.00× | 1.67× | 1.71× |"


def test_estimate_accuracy_table_has_a_row_per_run_and_the_mean() -> None:
    estimate = {"trial_epochs": 90.0, "wall_seconds": 60.0}
    runs = [{"estimate": estimate, "actual": {"trial_epochs": 100, "wall_seconds": 80}},
            {"estimate": estimate, "actual": {"trial_epochs": 80, "wall_seconds": 40}}]
    lines = estimate_accuracy.table(runs).splitlines()
    assert lines[2] == "| 0 | 90.0 | 100 | -10 % | 60 | 80 | -25 % |"
    assert lines[-1] == "| mean | 90.0 | 90 | +0 % | 60 | 60 | +0 % |"


def test_loader_bench_prints_header_setup_loader_table_summary_and_prepare_table(
        capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--images", "8", "--repeats", "1", "--image-sizes", "16", "--workers", "0,1", "--batch", "4"]
    assert loader_bench.main(argv) == 0
    header, setup, table, summary, stage_table, prepare_table = capsys.readouterr().out.split("\n\n")
    assert HEADER.match(header)["command"] == "python benchmarks/loader_bench.py " + " ".join(argv)
    assert setup.startswith("8 train JPEGs: crops of scikit-learn's 2 sample photos")
    assert "Prepared copies, short side: 18 px for 16 (mean " in setup  # val resizes to round(16 / 0.875)
    head, rule, *rows = table.splitlines()
    assert head.strip("| ").split(" | ") == [
        "image size", "decoder", "tree", "images per CPU-second, N=0", "÷ pil on the originals", "images/s, N=0",
        "images per CPU-second, N=1", "images/s, N=1"]
    assert rule == "|---|---|---|---|---|---|---|---|"
    cells = [row.strip("| ").split(" | ") for row in rows]
    expected = [("pil (auto)", "original"), ("pil", "prepared for 16"), ("torchvision", "original"),
                ("torchvision (auto)", "prepared for 16"), ("pil draft", "original"), ("pil draft", "prepared for 16")]
    expected += [("torchvision, nvJPEG", tree) for tree in ("original", "prepared for 16") if torch.cuda.is_available()]
    assert [(c[0], c[1], c[2]) for c in cells] == [("16 px", *row) for row in expected]
    assert cells[0][4] == "1.00× (1.00–1.00)" and all(len(c) == 8 for c in cells)
    assert summary.startswith("Prepared ÷ original, each read by the default decoder (auto; pil on the originals)")
    assert " at 16 px with torchvision (min–max " in summary and "a CPU run): " in summary
    stage_rows = [row.split(" | ")[:3] for row in stage_table.splitlines()[2:]]
    assert stage_rows == [["| 16 px", "original", "pil"], ["| 16 px", "prepared for 16", "torchvision"]]
    assert prepare_table.splitlines()[2].startswith("| short side 18 px | ")
    assert prepare_table.splitlines()[2].endswith(" | 1 |")


DEFAULTS = {"original": "pil", "prepared for 160": "torchvision"}  # the decoder auto reads each tree with


def test_default_decoders_are_pil_on_the_originals_and_torchvision_on_a_prepared_copy(tmp_path: Path) -> None:
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "manifest.json").write_text("{}")
    assert loader_bench.default_decoders({"original": tmp_path, "prepared for 160": tmp_path / "copy"}) == DEFAULTS


def test_loader_rows_divide_by_the_default_decoder_on_the_originals_within_each_repeat() -> None:
    passes = {(160, "pil", "original", 0): [(2.0, 4.0, 1.0), (1.0, 2.0, 1.0)],  # (wall, CPU, conversion) s per repeat
              (160, "torchvision", "prepared for 160", 0): [(1.0, 1.0, 1.0), (1.0, 1.0, 1.0)],
              (160, "pil", "original", 2): [(1.0, 8.0, 1.0), (1.0, 8.0, 1.0)],
              (160, "torchvision", "prepared for 160", 2): [(0.5, 4.0, 1.0), (0.5, 4.0, 1.0)]}
    original, prepared = loader_bench.loader_rows(passes, 8, [0, 2], DEFAULTS)
    assert original["workers"][0]["images_per_cpu_second"] == {"median": 3.0, "min": 2.0, "max": 4.0}  # 8/4, 8/2
    assert original["vs_original"] == {"median": 1.0, "min": 1.0, "max": 1.0} and original["default"]
    # repeat by repeat 4 / 1 and 2 / 1; the ratio of the medians would be 8 / 3
    assert prepared["vs_original"] == {"median": 3.0, "min": 2.0, "max": 4.0} and prepared["default"]
    # with the conversion counted: (4 + 1) / (1 + 1) and (2 + 1) / (1 + 1)
    assert prepared["vs_original_converting"] == {"median": 2.0, "min": 1.5, "max": 2.5}
    assert prepared["workers"][2]["images_per_second"]["median"] == 16.0


def test_stage_rows_take_the_rest_and_the_conversion_from_the_same_repeats_loader_pass() -> None:
    stages = {(160, "prepared for 160"): [[0.001, 0.002, 0.001], [0.002, 0.002, 0.002]]}  # seconds for 2 images
    passes = {(160, "torchvision", "prepared for 160", 0): [(9.0, 0.006, 0.001), (9.0, 0.008, 0.002)]}
    (row,) = loader_bench.stage_rows(stages, passes, 2, 0, DEFAULTS)
    # µs per image: stages 500 + 1000 + 500 and 1000 × 3; passes 3000 and 4000, so the rest is 1000 in both
    assert row["decoder"] == "torchvision"
    assert row["microseconds"] == pytest.approx({"decode": 750, "crop and resize": 1000, "flip": 750,
                                                 "rest of the loader pass": 1000, "loader pass": 3500,
                                                 loader_tables.CONVERSION: 750})
    lines = loader_tables.stage_table([row]).splitlines()
    assert lines[0] == ("| image size | tree | decoder | decode | crop and resize | flip "
                        "| the rest of the loader pass, N=0 | loader pass, N=0 "
                        "| float32 + normalise per batch (on the CPU here) |")
    assert lines[2] == "| 160 px | prepared for 160 | torchvision | 750 | 1000 | 750 | 1000 | 3500 | 750 |"


def test_loader_summary_gives_prepared_over_original_for_the_default_decoder_against_the_targets() -> None:
    def row(size: int, tree: str, ratios: tuple[float, float, float], decoder: str = "torchvision",
            default: bool = True) -> dict:
        return {"image_size": size, "decoder": decoder, "tree": tree, "workers": {0: {}}, "default": default,
                "vs_original": dict(zip(("median", "min", "max"), ratios, strict=True)),
                "vs_original_converting": dict(zip(("median", "min", "max"), [r - 0.5 for r in ratios], strict=True))}

    rows = [row(160, "original", (1, 1, 1), decoder="pil"), row(160, "prepared for 160", (3.5, 3.0, 4.0)),
            row(160, "prepared for 160", (9, 9, 9), decoder="pil", default=False),
            row(224, "original", (1, 1, 1), decoder="pil"), row(224, "prepared for 224", (1.5, 1.25, 2.5))]
    assert loader_tables.summary(rows).endswith(
        "median of the repeats: 3.50× at 160 px with torchvision (min–max 3.00–4.00; target ≥ 3×: met); "
        "1.50× at 224 px with torchvision (min–max 1.25–2.50; target ≥ 2×: not met). "
        "Counting each batch's conversion on the CPU too (a CPU run): 3.00× at 160 px; 1.00× at 224 px.")


def test_drawn_photos_are_imagenet_like_crops_never_upscaled() -> None:
    drawn = [photos.drawn_photo(seed) for seed in range(200)]
    for (width, height), quality in drawn:
        assert 200 <= width <= 640 and height <= 427 and 75 <= quality <= 95
        assert width / height == pytest.approx(4 / 3, abs=0.01) or width / height == pytest.approx(1.5, abs=0.01)
    widths = [width for (width, _), _ in drawn]
    assert 0.3 < widths.count(500) / len(widths) < 0.8  # half drawn at ImageNet's commonest size, 500 px
    assert min(widths) < 300 and max(widths) > 560


def test_write_photo_crops_a_sample_photo_and_refuses_to_upscale(tmp_path: Path) -> None:
    from PIL import Image

    photos.write_photo(tmp_path / "a.jpg", 3, (300, 200), 80)
    photos.write_photo(tmp_path / "b.jpg", 5, (300, 200), 80)
    with Image.open(tmp_path / "a.jpg") as a, Image.open(tmp_path / "b.jpg") as b:
        assert a.size == b.size == (300, 200) and a.format == "JPEG"
        assert np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).mean() > 5  # other crops
    with pytest.raises(ValueError, match="upscale"):
        photos.write_photo(tmp_path / "c.jpg", 0, (700, 400))


def test_draft_crop_decodes_no_smaller_than_its_output_and_matches_the_full_decode(tmp_path: Path) -> None:
    from PIL import Image
    from torchvision import transforms

    path = tmp_path / "photo.jpg"
    photos.write_photo(path, 1, (600, 400), 95)
    size, factors = 80, set()
    for seed in range(40):
        image, boxes = Image.open(path), []
        draft = image.draft
        image.draft = lambda mode, box, draft=draft, boxes=boxes: boxes.append(draft(mode, box)[1])  # decoded box
        torch.manual_seed(seed)
        top, left, height, width = transforms.RandomResizedCrop.get_params(image, (0.08, 1.0), (3 / 4, 4 / 3))
        torch.manual_seed(seed)
        fast = loader_bench.DraftCrop(size)(image).permute(1, 2, 0).numpy().astype(float)  # uint8 [3, H, W]
        torch.manual_seed(seed)
        with Image.open(path) as full:
            exact = np.asarray(transforms.RandomResizedCrop(size)(full.convert("RGB")), dtype=float)
        assert fast.shape == exact.shape == (size, size, 3)
        assert np.abs(fast - exact).mean() < 4  # of 255: decoding at a reduced scale is a good downscale
        factor = 600 / boxes[0][2] if boxes else 1  # the JPEG was decoded this many times smaller
        assert factor in (1, 2, 4, 8) and min(height, width) / factor >= size
        factors.add(factor)
    assert {1, 2} <= factors  # crops too small to draft, and drafted ones


def test_rung_model_compares_the_model_with_the_uniform_rank_arithmetic_by_hand() -> None:
    """4 trials, rungs 1 and 2 of max_t 4 (η 2). ASHA, uniform rank: 4 reach rung 1, 1 + 1/2 + 1/2 + 1/2 = 5/2
    pass; at rung 2 1 + 1/2 + (1/2)(1/2) = 7/4 pass: 1.5·1 + 0.75·2 + 1.75·4 = 10. MOASHA keeping ceil(m/2)
    of m: 8/3 pass rung 1, 35/18 rung 2."""
    asha = rung_model.Config("t", "asha", 4, 1, 1, 2, 4, 1)
    assert rung_model.uniform_rank(asha) == pytest.approx(10)
    moasha = rung_model.Config("t", "moasha", 4, 1, 1, 2, 4, 2)
    assert rung_model.uniform_rank(moasha) == pytest.approx((4 - 8 / 3) + (8 / 3 - 35 / 18) * 2 + 35 / 18 * 4)
    one = rung_model.Config("t", "moasha", 1, 1, 1, 3, 9, 3)
    assert rung_model.simulate(one, noise=0.3, seed=0) == 9 == rung_model.model(one)  # one trial passes every rung
    runs = [rung_model.simulate(asha, noise=0.3, seed=seed) for seed in range(20)]
    assert all(4 + 3 * 1 <= run <= 16 for run in runs) and len(set(runs)) > 1  # the first runs to 4, the rest ≥ 1


def test_fixed_costs_by_hand(tmp_path: Path) -> None:
    """Start 0 s; the baseline written at 50 s after 3 epochs of 2 + 1 s: 41 s start-up. Trial 1 (the later one,
    one at a time) starts at 80 s, 1 s after trial 0 ended, and its first epoch ends at 84.5: a trial's start-up
    is 84.5 - 80 - 3 + 1 = 2.5 s. The first trial's first epoch (3 s) ends at 65 s: the start is 65 - 3 - 50 less
    that start-up, 9.5 s."""
    results = tmp_path / "fc"
    results.mkdir()
    spec = load_sweep(QUICKSTART, ["workload.epochs=3", "workload.checkpoint_every=2", "search.max_concurrent=1"])
    (results / "spec.yaml").write_text(yaml.safe_dump(to_document(spec), sort_keys=False))
    (results / "run.json").write_text(json.dumps({"start": "2026-01-01T00:00:00+00:00", "trials_at_once": 1}))
    start = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    (results / "baseline.json").write_text(json.dumps({"created": "2026-01-01T00:00:50+00:00", "epochs": [
        {"train_seconds": 2.0, "val_seconds": 1.0}] * 3}))

    def epoch(trial: str, number: int, at: float) -> dict:
        return {"event": "epoch", "trial_id": trial, "epoch": number, "time": start + at, "train_seconds": 2.0,
                "val_seconds": 1.0}

    entries = [{"event": "start", "trial_id": "0", "time": start + 51}, epoch("0", 1, 65), epoch("0", 2, 68.5),
               epoch("0", 3, 72), {"event": "end", "trial_id": "0", "time": start + 79},
               {"event": "start", "trial_id": "1", "time": start + 80}, epoch("1", 1, 84.5)]
    (results / "journal.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    found = fixed_costs.measure(results)
    assert found["baseline start-up"] == [41] and found["start"] == [9.5]
    assert found["trial start-up"] == [2.5]
    assert found["between epochs"] == []  # epochs 2 and 3 both write a checkpoint (every 2, and the last)
    assert found["checkpoint"] == pytest.approx([0.5, 0.5])  # 3.5 s apart, 3 s of epoch, no overhead measured
