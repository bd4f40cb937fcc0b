"""A sweep's ``space``: which RunSpec fields the search varies, and over which values.

``space`` maps a parameter name to one distribution::

    space:
      kp: {loguniform: [1.0e-4, 1.0e-1]}      # float, log scale; low > 0
      target_activation: {uniform: [0.2, 0.6]}
      warmup_epochs: {int: [0, 3]}            # integers low..high, both included
      lr_schedule: {choice: [cosine, step]}
      mode: {fixed: inline}                   # not searched; still recorded as a parameter

A name is either a short alias (:data:`ALIASES`, e.g. ``kp`` → ``sparsity.kp``) or a dotted
:class:`~ast_tune.config.run_spec.RunSpec` path (``sparsity.ema_alpha``); the results call it
``param.<name>``. The fields the workload sets (:data:`WORKLOAD_OWNED`) are not searchable. A
malformed entry raises :class:`~ast_tune.config.spec.SpecError` naming its key path, e.g.
``space.kp.loguniform: low must be > 0, got -1``. Checking values against the base preset is
:mod:`ast_tune.config.sweep_spec`'s job.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from ast_tune.config.run_spec import RunSpec
from ast_tune.config.spec import SpecError, check_finite

ALIASES = {
    "target_activation": "sparsity.target_activation",
    "kp": "sparsity.kp",
    "ki": "sparsity.ki",
    "initial_threshold": "sparsity.initial_threshold",
    "mode": "sparsity.mode",
    "lr": "optim.lr",
    "warmup_lr": "optim.warmup_lr",
    "lr_schedule": "optim.schedule",
    "momentum": "optim.momentum",
    "weight_decay": "optim.weight_decay",
    "warmup_epochs": "warmup_epochs",
    "anneal_epochs": "sparsity.anneal_epochs",
}
#: Each distribution a parameter may take, and the value it is written with.
DISTRIBUTIONS = {
    "uniform": "[low, high]: a number drawn uniformly, low < high",
    "loguniform": "[low, high]: a number drawn uniformly on a log scale, 0 < low < high",
    "int": "[low, high]: an integer, both ends included, low < high",
    "choice": "[option, ...]: one of the options, which must differ",
    "fixed": "value: not searched, still recorded as a parameter",
}
WORKLOAD_OWNED = ("data", "model", "batch_size", "epochs", "precision", "checkpoint_every")


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched parameter: ``name`` as written in the spec, ``path`` the RunSpec field it sets.

    ``values`` is ``(low, high)`` for uniform/loguniform/int, the options for choice and
    ``(value,)`` for fixed.
    """

    name: str
    path: str
    kind: str
    values: tuple


def parse_space(raw: Any) -> tuple[Param, ...]:
    """Check the shape of ``space`` (one distribution per name, sane ranges, known fields)."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise SpecError("space", f"must be a mapping of name: {{distribution: ..}}, got {type(raw).__name__}")
    params = tuple(_parse_param(str(name), value) for name, value in raw.items())
    paths = [p.path for p in params]
    for param in params:
        if paths.count(param.path) > 1:
            raise SpecError(f"space.{param.name}", f"sets {param.path}, which another parameter sets too")
    return params


def _parse_param(name: str, raw: Any) -> Param:
    key = f"space.{name}"
    path = _field_path(name, key)
    if not isinstance(raw, Mapping) or len(raw) != 1 or next(iter(raw)) not in DISTRIBUTIONS:
        raise SpecError(key, f"must be a mapping with one key of {', '.join(DISTRIBUTIONS)}; got {raw!r}")
    kind, value = next(iter(raw.items()))
    key = f"{key}.{kind}"
    if kind == "fixed":
        if not isinstance(value, str | int | float | bool):
            raise SpecError(key, f"must be a single number, string or boolean, got {value!r}")
        _finite(key, [value])
        return Param(name, path, kind, (value,))
    if kind == "choice":
        if not isinstance(value, list) or not value:
            raise SpecError(key, f"must be a non-empty list of options, got {value!r}")
        _finite(key, value)
        if len(set(map(repr, value))) != len(value):
            raise SpecError(key, f"options must differ, got {value}")
        return Param(name, path, kind, tuple(value))
    return Param(name, path, kind, _range(key, kind, value))


def _range(key: str, kind: str, value: Any) -> tuple:
    number = int if kind == "int" else int | float
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, number) and not isinstance(v, bool) for v in value)):
        what = "integers" if kind == "int" else "numbers"
        raise SpecError(key, f"must be [low, high], two {what}; got {value!r}")
    _finite(key, value)
    low, high = value
    if kind == "loguniform" and low <= 0:
        raise SpecError(key, f"low must be > 0, got {low}")
    if low >= high:
        raise SpecError(key, f"low must be < high (use fixed for one value), got [{low}, {high}]")
    return (low, high) if kind == "int" else (float(low), float(high))


def _finite(key: str, values: list) -> None:
    """SpecError naming ``key`` if a float among ``values`` is NaN or ±inf."""
    for value in values:
        if isinstance(value, float):
            check_finite(key, value)


def _field_path(name: str, key: str) -> str:
    """The RunSpec path ``name`` stands for; SpecError unless it is a searchable leaf field."""
    path = ALIASES.get(name, name)
    cls: Any = RunSpec
    for part in path.split("."):
        hints = typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else {}
        if part not in hints:
            raise SpecError(key, f"unknown parameter; use an alias ({', '.join(ALIASES)}) "
                                 "or a dotted RunSpec path such as sparsity.ema_alpha")
        cls = hints[part]
    if dataclasses.is_dataclass(cls):
        raise SpecError(key, f"{path} is a section; name one of its fields: {path}.<field>")
    if path.split(".")[0] in WORKLOAD_OWNED:
        raise SpecError(key, f"{path} is set by workload.{path.split('.')[0]}; it is not searchable")
    return path
