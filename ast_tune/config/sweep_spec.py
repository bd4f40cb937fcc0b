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
from ast_tune.config.keys import REQUIRED, check_keys, key, like
from ast_tune.config.presets import PRESETS, get_preset
from ast_tune.config.promote_spec import BASELINES, PromoteSpec, PromoteWorkload
from ast_tune.config.run_spec import DataSpec, RunSpec
from ast_tune.config.spec import (
    SpecError,
    build,
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

    data: DataSpec = like(RunSpec, "data", meaning="where the samples of every trial and of the baseline come from")
    model: str = like(RunSpec, "model")
    batch_size: int = like(RunSpec, "batch_size")
    epochs: int = like(RunSpec, "epochs", meaning="epochs of every trial; also the scheduler's max_t")
    precision: str = like(RunSpec, "precision")
    checkpoint_every: int | None = like(RunSpec, "checkpoint_every", default=None,
                                        meaning="epochs between trial checkpoints; null: the base preset's")
    workers: int = key(1, "Ray Train workers (DDP ranks) per trial", unit="workers", low=1)
    gpus_per_worker: float = key(0, "GPUs each training worker reserves; 0: train on CPU", unit="GPUs", low=0)
    cpus_per_worker: float = key(1, "CPUs each training worker reserves; also its torch threads", unit="CPUs",
                                 low=0, low_open=True)
    placement: str = key("STRICT_PACK", "Ray placement of a trial's workers: all on one node (STRICT_PACK), "
                         "packed where they fit (PACK), or spread over nodes (SPREAD)", choices=PLACEMENTS)

    def __post_init__(self) -> None:
        check_keys(self)

    def promoted(self, overrides: PromoteWorkload) -> Workload:
        """This workload with a promotion's ``overrides`` (``promote.workload``)."""
        data = self.data
        data = dataclasses.replace(data, root=overrides.root or data.root,
                                   subset=data.subset if overrides.subset else None,
                                   image_size=overrides.image_size or data.image_size,
                                   num_workers=data.num_workers if overrides.num_workers is None
                                   else overrides.num_workers)
        return dataclasses.replace(self, data=data, workers=overrides.workers or self.workers)

    def describe(self) -> str:
        """One phrase naming this workload: its data (and subset), resolution, epochs and workers."""
        data, subset = self.data, self.data.subset
        if subset is None:
            classes = "every class"
        else:
            images = f"{subset.per_class} train images each" if subset.per_class else "all their images"
            classes = f"{subset.classes} classes (seed {subset.seed}), {images}"
        gpus = f" × {self.gpus_per_worker:g} GPU" if self.gpus_per_worker else " CPU"
        where = f"{data.kind} {data.root}" if data.root else data.kind
        return (f"{where}: {classes}, {data.image_size} px, {self.model}, {self.epochs} epochs, "
                f"{self.workers}{gpus} worker(s)")


@dataclasses.dataclass(frozen=True)
class SearchSpec:
    """How Optuna proposes trials; ``max_concurrent`` is capped further by the cluster's resources."""

    sampler: str = key("tpe", "Optuna sampler that proposes each trial's parameters (gp needs scipy)",
                       choices=SAMPLERS)
    num_trials: int = key(8, "trials the sweep runs in all", unit="trials", low=1)
    max_concurrent: int = key(1, "trials running at once, at most", unit="trials", low=1)
    seed: int = key(0, "random seed of the sampler", low=0, high=2**32 - 1)  # numpy's, which Optuna's samplers use

    def __post_init__(self) -> None:
        check_keys(self)
        if self.sampler == "gp" and importlib.util.find_spec("scipy") is None:
            raise SpecError("sampler", "gp needs scipy, which is not installed; use tpe, nsga2 or random")


@dataclasses.dataclass(frozen=True)
class SchedulerSpec:
    """Early stopping, in epochs: ``asha`` on one metric, ``moasha`` on the objectives, ``fifo`` none."""

    kind: str = key("asha", "fifo: no early stopping; asha: on one metric; moasha: on the objectives' Pareto rank",
                    choices=SCHEDULER_KINDS)
    metric: str = key("val_top1", "asha only: the metric its rungs rank trials on", choices=columns.OBJECTIVE_METRICS)
    mode: str | None = key(None, "asha only: whether metric is minimised or maximised; null: the mode of the "
                           "objective on the same metric", choices=columns.MODES)
    grace_period: int = key(1, "epochs a trial runs before the first rung; at most workload.epochs", unit="epochs",
                            low=1)
    reduction_factor: float = key(3, "η: about 1/η of the trials pass each rung", low=2)  # η < 2: rungs without end
    rank_on: tuple[str, ...] = key((), "moasha only: the objectives' metrics its rungs rank on; []: every objective")

    def __post_init__(self) -> None:
        check_keys(self)
        if self.rank_on and self.kind != "moasha":
            raise SpecError("rank_on", f"only kind moasha ranks on several objectives; kind {self.kind} "
                                       "ranks on scheduler.metric (asha) or none (fifo)")


@dataclasses.dataclass(frozen=True)
class Objective:
    """One metric Optuna optimises (its last reported epoch's value) and the Pareto front ranks."""

    metric: str = key(REQUIRED, "a metric of the trials table to optimise", choices=columns.RANKED_METRICS)
    mode: str = key("max", "whether it is minimised or maximised", choices=columns.MODES)

    def __post_init__(self) -> None:
        check_keys(self)


@dataclasses.dataclass(frozen=True)
class StorageSpec:
    """Where the results go, and whether the sweep trains a dense baseline to measure speedups against."""

    root: str = key("results", "results go to <root>/<name>; on a multi-node cluster a filesystem every node "
                    "mounts at this path")
    baseline: str = key("auto", "auto: train a dense baseline once per sweep, which gives the measured speedup; "
                        "none: no baseline", choices=BASELINES)

    def __post_init__(self) -> None:
        check_keys(self)
        if "://" in self.root:  # every result is written by atomic rename, the journal appended in place
            raise SpecError("root", f"must be a directory path; URIs are not supported, got {self.root!r}: "
                                    "mount the bucket or volume at the same path on every node instead")


DEFAULT_OBJECTIVES = tuple(Objective(metric, mode) for metric, mode in columns.DEFAULT_OBJECTIVES)


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A whole sweep, validated across sections; :meth:`trial_spec` gives each trial's RunSpec."""

    name: str = key(REQUIRED, "the sweep's name, a directory name of letters, digits, _ . -; results go to "
                    "<storage.root>/<name>")
    workload: Workload = key(Workload(), "what every trial and the dense baseline train, and one trial's resources")
    base: str = key("quickstart", "the preset every trial starts from", choices=tuple(PRESETS))
    space: tuple[Param, ...] = key((), "what the search varies: <name>: {<distribution>: <values>} (below)")
    search: SearchSpec = key(SearchSpec(), "how Optuna proposes trials")
    scheduler: SchedulerSpec = key(SchedulerSpec(), "early stopping")
    objectives: tuple[Objective, ...] = key(DEFAULT_OBJECTIVES, "the metrics Optuna optimises and the Pareto front "
                                            "ranks, each once")
    promote: PromoteSpec = key(PromoteSpec(), "which trial runs to full length afterwards, and on what")
    storage: StorageSpec = key(StorageSpec(), "where results go, and the dense baseline")
    cost: CostSpec = key(CostSpec(), "figures for --dry-run's cost estimate where --probe does not time them")
    success: SuccessSpec = key(SuccessSpec(), "the plan's success levels each trial is judged by")
    constraints: tuple[Constraint, ...] = key((), "hard limits on trial metrics; a trial breaking one stays in "
                                              "the tables, off the front")

    def __post_init__(self) -> None:
        check_keys(self)
        if not _NAME.fullmatch(self.name):
            raise SpecError("name", f"must be a directory name of letters, digits, _ . -; got {self.name!r}")
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
        workload = self.workload.promoted(self.promote.workload) if self.promote.workload else self.workload
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
    for name in WORKLOAD_OWNED:
        if workload[name] is not None:
            document[name] = workload[name]
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
