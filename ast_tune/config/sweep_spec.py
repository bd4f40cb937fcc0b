"""The sweep spec: a YAML file (plus ``--set key.path=value`` overrides) → a frozen :class:`SweepSpec`.

Sections: ``name``, ``workload`` (what every trial trains, and on what), ``base`` (a preset),
``space`` (what the search varies; parsed by :mod:`ast_tune.config.sweep_space`), ``search``,
``scheduler``, ``objectives``, ``promote`` (with ``promote.workload``: the promoted run's own
workload), ``storage``, ``cost`` (figures for ``--dry-run``'s estimate). Unknown keys, wrong types, empty or
inverted ranges, an unknown preset or metric raise :class:`~ast_tune.config.spec.SpecError` naming the
key path, e.g. ``space.kp.loguniform: low must be > 0, got -1``.

The fields the workload sets (data, model, batch size, epochs, precision, checkpoint interval) are
not searchable: they define what the baseline and every trial share. Every bound and choice of
``space`` is checked against the RunSpec field it sets, on top of the base preset.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ast_tune.config import columns
from ast_tune.config.cost_spec import CostSpec
from ast_tune.config.criteria import Constraint, Criteria, SuccessSpec
from ast_tune.config.presets import PRESETS, get_preset
from ast_tune.config.promote_spec import PromoteSpec
from ast_tune.config.run_spec import DataSpec, RunSpec, check_workload_fields
from ast_tune.config.spec import (
    SpecError,
    build,
    check_choice,
    check_range,
    load_yaml,
    parse_assignment,
    set_path,
    to_dict,
)
from ast_tune.config.sweep_space import WORKLOAD_OWNED, Param, parse_space

SAMPLERS = ("tpe", "nsga2", "random", "gp")
SCHEDULER_KINDS = ("fifo", "asha", "moasha")
PLACEMENTS = ("STRICT_PACK", "PACK", "SPREAD")
_NEEDS_BASELINE = ("speedup", "top1_drop", "speedup_to_target")
DRIVER_CPUS = 0.05  # CPU share of a trial's driver (the Tune function that runs the TorchTrainer)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclasses.dataclass(frozen=True)
class Workload:
    """What every trial (and the dense baseline) trains, and the Ray resources of one trial."""

    data: DataSpec = DataSpec()
    model: str = "small_resnet"  # small_resnet | resnet18 | resnet50
    batch_size: int = 128  # samples per forward pass, per training worker
    epochs: int = 10  # per trial; also the scheduler's max_t
    precision: str = "fp32"  # fp32 | amp | bf16
    checkpoint_every: int | None = None  # epochs between trial checkpoints; None = the base preset's
    workers: int = 1  # Ray Train workers (DDP ranks) per trial
    gpus_per_worker: float = 0
    cpus_per_worker: float = 1  # also torch threads per worker (tuning.ray_runtime.torch_threads)
    placement: str = "STRICT_PACK"  # how a trial's workers are placed: STRICT_PACK | PACK | SPREAD

    def __post_init__(self) -> None:
        check_workload_fields(self)
        check_range("workers", self.workers, low=1)
        check_range("gpus_per_worker", self.gpus_per_worker, low=0)
        check_range("cpus_per_worker", self.cpus_per_worker, low=0, low_open=True)
        check_choice("placement", self.placement, PLACEMENTS)


@dataclasses.dataclass(frozen=True)
class SearchSpec:
    """How Optuna proposes trials; ``max_concurrent`` is capped further by the cluster's resources."""

    sampler: str = "tpe"  # tpe | nsga2 | random | gp (gp needs scipy)
    num_trials: int = 8
    max_concurrent: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("sampler", self.sampler, SAMPLERS)
        if self.sampler == "gp" and importlib.util.find_spec("scipy") is None:
            raise SpecError("sampler", "gp needs scipy, which is not installed; use tpe, nsga2 or random")
        check_range("num_trials", self.num_trials, low=1)
        check_range("max_concurrent", self.max_concurrent, low=1)
        check_range("seed", self.seed, low=0, high=2**32 - 1)  # numpy's seed range, which Optuna's samplers use


@dataclasses.dataclass(frozen=True)
class SchedulerSpec:
    """Early stopping, in epochs: ``asha`` on one metric, ``moasha`` on the objectives, ``fifo`` none."""

    kind: str = "asha"
    metric: str = "val_top1"  # asha only
    mode: str | None = None  # min | max; by default the mode of the objective on the same metric
    grace_period: int = 1  # epochs before the first rung
    reduction_factor: float = 3  # η: about 1/η of the trials pass each rung
    rank_on: tuple[str, ...] = ()  # moasha only: the objectives its rungs rank; () = every objective

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, SCHEDULER_KINDS)
        if self.rank_on and self.kind != "moasha":
            raise SpecError("rank_on", f"only kind moasha ranks on several objectives; kind {self.kind} "
                                       "ranks on scheduler.metric (asha) or none (fifo)")
        check_choice("metric", self.metric, columns.OBJECTIVE_METRICS)
        if self.mode is not None:
            check_choice("mode", self.mode, columns.MODES)
        check_range("grace_period", self.grace_period, low=1)
        check_range("reduction_factor", self.reduction_factor, low=2)  # η < 2: rungs without end


