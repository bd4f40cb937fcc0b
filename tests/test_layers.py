"""Imports flow one way (shared/DESIGN.md §1): each module imports only modules of a lower layer.

The engine and everything below it run without Ray; the Pareto code runs without torch.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ast_tune"

LAYERS = [
    {"columns", "atomic", "spec", "ray_cleanup"},
    {"run_spec", "pareto", "cli"},
    {"presets", "lr_schedule", "sweep_space"},
    {"sparsity", "metrics", "checkpoint", "models", "data", "sweep_spec", "schedulers", "export"},
    {"ray_runtime"},
    {"run_state", "plots", "sweep_results", "loaders"},
    {"engine", "sweep_plots"},
    {"report"},
    {"train", "bench", "worker"},
    {"baseline", "sweep_journal", "promote_plan"},
    {"promote", "tuner"},
    {"sweep"},
]
RAY_FREE = {"spec", "run_spec", "sweep_space", "presets", "lr_schedule", "sparsity", "metrics", "checkpoint",
            "models", "data", "loaders", "run_state", "ray_cleanup", "promote_plan",
            "engine", "pareto", "export", "columns", "atomic", "train", "bench", "cli"}
TORCH_FREE = {"pareto", "export", "columns", "atomic", "spec", "run_spec", "sweep_space", "cli"}


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "ast_tune":
                names.update(f"ast_tune.{alias.name}" for alias in node.names)
    return names


def layer_of(module: str) -> int:
    for index, layer in enumerate(LAYERS):
        if module in layer:
            return index
    raise AssertionError(f"ast_tune/{module}.py is in no layer of tests/test_layers.py: place it")


def top_level_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.glob("*.py") if p.name != "__init__.py")


def test_every_module_imports_only_lower_layers():
    for path in top_level_modules():
        own = layer_of(path.stem)
        for name in imports_of(path):
            if name.startswith("ast_tune.") and not name.startswith("ast_tune.cluster"):
                target = name.split(".")[1]
                assert layer_of(target) < own, f"{path.stem} (layer {own}) imports {target}"


def test_engine_and_below_do_not_import_ray():
    for path in top_level_modules():
        if path.stem in RAY_FREE:
            ray = {n for n in imports_of(path) if n == "ray" or n.startswith("ray.")}
            assert not ray, f"{path.stem} imports {ray}"


def test_pareto_and_tables_do_not_import_torch():
    for path in top_level_modules():
        if path.stem in TORCH_FREE:
            torch = {n for n in imports_of(path) if n.split(".")[0] in ("torch", "torchvision")}
            assert not torch, f"{path.stem} imports {torch}"
