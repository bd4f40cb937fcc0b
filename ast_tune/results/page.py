"""A sweep's report: PNG figures, a comparison table and one self-contained ``index.html``.

    python -m ast_tune.report results/quickstart               # → results/quickstart/report/
    python -m ast_tune.report results/quickstart --out /tmp/report

Only ``epochs.parquet`` is required. ``spec.yaml`` (objectives, ``base`` preset, ASHA rungs),
``baseline.json`` (the dense baseline's accuracy, time, energy and, if it holds them, per-epoch
records) and ``promoted/{epochs.parquet,summary.json}`` are used when present; what is absent is
left out (no baseline marker, no baseline curve, no promoted section), never invented. The page
references its PNGs by relative name, loads nothing from the network and works offline.

Comparison table (``comparison.md`` and in the page), one row each for:

- the dense baseline, from ``baseline.json``. Its counted savings (0 %) and speedup (1×) hold by
  definition: it trains on every sample and is the speedup's denominator.
- the trials: if they carry a preset parameter (``param.base`` or ``param.preset``), one row per
  preset, else one row: the front trial with the best first objective (top-1 by default),
  labelled with the spec's ``base`` preset when it names one. With no front (e.g. an objective
  NaN for every trial) the best finished trial stands in, labelled "best finished trial".
- the promoted run, from ``promoted/epochs.parquet``.

Values are aggregated by :func:`ast_tune.results.tables.trials_table`: final top-1/top-5 (%), mean
counted savings (%), time-weighted measured speedup (×), total train time (s), energy (J, NVML,
blank where not measured). Exit codes: 0 done; 2 bad input (one line naming the path); 1 write error; 130 interrupted.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from ast_tune import atomic
from ast_tune.config import columns
from ast_tune.results import plots, sweep_plots
from ast_tune.results.baseline_file import baseline_curve
from ast_tune.results.readers import SweepResults, load_results
from ast_tune.results.tables import (
    Objective,
    eligible,
    format_cell,
    front_table,
    trials_table,
)
from ast_tune.results.verdict import target_caption, target_top1

logger = logging.getLogger(__name__)

SWEEP_FIGURES = ("pareto_savings.png", "pareto_speedup.png", "hypervolume.png", "rungs.png")
PROMOTED_FIGURE = "promoted.png"
PRESET_PARAMS = ("param.base", "param.preset")
#: (trials_table column, header, format, scale) of the comparison table.
COMPARISON_COLUMNS = columns.shown("epochs_done", "val_top1", "val_top5", "energy_savings", "speedup", "train_seconds",
                                   "data_seconds", "energy_j", "speedup_to_target", "tracking_error_mean",
                                   "tracking_error_max", "verdict")
_TEXT_COLUMNS = ("verdict",)


def _baseline_row(baseline: Mapping) -> dict:
    """The baseline's comparison row: top-level keys first, then its last per-epoch record."""
    curve = baseline_curve(baseline)
    last = curve.iloc[-1].to_dict() if curve is not None else {}
    row = {"run": "dense baseline", "energy_savings": 0.0, "speedup": 1.0, "speedup_to_target": 1.0}
    for key in ("val_top1", "val_top5", "energy_j", "train_seconds", "epochs_done"):
        value = baseline.get(key, last.get(key))
        if isinstance(value, (int, float)):
            row[key] = value
    if curve is not None:
        row.setdefault("epochs_done", int(curve["epoch"].max()))
        for key in ("train_seconds", "data_seconds", "energy_j"):
            if key in curve and key not in baseline:
                row[key] = curve[key].sum(skipna=False)
    return row


def _best(trials: pd.DataFrame, objectives: Sequence[Objective]) -> pd.Series | None:
    """The front trial with the best first objective; failing that (no front, e.g. an objective
    NaN everywhere), the finished or stopped trial with the best first objective; else None."""
    front = front_table(trials, objectives)
    if len(front):
        return front.iloc[0]
    metric, mode = objectives[0]
    done = trials[eligible(trials) & trials[metric].notna()]
    done = done.sort_values(metric, ascending=mode == "min", kind="stable")
    return done.iloc[0] if len(done) else None


