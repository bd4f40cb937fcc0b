"""Result tables of a sweep: per-trial summary, Pareto front, and their CSV / Parquet / Markdown files.

``epochs.parquet`` (one row per trial × epoch) is the source of truth; every other table is
rebuilt from it, so ``python -m ast_tune.export results/<name>`` reproduces them all.

Only trials whose status is in :data:`ast_tune.config.columns.FRONT_STATUSES` are ranked (:func:`eligible`):
finished trials and trials the scheduler stopped early (real trials, just shorter). Errored,
interrupted and NaN trials stay in ``trials.*`` with ``pareto_rank`` 0 and never enter the front,
whatever their numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ast_tune import atomic
from ast_tune.config import columns
from ast_tune.config.criteria import PLAN_CRITERIA, Criteria
from ast_tune.config.spec import SpecError, load_yaml
from ast_tune.results import pareto, verdict

logger = logging.getLogger(__name__)

Objective = tuple[str, str]  # (metric, "max" | "min")

#: Objectives when a sweep's ``spec.yaml`` names none.
DEFAULT_OBJECTIVES: tuple[Objective, ...] = columns.DEFAULT_OBJECTIVES
FORMATS = ("md", "csv", "parquet", "json")
_EPOCH_INPUTS = ("trial_id", "status", "epoch", "val_top1", "val_top5", "energy_savings", "speedup",
                 "activation_rate", "train_seconds", "energy_j")


def check_objectives(objectives: Sequence[Objective]) -> tuple[Objective, ...]:
    """Validate ``(metric, mode)`` pairs; raise :class:`SpecError` naming the bad entry."""
    if len(objectives) == 0:
        raise SpecError("objectives", "must name at least one {metric, mode}; got none")
    for i, (metric, mode) in enumerate(objectives):
        if metric not in columns.RANKED_METRICS:
            raise SpecError(f"objectives[{i}].metric",
                            f"must be one of {', '.join(columns.RANKED_METRICS)}; got {metric!r}")
        if mode not in columns.MODES:
            raise SpecError(f"objectives[{i}].mode",
                            f"must be one of {', '.join(columns.MODES)}; got {mode!r}")
    return tuple((metric, mode) for metric, mode in objectives)


def read_objectives(spec_path: Path) -> tuple[Objective, ...]:
    """The ``objectives: [{metric, mode}, ...]`` of a resolved spec; the defaults if the file is absent.

    Raises:
        SpecError: the file is not a YAML mapping (:func:`ast_tune.config.spec.load_yaml`), or an entry is
            not ``{metric, mode}`` with allowed values; the message starts with ``spec_path``.
    """
    if not spec_path.exists():
        return DEFAULT_OBJECTIVES
    return objectives_from(load_yaml(spec_path), source=spec_path)


def objectives_from(document: Mapping, *, source: Path) -> tuple[Objective, ...]:
    """The checked ``objectives`` of a spec ``document`` read from ``source``; the defaults if it has none.

    Raises:
        SpecError: an entry is not ``{metric, mode}`` with allowed values; the key starts with ``source``.
    """
    entries = document.get("objectives")
    if entries is None:
        return DEFAULT_OBJECTIVES
    try:
        return check_objectives(_objective_pairs(entries))
    except SpecError as err:
        raise SpecError(f"{source}: {err.key}", err.message) from None


def _objective_pairs(entries: object) -> list[Objective]:
    if not isinstance(entries, list):
        raise SpecError("objectives", f"must be a list of {{metric, mode}}; got {type(entries).__name__}")
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not {"metric", "mode"} <= set(entry):
            raise SpecError(f"objectives[{i}]", f"must be a mapping with keys metric, mode; got {entry!r}")
    return [(entry["metric"], entry["mode"]) for entry in entries]


def check_epochs(epochs: pd.DataFrame) -> None:
    """Raise :class:`SpecError` (key ``epochs``) if a column the aggregation reads is missing."""
    missing = [name for name in _EPOCH_INPUTS if name not in epochs.columns]
    if missing:
        raise SpecError("epochs", f"missing column(s) {', '.join(missing)}")


def _per_trial_metrics(rows: pd.DataFrame) -> pd.DataFrame:  # rows: verdict.epoch_rows(epochs)
    by = rows.groupby("trial_id", sort=False)
    last = by.tail(1).set_index("trial_id")
    seconds = by["train_seconds"].sum(skipna=False)
    data_seconds = by["data_seconds"].sum(min_count=1) if "data_seconds" in rows else np.nan
    baseline_seconds = (rows["speedup"] * rows["train_seconds"]).groupby(rows["trial_id"], sort=False)
    return pd.DataFrame({
        "epochs_done": last["epoch"],
        "val_top1": last["val_top1"],
        "val_top5": last["val_top5"],
        "energy_savings": by["energy_savings"].mean(),
        "speedup": baseline_seconds.sum(skipna=False) / seconds.where(seconds > 0),
        "activation_rate": by["activation_rate"].mean(),
        "train_seconds": by["train_seconds"].sum(min_count=1),
        "data_seconds": data_seconds,
        "data_wait": data_seconds / seconds.where(seconds > 0),
        "energy_j": by["energy_j"].sum(skipna=False),
    })


def trials_table(epochs: pd.DataFrame, objectives: Sequence[Objective], *, baseline: Mapping | None = None,
                 criteria: Criteria = PLAN_CRITERIA) -> pd.DataFrame:
    """One row per trial (in order of first appearance), ranked on ``objectives``.

    Aggregation over a trial's epochs (rows with ``epoch >= 1``; a trial that failed before
    its first epoch has only an ``epoch`` 0 row, so NaN metrics and ``epochs_done`` 0):

    - ``val_top1``, ``val_top5``: the LAST epoch's, i.e. final accuracy, not the best (%).
    - ``epochs_done``: the largest epoch.
    - ``energy_savings`` (counted) and ``activation_rate``: mean over epochs (fractions).
    - ``train_seconds`` and ``data_seconds`` (of it, waiting on the loader): sums (s); ``data_wait``: their
      ratio. ``energy_j``: sum (J), NaN if any epoch lacks it.
    - ``speedup`` (measured): Σ speedup_e·train_seconds_e / Σ train_seconds_e, i.e. the dense
      baseline's time for those epochs over the trial's time; NaN if any epoch lacks it.
    - ``status``, ``param.*`` and ``reason`` (if present): the trial's last non-null value.
    - ``columns.OUTCOME_METRICS``, ``verdict``, ``feasible``: :mod:`ast_tune.results.verdict`, on ``baseline.json``.

    ``pareto_rank`` comes from :func:`ast_tune.results.pareto.pareto_ranks` over the feasible trials whose
    status is :func:`eligible` (1 = front); the others, and rows with a NaN objective, get 0.
    ``on_front`` is ``pareto_rank == 1``.

    Raises:
        SpecError: a column is missing from ``epochs`` or an objective is invalid.
    """
    objectives = check_objectives(objectives)
    check_epochs(epochs)
    extra = [name for name in epochs.columns if name.startswith(columns.PARAM_PREFIX) or name == "reason"]
    identity = epochs.groupby("trial_id", sort=False)[["status", *extra]].last()
    rows = verdict.epoch_rows(epochs)
    trials = identity.join(_per_trial_metrics(rows)).join(verdict.outcomes(rows, baseline, criteria)).reset_index()
    trials["epochs_done"] = trials["epochs_done"].fillna(0).astype(int)
    trials["verdict"] = trials["verdict"].where(eligible(trials) & trials["verdict"].notna(), verdict.NO_LEVEL)
    trials["feasible"] = verdict.feasible(trials, criteria)
    trials["pareto_rank"] = _ranks(trials, objectives)
    trials["on_front"] = trials["pareto_rank"] == 1
    return trials[[*columns.TRIAL_COLUMNS, *extra]]


def eligible(trials: pd.DataFrame) -> pd.Series:
    """Which rows of ``trials`` (or of an epochs table) may enter the front: :func:`ast_tune.config.columns.may_rank`
    of their ``status``. The one filter: ranking, promotion, the report and the figures all use it."""
    return trials["status"].map(columns.may_rank).astype(bool)


def _ranks(trials: pd.DataFrame, objectives: Sequence[Objective]) -> np.ndarray:
    ranked = (eligible(trials) & trials["feasible"]).to_numpy()
    values = trials[[metric for metric, _ in objectives]].to_numpy(dtype=float)[ranked]
    ranks = np.zeros(len(trials), dtype=int)
    if not ranked.any():
        return ranks
    ranks[ranked] = pareto.pareto_ranks(values, [mode for _, mode in objectives])
    for (metric, _), column in zip(objectives, values.T, strict=True):
        if not np.isfinite(column).any():
            logger.warning("objective %s is NaN for every finished trial, so the front is empty; "
                           "leave it out of the objectives", metric)
    return ranks


def front_table(trials: pd.DataFrame, objectives: Sequence[Objective]) -> pd.DataFrame:
    """The rows of ``trials`` on the front in :func:`ast_tune.results.pareto.front_order` (the first
    objective best-first), ties by trial id."""
    objectives = check_objectives(objectives)
    front = trials[trials["on_front"].astype(bool)].sort_values("trial_id", kind="stable")
    values = front[[metric for metric, _ in objectives]].to_numpy(dtype=float)
    return front.iloc[pareto.front_order(values, [mode for _, mode in objectives])].reset_index(drop=True)


def format_cell(value: object, fmt: str, scale: float = 1, *, missing: str = "—") -> str:
    """A table cell: floats as ``fmt`` after ``* scale`` (``"d"``: as an integer), ``missing`` for NaN/None."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return missing
    if fmt == "d" and isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return format(int(value), "d")
    if isinstance(value, (float, np.floating)):
        return format(value * scale, fmt)
    return str(value).replace("|", "\\|")


