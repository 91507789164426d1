"""The figures of a report, one function per kind of measure: ``fn(records, out) -> (png name, caption) | None``.

* ``spectra``   σ1/σ2 against the layer index k, one line per rule (median over images, band = min…max),
                one panel per ``of`` (layer, prefix product, inter-layer member T_l) — like Sixt et al. Fig. 3
* ``csc``       1 − CSC against the layer, one line per rule, log scale, with 1 − (random baseline)
                dashed — like Sixt et al. Fig. 5 (for the largest injection layer k of each net)
* ``bounds``    observed value against its bound (sup|R| vs bound, σ1 vs σ1 bound, …) per rule,
                log–log with the diagonal: points below it respect the bound
* ``averages``, ``constants``: see :mod:`.binder` (Binder et al.'s figures)
* ``sanity``    SSIM between true-logit and random-logit maps per rule (bars: mean, whiskers: min…max)
                — like Sixt et al. Fig. 4a
* anything else (cone, rank1, scaling, …): each quantity against k, one line per rule (:func:`plot_generic`;
                ``spectral`` records have figures of their own, :mod:`.spectral`)
* heatmaps      the explanation of the predicted logit of one chain per (net, rule), from an archive
"""
from __future__ import annotations

import math
import sys
from collections import defaultdict

import numpy as np
from tqdm import tqdm

from ... import archive
from ...errors import ChainlabError
from .panels import dropped_note, figure, line_panel, num, palette, save, select, series

__all__ = ["FIGURES", "plot_spectra", "plot_csc", "plot_bounds", "plot_ssim", "plot_generic",
           "plot_heatmaps", "map_of"]


def _nets(rows):
    return sorted({r.get("net") for r in rows}, key=str)


# -- figures ---------------------------------------------------------------------------------------
def plot_spectra(records, out):
    rows = select(records, "spectra", "sigma1/sigma2")
    if not rows:
        return None
    colors = palette({r.get("rule") for r in rows})
    panels = sorted({(r.get("net"), r.get("of") or "layer") for r in rows}, key=str)
    fig, axes = figure(len(panels))
    drawn = False
    for ax, (net, of) in zip(axes, panels):
        sub = [r for r in rows if r.get("net") == net and (r.get("of") or "layer") == of]
        drawn |= line_panel(ax, sub, logy=True, colors=colors)
        ax.set_title(f"{net} · {of}", fontsize=9)
        ax.set_xlabel("k (layer index, input side = 1)")
        ax.set_ylabel("σ1 / σ2")
        ax.legend(fontsize=7)
    if not drawn:
        return None
    return save(fig, out, "spectra_sigma_ratio.png"), (
        "σ1/σ2 per layer (median over images, band min…max), per net and per kind of matrix "
        "(layer M_l, prefix product P_k, inter-layer member T_l) — cf. Sixt et al. Fig. 3. "
        "A large ratio means the matrix is close to rank 1." + dropped_note(rows)
        + (" (σ1/σ2 = +inf: a matrix of numerical rank 1.)" if any(r.get("value") == math.inf for r in rows) else ""))


def plot_csc(records, out):
    rows = select(records, "csc")
    one_minus = [r for r in rows if r.get("quantity") == "1-csc"]
    if not one_minus:
        one_minus = [dict(r, value=(1 - r["value"]) if num(r.get("value")) is not None else None)
                     for r in rows if r.get("quantity") == "csc"]
    if not one_minus:
        return None
    base = [r for r in rows if r.get("quantity") == "baseline"]
    nets = _nets(one_minus)
    colors = palette({r.get("rule") for r in one_minus})
    fig, axes = figure(len(nets), ncols=2, w=5, h=3.6)
    drawn = False
    for ax, net in zip(axes, nets):
        sub = [r for r in one_minus if r.get("net") == net]
        ks = [num(r.get("k")) for r in sub if num(r.get("k")) is not None]
        kmax = max(ks) if ks else None
        if kmax is not None:
            sub = [r for r in sub if num(r.get("k")) == kmax]
        x = "layer" if any(num(r.get("layer")) is not None for r in sub) else "k"
        drawn |= line_panel(ax, sub, x=x, logy=True, floor=1e-16, colors=colors)
        b = [r for r in base if r.get("net") == net and (kmax is None or num(r.get("k")) == kmax)]
        xs, vals = series(b, x)
        if xs:
            ax.plot(xs, np.maximum([1 - np.median(v) for v in vals], 1e-16), "k--", lw=1, label="random baseline")
            ax.set_yscale("log")
        ax.set_title(f"{net}" + (f" · injected at k = {kmax:g}" if kmax is not None else ""), fontsize=9)
        ax.set_xlabel("layer (0 = input)" if x == "layer" else "k")
        ax.set_ylabel("1 − CSC (median)")
        ax.legend(fontsize=7)
    if not drawn:
        return None
    return save(fig, out, "csc_convergence.png"), (
        "1 − cosine similarity between the backward signals of different output channels, per layer and "
        "rule, log scale; dashed: 1 − CSC of random vectors of the same dimension — cf. Sixt et al. Fig. 5. "
        "Values far below the baseline mean the rule forgets which logit it explains."
        + dropped_note([r for r in rows if r.get("quantity") in ("1-csc", "csc", "baseline")]))


