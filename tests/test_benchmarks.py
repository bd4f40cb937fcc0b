"""The benchmark scripts' arithmetic and arguments, on hand-made files (no sweep is run)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ast_tune.config.sweep_spec import load_sweep

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
loader_bench = _load("loader_bench")

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


def test_loader_bench_prints_header_setup_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--images", "4", "--repeats", "1", "--image-size", "16", "--batch", "2"]
    assert loader_bench.main(argv) == 0
    header, _, setup, _, *table = capsys.readouterr().out.splitlines()
    assert HEADER.match(header)["command"] == "python benchmarks/loader_bench.py " + " ".join(argv)
    assert setup.startswith("4 JPEGs of 500×375 px") and table[0].startswith("| decoder |")
    assert len(table) == 2 + len([row for row in table[2:] if row.startswith("| ")])