# (column, header, format spec, scale) of the Markdown table; the param columns follow.
_MD_COLUMNS = (*columns.shown("trial_id", "val_top1", "val_top5", "energy_savings", "speedup", "activation_rate",
                              "epochs_done"), *verdict.MD_COLUMNS)


LOADER_BOUND = "(loader-bound)"  # beside the speedup of a trial that waited on its data loader


def front_markdown(front: pd.DataFrame, objectives: Sequence[Objective], *, target: float | None = None) -> str:
    """A GitHub Markdown table of ``front`` with a one-line caption, ready to paste.

    Accuracies are final top-1/top-5 in %; energy savings is COUNTED (the reference library's
    1 − (active + 0.01·skipped)/total, mean over epochs) in %; speedup is MEASURED (dense
    baseline train time / trial train time, same hardware) as ×; activation is the mean
    realised fraction trained on, in %. Floats in param columns get 4 significant digits;
    missing values print as "—" (time to a ``target`` (%): "not reached"); the caption names it. A
    trial that waited more than ``columns.DATA_BOUND`` of its train time on its loader has
    :data:`LOADER_BOUND` beside its speedup, and a caption line says what that means.
    """
    params = [name for name in front.columns if name.startswith(columns.PARAM_PREFIX)]
    names = ", ".join(f"{metric} ({mode})" for metric, mode in objectives)
    header = [title for _, title, _, _ in _MD_COLUMNS]
    header += [name.removeprefix(columns.PARAM_PREFIX) for name in params]
    lines = [
        f"Pareto front over {names}. Energy savings are *counted* (samples skipped, as the reference "
        "library counts them); speedup is *measured* (dense baseline train time / trial train time).",
        verdict.target_caption(target),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join([":---", *["---:"] * (len(_MD_COLUMNS) - 1), *[":---"] * len(params)]) + "|",
    ]
    bound = front["data_wait"] > columns.DATA_BOUND if "data_wait" in front else pd.Series(False, front.index)
    if bound.any():
        lines.insert(2, f"{LOADER_BOUND}: the trial waited more than {columns.DATA_BOUND:.0%} of its train time on "
                        "its data loader, so its speedup measures the loader, not AST.")
    for row, loader_bound in zip(front.to_dict("records"), bound, strict=True):
        cells = [format_cell(row[name], fmt, scale, missing=verdict.MISSING.get(name, "—") if target else "—")
                 + (f" {LOADER_BOUND}" if loader_bound and name == "speedup" else "")
                 for name, _, fmt, scale in _MD_COLUMNS]
        cells += [format_cell(row[name], ".4g") for name in params]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_frame(path: Path, frame: pd.DataFrame, fmt: str) -> None:
    """Atomically write ``frame`` as ``fmt`` (``parquet`` or ``csv``), without its index."""
    with atomic.atomic_path(path) as tmp:
        if fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)


