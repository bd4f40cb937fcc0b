"""The spec reference, generated from the code: ``python -m ast_tune.config.reference > docs/spec.md``.

Walks :class:`~ast_tune.config.run_spec.RunSpec` and :class:`~ast_tune.config.sweep_spec.SweepSpec`
through their sections: one Markdown row per key path with its type, default, unit, allowed values
and meaning, read from each field's :class:`~ast_tune.config.keys.Key`; then the presets
(:data:`~ast_tune.config.presets.PRESETS`) and the search space's distributions and parameters
(:mod:`ast_tune.config.sweep_space`). A field declared without a Key raises TypeError naming it. The
output depends on the code alone; ``tests/test_spec_reference.py`` checks that ``docs/spec.md`` is it.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from typing import Any

from ast_tune.config.keys import key_of
from ast_tune.config.presets import PRESETS
from ast_tune.config.run_spec import RunSpec
from ast_tune.config.spec import to_dict
from ast_tune.config.sweep_space import ALIASES, DISTRIBUTIONS, WORKLOAD_OWNED, Param
from ast_tune.config.sweep_spec import SweepSpec

COMMAND = "python -m ast_tune.config.reference > docs/spec.md"
_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "null"}


@dataclasses.dataclass(frozen=True)
class Row:
    """One key of a spec, as the reference shows it."""

    key: str  # dotted path; ``[i]`` stands for each entry of a list
    type: str
    default: str  # "required" when it must be given; "" for a section (its keys follow)
    unit: str
    allowed: str
    meaning: str
    leaf: bool  # False for a section or a list of sections


def rows(spec: type, *, prefix: str = "", defaults: Any = None) -> list[Row]:
    """One row per key of dataclass ``spec``; a section's own keys follow its row.

    Args:
        spec: a spec dataclass.
        prefix: the key path of ``spec`` in the whole document, with its trailing dot.
        defaults: an instance of ``spec`` whose values are the defaults (a section's default);
            None: the fields' own defaults.

    Raises:
        TypeError: a field declared without a description; the message names ``Class.field``.
    """
    found = []
    hints = typing.get_type_hints(spec)
    for field in dataclasses.fields(spec):
        described = key_of(spec, field)
        default = field.default if defaults is None else getattr(defaults, field.name)
        section, many = _section(hints[field.name])
        if section is Param:  # the space is written as a mapping; its own section lists its names
            type_text, default_text = "mapping", "`{}`"
        else:
            type_text = _type_text(hints[field.name])
            default_text = "" if section and not many and default is not None else _default_text(default)
            if field.default is dataclasses.MISSING and defaults is not None:  # a value only from the section's default
                default_text += f"; required when `{prefix.rstrip('.')}` is given"
        allowed = ", ".join(f"`{c}`" for c in described.choices) if described.choices else described.bounds()
        path = f"{prefix}{field.name}"
        found.append(Row(path, type_text, default_text, described.unit or "", allowed, described.meaning,
                         leaf=section is None))
        if section is not None and section is not Param:
            inner = default if isinstance(default, section) else None
            found.extend(rows(section, prefix=f"{path}[i]." if many else f"{path}.", defaults=inner))
    return found


def spec_classes() -> list[type]:
    """Every dataclass a run spec or a sweep spec is made of (but the space's entries), each once."""
    found: list[type] = []

    def visit(spec: type) -> None:
        if spec not in found and spec is not Param:
            found.append(spec)
            for hint in typing.get_type_hints(spec).values():
                section, _ = _section(hint)
                if section is not None:
                    visit(section)

    visit(RunSpec)
    visit(SweepSpec)
    return found


def searchable(run_rows: list[Row]) -> list[Row]:
    """The rows of the run-spec keys a sweep's ``space`` may name: leaves the workload does not set."""
    return [row for row in run_rows if row.leaf and row.key.split(".")[0] not in WORKLOAD_OWNED]


def _section(hint: Any) -> tuple[type | None, bool]:
    """The dataclass inside ``hint`` (``X``, ``X | None``, ``tuple[X, ...]``) and whether it is a list of them."""
    options = [a for a in typing.get_args(hint) if a is not type(None)] if _is_union(hint) else [hint]
    for option in options:
        if dataclasses.is_dataclass(option):
            return option, False
        args = typing.get_args(option)
        if typing.get_origin(option) is tuple and args and dataclasses.is_dataclass(args[0]):
            return args[0], True
    return None, False


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _type_text(hint: Any) -> str:
    if _is_union(hint):
        return " or ".join(_type_text(a) for a in typing.get_args(hint))
    if dataclasses.is_dataclass(hint):
        return "mapping"
    if typing.get_origin(hint) is tuple:
        return f"list of {_type_text(typing.get_args(hint)[0])}s"
    return _TYPES[hint]


def _default_text(value: Any) -> str:
    if value is dataclasses.MISSING:
        return "required"
    return f"`{_flow(to_dict(value))}`"


def _flow(value: Any) -> str:
    """``value`` as YAML flow text, as a user would write it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return f"[{', '.join(map(_flow, value))}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    return str(value)


def _table(header: tuple[str, ...], lines: list[tuple[str, ...]]) -> str:
    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, lines)])


def _key_table(found: list[Row]) -> str:
    return _table(("key", "type", "default", "unit", "allowed", "meaning"),
                  [(f"`{r.key}`", r.type, r.default, r.unit, r.allowed, r.meaning) for r in found])


def _flat(document: dict, prefix: str = "") -> dict[str, Any]:
    """Dotted key path → value of every leaf of a nested mapping."""
    flat: dict[str, Any] = {}
    for name, value in document.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def _preset_tables() -> str:
    meanings = _table(("preset", "meaning"), [(f"`{name}`", p.meaning) for name, p in PRESETS.items()])
    defaults = _flat(to_dict(RunSpec()))
    values = {name: _flat(to_dict(p.spec)) for name, p in PRESETS.items()}
    differing = [k for k in defaults if any(v[k] != defaults[k] for v in values.values())]
    return "\n\n".join([meanings, "The keys a preset sets to other values than the defaults above:", _table(
        ("key", "default", *PRESETS), [(f"`{k}`", f"`{_flow(defaults[k])}`",
                                        *(f"`{_flow(v[k])}`" for v in values.values())) for k in differing])])


def _space_tables(run_rows: list[Row]) -> str:
    names = {path: alias for alias, path in ALIASES.items()}
    distributions = _table(("distribution", "value"), [(f"`{d}`", text) for d, text in DISTRIBUTIONS.items()])
    params = _table(("name", "run spec key", "type", "unit", "allowed", "meaning"), [
        (f"`{names[r.key]}`" if r.key in names else f"`{r.key}`", f"`{r.key}`", r.type, r.unit, r.allowed, r.meaning)
        for r in searchable(run_rows)])
    return "\n\n".join([distributions, "Parameters: the name is a short alias where there is one; the run spec "
                                       "key is accepted too.", params])


def markdown() -> str:
    """The whole reference, ``docs/spec.md``'s text."""
    run_rows = rows(RunSpec)
    owned = ", ".join(f"`{k}`" for k in WORKLOAD_OWNED)
    parts = [
        f"<!-- Generated from ast_tune/config by `{COMMAND}`: edit the code, then regenerate. -->",
        "# Spec reference",
        "Every key of a run spec (what `python -m ast_tune.train` runs) and of a sweep spec (the YAML file of "
        "`python -m ast_tune.sweep`), with its type, default, unit, allowed values and meaning. `--set "
        "key.path=value` sets any key below; its value is read as YAML (`0.1`, `true`, `[a, b]`, `null`). A bad "
        "key or value is one line naming the key path, exit code 2, before anything runs.",
        "## Run spec: `python -m ast_tune.train --preset P --set key=value`",
        "`train` starts from the preset `--preset` (default `quickstart`; see Presets), which gives every key; "
        "`--data K` and `--data-root DIR` are `--set data.kind=K` and `--set data.root=DIR`. The default column "
        "is the run spec's own.",
        _key_table(run_rows),
        "## Presets: `train --preset`, a sweep's `base`",
        _preset_tables(),
        "## Sweep spec: YAML keys, `python -m ast_tune.sweep SPEC.yaml --set key=value`",
        "`--name N` is `--set name=N`. A list is set whole (`--set 'objectives=[{metric: val_top1, mode: max}]'`); "
        "`[i]` stands for each of its entries. A trial's run spec is the `base` preset, then the workload's "
        f"keys ({owned}), then its `space` values; the dense baseline is the same without the space, with "
        "`sparsity.mode: dense`.",
        _key_table(rows(SweepSpec)),
        "## Search space: `space.<name>.<distribution>`",
        f"`space` maps a parameter name to one distribution, e.g. `space: {{kp: {{loguniform: [1.0e-4, 0.1]}}}}`; "
        f"every value must make a valid run spec. The keys the workload sets ({owned}) are not searchable.",
        _space_tables(run_rows),
    ]
    return "\n\n".join(parts) + "\n"


def main() -> int:
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
