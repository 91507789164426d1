"""Figures of the spectral view (Mehrpanah et al. 2025), from ``measure="spectral"`` records.

* ``spectral_radial.png``   mean radial power spectrum (rank-normalized maps, DC excluded, normalized to sum 1)
                             against the normalized frequency f = r/(L−1), log scale: the vanilla gradient of
                             every net (β), and every method on each net that has several
* ``spectral_tradeoff.png`` median EF against median ΔEF = EF(VG) − EF(method) per net (β) and method, bars =
                             interquartile ranges — the paper's complexity/faithfulness trade-off figure; right:
                             the authors' variant (mean EF_code against mean EF_code − mean EF_code(VG of ReLU), ×1e5)
* ``spectral_layers.png``   EF of the backward signal at every boundary of the gradient chain in the order of the
                             backward pass (logits left); red segments are the mask steps (stage output →
                             pre-activation), grey the linear steps (Wᵀ, pool scatter), orange arrows the masks
                             under a max-pool taken before the pool's scatter
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from .panels import figure, num, palette, save, select, valued

__all__ = ["FIGURES", "plot_radial_spectra", "plot_tradeoff", "plot_layer_ef"]


def _spectral(records, quantity):
    return valued(records, "spectral", quantity)


def _beta_label(net, beta):
    b = num(beta) if beta is not None and beta != "inf" else (math.inf if beta in ("inf", math.inf) else None)
    if b is None:
        return str(net)
    return f"{net} (β={'∞' if math.isinf(b) else f'{b:g}'})"


def _betas(records):
    """{net: the β of its activation} from the ``net_beta`` extra (M1 rows; ∞ for ReLU)."""
    out = {}
    for r in select(records, "spectral"):
        if r.get("net_beta") is not None:
            b = r.get("net_beta")
            out[r.get("net")] = math.inf if b in ("inf", math.inf) or (isinstance(b, float) and math.isinf(b)) else b
    return out


def _net_order(nets, betas):
    return sorted(nets, key=lambda n: (betas.get(n, math.inf) if num(betas.get(n)) is not None or
                                       betas.get(n) == math.inf else math.inf, str(n)))


def plot_radial_spectra(records, out):
    rows = _spectral(records, "P_mean")
    if not rows:
        return None
    curves = defaultdict(dict)
    for r in rows:
        curves[(r.get("net"), r.get("rule"))][int(r["k"])] = num(r["value"])
    betas = _betas(records)
    nets = _net_order({n for n, _ in curves}, betas)
    vg = [n for n in nets if (n, "vanilla") in curves]
    multi = [n for n in nets if sum(1 for (m, _) in curves if m == n) > 1]
    panels = ([("vanilla gradient per net", None)] if len(vg) > 1 else []) + [(f"methods on {n}", n) for n in multi]
    if not panels:
        panels = [(f"{n}", n) for n in nets]
    fig, axes = figure(len(panels), ncols=2, w=6.0, h=4.4)
    for ax, (title, net) in zip(axes, panels):
        keys = [(n, "vanilla") for n in vg] if net is None else sorted((k for k in curves if k[0] == net), key=str)
        if net is None:
            from matplotlib import colormaps
            cm = colormaps["viridis"]
            colors = {k: cm(i / max(1, len(keys) - 1)) for i, k in enumerate(keys)}
        else:
            colors = palette(keys)
        for key in keys:
            c = curves[key]
            L = max(c) + 1
            P = np.array([c.get(r, np.nan) for r in range(1, L)])
            if not np.isfinite(P).any() or np.nansum(P) <= 0:
                continue
            f = np.arange(1, L) / (L - 1)
            label = _beta_label(key[0], betas.get(key[0])) if net is None else str(key[1])
            ls = "-" if key[1] == "vanilla" else "--" if "smoothgrad" in str(key[1]) else "-."
            ax.plot(f, P / np.nansum(P), ls, color=colors[key], lw=1.4, label=label)
        ax.set_yscale("log")
        ax.set_xlabel("normalized frequency f = r/(L−1)")
        ax.set_ylabel("P(r) / Σ P (DC excluded)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, ncol=2 if len(keys) > 6 else 1)
    return save(fig, out, "spectral_radial.png"), (
        "Mean radial power spectrum of the rank-normalized explanation maps (signed channel sum, DC excluded, "
        "normalized to sum 1) against the normalized frequency, log scale. Left: the vanilla gradient (of log p_k) "
        "of each net — lower curves at high f mean smoother maps. Right: every method on the net.")


def _per_image(records, quantity):
    by = defaultdict(list)
    for r in _spectral(records, quantity):
        if r.get("image") is not None:
            by[(r.get("net"), r.get("rule"))].append(num(r["value"]))
    return {k: np.asarray(v) for k, v in by.items()}


def plot_tradeoff(records, out):
    ef = _per_image(records, "EF")
    if not ef:
        return None
    gap = _per_image(records, "delta_EF")
    code = _per_image(records, "EF_code")
    betas = _betas(records)
    nets = _net_order({n for n, _ in ef}, betas)
    markers = dict(zip(nets, "os^vDPX*<>"))
    methods = sorted({m for _, m in ef}, key=lambda m: (m != "vanilla", str(m)))
    colors = palette(methods)
    relu = next((n for n in nets if betas.get(n) == math.inf), nets[-1])
    ref_code = code.get((relu, "vanilla"))
    n_panels = 3 if ref_code is not None else 2
    fig, axes = figure(n_panels, ncols=3, w=5.2, h=4.8)
    points = []
    for (net, rule), v in ef.items():
        d = np.zeros_like(v) if rule == "vanilla" else gap.get((net, rule))
        if d is not None and len(d):
            points.append((net, rule, np.median(d), np.quantile(d, [0.25, 0.75]), np.median(v),
                           np.quantile(v, [0.25, 0.75])))
    for ax, zoom in zip(axes[:2], (False, True)):
        for net, rule, x, (x1, x2), y, (y1, y2) in points:
            if zoom and abs(x) > 0.05:
                continue
            ax.errorbar(x, y, xerr=[[x - x1], [x2 - x]], yerr=[[y - y1], [y2 - y]], fmt=markers[net], ms=6,
                        color=colors[rule], elinewidth=0.7, capsize=2, alpha=0.9)
        ax.axvline(0, color="0.6", lw=0.8)
        ax.set_xlabel("ΔEF = EF(VG) − EF(method)  (median, IQR)  → less faithful")
        ax.set_ylabel("EF (median, IQR)  → more complex")
        ax.set_title("zoom: |ΔEF| ≤ 0.05" if zoom else "complexity vs faithfulness (EF: DC excluded)", fontsize=10)
    h = [axes[0].plot([], [], "s", color=colors[m], label=str(m))[0] for m in methods]
    h += [axes[0].plot([], [], markers[n], color="0.3", mfc="none", label=_beta_label(n, betas.get(n)))[0]
          for n in nets]
    axes[0].legend(handles=h, fontsize=6.5, loc="best")
    if ref_code is not None:
        ax = axes[2]
        ref = float(np.mean(ref_code))
        for (net, rule), v in code.items():
            ax.plot((np.mean(v) - ref) * 1e5, np.mean(v) * 1e5, markers[net], color=colors[rule], ms=6)
        ax.axvline(0, color="0.6", lw=0.8)
        ax.set_xlabel(f"mean EF_code − mean EF_code(VG of {relu})  (×1e5)")
        ax.set_ylabel("mean EF_code (×1e5)")
        ax.set_title("the authors' units (DC included, 1/L; sign method − VG)", fontsize=10)
    return save(fig, out, "spectral_tradeoff.png"), (
        "The trade-off of Mehrpanah et al.: explanation complexity (EF) against the gap to the net's own gradient "
        "(ΔEF), per method (colour) and net (marker; Softplus β, ReLU = ∞); median over images with interquartile "
        "bars. Vanilla gradients sit at ΔEF = 0; surrogates (GradCAM, SmoothGrad, soft masks) move right and down. "
        "Middle: zoom on |ΔEF| ≤ 0.05. Right: the same in the authors' units (per-image EF_code, DC included, mean "
        "over images, gap relative to the ReLU net's VG, sign method − VG).")


def plot_layer_ef(records, out):
    rows = _spectral(records, "EF_layer")
    if not rows:
        return None
    rises = [r for r in _spectral(records, "EF_mask_rise") if r.get("order") == "before-scatter"]
    groups = sorted({(r.get("net"), r.get("rule")) for r in rows}, key=str)
    fig, axes = figure(len(groups), ncols=1, w=11.0, h=4.6)
    for ax, (net, rule) in zip(axes, groups):
        by, info = defaultdict(list), {}
        for r in rows:
            if r.get("net") == net and r.get("rule") == rule:
                by[int(r["k"])].append(num(r["value"]))
                info[int(r["k"])] = (r.get("layer"), r.get("at"), r.get("shape"))
        ks = sorted(by, reverse=True)                    # the backward order: logits side first
        xs = np.arange(len(ks))
        med = np.array([np.median(by[k]) for k in ks])
        ax.fill_between(xs, [np.quantile(by[k], 0.25) for k in ks], [np.quantile(by[k], 0.75) for k in ks],
                        color="0.85", lw=0)
        for a, b in zip(range(len(ks)), range(1, len(ks))):
            mask_step = info[ks[a]][1] == "output" and info[ks[b]][1] == "pre-activation" and \
                info[ks[a]][0] == info[ks[b]][0]
            ax.plot([a, b], [med[a], med[b]], color="tab:red" if mask_step else "0.45", lw=2.4 if mask_step else 1.2)
        for x, k, m in zip(xs, ks, med):
            at = info[k][1]
            ax.plot(x, m, "s" if at == "pre-activation" else "D" if at == "input" else "o", ms=5,
                    color="tab:red" if at == "pre-activation" else "k")
        x_of = {info[k][0]: x for x, k in zip(xs, ks) if info[k][1] == "output"}
        pooled = defaultdict(list)
        for r in rises:
            if r.get("net") == net and r.get("rule") == rule and num(r.get("before")) is not None:
                pooled[r.get("pool")].append((num(r["before"]), num(r["after"])))
        for pool, pairs in pooled.items():
            if pool in x_of:
                b0, a0 = np.median([p[0] for p in pairs]), np.median([p[1] for p in pairs])
                ax.annotate("", xy=(x_of[pool] + 0.3, a0), xytext=(x_of[pool] + 0.3, b0),
                            arrowprops=dict(arrowstyle="->", color="tab:orange", lw=1.8))
                ax.plot([x_of[pool] + 0.3] * 2, [b0, a0], alpha=0)      # keep the arrow inside the axes
        names = {"pre-activation": "z (masked)", "output": "out", "input": "input x"}
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{info[k][0]}\n{names[info[k][1]]}\n{info[k][2]}" for k in ks], fontsize=7)
        ax.set_xlim(-0.5, len(ks) - 0.5)
        ax.set_ylabel("EF per channel map\n(median over images, IQR)")
        ax.set_title(f"{net} · {rule}: EF of the backward signal, logits (left) → input (right)", fontsize=10)
        ax.plot([], [], color="tab:red", lw=2.4, label="mask step: out → z = d ⊙ out")
        ax.plot([], [], color="0.45", lw=1.2, label="linear step: Wᵀ or max-pool scatter")
        ax.plot([], [], color="tab:orange", lw=1.8, label="the mask applied before the max-pool scatter")
        ax.legend(fontsize=7, loc="best")
    return save(fig, out, "spectral_layers.png"), (
        "EF of the backward signal (rank-normalized channel maps, DC excluded, mean over the channels; median over "
        "images, band = IQR) at every boundary of the gradient chain, in the order of the backward pass (logits "
        "left, input right): out = a stage's output (before its mask), z = its pre-activation (after the mask "
        "d = 1[z > 0]). Red: the mask steps; grey: the linear steps (Wᵀ, max-pool scatter); orange arrows: the "
        "masks of the stages under a max-pool applied before the pool's scatter instead (ReLU and max-pool "
        "commute, so the backward factors either way).")


FIGURES = [plot_radial_spectra, plot_tradeoff, plot_layer_ef]
