"""The Markdown of ``loader_bench.py``'s results: the loader table, its summary line, the stage and prepare tables.

The rows are the dicts ``loader_bench.measure`` and ``loader_bench.make_trees`` return; every figure
is a :func:`spread` (median, min, max over the repeats) or a median.
"""

from __future__ import annotations

import statistics

from ast_tune.config.run_spec import DataSpec

AUTO = DataSpec().decoder  # the default data.decoder, which chooses a decoder per tree
TARGETS = {160: 3.0, 224: 2.0}  # image size px: wanted prepared ÷ original, images per CPU-second, default decoder
STAGES = ("decode", "crop and resize", "flip")
CONVERSION = "float32 + normalise per batch (on the CPU here)"  # the training device's work, timed apart


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _cell(figures: dict[str, float], digits: int = 0, unit: str = "") -> str:
    return f"{figures['median']:.{digits}f}{unit} ({figures['min']:.{digits}f}–{figures['max']:.{digits}f})"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in rows])


def _decoder(row: dict) -> str:
    return f"{row['decoder']} ({AUTO})" if row["default"] else row["decoder"]


def _base(rows: list[dict]) -> str:
    """The decoder the ratios divide by: the default's on the originals."""
    return next(r["decoder"] for r in rows if r["default"] and r["tree"] == "original")


def loader_table(rows: list[dict]) -> str:
    """A row per image size × decoder × tree; per worker count N, images per CPU-second and per second.

    The decoder the default (``auto``) reads a tree with is marked. The ratio column is the images per
    CPU-second at the first N ÷ the default decoder's on the originals in the same repeat (median, min–max
    over the repeats).
    """
    workers = list(rows[0]["workers"])
    header = ["image size", "decoder", "tree"]
    for i, n in enumerate(workers):
        header += [f"images per CPU-second, N={n}", *([f"÷ {_base(rows)} on the originals"] if i == 0 else []),
                   f"images/s, N={n}"]
    cells = []
    for r in rows:
        line = [f"{r['image_size']} px", _decoder(r), r["tree"]]
        for i, n in enumerate(workers):
            figures = r["workers"][n]
            line += [_cell(figures["images_per_cpu_second"]), *([_cell(r["vs_original"], 2, "×")] if i == 0 else []),
                     _cell(figures["images_per_second"])]
        cells.append(line)
    return _table(header, cells)


def summary(rows: list[dict]) -> str:
    """The line that compares prepared with original, each read by the default decoder, against :data:`TARGETS`;
    then the same with the conversion counted in (what a CPU run, which converts on the CPU, gets)."""
    n = next(iter(rows[0]["workers"]))
    parts, converting = [], []
    for r in rows:
        if r["default"] and r["tree"] != "original":
            ratio, target = r["vs_original"], TARGETS.get(r["image_size"])
            met = target is not None and ratio["median"] >= target
            verdict = "" if target is None else f"; target ≥ {target:g}×: {'met' if met else 'not met'}"
            parts.append(f"{ratio['median']:.2f}× at {r['image_size']} px with {r['decoder']} (min–max "
                         f"{ratio['min']:.2f}–{ratio['max']:.2f}{verdict})")
            converting.append(f"{r['vs_original_converting']['median']:.2f}× at {r['image_size']} px")
    return (f"Prepared ÷ original, each read by the default decoder ({AUTO}; {_base(rows)} on the originals), "
            f"images per CPU-second of the loader at N={n}, median of the repeats: {'; '.join(parts)}. "
            f"Counting each batch's conversion on the CPU too (a CPU run): {'; '.join(converting)}.")


def stage_table(stage_rows: list[dict]) -> str:
    """CPU µs per image of the default decoder by stage, what the loader pass adds to them, and the conversion
    the training process does per batch (timed apart, on the CPU)."""
    n = stage_rows[0]["workers"]
    header = ["image size", "tree", "decoder", *STAGES, f"the rest of the loader pass, N={n}", f"loader pass, N={n}",
              CONVERSION]
    return _table(header, [[f"{r['image_size']} px", r["tree"], r["decoder"],
                            *(f"{us:.0f}" for us in r["microseconds"].values())] for r in stage_rows])


def prepare_table(prepare_rows: list[dict]) -> str:
    """A row per short side: ``prepare`` with one worker."""
    header = ["prepare, 1 worker", "images per CPU-second (median, min–max)", "images/s (median, min–max)", "n"]
    return _table(header, [[f"short side {r['short_side']} px", _cell(r["images_per_cpu_second"]),
                            _cell(r["images_per_second"]), str(r["n"])] for r in prepare_rows])
