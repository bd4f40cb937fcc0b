"""The benchmark scripts' arithmetic and arguments, on hand-made files (no sweep is run)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ast_tune.config.sweep_spec import load_sweep

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
QUICKSTART = BENCHMARKS.parent / "search_spaces" / "quickstart.yaml"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


search_quality = _load("search_quality")
trial_overhead = _load("trial_overhead")
inline_profile = _load("inline_profile")


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
