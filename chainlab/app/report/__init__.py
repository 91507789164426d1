"""Reports: a Markdown file with PNG plots from tidy measure records (and example heatmaps from chains).

Records are dicts with at least net, rule, image, measure, quantity, layer, k, value (extra columns
such as ``of`` are used when present).  :func:`make_report` draws one figure per kind of measure
found in the records and skips the others:

* ``spectra``   σ1/σ2 against the layer index k, one line per rule (median over images, band = min…max),
                one panel per ``of`` (layer, prefix product, inter-layer member T_l) — like Sixt et al. Fig. 3
* ``csc``       1 − CSC against the layer, one line per rule, log scale, with 1 − (random baseline)
                dashed — like Sixt et al. Fig. 5 (for the largest injection layer k of each net)
* ``bounds``    observed value against its bound (sup|R| vs bound, σ1 vs σ1 bound, …) per rule,
                log–log with the diagonal: points below it respect the bound
* ``averages``  sup-error of the N-sample average against N, with slope −1/2 and the Hoeffding curve, and the
                fitted constants e(N)√N against the weight norms (:mod:`.binder`)
* ``constants`` empirical componentwise constants against Π‖W_l‖_∞ per rule, and the bounds' tightness
                (:mod:`.binder`)
* ``sanity``    SSIM between true-logit and random-logit maps per rule (bars: mean, whiskers: min…max)
                — like Sixt et al. Fig. 4a
* anything else (cone, rank1, scaling, …): each quantity against k, one line per rule
* heatmaps      the explanation of the predicted logit of one chain per (net, rule), when an archive
                is given

Values that cannot be drawn (NaN, ±inf — e.g. σ1/σ2 = inf of a rank-1 matrix) are never dropped silently:
each figure's caption counts the ones it left out, and a table "Values not plotted" lists them per
measure and quantity.  Warnings raised while drawing (matplotlib's) are collected into a "Notes"
section of the report instead of reaching the terminal.  The report is built in a temp directory
beside ``out`` and its files are moved into ``out`` only when everything is drawn: an error leaves no
partial report (and an existing ``out`` as it was).

The figures live in :mod:`.figures` (one function per kind of measure; papers may add modules of
their own and list them in ``FIGURE_MODULES``).  Figures are drawn on matplotlib ``Figure`` objects with the Agg canvas (no pyplot, no display, the
global backend is left alone); matplotlib is imported where a figure is drawn (lazy loading: the
command line starts without it).
"""
from __future__ import annotations

import os
import shutil
import sys
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ...errors import InputError
from ...files import stale_temps, temp_path
from ...measures._common import RECORD_KEYS
from ...measures.records import read_csv, write_csv
from ...papers.binder import report as binder
from ...papers.mehrpanah import report as spectral
from ...papers.sixt import report as sixt
from . import figures
from .figures import map_of, plot_generic, plot_heatmaps
from .panels import not_finite, num

__all__ = ["RECORD_KEYS", "read_records", "write_records", "make_report", "map_of", "FIGURE_MODULES"]

# -- tidy CSV: one implementation, in chainlab.measures.records ----------------------------------
write_records = write_csv
read_records = read_csv

FIGURE_MODULES = [figures, sixt, binder, spectral]  # each has FIGURES: [fn(records, out) -> (png, caption) | [...] | None]
                                                   # and may list the measures it draws in HANDLES (the generic plots skip them)


def _scalar_table(records):
    """Median (and count) of every scalar quantity (no k) per measure, quantity, net and rule."""
    by = defaultdict(list)
    for r in records:
        v = num(r.get("value"))
        if v is not None and num(r.get("k")) is None:
            by[(r.get("measure"), r.get("quantity"), r.get("net"), r.get("rule"))].append(v)
    if not by:
        return []
    lines = ["| measure | quantity | net | rule | median | n |", "|---|---|---|---|---:|---:|"]
    for (m, q, n, ru), v in sorted(by.items(), key=lambda kv: tuple(map(str, kv[0]))):
        lines.append(f"| {m} | {q} | {n} | {ru} | {np.median(v):.4g} | {len(v)} |")
    return lines


def _not_plotted_table(records):
    by = defaultdict(lambda: defaultdict(int))
    for r in records:
        for label, n in not_finite([r]).items():
            by[(r.get("measure"), r.get("quantity"))][label] += n
    if not by:
        return []
    lines = ["## Values not plotted", "", "Non-finite values in the records (left out of every plot):", "",
             "| measure | quantity | NaN | +inf | −inf |", "|---|---|---:|---:|---:|"]
    for (m, q), c in sorted(by.items(), key=lambda kv: tuple(map(str, kv[0]))):
        lines.append(f"| {m} | {q} | {c.get('NaN', 0)} | {c.get('+inf', 0)} | {c.get('−inf', 0)} |")
    return lines + [""]


def make_report(records, out, *, chains=None, source=None, progress=False) -> Path:
    """Write ``out/report.md`` and its PNG plots for the measures present in ``records``; returns the .md path.

    Built in a temp directory and moved into ``out`` when complete (see the module docstring)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"report output {out} exists and is not a directory")
    for stale in stale_temps(out):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = temp_path(out)
    tmp.mkdir(parents=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _draw(list(records), tmp, chains, source, progress, caught)
        out.mkdir(parents=True, exist_ok=True)
        for f in sorted(tmp.iterdir()):
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "report.md"


def _draw(records, out, chains, source, progress, caught):
    figures = []
    steps = [fn for mod in FIGURE_MODULES for fn in mod.FIGURES]
    if progress:
        steps = tqdm(steps, desc="report", unit="plot", file=sys.stderr)
    for fn in steps:
        res = fn(records, out)
        if res:
            figures.extend(res if isinstance(res, list) else [res])
    handled = {m for mod in FIGURE_MODULES for m in getattr(mod, "HANDLES", ())}
    figures += plot_generic(records, out, skip=handled)
    if chains is not None:
        res = plot_heatmaps(chains, out, progress=progress)
        if res:
            figures.append(res)

    count = defaultdict(int)
    for r in records:
        count[(r.get("measure"), r.get("net"), r.get("rule"))] += 1
    lines = ["# chainlab report", ""]
    if source is not None:
        lines += [f"Records: `{source}` ({len(records)} rows)" + (f"; chains: `{chains}`" if chains else "") + ".", ""]
    lines += ["## Contents", "", "| measure | net | rule | records |", "|---|---|---|---:|"]
    lines += [f"| {m} | {n} | {ru} | {c} |" for (m, n, ru), c in sorted(count.items(), key=lambda kv: tuple(map(str, kv[0])))]
    lines.append("")
    for name, caption in figures:
        lines += [f"## {Path(name).stem.replace('_', ' ')}", "", f"![{Path(name).stem}]({name})", "", caption, ""]
    table = _scalar_table(records)
    if table:
        lines += ["## Scalar quantities", ""] + table + [""]
    lines += _not_plotted_table(records)
    if not figures:
        lines += ["No plottable measures in the records.", ""]
    notes = defaultdict(int)
    for w in caught:
        notes[f"{w.category.__name__}: {str(w.message).splitlines()[0] if str(w.message) else ''}"] += 1
    if notes:
        lines += ["## Notes", "", "Warnings while drawing (the plots above are drawn regardless):", ""]
        lines += [f"* {msg}" + (f" (×{n})" if n > 1 else "") for msg, n in sorted(notes.items())] + [""]
    (out / "report.md").write_text("\n".join(lines))