BOUND_PAIRS = (("sup_R", "bound"), ("sigma1", "sigma1_bound"), ("sigma1_product", "sigma1_product_bound"))


def plot_bounds(records, out):
    rows = select(records, "bounds")
    if not rows:
        return None
    qs = {r.get("quantity") for r in rows}
    pairs = [p for p in BOUND_PAIRS if p[0] in qs and p[1] in qs]
    pairs += [(q[: -len("_bound")], q) for q in sorted(qs, key=str)
              if isinstance(q, str) and q.endswith("_bound") and q[: -len("_bound")] in qs
              and (q[: -len("_bound")], q) not in pairs]
    if not pairs:
        return None
    colors = palette({r.get("rule") for r in rows})
    fig, axes = figure(len(pairs))
    drawn = False
    for ax, (obs, bnd) in zip(axes, pairs):
        index = defaultdict(dict)
        for r in rows:
            if r.get("quantity") in (obs, bnd):
                index[(r.get("net"), r.get("rule"), r.get("image"), r.get("layer"), r.get("k"))][r["quantity"]] = \
                    num(r.get("value"))
        pts = defaultdict(list)
        for key, d in index.items():
            if d.get(obs) is not None and d.get(bnd) is not None and d[obs] > 0 and d[bnd] > 0:
                pts[key[1]].append((d[bnd], d[obs]))
        allv = [v for p in pts.values() for xy in p for v in xy]
        for rule in sorted(pts, key=str):
            a = np.asarray(pts[rule])
            ax.scatter(a[:, 0], a[:, 1], s=12, color=colors[rule], label=str(rule), alpha=0.8)
        if allv:
            lo, hi = min(allv) / 2, max(allv) * 2
            ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="observed = bound")
            ax.set_xscale("log")
            ax.set_yscale("log")
            drawn = True
        ax.set_xlabel(f"bound ({bnd})")
        ax.set_ylabel(f"observed ({obs})")
        ax.legend(fontsize=7)
    if not drawn:
        return None
    return save(fig, out, "bounds.png"), (
        "Observed values against their bounds, per rule (log–log); points on or below the dashed diagonal "
        "respect the bound, their distance to it is the bound's slack."
        + dropped_note([r for r in rows if r.get("quantity") in {q for p in pairs for q in p}]))


