"""benchmarks/gpu_check.py at its CPU smoke scale (the report's structure, figures from the run).

The smoke trains every configuration for real (small_resnet, 16 px, fp32 on the CPU); what is checked
is that the JSON and the Markdown hold the issue's list and that each figure follows from the run's
own measurements, not any speed.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCHMARKS))  # gpu_check imports its sibling loader_bench
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and spawned ranks look their module up by name
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


gpu_check = _load("gpu_check")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("gpu_check")
    assert gpu_check.main(["--smoke", "--repeats", "1", "--out", str(out)]) == 0
    return json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text()


def _positive(value: float) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_every_configuration_of_the_issue_is_measured(smoke) -> None:
    report, _ = smoke
    names = [row["name"] for row in report["configs"]]
    expected = [c.name for c in gpu_check.configurations(("pil", "torchvision"), gpu_check.SMOKE.precision)]
    assert names == expected and len(names) == 16
    assert names[0] == "synthetic fp32 dense"  # the unoptimised baseline: fp32, no channels_last
    assert {(r["data"], r["mode"], r["rate"]) for r in report["configs"] if r["mode"] != "dense"} == {
        (d, m, r) for d in ("synthetic", "pil", "torchvision") for m in ("inline", "skip") for r in (0.4, 0.2)}


def test_figures_are_measured_numbers_that_agree_with_each_other(smoke) -> None:
    report, _ = smoke
    rows = report["configs"]
    images = report["scale"]["images"]
    for row in rows:
        assert _positive(row["seconds"]) and _positive(row["peak_mib"])
        assert row["images_per_second"] == pytest.approx(images / row["seconds"])
        assert row["speedup_vs_unoptimised"] == pytest.approx(rows[0]["seconds"] / row["seconds"])
        assert row["joules"] is None and row["joules_vs_dense"] is None  # no NVML on a CPU: unmeasured
        assert not row["channels_last"]  # CUDA only
        if row["data"] == "synthetic":
            assert row["data_seconds"] is None and row["compute_seconds"] is None
        else:
            twin = next(r for r in rows[1:] if (r["data"], r["mode"], r["rate"])
                        == ("synthetic", row["mode"], row["rate"]))
            assert _positive(row["data_seconds"]) and row["compute_seconds"] == twin["seconds"]


def test_activation_is_pinned_to_the_target(smoke) -> None:
    """inline trains ceil(r·8) of each batch of 8; skip loads the rows it plans (at least one sample)."""
    report, _ = smoke
    for row in report["configs"]:
        if row["mode"] == "inline":
            assert row["activation"] == math.ceil(row["rate"] * 8) / 8
        elif row["mode"] == "skip":
            assert 0 < row["activation"] < 1
        else:
            assert row["activation"] == 1.0


def test_stacked_speedup_is_the_product_of_its_measured_factors(smoke) -> None:
    report, _ = smoke
    by_name = {row["name"]: row["seconds"] for row in report["configs"]}
    for chain in report["stacked"]:
        steps = chain["steps"]
        assert [s["step"] for s in steps][:3] == ["synthetic fp32 dense (unoptimised baseline)",
                                                  "+ fp32 + channels_last", f"+ {chain['mode']} r=0.2"]
        assert steps[1]["factor"] == pytest.approx(by_name["synthetic fp32 dense"]
                                                   / by_name["synthetic fp32+channels_last dense"])
        assert steps[2]["cumulative"] == pytest.approx(steps[1]["factor"] * steps[2]["factor"])
        for real in steps[3:]:  # alternatives to the synthetic data, each after the mode's step
            assert real["cumulative"] == pytest.approx(steps[2]["cumulative"] * real["factor"])


def test_markdown_shows_the_json_figures(smoke) -> None:
    report, text = smoke
    assert text.startswith("# GPU check on CPU (smoke: not a GPU figure)")
    for row in report["configs"]:
        line = next(line for line in text.splitlines() if line.startswith(f"| {row['name']} |"))
        assert f"| {row['seconds']:.3f} | {row['images_per_second']:.1f} |" in line
        assert "| n/a | n/a |" in line  # joules and joules vs dense: unmeasured on a CPU
    assert "## Stacked speedup, skip r=0.2" in text and "not run: no GPU" in text


def test_collective_check_sums_over_two_ranks() -> None:
    """The NCCL check's code, over gloo on the CPU: 1 + 2 on every element."""
    check = gpu_check.collective_check("gloo")
    assert check["ran"] and check["sum_correct"] and check["ranks"] == 2 and _positive(check["seconds"])


def test_nccl_check_says_why_it_did_not_run_without_two_gpus() -> None:
    import torch

    if torch.cuda.device_count() >= 2:
        pytest.skip("2 GPUs present: the check runs")
    check = gpu_check.collective_check("nccl")
    assert not check["ran"] and "needs 2" in check["reason"]


def test_full_scale_photos_are_jpegs_of_its_photo_size(tmp_path: Path) -> None:
    photos = sys.modules["photos"]  # imported by gpu_check
    photos.write_photo(tmp_path / "one.jpg", 0, gpu_check.FULL.photo)
    from PIL import Image

    with Image.open(tmp_path / "one.jpg") as image:
        assert image.size == gpu_check.FULL.photo == (500, 375) and image.format == "JPEG"
