"""The shared exit-code contract of every CLI (ast_tune.config.cli.run_main): 0/1/2/130, one line on stderr."""

from __future__ import annotations

import pytest

from ast_tune.config.cli import os_error_line, run_main
from ast_tune.config.spec import SpecError


def _raise(err: BaseException):
    def body() -> int:
        raise err
    return body


def test_body_exit_code_is_returned_and_nothing_printed(capsys):
    assert run_main(lambda: 0, interrupted="stop") == 0
    assert run_main(lambda: 1, interrupted="stop") == 1
    assert capsys.readouterr().err == ""


def test_spec_error_exits_2_with_one_error_line_naming_the_key(capsys):
    assert run_main(_raise(SpecError("search.num_trials", "must be >= 1, got 0")), interrupted="stop") == 2
    assert capsys.readouterr().err == "error: search.num_trials: must be >= 1, got 0\n"


def test_interrupt_exits_130_with_the_clis_own_line(capsys):
    assert run_main(_raise(KeyboardInterrupt()), interrupted="interrupted; continue with --resume") == 130
    assert capsys.readouterr().err == "interrupted; continue with --resume\n"


def test_listed_failure_exits_1_with_the_message_of_the_first_matching_type(capsys):
    failures = {LookupError: lambda err: f"nothing found: {err}", Exception: lambda err: "failed"}
    assert run_main(_raise(KeyError("t3")), interrupted="stop", failures=failures) == 1
    assert run_main(_raise(RuntimeError("boom")), interrupted="stop", failures=failures) == 1
    assert capsys.readouterr().err == "nothing found: 't3'\nfailed\n"


def test_unlisted_exception_propagates_with_its_traceback():
    with pytest.raises(RuntimeError, match="boom"):
        run_main(_raise(RuntimeError("boom")), interrupted="stop", failures={OSError: os_error_line})


def test_os_error_line_names_the_file_when_it_has_one():
    assert os_error_line(PermissionError(13, "Permission denied", "/r/trials.csv")) == \
        "/r/trials.csv: Permission denied"
    assert os_error_line(OSError("disk gone")) == "disk gone"