def _trial_rows(results: SweepResults) -> list[dict]:
    trials, objectives = results.trials, results.objectives
    preset = next((c for c in PRESET_PARAMS if c in trials and trials[c].notna().any()), None)
    if preset is not None:
        picks = [(f"preset {value}", _best(trials[trials[preset] == value], objectives))
                 for value in sorted(set(trials[preset].dropna()), key=str)]
    else:
        base = results.spec.get("base")
        picks = [(f" (base: {base})" if base else "", _best(trials, objectives))]
    rows = []
    for label, row in picks:
        if row is not None:
            kind = "front" if row["on_front"] else "finished"
            name = f"{label}: best {kind} trial" if preset else f"best {kind} trial{label}"
            rows.append({**row.to_dict(), "run": f"{name} {row['trial_id']}"})
    return rows


def _promoted_row(results: SweepResults) -> dict | None:
    """The promoted run, judged against its own workload's dense baseline when it has one (``promote.workload``)."""
    if results.promoted_epochs is None:
        return None
    label = promoted_label(results.promoted_summary)
    frame = results.promoted_epochs.assign(trial_id=label, status=columns.TERMINATED)
    row = trials_table(frame, [("val_top1", "max")], baseline=results.promoted_baseline or results.baseline,
                       criteria=results.criteria).iloc[0]
    row = row.to_dict()
    return {**row, "run": label}


def promoted_label(summary: Mapping | None) -> str:
    """``"promoted (trial <id>)"`` when ``summary.json`` names its trial (``, first of N seeds`` with
    several), else ``"promoted"``."""
    trial, seeds = (summary or {}).get("trial_id"), len((summary or {}).get("seeds") or ())
    return f"promoted (trial {trial}{f', first of {seeds} seeds' if seeds > 1 else ''})" if trial else "promoted"


def comparison_table(results: SweepResults) -> pd.DataFrame:
    """Baseline, preset / best front trial, promoted: :data:`COMPARISON_COLUMNS`, NaN where unknown."""
    rows = [_baseline_row(results.baseline)] if results.baseline else []
    rows += _trial_rows(results)
    promoted = _promoted_row(results)
    rows += [promoted] if promoted else []
    table = pd.DataFrame(rows, columns=["run", *(name for name, *_ in COMPARISON_COLUMNS)])
    return table.astype({name: float for name, *_ in COMPARISON_COLUMNS if name not in _TEXT_COLUMNS})


def _cells(table: pd.DataFrame) -> list[list[str]]:
    """The comparison's formatted cells; unknown values are blank."""
    return [[str(row["run"]), *(format_cell(row[name], fmt, scale, missing="")
                                for name, _, fmt, scale in COMPARISON_COLUMNS)]
            for row in table.to_dict("records")]


def comparison_markdown(table: pd.DataFrame, *, target: float | None = None) -> str:
    """The comparison as a GitHub Markdown table with a caption on counted vs measured."""
    header = ["run", *(title for _, title, _, _ in COMPARISON_COLUMNS)]
    lines = ["Energy savings are *counted* (samples skipped); speedup is *measured* (dense baseline "
             "train time / run train time, same hardware); energy is NVML, blank where not measured. "
             "The dense baseline's 0 % savings and 1× speedup hold by definition. "
             + target_caption(target), "",
             "| " + " | ".join(header) + " |", "|:---|" + "---:|" * len(COMPARISON_COLUMNS)]
    lines += ["| " + " | ".join(cells) + " |" for cells in _cells(table)]
    return "\n".join(lines) + "\n"


def html_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain HTML table; every cell escaped."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def front_html(results: SweepResults) -> str:
    """The front (from :func:`ast_tune.results.tables.front_table`) as an HTML table, params included."""
    front = front_table(results.trials, results.objectives)
    params = [c for c in front.columns if c.startswith(columns.PARAM_PREFIX)]
    shown = (("val_top1", "top-1 (%)", ".2f", 1), ("val_top5", "top-5 (%)", ".2f", 1),
             ("energy_savings", "savings, counted (%)", ".1f", 100),
             ("speedup", "speedup, measured (×)", ".2f", 1), ("epochs_done", "epochs", "d", 1),
             ("speedup_to_target", "speedup to target (×)", ".2f", 1), ("verdict", "verdict", "", 1),
             *((p, p.removeprefix(columns.PARAM_PREFIX), ".4g", 1) for p in params))
    rows = [[r["trial_id"], *(format_cell(r[c], fmt, scale, missing="") for c, _, fmt, scale in shown)]
            for r in front.to_dict("records")]
    return html_table(["trial", *(title for _, title, _, _ in shown)], rows)