@dataclasses.dataclass(frozen=True)
class Objective:
    """One metric Optuna optimises (its last reported epoch's value) and the Pareto front ranks."""

    metric: str
    mode: str = "max"

    def __post_init__(self) -> None:
        check_choice("metric", self.metric, columns.RANKED_METRICS)
        check_choice("mode", self.mode, columns.MODES)


@dataclasses.dataclass(frozen=True)
class StorageSpec:
    root: str = "results"  # results go to <root>/<name>; a shared filesystem on multi-node clusters
    baseline: str = "auto"  # auto: time a dense baseline once per sweep (gives speedup) | none

    def __post_init__(self) -> None:
        check_choice("baseline", self.baseline, ("auto", "none"))
        if "://" in self.root:  # every result is written by atomic rename, the journal appended in place
            raise SpecError("root", f"must be a directory path; URIs are not supported, got {self.root!r}: "
                                    "mount the bucket or volume at the same path on every node instead")


DEFAULT_OBJECTIVES = tuple(Objective(metric, mode) for metric, mode in columns.DEFAULT_OBJECTIVES)


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A whole sweep, validated across sections; :meth:`trial_spec` gives each trial's RunSpec."""

    name: str  # results go to <storage.root>/<name>
    workload: Workload = Workload()
    base: str = "quickstart"  # preset every trial starts from
    space: tuple[Param, ...] = ()
    search: SearchSpec = SearchSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    objectives: tuple[Objective, ...] = DEFAULT_OBJECTIVES
    promote: PromoteSpec = PromoteSpec()
    storage: StorageSpec = StorageSpec()
    cost: CostSpec = CostSpec()
    success: SuccessSpec = SuccessSpec()  # the seed's levels (ast_tune.config.criteria)
    constraints: tuple[Constraint, ...] = ()  # trials breaking one stay in the tables, off the front

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise SpecError("name", f"must be a directory name of letters, digits, _ . -; got {self.name!r}")
        if self.base not in PRESETS:
            raise SpecError("base", f"must be one of {', '.join(PRESETS)}; got {self.base!r}")
        self._check_objectives()
        if self.scheduler.kind != "fifo" and self.scheduler.grace_period > self.workload.epochs:
            raise SpecError("scheduler.grace_period", f"must be <= workload.epochs ({self.workload.epochs}), "
                                                      f"got {self.scheduler.grace_period}")
        _check_candidates(self.space, _reference_document(self))

    def _check_objectives(self) -> None:
        if not self.objectives:
            raise SpecError("objectives", "must name at least one {metric, mode}")
        metrics = [o.metric for o in self.objectives]
        for i, metric in enumerate(metrics):
            if metric in metrics[:i]:
                raise SpecError(f"objectives[{i}].metric", f"{metric} is named twice")
            if metric in _NEEDS_BASELINE and self.storage.baseline == "none":
                raise SpecError(f"objectives[{i}].metric", f"{metric} needs storage.baseline: auto")
            if metric in columns.OUTCOME_METRICS and self.scheduler.kind == "moasha":
                raise SpecError(f"objectives[{i}].metric", f"{metric} is known only when a trial ends, so "
                                "moasha cannot rank trials on it per epoch; use scheduler.kind asha or fifo")
        for i, constraint in enumerate(self.constraints):
            if constraint.metric in _NEEDS_BASELINE and self.storage.baseline == "none":
                raise SpecError(f"constraints[{i}].metric", f"{constraint.metric} needs storage.baseline: auto")
        scheduler = self.scheduler
        for i, metric in enumerate(scheduler.rank_on):
            if metric not in metrics or metric in scheduler.rank_on[:i]:
                raise SpecError(f"scheduler.rank_on[{i}]", f"must be one of the objectives {', '.join(metrics)}, "
                                f"each once; got {metric!r}")
        if scheduler.kind == "asha" and scheduler.mode is None and scheduler.metric not in metrics:
            raise SpecError("scheduler.mode", f"required: {self.scheduler.metric} is not an objective")
        if self.promote.enabled and self.promote.rule.prefer not in metrics:
            raise SpecError("promote.rule.prefer", f"must be one of the objectives {', '.join(metrics)}; "
                            f"got {self.promote.rule.prefer!r}")

    @property
    def criteria(self) -> Criteria:
        """The success levels, constraints and time-to-accuracy target the result tables judge trials by."""
        return Criteria(self.success, self.constraints, self.promote.rule.max_accuracy_drop)

    @property
    def rung_objectives(self) -> tuple[Objective, ...]:
        """The objectives MOASHA's rungs rank trials on: ``scheduler.rank_on``'s, else all of them."""
        rank_on = self.scheduler.rank_on
        return tuple(o for o in self.objectives if not rank_on or o.metric in rank_on)

    @property
    def scheduler_mode(self) -> str:
        """The ASHA mode: as given, else that of the objective on the scheduler's metric."""
        modes = {o.metric: o.mode for o in self.objectives}
        return self.scheduler.mode or modes[self.scheduler.metric]

    def trial_spec(self, params: Mapping[str, Any]) -> RunSpec:
        """The RunSpec of one trial: base preset + workload + the sampled ``params`` (by name).

        A parameter missing from ``params`` takes its first candidate (low bound, first option).
        """
        document = _base_document(self)
        for param in self.space:
            document = set_path(document, param.path, params.get(param.name, param.values[0]))
        return build(RunSpec, document)

    def promoted_sweep(self, epochs: int) -> SweepSpec:
        """This sweep on the promoted run's workload (``promote.workload``) for ``epochs``, without a scheduler.

        Its :meth:`trial_spec` is a promoted run's RunSpec, its :meth:`baseline_spec` that run's dense baseline.
        """
        workload = self.promote.workload.apply(self.workload) if self.promote.workload else self.workload
        return dataclasses.replace(self, workload=dataclasses.replace(workload, epochs=epochs),
                                   scheduler=SchedulerSpec(kind="fifo", metric=self.scheduler.metric,
                                                           mode=self.scheduler_mode),
                                   promote=dataclasses.replace(self.promote, enabled=False))

    def baseline_spec(self) -> RunSpec:
        """The dense baseline: base preset + workload, ``sparsity.mode: dense``, no search values."""
        document = set_path(_base_document(self), "sparsity.mode", "dense")
        document["warmup_epochs"] = min(document["warmup_epochs"], self.workload.epochs)
        return build(RunSpec, document)


