"""Figures of a whole sweep: Pareto scatters, hypervolume progress, ASHA rung survival, promoted run.

They take the per-trial table of :func:`ast_tune.results.tables.trials_table` (ranks come from there,
never recomputed here) and write 800 × 500 px PNGs through :mod:`ast_tune.results.plots`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from ast_tune.results import pareto
from ast_tune.results.plots import new_figure, note, save, short_labels
from ast_tune.results.tables import Objective, eligible

#: Units of the objectives an export may rank on, for axis labels.
UNITS = {"val_top1": "%", "val_top5": "%", "energy_savings": "fraction, counted", "speedup": "×, measured",
         "activation_rate": "fraction", "train_seconds": "s", "energy_j": "J", "epochs_done": "epochs"}
_FRONT_EDGE = {"edgecolors": "k", "linewidths": 1.2}


def _scatter(fig, ax, shown: pd.DataFrame, *, x: pd.Series, colour: pd.Series, colour_label: str) -> None:
    """Dominated trials small, front trials large with a black edge and their id; NaN colour grey."""
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.75")
    finite = colour[np.isfinite(colour.to_numpy(dtype=float))]
    vmin, vmax = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
    front = shown["on_front"].astype(bool).to_numpy()
    mappable = None
    for mask, size, edge in ((~front, 30, {"edgecolors": "none"}), (front, 80, _FRONT_EDGE)):
        mappable = ax.scatter(x[mask], shown["val_top1"][mask], c=colour[mask].astype(float), cmap=cmap,
                              vmin=vmin, vmax=vmax, s=size, plotnonfinite=True, zorder=3, **edge)
    if len(finite):
        fig.colorbar(mappable, ax=ax, label=colour_label)
    points = sorted(zip(x[front], shown["val_top1"][front], shown["trial_id"][front], strict=True),
                    key=lambda p: (p[0], p[1]))
    labels = short_labels(list(shown["trial_id"]))
    left, right = ax.get_xlim()
    label_width = 0.09 * (right - left)  # about 8 characters at fontsize 8 on the default axes
    level, previous = 0, None
    for px, py, trial_id in points:  # labels of points close in x stack downwards, with a leader line
        level = level + 1 if previous is not None and px - previous < label_width else 0
        ax.annotate(labels[trial_id], (px, py), xytext=(6, 6 if level == 0 else -12 * level),
                    textcoords="offset points", fontsize=8,
                    arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.4"} if level else None)
        previous = px


def pareto_figure(trials: pd.DataFrame, path: Path, *, x_axis: str, baseline_top1: float | None) -> Path:
    """Final val top-1 (%) against counted savings (``x_axis="energy_savings"``, colour = measured
    speedup) or against measured speedup (``x_axis="speedup"``, colour = counted savings).

    Drawn: finished or stopped trials with a finite top-1 and x value; the front (``on_front``
    from :func:`ast_tune.results.tables.trials_table`) large and labelled. The dense baseline is a black
    star at 0 % savings / 1× speedup when its top-1 is known.
    """
    scale = 100 if x_axis == "energy_savings" else 1
    shown = trials[eligible(trials)
                   & np.isfinite(trials[["val_top1", x_axis]].to_numpy(dtype=float)).all(axis=1)]
    shown = shown.reset_index(drop=True)
    fig, (ax,) = new_figure()
    if x_axis == "energy_savings":
        colour, colour_label, baseline_x = shown["speedup"], "speedup (measured, ×)", 0.0
        ax.set_xlabel("energy savings, counted (%)")
    else:
        colour, colour_label, baseline_x = 100 * shown["energy_savings"], "energy savings, counted (%)", 1.0
        ax.set_xlabel("speedup, measured (× vs dense baseline)")
        ax.axvline(1.0, color="0.5", ls=":", lw=1)
    _scatter(fig, ax, shown, x=scale * shown[x_axis], colour=colour, colour_label=colour_label)
    handles = [Line2D([], [], ls="", marker="o", ms=8, mfc="0.75", mec="k", label="Pareto front (id)"),
               Line2D([], [], ls="", marker="o", ms=5, mfc="0.75", mec="none", label="not on the front")]
    if baseline_top1 is not None:
        ax.scatter([baseline_x], [baseline_top1], marker="*", s=220, c="k", zorder=4)
        handles.append(Line2D([], [], ls="", marker="*", ms=12, color="k", label="dense baseline"))
    if len(shown) == 0:
        note(ax, f"no finished trial has a finite val_top1 and {x_axis}")
    ax.set_ylabel("final val top-1 (%)")
    versus = "counted energy savings" if x_axis == "energy_savings" else "measured speedup"
    hidden = len(trials) - len(shown)
    ax.set_title(f"Final val top-1 vs {versus}\n{len(shown)} trials shown, {int(shown['on_front'].sum())} "
                 "on the front" + (f", {hidden} errored/unfinished/NaN not shown" if hidden else ""),
                 fontsize=10)
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncols=len(handles))
    return save(fig, path)


def reference_point(trials: pd.DataFrame, objectives: Sequence[Objective]) -> list[float]:
    """The hypervolume reference: 0 for every "max" objective (accuracy 0 %, savings 0, speedup
    0×); for a "min" objective, 1.0 if it is ``activation_rate``, else 1.1 × its largest finite
    value over all trials. Fixed for the whole sweep, so the curve is comparable across trials.
    """
    reference = []
    for metric, mode in objectives:
        if mode == "max":
            reference.append(0.0)
        elif metric == "activation_rate":
            reference.append(1.0)
        else:
            values = trials[metric].to_numpy(dtype=float)
            reference.append(1.1 * float(np.nanmax(values)) if np.isfinite(values).any() else 1.0)
    return reference


def hypervolume_figure(trials: pd.DataFrame, path: Path, *, objectives: Sequence[Objective]) -> Path:
    """Hypervolume of the ranked trials among the first k, for k = 1..N in trial order.

    Trials that cannot enter the front (errored, unfinished, NaN objective) keep the curve flat
    and are marked with a red ×.
    """
    metrics, modes = [m for m, _ in objectives], [mode for _, mode in objectives]
    reference = reference_point(trials, objectives)
    values = trials[metrics].to_numpy(dtype=float)
    ranked = (trials["pareto_rank"] > 0).to_numpy()
    volume = [pareto.hypervolume(values[: k + 1][ranked[: k + 1]], modes, reference=reference)
              for k in range(len(trials))]
    index = np.arange(1, len(trials) + 1)
    fig, (ax,) = new_figure()
    ax.step(index, volume, where="post", color="tab:blue", marker="o", ms=4, label="hypervolume")
    if (~ranked).any():
        ax.scatter(index[~ranked], np.asarray(volume)[~ranked], marker="x", color="tab:red", zorder=4,
                   label="not ranked (errored / unfinished)")
    ax.legend(fontsize=8, loc="lower right")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="trials so far, in trial order", ylabel="hypervolume (product of the objectives' units)")
    if len(trials) <= 30:
        ax.set_xticks(index, list(short_labels(list(trials["trial_id"])).values()), fontsize=8,
                      rotation=45 * (len(trials) > 10))
    names = ", ".join(f"{m} ({UNITS.get(m, '')}, {mode})" for m, mode in objectives)
    ref = ", ".join(f"{m}={r:g}" for m, r in zip(metrics, reference, strict=True))
    ax.set_title(f"Hypervolume of the front after each trial\nobjectives: {names}\n"
                 f"fixed reference point: {ref}", fontsize=9)
    return save(fig, path)


def asha_rungs(spec: Mapping) -> list[int]:
    """Epochs after which ASHA cuts trials: ⌈grace · η^k⌉ below ``workload.epochs``, from a
    resolved sweep spec's ``scheduler`` (``asha`` or ``moasha``); [] for ``fifo`` or no scheduler."""
    scheduler, workload = spec.get("scheduler") or {}, spec.get("workload") or {}
    try:
        grace, eta = float(scheduler["grace_period"]), float(scheduler["reduction_factor"])
        last = float(workload.get("epochs", math.inf))
    except (KeyError, TypeError, ValueError):
        return []
    if scheduler.get("kind", "asha") == "fifo" or grace <= 0 or eta <= 1:
        return []
    rungs, milestone = [], grace
    while milestone < last:
        rungs.append(math.ceil(milestone))
        milestone *= eta
    return sorted(set(rungs))