def plot_ssim(records, out):
    every = [r for r in select(records, "sanity") if str(r.get("quantity", "")).startswith("ssim_random_logit")]
    rows = [r for r in every if num(r.get("value")) is not None]
    if not rows:
        return None
    nets = _nets(rows)
    rules = sorted({r.get("rule") for r in rows}, key=str)
    fig, axes = figure(1, ncols=1, w=max(5, 0.8 * len(rules) * len(nets) + 2), h=3.6)
    ax = axes[0]
    width = 0.8 / len(nets)
    for j, net in enumerate(nets):
        xs, means, lo, hi = [], [], [], []
        for i, rule in enumerate(rules):
            v = np.array([num(r["value"]) for r in rows if r.get("net") == net and r.get("rule") == rule])
            if v.size:
                xs.append(i + (j - (len(nets) - 1) / 2) * width)
                means.append(v.mean())
                lo.append(v.mean() - v.min())
                hi.append(v.max() - v.mean())
        ax.bar(xs, means, width=width * 0.95, yerr=[lo, hi], capsize=3, label=str(net), color=f"C{j}")
    ax.set_xticks(range(len(rules)), [str(r) for r in rules], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("SSIM(true logit, random logit)")
    ax.set_ylim(min(0, ax.get_ylim()[0]), 1.05)
    ax.axhline(1.0, color="k", lw=0.8, ls=":")
    ax.legend(fontsize=7)
    return save(fig, out, "ssim_random_logit.png"), (
        "SSIM between the explanation of the predicted logit and of a random other logit, per rule (bar: "
        "mean over images, whiskers min…max) — cf. Sixt et al. Fig. 4a. SSIM ≈ 1: the map does not depend "
        "on which logit is explained." + dropped_note(every))


SPECIAL = {"sanity": ("ssim_random_logit",)}   # + bounds, csc, spectra, and the measures of .binder


def plot_generic(records, out, skip=()):
    """Every other (measure, quantity) with values along k: one panel each, one line per rule (measures in
    ``skip`` have figures of their own)."""
    done = []
    by, skipped = defaultdict(list), defaultdict(list)
    for r in records:
        m, q = r.get("measure"), r.get("quantity")
        if q in SPECIAL.get(m, ()) or m in ("bounds", "csc", "spectra", "averages", "constants", "spectral") or m in skip:
            continue
        if num(r.get("k")) is not None:
            (by if num(r.get("value")) is not None else skipped)[m].append(r)
    for m in sorted(by, key=str):
        rows = by[m]
        qs = sorted({r.get("quantity") for r in rows}, key=str)[:12]
        nets = _nets(rows)
        panels = [(q, n) for q in qs for n in nets]
        colors = palette({r.get("rule") for r in rows})
        fig, axes = figure(len(panels))
        drawn = False
        for ax, (q, net) in zip(axes, panels):
            sub = [r for r in rows if r.get("quantity") == q and r.get("net") == net]
            vals = [num(r.get("value")) for r in sub]
            pos = all(v is not None and v > 0 for v in vals)
            spread = pos and vals and max(vals) / min(vals) > 100
            drawn |= line_panel(ax, sub, logy=bool(spread), colors=colors)
            ax.set_title(f"{net} · {q}", fontsize=9)
            ax.set_xlabel("k")
            ax.legend(fontsize=7)
        if drawn:
            name = f"{_slug(m)}.png"
            done.append((save(fig, out, name), f"Measure `{m}`: each quantity against k, one line per rule "
                                                 "(median over images, band min…max)." + dropped_note(skipped[m])))
    return done


def _slug(s):
    return "".join(c if c.isalnum() else "_" for c in str(s)).strip("_") or "measure"


def map_of(chain):
    """The explanation of the predicted logit as a 2-d map (channels summed; flat inputs made square)."""
    e = np.asarray(chain.explain(), dtype=np.float64)
    e = e.reshape(e.shape[1:]) if e.shape[0] == 1 else e
    if e.ndim == 3:
        return e.sum(axis=0)
    if e.ndim == 1:
        n = e.size
        s = int(round(math.sqrt(n)))
        return e.reshape(s, s) if s * s == n else e.reshape(1, n)
    return e.reshape(e.shape[0], -1)


def plot_heatmaps(chains_path, out, progress=False):
    with archive.open(chains_path) as r:
        first = {}
        for key in r.keys():
            info = r.info(key)
            first.setdefault((info["net"], info["rule"]), key)
        if not first:
            return None
        nets = sorted({n for n, _ in first}, key=str)
        rules = sorted({ru for _, ru in first}, key=str)
        from matplotlib.figure import Figure

        fig = Figure(figsize=(2.2 * len(rules) + 0.5, 2.4 * len(nets)), dpi=100, layout="constrained")
        axes = fig.subplots(len(nets), len(rules), squeeze=False)
        items = list(first.items())
        flagged = []
        if progress:
            items = tqdm(items, desc="heatmaps", unit="chain", file=sys.stderr)
        for ax in axes.ravel():
            ax.set_axis_off()
        for (net, rule), key in items:
            ax = axes[nets.index(net), rules.index(rule)]
            chain = r.load(key)
            try:
                m = map_of(chain)
            except ChainlabError as exc:      # one chain that cannot explain must not sink the report (a bug does)
                ax.text(0.5, 0.5, f"no map:\n{type(exc).__name__}", ha="center", va="center", fontsize=7)
                continue
            bad = int(m.size - np.count_nonzero(np.isfinite(m)))
            if bad:
                flagged.append(f"{rule} on {net} ({bad} pixels)")
            v = float(np.abs(m[np.isfinite(m)]).max()) if bad < m.size else 1.0
            ax.imshow(np.where(np.isfinite(m), m, np.nan), cmap="bwr", vmin=-(v or 1.0), vmax=v or 1.0,
                      interpolation="nearest")
            ax.set_title(f"{rule}\n{net} · image {chain.meta.get('image')}", fontsize=8)
    return save(fig, out, "heatmaps.png"), (
        "Explanation of the predicted logit for one test image per net (rows) and rule (columns); red "
        "positive, blue negative, each map scaled to its own maximum |value|."
        + (f" Not-finite values (shown blank): {'; '.join(flagged)}." if flagged else ""))


# -- the report ------------------------------------------------------------------------------------


FIGURES = [plot_spectra, plot_csc, plot_bounds, plot_ssim]
