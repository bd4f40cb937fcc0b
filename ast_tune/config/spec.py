"""Specs: YAML and ``--set key.path=value`` overrides → frozen, validated dataclasses.

Every config in ast_tune is a frozen dataclass built once, at the edge, by :func:`build`.
Unknown keys, wrong types, NaN or ±inf and out-of-range values raise :class:`SpecError` whose message
starts with the dotted key path, e.g. ``sparsity.kp: must be >= 0, got -1``. The CLIs turn
it into one line on stderr and exit code 2.

This module holds the generic machinery; the spec of one training run (:class:`RunSpec`) lives in
:mod:`ast_tune.config.run_spec`, the sweep's own sections in :mod:`ast_tune.config.sweep_spec`, and the CLIs'
argument parser (:class:`~ast_tune.config.cli.CliParser`) in :mod:`ast_tune.config.cli`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class SpecError(ValueError):
    """Bad user input. ``str(err)`` is one line: ``<key.path>: <what is wrong>``."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)

    def within(self, prefix: str) -> SpecError:
        """The same error with ``prefix`` prepended to its key path."""
        return SpecError(_join(prefix, self.key), self.message)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix and key else prefix or key


# --- field checks, used by the dataclasses' __post_init__ ------------------------------------


def check_choice(key: str, value: Any, allowed: Sequence[Any]) -> None:
    """Raise SpecError unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise SpecError(key, f"must be one of {', '.join(map(str, allowed))}; got {value!r}")


def check_range(key: str, value: float, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> None:
    """Raise SpecError unless ``value`` is finite and ``low <= value <= high`` (``<`` where the bound is open)."""
    check_finite(key, value)
    if low is not None and (value <= low if low_open else value < low):
        raise SpecError(key, f"must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (value >= high if high_open else value > high):
        raise SpecError(key, f"must be {'<' if high_open else '<='} {high}, got {value}")


def check_finite(key: str, value: float) -> None:
    """Raise SpecError if ``value`` is NaN or ±inf (YAML's ``.nan``, ``.inf``): no range holds them."""
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(key, f"must be a finite number, got {value}")


# --- generic builder -------------------------------------------------------------------------


def build(cls: type[T], mapping: Any, path: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, type-checking every field.

    Args:
        cls: a (frozen) dataclass type.
        mapping: parsed YAML; missing keys take the dataclass defaults.
        path: dotted key path of ``mapping`` in the whole document, for error messages.

    Raises:
        SpecError: unknown key, wrong type, or a value its ``__post_init__`` rejects.
    """
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        raise SpecError(path, f"must be a mapping, got {type(mapping).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in mapping.items():
        if key not in fields:
            raise SpecError(_join(path, str(key)), f"unknown key; allowed: {', '.join(fields)}")
        kwargs[key] = coerce(value, hints[key], _join(path, key))
    missing = [n for n, f in fields.items() if n not in kwargs and _required(f)]
    if missing:
        raise SpecError(_join(path, missing[0]), "required")
    try:
        return cls(**kwargs)
    except SpecError as err:
        raise err.within(path) from None


def _required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against type ``hint``; ints widen to float, mappings build dataclasses."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        given = [o for o in options if o is not type(None)]
        if len(given) == 1:  # X | None: X's own error, with its key path
            return coerce(value, given[0], key)
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return coerce(value, option, key)
            except SpecError as err:
                errors.append(err.message)
        raise SpecError(key, " or ".join(errors))
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else build(hint, value, key)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise SpecError(key, f"must be a list, got {_typename(value)}")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        return tuple(coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise SpecError(key, f"must be a mapping, got {_typename(value)}")
        return dict(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, float):
        check_finite(key, value)
    if hint is bool and not isinstance(value, bool):
        raise SpecError(key, f"must be true or false, got {value!r}")
    if hint is int and isinstance(value, bool):
        raise SpecError(key, f"must be an integer, got {value!r}")
    if not isinstance(value, hint):
        raise SpecError(key, f"must be {_article(hint)}, got {_typename(value)} {value!r}")
    return value


def _typename(value: Any) -> str:
    return {list: "list", tuple: "list", dict: "mapping"}.get(type(value), type(value).__name__)


def _article(hint: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


# --- overrides -------------------------------------------------------------------------------


def parse_assignment(text: str) -> tuple[str, Any]:
    """Split ``key.path=value``; the value is parsed as YAML (``0.1`` → float, ``true`` → bool)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SpecError("--set", f"expected key.path=value, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def set_path(document: dict, key: str, value: Any) -> dict:
    """A copy of nested mapping ``document`` with dotted ``key`` set to ``value``.

    The result is validated later by :func:`build`, which rejects unknown keys and wrong types.
    """
    head, _, rest = key.partition(".")
    out = dict(document)
    if not rest:
        out[head] = value
        return out
    child = out.get(head)
    if child is None:
        child = {}
    if not isinstance(child, Mapping):
        raise SpecError(key, f"{head} is {_typename(child)} {child!r}, it has no sub-keys")
    try:
        out[head] = set_path(dict(child), rest, value)
    except SpecError as err:
        raise SpecError(key, err.message) from None
    return out


def apply_overrides(spec: T, assignments: Sequence[str]) -> T:
    """Apply ``--set key.path=value`` strings to ``spec`` and validate the result once."""
    document = to_dict(spec)
    for text in assignments:
        document = set_path(document, *parse_assignment(text))
    return build(type(spec), document)


def to_dict(spec: Any) -> Any:
    """A plain, YAML-ready view of a spec (tuples become lists)."""
    if dataclasses.is_dataclass(spec):
        return {f.name: to_dict(getattr(spec, f.name)) for f in dataclasses.fields(spec)}
    if isinstance(spec, tuple | list):
        return [to_dict(v) for v in spec]
    if isinstance(spec, dict):
        return {k: to_dict(v) for k, v in spec.items()}
    return spec


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; a missing, empty or malformed file is a one-line SpecError."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(str(path), "no such file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SpecError(str(path), "not UTF-8 text") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SpecError(str(path), f"not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise SpecError(str(path), "must contain a YAML mapping" if data is not None else "file is empty")
    return data
