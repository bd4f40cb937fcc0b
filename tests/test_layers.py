"""Imports flow one way between the subpackages (docs/design.md, "Layers").

- ``config`` imports nothing of ast_tune but :mod:`ast_tune.atomic`;
- ``data`` imports only ``config``; ``core`` imports only ``config`` and ``data``;
- ``results`` imports only ``config``, and neither torch nor Ray;
- ``cost`` (what a sweep costs) and ``promotion`` (which trial is promoted, on what) import those
  below them, and not Ray; ``promotion`` imports no torch either;
- ``tracking`` (MLflow, W&B) imports only ``config``, and neither torch nor Ray;
- ``tuning`` (Ray and Optuna) sits above them all;
- nothing under ``config``, ``core``, ``data``, ``results``, ``cost``, ``promotion`` or ``tracking`` imports
  Ray (the engine runs without it);
- the CLIs (``ast_tune/*.py`` but ``atomic``) sit on top; no subpackage imports a CLI;
- private names of Ray and Optuna appear only in ``tuning/private_api.py`` (and the node provider), and
  nothing unpickles or restores Tune's state.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ast_tune.__main__ import COMMANDS

PACKAGE = Path(__file__).resolve().parents[1] / "ast_tune"
CLIS = {*COMMANDS, "__main__"}  # the commands, and ``python -m ast_tune`` that lists them
#: What each part of the package may import of ast_tune (``atomic`` is the base every part may use).
ALLOWED = {
    "atomic": set(),
    "config": {"atomic"},
    "data": {"atomic", "config"},
    "core": {"atomic", "config", "data"},
    "results": {"atomic", "config"},
    "cost": {"atomic", "config", "data", "core", "results"},
    "promotion": {"atomic", "config", "data", "core", "results"},
    "tracking": {"atomic", "config"},
    "tuning": {"atomic", "config", "data", "core", "results", "cost", "promotion", "tracking"},
    "cluster": set(),
    "cli": {"atomic", "config", "data", "core", "results", "cost", "promotion", "tracking", "tuning", *CLIS},
}
RAY_FREE = ("atomic", "config", "data", "core", "results", "cost", "promotion", "tracking")
TORCH_FREE = ("atomic", "config", "results", "promotion", "tracking")


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


def part_of(path: Path) -> str:
    """``config``, ``core``, … for a module in a subpackage; ``cli`` or ``atomic`` at the top."""
    relative = path.relative_to(PACKAGE)
    if len(relative.parts) > 1:
        return relative.parts[0]
    if path.stem in CLIS:
        return "cli"
    assert path.stem == "atomic", f"ast_tune/{path.name} is neither a CLI nor atomic: move it into a subpackage"
    return "atomic"


def internal_parts(path: Path) -> set[str]:
    """The parts of ast_tune that ``path`` imports (a CLI counts as itself)."""
    parts = set()
    for name in imports_of(path):
        pieces = name.split(".")
        if pieces[0] == "ast_tune" and len(pieces) > 1:
            parts.add(pieces[1])
    return parts


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


def test_every_module_imports_only_the_parts_below_it():
    for path in modules():
        part = part_of(path)
        own = {part} if part != "cli" else set()
        wrong = internal_parts(path) - ALLOWED[part] - own
        assert not wrong, f"{path.relative_to(PACKAGE)} ({part}) imports {sorted(wrong)}"


def test_the_engine_data_config_and_results_do_not_import_ray():
    for path in modules():
        if part_of(path) in RAY_FREE:
            ray = {n for n in imports_of(path) if n == "ray" or n.startswith("ray.")}
            assert not ray, f"{path.relative_to(PACKAGE)} imports {ray}"


def test_config_and_results_do_not_import_torch():
    for path in modules():
        if part_of(path) in TORCH_FREE:
            torch = {n for n in imports_of(path) if n.split(".")[0] in ("torch", "torchvision")}
            assert not torch, f"{path.relative_to(PACKAGE)} imports {torch}"


def test_the_rules_catch_a_wrong_import(tmp_path):
    """The checker itself: a results module importing torch and core is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nfrom ast_tune.core import engine\n")
    assert internal_parts(bad) - ALLOWED["results"] == {"core"}
    assert "torch" in imports_of(bad)


PRIVATE = re.compile(r"\._internal|\._ot_|_ot_study|_ot_trials|\._rungs|\._suggest|ray\._private|ray\._raylet|"
                     r"_TorchBackend|_set_torch|\._trial_id\b|\._storage\b")
UNPICKLING = re.compile(r"Tuner\.restore\(|pickle\.load|pickletools|cloudpickle|\.pkl['\"]")


def test_private_parts_of_ray_and_optuna_are_used_in_the_adapter_alone():
    """``tuning/private_api.py`` names each use; the RunPod node provider (``cluster/``) subclasses Ray's own."""
    for path in modules():
        if part_of(path) != "cluster" and path.name != "private_api.py":
            found = PRIVATE.findall(path.read_text())
            assert not found, f"{path.relative_to(PACKAGE)} uses {found}: move it to ast_tune/tuning/private_api.py"
    assert PRIVATE.search((PACKAGE / "tuning" / "private_api.py").read_text())  # the check finds what it looks for


def test_nothing_is_unpickled_and_tune_is_never_restored():
    for path in modules():
        found = UNPICKLING.findall(path.read_text())
        assert not found, f"{path.relative_to(PACKAGE)}: {found}"
