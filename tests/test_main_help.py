"""``python -m ast_tune``: the list of commands, an unknown command refused, a known one run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ast_tune import __main__ as entry

PACKAGE = Path(entry.__file__).resolve().parent


def test_every_command_module_is_listed_with_its_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert entry.main([]) == 0
    out = capsys.readouterr().out
    commands = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__", "atomic"}
    assert set(entry.COMMANDS) == commands
    for command in entry.COMMANDS:
        line = next(line for line in out.splitlines() if line.split()[:1] == [command])
        assert line.split(None, 1)[1] == entry.summary(command) != ""


def test_summary_is_the_docstrings_first_line_without_its_usage(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "demo.py").write_text('"""Run a demo: ``python -m ast_tune.demo X [--y]``.\n\nMore."""\n')
    (tmp_path / "plain.py").write_text('"""Rebuild the ``epochs.parquet`` tables; print the front.\n"""\n')
    monkeypatch.setattr(entry, "__file__", str(tmp_path / "__main__.py"))
    assert entry.summary("demo") == "Run a demo"
    assert entry.summary("plain") == "Rebuild the epochs.parquet tables; print the front"


def test_help_flag_prints_the_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert entry.main(["--help"]) == 0
    assert capsys.readouterr().out == entry.listing() + "\n"


def test_unknown_command_prints_the_list_and_one_error_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert entry.main(["trian"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(entry.listing())
    assert captured.err.splitlines()[-1] == ("error: command: unknown 'trian'; allowed: "
                                             "train, sweep, status, export, report, promote, prepare, bench")


def test_a_known_command_runs_with_the_rest_of_the_arguments(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no_such_sweep"
    assert entry.main(["export", str(missing)]) == 2  # export's own bad-input exit
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and str(missing) in err and len(err.splitlines()) == 1


def test_listing_imports_neither_torch_nor_ray() -> None:
    code = ("import sys; from ast_tune.__main__ import main; code = main([]); "
            "heavy = sorted(m for m in ('torch', 'ray', 'pandas') if m in sys.modules); "
            "print(heavy); raise SystemExit(code)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
    assert "commands:" in done.stdout


def test_python_dash_m_ast_tune_exits_with_mains_code() -> None:
    listed = subprocess.run([sys.executable, "-m", "ast_tune"], capture_output=True, text=True, check=False)
    refused = subprocess.run([sys.executable, "-m", "ast_tune", "bogus"], capture_output=True, text=True,
                             check=False)
    assert (listed.returncode, refused.returncode) == (0, 2)
    assert listed.stdout == entry.listing() + "\n" and "Traceback" not in refused.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_plain_make_lists_every_phony_target_with_a_line_each() -> None:
    root = PACKAGE.parent
    phony = next(line for line in (root / "Makefile").read_text().splitlines() if line.startswith(".PHONY:"))
    targets = phony.split(":", 1)[1].split()
    plain = subprocess.run(["make", "-s"], cwd=root, capture_output=True, text=True, check=True).stdout
    assert plain == subprocess.run(["make", "-s", "help"], cwd=root, capture_output=True, text=True,
                                   check=True).stdout
    listed = {line.split()[1]: line.split(None, 2)[2] for line in plain.splitlines()}
    assert set(listed) == set(targets) and {"demo", "test", "bench", "help"} <= set(listed)
    assert all(description.strip() for description in listed.values())
