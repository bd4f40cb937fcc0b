"""What a trial must meet: the plan's success levels (``success:``) and hard limits (``constraints:``).

The plan is the ImageNet-1K validation plan. Its three levels, each against the dense baseline of the
same sweep:

- **minimum**: final top-1 at most 2 points below the baseline's, ≥ 60 % energy savings, ≥ 2× speedup;
- **publication**: at most 1 point below, ≥ 60 %, ≥ 3×;
- **stretch**: no loss, ≥ 70 %, ≥ 5×.

Savings are the COUNTED ``energy_savings`` (a fraction); a level's speedup is the MEASURED
time-to-accuracy speedup to that level's own accuracy bar (:mod:`ast_tune.results.verdict`).
A ``constraints:`` entry bounds one trial metric (``{metric: top1_drop, max: 5}``: at most 5 points
below the baseline); a trial that breaks one is infeasible: it stays in the tables, off the front.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from ast_tune.config import columns
from ast_tune.config.keys import REQUIRED, check_keys, key
from ast_tune.config.spec import SpecError, build

#: Level names, highest first; ``none`` is the verdict of a trial that meets none.
LEVELS = ("stretch", "publication", "minimum")
NO_LEVEL = "none"
VERDICTS = (*LEVELS, NO_LEVEL)


@dataclasses.dataclass(frozen=True)
class Level:
    """One success level: every bound must hold for a trial to meet it."""

    max_accuracy_drop: float = key(REQUIRED, "most final top-1 below the dense baseline's", unit="points", low=0)
    min_savings: float = key(REQUIRED, "least energy savings (counted)", unit="fraction", low=0, high=1)
    min_speedup: float = key(REQUIRED, "least measured time-to-accuracy speedup, to the baseline's top-1 minus "
                             "max_accuracy_drop", unit="×", low=0)

    def __post_init__(self) -> None:
        check_keys(self)


@dataclasses.dataclass(frozen=True)
class SuccessSpec:
    """The ``success:`` section: the levels (the plan's by default) and the time-to-accuracy target."""

    minimum: Level = key(Level(2.0, 0.60, 2.0), "the plan's Minimum level")
    publication: Level = key(Level(1.0, 0.60, 3.0), "the plan's Publication level, at least as strict as Minimum")
    stretch: Level = key(Level(0.0, 0.70, 5.0), "the plan's Stretch level, at least as strict as Publication")
    target_top1: float | None = key(None, "top-1 that time_to_target_s is timed to; null: the baseline's minus "
                                    "promote.rule.max_accuracy_drop", unit="%", low=0, high=100)

    def __post_init__(self) -> None:
        check_keys(self)
        for higher, lower in zip(LEVELS, LEVELS[1:], strict=False):
            upper, under = getattr(self, higher), getattr(self, lower)
            for field, stricter in (("max_accuracy_drop", min), ("min_savings", max), ("min_speedup", max)):
                if stricter(getattr(upper, field), getattr(under, field)) != getattr(upper, field):
                    raise SpecError(f"{higher}.{field}", f"must be at least as strict as {lower}'s "
                                                         f"({getattr(under, field):g}); got {getattr(upper, field):g}")

    def levels(self) -> tuple[tuple[str, Level], ...]:
        """``(name, level)``, highest first."""
        return tuple((name, getattr(self, name)) for name in LEVELS)


@dataclasses.dataclass(frozen=True)
class Constraint:
    """One ``constraints:`` entry: ``metric`` (a trial-table column) at most ``max`` or at least ``min``."""

    metric: str = key(REQUIRED, "the trials-table column bounded", choices=columns.CONSTRAINT_METRICS)
    max: float | None = key(None, "most the metric may be, in its own unit; give max or min")
    min: float | None = key(None, "least the metric may be, in its own unit; give max or min")

    def __post_init__(self) -> None:
        check_keys(self)
        if (self.max is None) == (self.min is None):
            raise SpecError("max", f"give exactly one of max, min for {self.metric}")

    def violation(self, value: float) -> float:
        """How far ``value`` is past the bound, in the metric's units: <= 0 feasible; NaN value: inf."""
        if value is None or math.isnan(value):
            return math.inf
        return value - self.max if self.max is not None else self.min - value

    def describe(self) -> str:
        return f"{self.metric} <= {self.max:g}" if self.max is not None else f"{self.metric} >= {self.min:g}"


@dataclasses.dataclass(frozen=True)
class _Sections:
    success: SuccessSpec = SuccessSpec()
    constraints: tuple[Constraint, ...] = ()


@dataclasses.dataclass(frozen=True)
class Criteria:
    """The success levels, the constraints and the accuracy drop that sets the default target."""

    success: SuccessSpec = SuccessSpec()
    constraints: tuple[Constraint, ...] = ()
    max_accuracy_drop: float = 1.0  # promote.rule's, points: the default time-to-accuracy target


def criteria_from(document: Mapping, *, source: str = "") -> Criteria:
    """The checked ``success:``, ``constraints:`` and ``promote.rule.max_accuracy_drop`` of a spec mapping.

    Raises:
        SpecError: a bad entry; the key starts with ``source`` (the spec file) when given.
    """
    try:
        sections = build(_Sections, {key: document[key] for key in ("success", "constraints")
                                     if document.get(key) is not None})
    except SpecError as err:
        raise SpecError(f"{source}: {err.key}" if source else err.key, err.message) from None
    rule = ((document.get("promote") or {}).get("rule") or {})
    return Criteria(sections.success, sections.constraints, float(rule.get("max_accuracy_drop", 1.0)))


#: The plan's levels, no constraints, the default 1-point target: what a spec without the sections means.
PLAN_CRITERIA = Criteria()
