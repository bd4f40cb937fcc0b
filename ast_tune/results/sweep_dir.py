"""What a sweep does with an existing ``results/<name>/``: resume it, show it, or refuse; reads only YAML and JSON.

A sweep exists once its ``spec.yaml`` does (the first file a sweep writes). :func:`check_results`
resumes it with ``--resume``; without, a finished one (``run.json`` says ``done``) is shown, and an
unfinished one, or one that ran with another spec, is refused in one line. Results made by an older
version of ast_tune (their journal in ``tune/journal.jsonl``, keyed by Tune's trial ids) cannot be
resumed: ``export`` and ``report`` still read them.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ast_tune.config.spec import SpecError
from ast_tune.config.sweep_spec import SweepSpec, to_document
from ast_tune.results.journal import JOURNAL

SPEC_FILE = "spec.yaml"


def made_before(results: Path) -> bool:
    """Whether an older version of ast_tune made ``results`` (its journal under ``tune/``, none at the top)."""
    return (results / "tune" / JOURNAL).is_file() and not (results / JOURNAL).is_file()


def check_results(spec: SweepSpec, results: Path, *, resume: bool) -> bool:
    """Whether a sweep of ``spec`` exists in ``results`` to resume (only with ``resume``) or to show (without).

    Raises:
        SpecError: ``resume`` and no sweep there; an older version's sweep to resume or unfinished; a
            sweep of another spec; an unfinished sweep without ``resume``.
    """
    exists = (results / SPEC_FILE).is_file()
    if made_before(results) and (resume or not finished(results)):
        raise SpecError("--resume" if resume else str(results),
                        f"{results} was made by an older version of ast_tune and cannot be resumed; export and "
                        "report still read it; start a new sweep with --name NEW")
    if resume and not exists:
        raise SpecError("--resume", f"{results} holds no sweep to resume")
    if exists and yaml.safe_load((results / SPEC_FILE).read_text()) != to_document(spec):
        raise SpecError(str(results / SPEC_FILE), f"sweep {spec.name!r} ran with another spec; resume it unchanged "
                                                  "or start a new one with --name")
    if exists and not resume and not finished(results):
        raise SpecError("--resume", f"{results} holds an unfinished sweep {spec.name!r}: continue it with "
                                    "--resume, or start a new one with --name NEW")
    return exists


def finished(results: Path) -> bool:
    """Whether ``run.json`` says the sweep in ``results`` ran to its end."""
    try:
        return json.loads((results / "run.json").read_text()).get("status") == "done"
    except (OSError, ValueError, AttributeError):
        return False
