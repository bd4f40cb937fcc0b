"""Figures of one run or of a sweep's trials, as 800 × 500 px PNG files.

Figures are drawn on :class:`matplotlib.figure.Figure` objects, never through pyplot, so nothing
opens a window or touches the global backend: the PNGs are rendered by Agg. Units on the axes:
accuracies in %; energy savings in %, labelled *counted* (samples skipped, the reference
library's definition, not a measurement); speedup as ×, labelled *measured*; threshold in nats.

``python -m ast_tune.train`` draws a run's figures with :func:`write_run_plots`; the sweep
report (:mod:`ast_tune.report`) draws the same curves for every trial, front trials in colour.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ast_tune import atomic

FIGSIZE = (8.0, 5.0)  # inches
DPI = 100  # so every PNG is 800 × 500 px
#: The curve figures, in the order :func:`curve_figures` returns them.
CURVE_FIGURES = ("accuracy.png", "activation.png", "savings.png", "threshold.png")
PER_CLASS_FIGURE = "per_class.png"
WORST_CLASSES = 20  # named in the per-class figure
_OTHER = {"color": "0.65", "lw": 0.8, "alpha": 0.7, "zorder": 2}
_WARMUP_SHADE = "0.92"


def new_figure(ncols: int = 1, *, width_ratios: Sequence[float] | None = None) -> tuple[Figure, np.ndarray]:
    """A :data:`FIGSIZE` figure with ``ncols`` axes in one row (constrained layout), axes as an array."""
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    return fig, np.atleast_1d(fig.subplots(1, ncols, width_ratios=width_ratios))


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` as PNG, atomically, at :data:`DPI`; return ``path``."""
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return Path(path)