def write_figures(results: SweepResults, out: Path) -> dict[str, list[Path]]:
    """Every figure of the report, written into ``out``, grouped by page section."""
    trials = results.trials
    front = set(trials.loc[trials["on_front"].astype(bool), "trial_id"])
    curve = baseline_curve(results.baseline)
    top1 = _baseline_row(results.baseline).get("val_top1") if results.baseline else None
    savings, speed, volume, rungs = (out / name for name in SWEEP_FIGURES)
    sections = {
        "Pareto view": [
            sweep_plots.pareto_figure(trials, savings, x_axis="energy_savings", baseline_top1=top1),
            sweep_plots.pareto_figure(trials, speed, x_axis="speedup", baseline_top1=top1)],
        "Curves per trial (front trials in colour)": plots.curve_figures(
            results.epochs, out, emphasise=front, baseline=curve),
        "Sweep progress": [
            sweep_plots.hypervolume_figure(trials, volume, objectives=results.objectives),
            sweep_plots.rung_figure(trials, rungs, rungs=sweep_plots.asha_rungs(results.spec))],
    }
    if results.promoted_epochs is not None:
        label, summary = promoted_label(results.promoted_summary), results.promoted_summary or {}
        rows = plots.curve_rows(results.promoted_epochs)
        promoted = [sweep_plots.promoted_figure(rows, out / PROMOTED_FIGURE, baseline=curve, label=label)]
        if summary.get("per_class_top1"):
            promoted.append(plots.per_class_figure(
                summary["per_class_top1"], summary.get("class_names") or (), out / plots.PER_CLASS_FIGURE,
                title=f"{label.capitalize()}: per-class val top-1"))
        sections["Promoted run"] = promoted
    return sections


_CSS = ("body{font-family:sans-serif;max-width:1000px;margin:1em auto;color:#222}img{max-width:100%}"
        "table{border-collapse:collapse;font-size:90%;margin:.5em 0}td,th{border:1px solid #ccc;"
        "padding:2px 8px;text-align:right}td:first-child,th:first-child{text-align:left}")


def render_page(results: SweepResults, figures: Mapping[str, Sequence[Path]], table: pd.DataFrame) -> str:
    """``index.html``: summary, comparison, front, then the figures by section (relative ``src``)."""
    statuses = results.trials["status"].astype(str).value_counts()
    objectives = ", ".join(f"{m} ({mode})" for m, mode in results.objectives)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(results.name)}</title>"
        f"<style>{_CSS}</style></head><body><h1>Sweep report: {html.escape(results.name)}</h1>",
        f"<p>{len(results.trials)} trials ({html.escape(', '.join(f'{n} {s}' for s, n in statuses.items()))})"
        f"; objectives {html.escape(objectives)}; dense baseline "
        f"{'from baseline.json' if results.baseline else 'not found (baseline.json absent)'}. Energy savings "
        "are <em>counted</em> (samples skipped), speedup is <em>measured</em> (wall clock).</p>",
        "<h2>Comparison</h2>", html_table(["run", *(t for _, t, _, _ in COMPARISON_COLUMNS)], _cells(table)),
        "<p>Blank: not measured. The dense baseline's 0 % savings and 1× speedup hold by definition. "
        "Also as <a href='comparison.md'>comparison.md</a>.</p>",
        "<h2>Pareto front</h2>", front_html(results)]
    for section, paths in figures.items():
        parts.append(f"<h2>{html.escape(section)}</h2>")
        parts += [f"<p><img src='{html.escape(p.name)}' alt='{html.escape(p.stem)}'></p>" for p in paths]
    return "\n".join([*parts, "</body></html>\n"])


def write_report(results_dir: Path, *, out: Path | None = None) -> Path:
    """Write the figures, ``comparison.md`` and ``index.html``; return the page's path.

    Args:
        results_dir: the sweep's ``results/<name>``.
        out: the report directory; default ``results_dir/report``. Created if missing.

    Raises:
        SpecError: see :func:`ast_tune.results.readers.load_results`. OSError: a file cannot be written.
    """
    results = load_results(results_dir)
    out = Path(out) if out is not None else Path(results_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    figures = write_figures(results, out)
    table = comparison_table(results)
    target = target_top1(results.baseline, results.criteria)
    atomic.write_text(out / "comparison.md", comparison_markdown(table, target=target))
    atomic.write_text(out / "index.html", render_page(results, figures, table))
    logger.info("%s: %d figures", out / "index.html", sum(map(len, figures.values())))
    return out / "index.html"
