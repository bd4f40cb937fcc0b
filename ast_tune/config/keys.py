"""What each spec key means and accepts, readable at run time: its description, unit and allowed values.

Every field of a spec dataclass is declared with :func:`key` (or :func:`like`, for a field that
repeats another spec's); its metadata is a :class:`Key`: one line of meaning, the unit, and the
allowed values: choices (the tuple the code uses) or a range whose bounds are numbers or the names
of other fields of the same spec. :func:`check_keys`, called first by each spec's ``__post_init__``,
checks every field against them, so :mod:`ast_tune.config.reference` (``docs/spec.md``) shows exactly
what validation accepts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ast_tune.config.spec import check_choice, check_range

#: The default of a key that must be given.
REQUIRED: Any = dataclasses.MISSING
#: Where a field's :class:`Key` sits in its ``dataclasses.Field.metadata``.
METADATA = "ast_tune.key"

Bound = float | str | None  # a number, the name of another field of the same spec, or no bound
_SAME = object()


@dataclasses.dataclass(frozen=True)
class Key:
    """One key's description and what it accepts; ``None`` values (where the type allows them) always pass."""

    meaning: str
    unit: str | None = None
    choices: tuple | None = None
    low: Bound = None
    high: Bound = None
    low_open: bool = False
    high_open: bool = False

    def __post_init__(self) -> None:
        if not self.meaning.strip() or "\n" in self.meaning:
            raise TypeError(f"a key's meaning must be one non-empty line, got {self.meaning!r}")

    def check(self, name: str, spec: Any) -> None:
        """Raise SpecError naming ``name`` unless ``spec``'s value of it is allowed."""
        value = getattr(spec, name)
        if value is None:
            return
        if self.choices is not None:
            check_choice(name, value, self.choices)
        if self.low is not None or self.high is not None:
            check_range(name, value, low=_resolve(self.low, spec), high=_resolve(self.high, spec),
                        low_open=self.low_open, high_open=self.high_open)

    def bounds(self) -> str:
        """The range in words, as the errors say it: ``> 0, <= 1``, ``>= threshold_min``; ``""`` for none."""
        bounds = [f"{'>' if self.low_open else '>='} {self.low}" if self.low is not None else "",
                  f"{'<' if self.high_open else '<='} {self.high}" if self.high is not None else ""]
        return ", ".join(b for b in bounds if b)


def _resolve(bound: Bound, spec: Any) -> float | None:
    return getattr(spec, bound) if isinstance(bound, str) else bound


def key(default: Any, meaning: str, /, *, unit: str | None = None, choices: tuple | None = None,
        **bounds: Any) -> Any:
    """A spec field: ``default`` (or :data:`REQUIRED`), one line of ``meaning``, its unit and allowed values.

    Args:
        default: the value when the key is not given; :data:`REQUIRED` when it must be.
        meaning: what the key does, one line.
        unit: e.g. ``"nats"``, ``"epochs"``, ``"px"``; None for none.
        choices: the allowed values (the same tuple the code uses elsewhere).
        bounds: ``low``, ``high`` (a number or another field's name), ``low_open``, ``high_open``,
            as :func:`~ast_tune.config.spec.check_range` takes them.
    """
    return dataclasses.field(default=default, metadata={METADATA: Key(meaning, unit, choices, **bounds)})


def like(spec: type, name: str, /, *, default: Any = _SAME, meaning: str | None = None) -> Any:
    """A field that accepts what ``spec``'s field ``name`` does (same unit and allowed values).

    Args:
        spec: the dataclass holding the original field.
        name: its name.
        default: a default of this field's own; the original's when not given.
        meaning: a meaning of this field's own; the original's when not given.
    """
    (source,) = (f for f in dataclasses.fields(spec) if f.name == name)
    described = key_of(spec, source)
    return dataclasses.field(default=source.default if default is _SAME else default, metadata={
        METADATA: dataclasses.replace(described, meaning=meaning or described.meaning)})


def key_of(spec: type, field: dataclasses.Field) -> Key:
    """``field``'s :class:`Key`; TypeError naming ``spec.field`` when it was declared without one."""
    if METADATA not in field.metadata:
        raise TypeError(f"{spec.__name__}.{field.name} has no description: declare it with "
                        "ast_tune.config.keys.key(default, 'meaning', unit=..., choices=...)")
    return field.metadata[METADATA]


def check_keys(spec: Any) -> None:
    """Check every field of ``spec`` against its :class:`Key`, a field after those its bounds name.

    A field declared without a Key is not checked here; the reference's test names it.

    Raises:
        SpecError: naming the first field whose value is not allowed.
    """
    keys = {f.name: f.metadata[METADATA] for f in dataclasses.fields(spec) if METADATA in f.metadata}
    checked: set[str] = set()

    def check(name: str) -> None:
        if name in keys and name not in checked:
            checked.add(name)
            for bound in (keys[name].low, keys[name].high):
                if isinstance(bound, str):
                    check(bound)
            keys[name].check(name, spec)

    for name in keys:
        check(name)
