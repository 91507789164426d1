"""Mehrpanah et al.'s claims in words and figures: the observed numbers beside each verdict, and the report's plots.

Figures (from ``measure="spectral"``, ``"faithfulness"`` and ``"accuracy"`` records):

* ``spectral_beta.png``     M1: mean EF of the vanilla gradient against log β (ReLU at 2 × the largest finite β,
                            as the authors plot it), one line per seed, both metrics; held-out accuracy beside;
* ``spectral_tradeoff.png`` M2: complexity against faithfulness — median EF_code (y) against the median
                            faithfulness F = AUC_insertion − AUC_deletion (x) per method, interquartile bars; the
                            paper's trade-off is a move down (simpler) and left (less faithful) from VG;
* ``spectral_radial.png``   mean radial power spectra (DC excluded, normalized) of every method on the ReLU net
                            and of the vanilla gradient of every activation-study net;
* ``spectral_layers.png``   M3: EF of the signed channel sum of the backward signal at every boundary of the
                            gradient chain (logits left), mask steps in red.
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from .. import stats
from ..context import fmt
from ..panels import figure, num, palette, save, select, valued
from . import decide as D
from . import protocol as P

__all__ = ["FIGURES", "HANDLES", "PAPER_NUMBERS_M1", "PAPER_NUMBERS_M2", "study_notes", "accuracy_caveat", "recipe_caveat",
           "observed_m1", "beside_m1", "observed_m2", "beside_m2", "observed_m3", "observed_parts", "numbers",
           "accuracy_costs", "plot_beta", "plot_tradeoff", "plot_radial_spectra", "plot_layer_ef"]

PAPER_NUMBERS_M1 = ("none published; the authors' code plots EF against log β with a fitted line "
                    "(interactive/plots.py:973-1062) and accuracy against log β (plots.py:1375-1463)")
PAPER_NUMBERS_M2 = ("none published; the code prints a table of mean EF_code ×1e5 per method "
                    "(interactive/plots.py:1531-1537); no faithfulness measure in their code")
HANDLES = ("spectral", "faithfulness", "accuracy")


def _beta(b) -> str:
    return "∞" if math.isinf(b) else f"{b:g}"


def _est(e) -> str:
    return e.text(lambda v: fmt(float(v), 3)) if e is not None else "n/a"


def study_notes(st, missing) -> list:
    notes = []
    if st["dropped"]:
        notes.append("left out (accuracy below the authors' 0.6: did not train): "
                     + ", ".join(f"{n} {100 * a:.1f} %" for n, a in st["dropped"]))
    seeds = sorted({s for s in st["ef"]["EF_code"]})
    if len(seeds) < 2:
        notes.append(f"seeds {seeds} only — the interval over seeds needs ≥ 2 (inconclusive)")
    small = [n for n in missing if P.BETAS.get(n, math.inf) < 1.0]
    other = [n for n in missing if n not in small]
    if small:
        notes.append(P.SMALL_BETA_PROBE)
    if other:
        notes.append("not shipped / no weights: " + ", ".join(other))
    return notes


def accuracy_caveat(st) -> str:
    acc = {b: [a[0] if a[0] is not None else a[1] for (bb, _), a in st["acc"].items() if bb == b]
           for b in {k[0] for k in st["acc"]}}
    acc = {b: [v for v in a if v is not None] for b, a in acc.items()}
    low = [f"β={_beta(b)} {100 * min(a):.1f} %" for b, a in sorted(acc.items()) if a and min(a) < 0.9]
    return ("held-out accuracy below 90 %: " + ", ".join(low)) if low else ""


def recipe_caveat(st) -> str:
    """'' when every net of the study was trained by one recipe (as stored with it), else, per differing entry,
    which nets had which value."""
    by_key = {}
    for name, recipe in st["recipes"].items():
        for k, v in recipe:
            by_key.setdefault(k, {}).setdefault(v, []).append(name)
    diff = []
    for k, vals in by_key.items():
        if len(vals) > 1:
            diff.append(f"{k}: " + ", ".join(f"{v} ({names[0] if len(names) == 1 else f'{len(names)} nets'})"
                                              for v, names in sorted(vals.items(), key=lambda kv: len(kv[1]))))
    return ("the nets were not trained by one recipe — " + "; ".join(diff)) if diff else ""


def _per_beta(table):
    """{β: [per-seed mean]} of {seed: {β: per-image}}."""
    out = defaultdict(list)
    for s, by in table.items():
        for b, v in by.items():
            m = D.net_mean(v)
            if m is not None:
                out[b].append(m)
    return dict(sorted(out.items()))


def observed_m1(st) -> str:
    code, ours = _per_beta(st["ef"]["EF_code"]), _per_beta(st["ef"]["EF"])
    acc = defaultdict(list)
    for (b, _), (stored, measured) in st["acc"].items():
        acc[b].append(stored if stored is not None else measured)
    parts = []
    for b in sorted(set(code) | set(acc)):
        c = f"EF_code ×1e5 {1e5 * np.mean(code[b]):.3f}" if b in code else "left out"
        o = f", EF {np.mean(ours[b]):.4f}" if b in ours else ""
        a = [v for v in acc.get(b, []) if v is not None]
        parts.append(f"β={_beta(b)}: {c}{o} (mean over {len(code.get(b, []))} seed(s)), accuracy "
                     + (f"{100 * np.mean(a):.1f} %" if a else "n/a"))
    est, per = D.beta_trend(st["ef"]["EF_code"])
    est2, _ = D.beta_trend(st["ef"]["EF"])
    return ("; ".join(parts) + f" — slope on log β: EF_code {_est(est)} (per seed "
            + ", ".join(f"{s}: {v:.3g}" for s, v in per.items()) + f"), EF (DC excluded) {_est(est2)}")


def beside_m1(st) -> str:
    rho = {}
    for m in ("EF_code", "EF"):
        by = _per_beta(st["ef"][m])
        if len(by) >= 2:
            rho[m] = stats.spearman(list(by), [np.mean(v) for v in by.values()])
    return "Spearman ρ(β, mean EF) over the nets: " + ", ".join(f"{m} {v:.2f}" for m, v in rho.items()) if rho else ""


def observed_m2(ef, aucs, decided) -> str:
    gaps_code, gaps_ours = D.gaps(ef["EF_code"]), D.gaps(ef["EF"])
    parts = []
    for lab in decided:
        cost = D.faithfulness(aucs["vanilla"])[:len(D.faithfulness(aucs[lab]))] - D.faithfulness(aucs[lab])
        parts.append(f"{lab}: median ΔEF_code ×1e5 {1e5 * np.median(gaps_code[lab]):.3f}, ΔEF (DC excluded) "
                     f"{np.median(gaps_ours[lab]):.4f}, faithfulness cost {np.median(cost):.4f}")
    f = {lab: float(np.median(D.faithfulness(a))) for lab, a in aucs.items()}
    parts.append("median faithfulness F = AUC_ins − AUC_del: " + ", ".join(f"{k} {v:.3f}" for k, v in f.items()))
    meds = {lab: float(np.median(g)) for lab, g in gaps_code.items() if lab in aucs}
    if len(meds) >= 3:
        rho = stats.spearman([meds[k] for k in meds], [f["vanilla"] - f[k] for k in meds])
        parts.append(f"across the {len(meds)} methods, Spearman ρ(median ΔEF_code, faithfulness cost) = {rho:.2f} "
                     "(does a larger gap come with a larger cost?)")
    return "; ".join(parts)


def beside_m2(ef, aucs, besides) -> str:
    g = D.gaps(ef["EF_code"])
    out = []
    for lab in besides:
        if lab in g:
            c = ""
            if lab in aucs:
                c = f", cost {np.median(D.faithfulness(aucs['vanilla'])[:len(g[lab])] - D.faithfulness(aucs[lab])):.4f}"
            out.append(f"{lab}: median ΔEF_code ×1e5 {1e5 * np.median(g[lab]):.3f}{c}")
    return "; ".join(out)


def observed_m3(rises) -> str:
    out = []
    for (order, metric), by in sorted(rises.items()):
        out.append(f"{order} / {metric}: " + ", ".join(f"{lay} {np.nanmedian(v):+.4f}" for lay, v in by.items()))
    return "median rise of EF at each mask — " + "; ".join(out)


def observed_parts(decision) -> str:
    return "; ".join(p.text(lambda v: fmt(float(v), 3)) for p in decision.parts)


def numbers(decision) -> dict:
    return {p.name: p.estimate.value for p in decision.parts if p.estimate is not None
            and p.estimate.value is not None and "(beside" not in p.name}


def accuracy_costs(pairs, acc) -> str:
    out = []
    for reg, twin in pairs.items():
        a, b = acc.get(reg), acc.get(twin)
        if a and b:
            x = a[0] if a[0] is not None else a[1]
            y = b[0] if b[0] is not None else b[1]
            if x is not None and y is not None:
                out.append(f"{reg} {100 * x:.1f} % vs {twin} {100 * y:.1f} % (cost {100 * (y - x):+.1f} points)")
    return "held-out accuracy, regularized vs unregularized: " + "; ".join(out) if out else ""


# -- figures -------------------------------------------------------------------------------------------------
def _betas(records):
    out = {}
    for r in select(records, "spectral"):
        b = r.get("beta")
        if b is not None and num(b) is not None or b in ("inf", math.inf):
            out[r.get("net")] = math.inf if b in ("inf", math.inf) else float(b)
    return out


def plot_beta(records, out):
    rows = [r for r in valued(records, "spectral") if r.get("rule") == "vanilla" and r.get("study") == "activation"
            and r.get("image") is not None and r.get("quantity") in ("EF_code", "EF")]
    if not rows:
        return None
    by = defaultdict(lambda: defaultdict(list))
    for r in rows:
        b = math.inf if r.get("beta") in ("inf", math.inf) else float(r["beta"])
        by[(r["quantity"], r.get("seed"))][b].append(num(r["value"]))
    acc = {r.get("net"): (r.get("stored") if num(r.get("stored")) is not None else num(r.get("value")))
           for r in select(records, "accuracy")}
    betas = _betas(records)
    fig, axes = figure(3, ncols=3, w=4.4, h=3.4)
    pos = D.beta_positions({b for d in by.values() for b in d})
    for ax, q in zip(axes[:2], ("EF_code", "EF")):
        for (qq, seed), d in sorted(by.items(), key=lambda kv: str(kv[0])):
            if qq != q:
                continue
            bs = sorted(d)
            ax.plot([pos[b] for b in bs], [np.mean(d[b]) for b in bs], "o-", ms=3, lw=1, label=f"seed {seed}")
        ax.set_xlabel("log β (ReLU at 2 × the largest finite β)", fontsize=8)
        ax.set_ylabel(f"mean {q} of the vanilla gradient", fontsize=8)
        ax.set_title("the authors' EF_code (DC included, /L)" if q == "EF_code" else "ours (DC excluded)", fontsize=9)
        ax.legend(fontsize=6)
    pts = [(pos[betas[n]], a) for n, a in acc.items() if n in betas and a is not None and betas[n] in pos]
    axes[2].scatter([p[0] for p in pts], [100 * p[1] for p in pts], s=14)
    axes[2].axhline(60, color="0.6", ls=":", lw=1)
    axes[2].set_xlabel("log β", fontsize=8)
    axes[2].set_ylabel("held-out accuracy (%)", fontsize=8)
    axes[2].set_title("accuracy (dotted: the authors' 60 % minimum)", fontsize=9)
    return save(fig, out, "spectral_beta.png"), (
        "M1: the mean expected frequency of the vanilla gradient (of log p_k) over the held-out images against log β "
        "of the Softplus net (ReLU placed at 2 × the largest finite β, as the authors plot it), one line per training "
        "seed — left the authors' EF_code (DC included, mean over the bins), middle ours (DC excluded); right: the "
        "nets' held-out accuracy.")


def plot_tradeoff(records, out):
    faith = defaultdict(dict)
    for r in valued(records, "faithfulness"):
        faith[(r.get("net"), r.get("rule"))].setdefault(r.get("image"), {})[r["quantity"]] = num(r["value"])
    if not faith:
        return None
    ef = defaultdict(dict)
    for r in valued(records, "spectral", "EF_code"):
        if r.get("image") is not None:
            ef[(r.get("net"), r.get("rule"))][r.get("image")] = num(r["value"])
    keys = sorted(k for k in faith if k in ef)
    colors = palette([k[1] for k in keys])
    fig, axes = figure(1, ncols=1, w=6.4, h=4.8)
    ax = axes[0]
    for key in keys:
        imgs = [i for i in faith[key] if i in ef[key] and len(faith[key][i]) == 2]
        F = np.array([faith[key][i]["insertion_auc"] - faith[key][i]["deletion_auc"] for i in imgs])
        E = np.array([1e5 * ef[key][i] for i in imgs])
        if not len(F):
            continue
        x, y = np.median(F), np.median(E)
        ax.errorbar(x, y, xerr=[[x - np.quantile(F, 0.25)], [np.quantile(F, 0.75) - x]],
                    yerr=[[y - np.quantile(E, 0.25)], [np.quantile(E, 0.75) - y]], fmt="o", ms=6,
                    color=colors[key[1]], capsize=2, label=f"{key[1]} ({len(F)} images)")
    ax.set_xlabel("faithfulness F = AUC_insertion − AUC_deletion (median, IQR)  → more faithful")
    ax.set_ylabel("EF_code ×1e5 (median, IQR)  → more complex")
    ax.set_title("complexity against faithfulness, per method", fontsize=10)
    ax.legend(fontsize=7)
    return save(fig, out, "spectral_tradeoff.png"), (
        "M2: the paper's trade-off as two measurements — complexity (the authors' EF_code of the map) against "
        "faithfulness (pixel insertion minus deletion AUC of p_k, pixels replaced in the map's order by the "
        "held-out mean colour), median over the images with interquartile bars, per method on the ReLU net. A "
        "smoothing method that trades faithfulness for simplicity sits below and left of the vanilla gradient.")


def plot_radial_spectra(records, out):
    rows = valued(records, "spectral", "P_mean")
    if not rows:
        return None
    curves = defaultdict(dict)
    for r in rows:
        if r.get("seed") in (None, 0):
            curves[(r.get("net"), r.get("rule"), r.get("study"))][int(r["k"])] = num(r["value"])
    betas = _betas(records)
    vg = sorted((k for k in curves if k[1] == "vanilla" and k[2] == "activation"),
                key=lambda k: betas.get(k[0], math.inf))
    methods = sorted(k for k in curves if k[2] == "methods")
    panels = [(t, ks) for t, ks in (("vanilla gradient per activation-study net", vg), ("methods on the ReLU net", methods))
              if ks]
    if not panels:
        return None
    fig, axes = figure(len(panels), ncols=2, w=6.0, h=4.4)
    for ax, (title, keys) in zip(axes, panels):
        colors = palette(keys)
        for key in keys:
            c = curves[key]
            L = max(c) + 1
            P = np.array([c.get(r, np.nan) for r in range(1, L)])
            if not np.isfinite(P).any() or np.nansum(P) <= 0:
                continue
            label = f"β={_beta(betas[key[0]])}" if key in vg and key[0] in betas else str(key[1])
            ax.plot(np.arange(1, L) / (L - 1), P / np.nansum(P), "-", color=colors[key], lw=1.2, label=label)
        ax.set_yscale("log")
        ax.set_xlabel("normalized frequency f = r/(L−1)")
        ax.set_ylabel("P(r) / Σ P (DC excluded)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=6, ncol=2 if len(keys) > 6 else 1)
    return save(fig, out, "spectral_radial.png"), (
        "Mean radial power spectrum of the rank-normalized maps (signed channel sum, DC excluded, normalized to sum 1) "
        "against the normalized frequency, log scale (seed 0): the vanilla gradient of each activation-study net, "
        "and every method on the ReLU net.")


def plot_layer_ef(records, out):
    rows = [r for r in valued(records, "spectral", "EF_layer") if r.get("metric") == "dc-included"]
    if not rows:
        return None
    groups = sorted({r.get("net") for r in rows}, key=str)
    fig, axes = figure(len(groups), ncols=1, w=11.0, h=4.2)
    for ax, net in zip(axes, groups):
        by, info = defaultdict(list), {}
        for r in rows:
            if r.get("net") == net:
                by[int(r["k"])].append(num(r["value"]))
                info[int(r["k"])] = (r.get("layer"), r.get("at"), r.get("shape"))
        ks = sorted(by, reverse=True)
        med = np.array([np.median(by[k]) for k in ks])
        ax.fill_between(range(len(ks)), [np.quantile(by[k], 0.25) for k in ks], [np.quantile(by[k], 0.75) for k in ks],
                        color="0.85", lw=0)
        for a in range(len(ks) - 1):
            mask = info[ks[a]][1] == "output" and info[ks[a + 1]][1] == "pre-activation"
            ax.plot([a, a + 1], [med[a], med[a + 1]], color="tab:red" if mask else "0.45", lw=2.4 if mask else 1.2)
        ax.plot(range(len(ks)), med, "o", ms=4, color="k")
        names = {"pre-activation": "z (masked)", "output": "out", "input": "input x"}
        ax.set_xticks(range(len(ks)))
        ax.set_xticklabels([f"{info[k][0]}\n{names[info[k][1]]}\n{info[k][2]}" for k in ks], fontsize=7)
        ax.set_ylabel("EF of the channel sum\n(DC included; median, IQR)")
        ax.set_title(f"{net}: EF of the backward signal, logits (left) → input (right); red: mask steps", fontsize=10)
    return save(fig, out, "spectral_layers.png"), (
        "M3 (our hypothesis): EF of the signed channel sum of the gradient chain's backward signal (DC included) at "
        "every boundary, in the order of the backward pass (logits left): out = a stage's output, z = after its ReLU "
        "mask. Red: the mask steps (taken after the max-pool's scatter, as the backward pass runs); grey: linear "
        "steps.")


FIGURES = [plot_beta, plot_tradeoff, plot_radial_spectra, plot_layer_ef]