def rung_figure(trials: pd.DataFrame, path: Path, *, rungs: Sequence[int] = ()) -> Path:
    """How many trials reached each epoch (0 = started), split by final status; rungs dashed."""
    done = trials["epochs_done"].to_numpy(dtype=int)
    good = eligible(trials).to_numpy()
    epochs = np.arange(0, max(int(done.max(initial=0)), 1) + 1)
    finished = np.array([(done[good] >= e).sum() for e in epochs])
    other = np.array([(done[~good] >= e).sum() for e in epochs])
    fig, (ax,) = new_figure()
    ax.bar(epochs, finished, color="tab:blue", label="finished or stopped by ASHA")
    ax.bar(epochs, other, bottom=finished, color="tab:red", label="errored / unfinished")
    ax.bar_label(ax.containers[-1], labels=[str(n) for n in finished + other], fontsize=8)
    for i, rung in enumerate(rungs):
        ax.axvline(rung + 0.5, color="0.3", ls="--", lw=1,
                   label="ASHA rung (trials cut after this epoch)" * (i == 0))
    ax.set_xticks(epochs, ["started", *map(str, epochs[1:])])
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch reached", ylabel="trials", ylim=(0, 1.15 * max(len(trials), 1)))
    ax.set_title(f"ASHA rung survival: how many of {len(trials)} trials reached each epoch", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    return save(fig, path)


def promoted_figure(rows: pd.DataFrame, path: Path, *, baseline: pd.DataFrame | None, label: str) -> Path:
    """The promoted run's val (and train, if recorded) accuracy and train loss, against the baseline."""
    fig, axes = new_figure(2)
    curves = (("val_top1", "val top-1", "-"), ("val_top5", "val top-5", ":"),
              ("train_top1", "train top-1", "-."))
    for column, name, style in curves:
        if column in rows and rows[column].notna().any():
            axes[0].plot(rows["epoch"], rows[column], ls=style, color="tab:blue", label=f"promoted: {name}")
            if baseline is not None and column in baseline:
                axes[0].plot(baseline["epoch"], baseline[column], ls=style, color="k",
                             label=f"dense baseline: {name}")
    axes[1].plot(rows["epoch"], rows["train_loss"], color="tab:blue", label="promoted")
    if baseline is not None and "train_loss" in baseline:
        axes[1].plot(baseline["epoch"], baseline["train_loss"], color="k", ls="--", label="dense baseline")
    axes[0].set_ylabel("accuracy (%)")
    axes[1].set_ylabel("train loss (nats)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"{label.capitalize()} vs the dense baseline" if baseline is not None
                 else f"{label.capitalize()}: no baseline curve recorded")
    return save(fig, path)