def note(ax: matplotlib.axes.Axes, text: str) -> None:
    """Grey centred text on ``ax``, for a panel with nothing to draw."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4", wrap=True)


def curve_rows(epochs: pd.DataFrame) -> pd.DataFrame:
    """Rows with ``epoch >= 1``, one per (trial, epoch) (a re-reported epoch keeps its last row).

    A single run's frame (no ``trial_id`` column) becomes one trial named ``"run"``.
    """
    rows = epochs if "trial_id" in epochs.columns else epochs.assign(trial_id="run")
    rows = rows[rows["epoch"] >= 1].drop_duplicates(["trial_id", "epoch"], keep="last")
    return rows.sort_values("epoch", kind="stable")


def short_labels(trial_ids: Sequence[object]) -> dict[object, str]:
    """Trial ids without the prefix they all share up to its last ``_``, e.g. Ray's
    ``train_fn_3f2a1_00014`` → ``00014``; unchanged for a single id or no shared prefix."""
    names = [str(t) for t in trial_ids]
    prefix = os.path.commonprefix(names) if len(names) > 1 else ""
    prefix = prefix[: prefix.rfind("_") + 1]
    return {t: name.removeprefix(prefix) or name for t, name in zip(trial_ids, names, strict=True)}


def trial_styles(trial_ids: Sequence[str], emphasise: Collection[str]) -> dict[str, dict]:
    """Line styles: emphasised trials get a tab10 colour and a thick line, the rest thin grey."""
    colours = matplotlib.colormaps["tab10"].colors
    styles, k = {}, 0
    for trial_id in trial_ids:
        if trial_id in emphasise:
            styles[trial_id] = {"color": colours[k % len(colours)], "lw": 1.8, "alpha": 1.0, "zorder": 3}
            k += 1
        else:
            styles[trial_id] = _OTHER
    return styles


def _handles(styles: Mapping[str, dict], extra: Sequence[Line2D] = ()) -> list[Line2D]:
    """Legend entries: the first 12 emphasised trials (none for a single run), one "other trials"
    entry, then ``extra``."""
    labels = short_labels(list(styles))
    handles = [Line2D([], [], label=labels[trial_id], **style) for trial_id, style in styles.items()
               if style is not _OTHER and len(styles) > 1][:12]
    if any(style is _OTHER for style in styles.values()):
        handles.append(Line2D([], [], label="other trials", **_OTHER))
    return handles + list(extra)


def _plot_column(ax, rows: pd.DataFrame, column: str, styles: Mapping[str, dict], *,
                 scale: float = 1.0, linestyle: str = "-") -> None:
    drawn = False
    for trial_id, trial in rows.groupby("trial_id", sort=False):
        values = trial[column].to_numpy(dtype=float) * scale if column in trial else np.array([np.nan])
        if np.isfinite(values).any():
            ax.plot(trial["epoch"], values, ls=linestyle, marker="." if linestyle == "-" else None,
                    ms=4, **styles[trial_id])
            drawn = True
    if not drawn and linestyle == "-":
        note(ax, f"{column}: not recorded")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


def warmup_epochs(rows: pd.DataFrame) -> int:
    """The number of dense warm-up epochs (``phase == "warmup"``) if every trial has the same, else 0."""
    if "phase" not in rows:
        return 0
    warm = rows["epoch"].where(rows["phase"] == "warmup", 0).groupby(rows["trial_id"]).max()
    return int(warm.iloc[0]) if len(warm) and (warm == warm.iloc[0]).all() else 0


def _shade_warmup(ax, warmup: int) -> list[Patch]:
    """Shade epochs 1..``warmup`` on ``ax``; the legend entry for it (none if ``warmup`` is 0)."""
    if warmup <= 0:
        return []
    ax.axvspan(0.5, warmup + 0.5, color=_WARMUP_SHADE, zorder=0, lw=0)
    return [Patch(color=_WARMUP_SHADE, label="dense warm-up")]


def accuracy_figure(rows: pd.DataFrame, path: Path, *, styles: Mapping[str, dict],
                    baseline: pd.DataFrame | None = None) -> Path:
    """Val top-1, val top-5 (%) and train loss (nats) per epoch; the dense baseline dashed black.

    A 2 × 2 grid: three panels and the legend in the fourth cell. A warm-up shared by every
    trial is shaded.
    """
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    panels = (("val_top1", "val top-1 (%)"), ("val_top5", "val top-5 (%)"),
              ("train_loss", "train loss (nats)"))
    for ax, (column, label) in zip(axes, panels, strict=False):
        _plot_column(ax, rows, column, styles)
        if baseline is not None and column in baseline:
            ax.plot(baseline["epoch"], baseline[column], color="k", ls="--", lw=1.2, zorder=4)
        ax.set_ylabel(label)
        shade = _shade_warmup(ax, warmup_epochs(rows))
    extra = [] if baseline is None else [Line2D([], [], color="k", ls="--", lw=1.2, label="dense baseline")]
    handles = _handles(styles, extra + shade)
    axes[3].axis("off")
    if handles:
        axes[3].legend(handles=handles, loc="center", fontsize=8, ncols=1 + len(handles) // 8,
                       title="trial" if len(styles) > 1 else None, title_fontsize=8)
    fig.suptitle("Validation accuracy and training loss per epoch")
    return save(fig, path)


def metric_figure(rows: pd.DataFrame, path: Path, *, column: str, ylabel: str, title: str,
                  styles: Mapping[str, dict], scale: float = 1.0, target: str | None = None) -> Path:
    """One per-epoch metric of every trial; ``target`` (a column) dashed in each trial's colour;
    a warm-up shared by every trial shaded."""
    fig, (ax,) = new_figure()
    _plot_column(ax, rows, column, styles, scale=scale)
    extra = _shade_warmup(ax, warmup_epochs(rows))
    if target is not None:
        _plot_column(ax, rows, target, styles, scale=scale, linestyle="--")
        extra.append(Line2D([], [], color="0.3", ls="--", label="target"))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if _handles(styles, extra):
        fig.legend(handles=_handles(styles, extra), loc="outside right upper", fontsize=8,
                   title="trial" if len(styles) > 1 else None, title_fontsize=8)
    return save(fig, path)


def curve_figures(epochs: pd.DataFrame, out_dir: Path, *, emphasise: Collection[str] | None = None,
                  baseline: pd.DataFrame | None = None) -> list[Path]:
    """Write :data:`CURVE_FIGURES` for every trial in ``epochs`` into ``out_dir``.

    Args:
        epochs: rows of ``columns.EPOCH_METRICS``, with ``trial_id`` for several trials.
        out_dir: created if missing.
        emphasise: trial ids drawn in colour (e.g. the front); the others thin grey. None: all.
        baseline: the dense baseline's per-epoch ``val_top1``/``val_top5``/``train_loss``, or None.
    """
    rows = curve_rows(epochs)
    trial_ids = list(dict.fromkeys(rows["trial_id"]))
    styles = trial_styles(trial_ids, trial_ids if emphasise is None else emphasise)
    out_dir = Path(out_dir)
    acc, act, sav, thr = (out_dir / name for name in CURVE_FIGURES)
    return [
        accuracy_figure(rows, acc, styles=styles, baseline=baseline),
        metric_figure(rows, act, column="activation_rate", target="target_activation", scale=100,
                      ylabel="activation rate (% of samples trained on)", styles=styles,
                      title="Realised activation rate per epoch; its target dashed"),
        metric_figure(rows, sav, column="energy_savings", scale=100, styles=styles,
                      ylabel="energy savings, counted (%)",
                      title="Energy savings per epoch (counted, not measured)\n"
                            "1 − (active + 0.01·skipped)/total"),
        metric_figure(rows, thr, column="threshold", ylabel="threshold (nats)", styles=styles,
                      title="Significance threshold at the end of each epoch (nats)"),
    ]


def per_class_figure(per_class: Sequence[float], class_names: Sequence[str], path: Path, *,
                     title: str = "Per-class val top-1") -> Path:
    """Per-class top-1 (%) sorted worst first; the :data:`WORST_CLASSES` worst named.

    With more classes than that, a left panel shows every class sorted (unnamed) and a right
    panel names the worst. ``class_names`` of another length fall back to class indices.
    """
    accuracy = np.asarray(per_class, dtype=float)
    names = [str(n) for n in class_names] if len(class_names) == len(accuracy) else \
        [str(i) for i in range(len(accuracy))]
    order = np.argsort(accuracy, kind="stable")
    many = len(accuracy) > WORST_CLASSES
    fig, axes = new_figure(2, width_ratios=(1, 1.4)) if many else new_figure()
    if many:
        axes[0].bar(np.arange(len(order)), accuracy[order], width=1.0, color="tab:blue")
        axes[0].set(xlabel=f"class, sorted by accuracy ({len(order)} classes)", ylabel="val top-1 (%)",
                    xticks=[], xlim=(-0.5, len(order) - 0.5), ylim=(0, 100))
    worst = order[:WORST_CLASSES][::-1]  # worst at the top
    ax = axes[-1]
    bars = ax.barh(np.arange(len(worst)), accuracy[worst], color="tab:red" if many else "tab:blue")
    ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    ax.set_yticks(np.arange(len(worst)), [_short(names[i]) for i in worst], fontsize=8)
    ax.set(xlabel="val top-1 (%)", ylabel="class (worst at the top)", xlim=(0, 105))
    if many:
        ax.set_title(f"the {len(worst)} worst classes", fontsize=9)
    mean = np.nanmean(accuracy) if len(accuracy) else np.nan
    fig.suptitle(f"{title}, sorted (mean over classes {mean:.1f} %)")
    return save(fig, path)


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def write_run_plots(epochs: pd.DataFrame, out_dir: Path, *, summary: Mapping | None = None) -> list[Path]:
    """The figures of one ``python -m ast_tune.train`` run, written into ``out_dir``.

    Args:
        epochs: the run's ``epochs.parquet`` (``columns.EPOCH_METRICS``, one row per epoch).
        out_dir: created if missing.
        summary: the run's ``summary.json``; its ``per_class_top1`` (%) and ``class_names``
            add :data:`PER_CLASS_FIGURE`.

    Returns:
        The PNG paths: :data:`CURVE_FIGURES`, then the per-class figure if the summary has it.
    """
    paths = curve_figures(epochs, out_dir)
    per_class = (summary or {}).get("per_class_top1")
    if per_class:
        paths.append(per_class_figure(per_class, summary.get("class_names") or (), Path(out_dir)
                                      / PER_CLASS_FIGURE))
    return paths
