"""Drawing helpers shared by every figure of a report: numbers from records, figures, colours, line panels.

Figures are matplotlib ``Figure`` objects on the Agg canvas (no pyplot, no display, the global backend
left alone); matplotlib is imported where a figure is made (lazy loading: the command line starts
without it).
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

__all__ = ["num", "select", "valued", "figure", "save", "palette", "series", "line_panel", "not_finite",
           "dropped_note"]


def num(v):
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float, np.number)):
        f = float(v)
        return f if math.isfinite(f) else None
    return None


def not_finite(rows, key="value") -> dict:
    """Counts of the rows whose ``key`` is a number that cannot be plotted: {"NaN": n, "+inf": n, "−inf": n}."""
    out = {}
    for r in rows:
        v = r.get(key)
        if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and not math.isfinite(float(v)):
            label = "NaN" if math.isnan(float(v)) else ("+inf" if float(v) > 0 else "−inf")
            out[label] = out.get(label, 0) + 1
    return out


def dropped_note(rows, key="value") -> str:
    """' N value(s) not plotted: a NaN, b +inf.' for the non-finite values among ``rows`` ('' if none)."""
    c = not_finite(rows, key)
    if not c:
        return ""
    n = sum(c.values())
    return (f" {n} value{'s' if n > 1 else ''} not finite and not plotted: "
            + ", ".join(f"{c[k]} {k}" for k in ("NaN", "+inf", "−inf") if k in c) + ".")


def select(records, measure=None, quantity=None):
    return [r for r in records if (measure is None or r.get("measure") == measure)
            and (quantity is None or r.get("quantity") == quantity)]


def valued(records, measure=None, quantity=None):
    """:func:`select`, keeping only the records that have a value (NaN/missing values are not drawn)."""
    return [r for r in select(records, measure, quantity) if num(r.get("value")) is not None]


def figure(n_panels, ncols=3, w=4.2, h=3.2):
    from matplotlib.figure import Figure

    ncols = max(1, min(ncols, n_panels))
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(w * ncols, h * nrows), dpi=100, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def style_axes(ax, title=None, xlabel=None, ylabel=None, *, xscale=None, yscale=None, xbase=None, size=8,
               ticks=7):
    """The papers' panel style in one call: scales (``xbase``: the log base of the x axis), title and axis labels
    at font ``size``, tick labels at ``ticks``."""
    if xscale:
        ax.set_xscale(xscale, **({"base": xbase} if xbase else {}))
    if yscale:
        ax.set_yscale(yscale)
    if title is not None:
        ax.set_title(title, fontsize=size)
    if xlabel is not None:
        ax.set_xlabel(xlabel, fontsize=size)
    if ylabel is not None:
        ax.set_ylabel(ylabel, fontsize=size)
    ax.tick_params(labelsize=ticks)


def save(fig, out: Path, name: str) -> str:
    fig.savefig(out / name)
    return name


def palette(labels):
    from matplotlib import colormaps

    cmap = colormaps["tab10"] if len(labels) <= 10 else colormaps["tab20"]
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(sorted(labels, key=str))}


def series(rows, x="k"):
    """{x: [values]} of numeric values, sorted by x."""
    by = defaultdict(list)
    for r in rows:
        xv, v = num(r.get(x)), num(r.get("value"))
        if xv is not None and v is not None:
            by[xv].append(v)
    xs = sorted(by)
    return xs, [np.asarray(by[v]) for v in xs]


def line_panel(ax, rows, *, x="k", logy=False, floor=None, colors=None, label_key="rule"):
    """One line per rule: median over images at each x, band min…max.  Returns whether anything was drawn."""
    drawn = False
    groups = defaultdict(list)
    for r in rows:
        groups[r.get(label_key)].append(r)
    colors = colors or palette(groups)
    for lab in sorted(groups, key=str):
        xs, vals = series(groups[lab], x)
        if not xs:
            continue
        med = np.array([np.median(v) for v in vals])
        lo = np.array([v.min() for v in vals])
        hi = np.array([v.max() for v in vals])
        if floor is not None:
            med, lo, hi = (np.maximum(a, floor) for a in (med, lo, hi))
        ax.plot(xs, med, marker="o", ms=3, color=colors[lab], label=str(lab))
        if any(len(v) > 1 for v in vals):
            ax.fill_between(xs, lo, hi, color=colors[lab], alpha=0.15, lw=0)
        drawn = True
    if logy and drawn:
        ax.set_yscale("log")
    return drawn