def _base_document(spec: SweepSpec) -> dict:
    """The base preset with the workload's fields, as a RunSpec mapping."""
    document = to_dict(get_preset(spec.base))
    workload = to_dict(spec.workload)
    for key in WORKLOAD_OWNED:
        if workload[key] is not None:
            document[key] = workload[key]
    return document


def _reference_document(spec: SweepSpec) -> dict:
    """Base + workload with every parameter at its first candidate; it must be a valid RunSpec."""
    document = _base_document(spec)
    for param in spec.space:
        document = set_path(document, param.path, param.values[0])
    try:
        build(RunSpec, document)
    except SpecError as err:
        for param in spec.space:
            if err.key == param.path:
                raise SpecError(f"space.{param.name}.{param.kind}", str(err)) from None
        raise SpecError("base", f"{spec.base} with this workload and space gives {err}") from None
    return document


def _check_candidates(space: Sequence[Param], reference: dict) -> None:
    """Every bound, option and fixed value must make a valid RunSpec on its own."""
    for param in space:
        for value in param.values:
            try:
                build(RunSpec, set_path(reference, param.path, value))
            except SpecError as err:
                raise SpecError(f"space.{param.name}.{param.kind}", str(err)) from None


# --- loading ---------------------------------------------------------------------------------


def parse_sweep(document: Mapping) -> SweepSpec:
    """Build and validate a SweepSpec from a parsed YAML mapping."""
    if not isinstance(document, Mapping):
        raise SpecError("", f"a sweep spec must be a mapping, got {type(document).__name__}")
    return build(SweepSpec, {**document, "space": parse_space(document.get("space"))})


def load_sweep(path: str | Path, overrides: Sequence[str] = (), *, name: str | None = None) -> SweepSpec:
    """Read ``path``, apply ``--set`` overrides (then ``--name``) to the raw YAML, validate once."""
    document = load_yaml(path)
    for text in overrides:
        document = set_path(document, *parse_assignment(text))
    if name is not None:
        document["name"] = name
    return parse_sweep(document)


def to_document(spec: SweepSpec) -> dict:
    """The resolved spec as a YAML-ready mapping that :func:`parse_sweep` reads back unchanged."""
    document = to_dict(spec)
    document["space"] = {p.name: {p.kind: p.values[0] if p.kind == "fixed" else list(p.values)}
                         for p in spec.space}
    return document
