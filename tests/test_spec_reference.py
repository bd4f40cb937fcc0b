"""docs/spec.md is the reference the code generates, and every spec field has what it needs to appear in it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from ast_tune.config import reference
from ast_tune.config.keys import METADATA, check_keys, key
from ast_tune.config.run_spec import RunSpec
from ast_tune.config.spec import SpecError, apply_overrides, set_path
from ast_tune.config.sweep_space import ALIASES, parse_space
from ast_tune.config.sweep_spec import parse_sweep

SPEC_MD = Path(__file__).resolve().parents[1] / "docs" / "spec.md"


def test_docs_spec_md_is_the_generators_output():
    assert SPEC_MD.read_text(encoding="utf-8") == reference.markdown(), (
        f"docs/spec.md differs from the code; regenerate it: {reference.COMMAND}")


def test_every_field_of_every_spec_has_a_description():
    classes = reference.spec_classes()
    assert {c.__name__ for c in classes} >= {"RunSpec", "DataSpec", "SubsetSpec", "SparsitySpec", "OptimSpec",
                                             "SweepSpec", "Workload", "SearchSpec", "SchedulerSpec", "Objective",
                                             "PromoteSpec", "PromoteRule", "PromoteWorkload", "StorageSpec",
                                             "CostSpec", "WorkloadCost", "SuccessSpec", "Level", "Constraint"}
    missing = [f"{c.__name__}.{f.name}" for c in classes for f in dataclasses.fields(c) if METADATA not in f.metadata]
    assert not missing, f"fields without a description (declare them with ast_tune.config.keys.key): {missing}"


def test_a_field_without_a_description_makes_the_generator_name_it():
    @dataclasses.dataclass(frozen=True)
    class Tiny:
        said: int = key(1, "a documented key")
        unsaid: int = 2

    with pytest.raises(TypeError, match=r"Tiny\.unsaid has no description"):
        reference.rows(Tiny)


@dataclasses.dataclass(frozen=True)
class Inner:
    size: int = key(3, "how big", unit="px", low=1)


@dataclasses.dataclass(frozen=True)
class Outer:
    kind: str = key("a", "which", choices=("a", "b"))
    inner: Inner | None = key(None, "optional section")


def test_rows_show_type_default_unit_allowed_and_meaning_of_nested_keys():
    assert reference.rows(Outer) == [
        reference.Row("kind", "string", "`a`", "", "`a`, `b`", "which", leaf=True),
        reference.Row("inner", "mapping or null", "`null`", "", "", "optional section", leaf=False),
        reference.Row("inner.size", "integer", "`3`", "px", ">= 1", "how big", leaf=True),
    ]


def test_check_keys_rejects_values_outside_a_keys_choices_or_range_naming_the_field():
    @dataclasses.dataclass(frozen=True)
    class Tiny:
        low: float = key(1.0, "lower", low=0)
        high: float = key(2.0, "above low", low="low", low_open=True)
        kind: str | None = key(None, "a or b", choices=("a", "b"))

    check_keys(Tiny())
    check_keys(Tiny(kind="b"))
    with pytest.raises(SpecError, match=r"^high: must be > 1.0, got 1.0$"):
        check_keys(Tiny(high=1.0))
    with pytest.raises(SpecError, match=r"^low: must be >= 0, got -1$"):  # the field a bound names comes first
        check_keys(Tiny(low=-1, high=-2))
    with pytest.raises(SpecError, match=r"^kind: must be one of a, b; got 'c'$"):
        check_keys(Tiny(kind="c"))


def _settable(rows: list[reference.Row]) -> list[tuple[str, str]]:
    """``(key, default text)`` of the rows a ``--set`` of their default alone must leave unchanged: those with
    a default, not required (a level's keys are required together), not in a list or a section null by default."""
    nulls = [r.key for r in rows if not r.leaf and r.default == "`null`"]
    return [(r.key, r.default.strip("`")) for r in rows
            if r.default and "[i]" not in r.key and "required" not in r.default
            and not any(r.key.startswith(f"{n}.") for n in nulls)]


def test_setting_a_run_key_to_its_listed_default_changes_nothing():
    settable = _settable(reference.rows(RunSpec))
    assert len(settable) > 40
    for path, default in settable:
        assert apply_overrides(RunSpec(), [f"{path}={default}"]) == RunSpec(), path


def test_setting_a_sweep_key_to_its_listed_default_changes_nothing():
    settable = _settable(reference.rows(reference.SweepSpec))
    assert len(settable) > 45
    plain = parse_sweep({"name": "x"})
    for path, default in settable:
        assert parse_sweep(set_path({"name": "x"}, path, yaml.safe_load(default))) == plain, path


def test_the_listed_space_parameters_are_every_name_the_space_accepts():
    listed = [r.key for r in reference.searchable(reference.rows(RunSpec))]
    assert set(ALIASES.values()) <= set(listed)
    assert {p.path for p in parse_space({name: {"fixed": 0} for name in listed})} == set(listed)
    with pytest.raises(SpecError, match="not searchable"):
        parse_space({"epochs": {"fixed": 3}})