def records_frame(records: Sequence[Mapping]) -> pd.DataFrame:
    """One run's epoch records as a table of the :data:`ast_tune.config.columns.EPOCH_METRICS` columns,
    in that order; a missing metric is NaN, other keys are left out."""
    return pd.DataFrame(list(records)).reindex(columns=list(columns.EPOCH_METRICS))


def write_epochs(path: Path, epochs: pd.DataFrame | Sequence[Mapping]) -> None:
    """Atomically write an ``epochs.parquet``: a sweep's epochs table, or one run's epoch records
    (:func:`records_frame`), as train, promote and :func:`write_tables` keep it."""
    frame = epochs if isinstance(epochs, pd.DataFrame) else records_frame(epochs)
    write_frame(path, frame.reset_index(drop=True), "parquet")


def _holds(path: Path, frame: pd.DataFrame) -> bool:
    try:
        return pd.read_parquet(path).equals(frame.reset_index(drop=True))
    except (OSError, ValueError):
        return False


def write_tables(results_dir: Path, epochs: pd.DataFrame, objectives: Sequence[Objective], *,
                 baseline: Mapping | None = None, criteria: Criteria = PLAN_CRITERIA) -> pd.DataFrame:
    """Write ``epochs.parquet`` (unless it already holds ``epochs``), ``trials.{parquet,csv}``
    and ``pareto.{parquet,csv,md}`` under ``results_dir``, each atomically; return the front.

    ``baseline`` and ``criteria``: as :func:`trials_table`'s. Every table is built before the first
    write, so bad input writes nothing.
    """
    results_dir = Path(results_dir)
    trials = trials_table(epochs, objectives, baseline=baseline, criteria=criteria)
    front = front_table(trials, objectives)
    markdown = front_markdown(front, objectives, target=verdict.target_top1(baseline, criteria))
    epochs_path = results_dir / "epochs.parquet"
    if not _holds(epochs_path, epochs):
        write_epochs(epochs_path, epochs)
    for stem, frame in (("trials", trials), ("pareto", front)):
        write_frame(results_dir / f"{stem}.parquet", frame, "parquet")
        write_frame(results_dir / f"{stem}.csv", frame, "csv")
    atomic.write_text(results_dir / "pareto.md", markdown)
    logger.info("%s: %d trials, %d on the front", results_dir, len(trials), len(front))
    return front


def read_epochs(results: Path) -> pd.DataFrame:
    if not results.is_dir():
        raise SpecError(str(results), "not a directory")
    path = results / "epochs.parquet"
    if not path.is_file():
        raise SpecError(str(path), "not found")
    try:
        epochs = pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise SpecError(str(path), f"cannot read Parquet ({type(err).__name__})") from None
    try:
        check_epochs(epochs)
    except SpecError as err:
        raise SpecError(str(path), err.message) from None
    return epochs
