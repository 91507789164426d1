"""The figures of Sixt et al. 2020 from the records of ``chainlab verify`` (their panels, our numbers).

* Fig. 5a–d (``csc_sixt``): per net one panel per method: 1 − median CSC per layer (log axis, inverted:
  up = converged; injection layer left, input right), the gradient's curve beside it (grey), the random
  baseline (dashed), the 0.99 line (dotted red); DeepLIFT's independent ± injection dotted.
* Fig. 5e–g: the distribution of |cos| at the first layer's output (stacked bins <0.9 … ≥0.9999).
* App. F: other injection points (``--extended``), one panel per injection point.
* Fig. 3 (``weight_spectra``): σ1/σ2 of A (full kernels), of W and W⊙A (centre taps), of T_l.
* Fig. 4a (``ssim_sixt``): SSIM(true-logit map, random-logit map) per method, boxplots.
* Fig. 4b (``cascading``): median SSIM per randomization step with 99 % bootstrap intervals.
* Fig. 1e (``class_difference``): mean |Δ| of the normalized maps of a two-object scene's labels.
* Thm. 1 / App. B (``theorem1``, ``simulation``): σ2/σ1 and Hilbert diameter of P_k; the simulation.
* S2 (``csc_s2``): LRP-α1β0 on sixt-cifar at the training input scale and ×255.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .panels import figure, num, palette, save, select, valued

__all__ = ["FIGURES", "HANDLES"]

HANDLES = ("csc_sixt", "ssim_sixt", "csc_s2", "weight_spectra", "theorem1", "simulation", "cascading",
           "class_difference")
FLOOR = 1e-16
PAPER_L1 = 0.000371


def _label(rows, rid):
    return next((r.get("label") for r in rows if r.get("rule") == rid and r.get("label")), rid)


def _curve(rows):
    """(xs, ys) sorted by layer of records with numeric layer/value (boundaries with one channel, where |cos| = 1
    always, left out)."""
    pts = sorted((num(r.get("layer")), num(r.get("value"))) for r in rows
                 if num(r.get("layer")) is not None and num(r.get("value")) is not None
                 and (num(r.get("d")) is None or num(r.get("d")) > 1))
    return [p[0] for p in pts], [max(p[1], FLOOR) for p in pts]


def _final(rows):
    """Records of the final-layer injection (the largest k of each net)."""
    by = defaultdict(list)
    for r in rows:
        by[r.get("net")].append(r)
    out = []
    for net, rs in by.items():
        kmax = max(num(r.get("k")) for r in rs if num(r.get("k")) is not None)
        out += [r for r in rs if num(r.get("k")) == kmax]
    return out


def _net_panels(rows, ncols, w, h):
    """(figure, [(axis, net, the net's rows)]): one panel per net, nets in name order."""
    nets = sorted({r.get("net") for r in rows}, key=str)
    fig, axes = figure(len(nets), ncols=ncols, w=w, h=h)
    return fig, [(ax, net, [r for r in rows if r.get("net") == net]) for ax, net in zip(axes, nets)]


def plot_fig5(records, out):
    rows = [r for r in select(records, "csc_sixt") if r.get("quantity") in ("1-csc", "baseline")]
    if not rows:
        return None
    rows = _final(rows)
    made = []
    for net in sorted({r.get("net") for r in rows}, key=str):
        sub = [r for r in rows if r.get("net") == net]
        methods = [m for m in dict.fromkeys(r.get("rule") for r in sub) if m != "gradient"]
        fig, axes = figure(len(methods), ncols=5, w=3.0, h=2.5)
        grad = [r for r in sub if r.get("rule") == "gradient" and r.get("quantity") == "1-csc"
                and r.get("mode") == "tied"]
        base = [r for r in sub if r.get("rule") == (methods[0] if methods else None) and r.get("quantity") == "baseline"
                and r.get("mode") == "tied"]
        for ax, m in zip(axes, methods):
            mine = [r for r in sub if r.get("rule") == m and r.get("quantity") == "1-csc"]
            xs, ys = _curve([r for r in mine if r.get("mode") == "tied"])
            ax.plot(xs, ys, "o-", ms=3, color="C0", label=_label(sub, m))
            xi, yi = _curve([r for r in mine if r.get("mode") == "independent"])
            if xi:
                ax.plot(xi, yi, "o:", ms=2, color="C1", label="± independent")
            xg, yg = _curve(grad)
            if xg:
                ax.plot(xg, yg, "-", color="0.6", lw=1, label="gradient")
            xb, yb = _curve([dict(r, value=1 - num(r["value"])) for r in base])
            if xb:
                ax.plot(xb, yb, "k--", lw=0.8, label="random")
            ax.axhline(0.01, color="r", ls=":", lw=0.8)
            ax.set_yscale("log")
            ax.invert_yaxis()
            ax.invert_xaxis()
            names = {num(r["layer"]): r.get("to") for r in mine if r.get("to") is not None}
            ax.set_xticks(sorted(names), [str(names[k]) for k in sorted(names)], rotation=60, fontsize=5)
            ax.set_title(_label(sub, m), fontsize=8)
            ax.tick_params(labelsize=6)
            ax.legend(fontsize=5)
        if methods:
            inj = next((r.get("inject") for r in sub if r.get("inject")), "?")
            fig.suptitle(f"{net}: 1 − median CSC per layer (injection at {inj}, left → input, right)", fontsize=9)
            made.append((save(fig, out, f"sixt_fig5_{net}.png"),
                         f"Sixt Fig. 5 on {net}: 1 − median |cos| of the channel vectors of 10 pairs of backward "
                         "signals (5 N(0, I) vectors per image injected at the logits), per layer, log axis inverted "
                         "(up = converged). Grey: the gradient; dashed: random vectors of the same dimension; red "
                         "dotted: CSC = 0.99; orange dotted: DeepLIFT with independent ± injections."))
    return made


def plot_fig5_hist(records, out):
    rows = [r for r in _final(select(records, "csc_sixt")) if r.get("quantity") == "csc" and r.get("mode") == "tied"
            and num(r.get("layer")) == 1 and r.get("hist")]
    if not rows:
        return None
    fig, panels = _net_panels(rows, ncols=3, w=5.0, h=3.2)
    bins = ("<0.9", "[.9,.99)", "[.99,.999)", "[.999,.9999)", "≥.9999")
    for ax, net, sub in panels:
        labels = [r.get("label") or r.get("rule") for r in sub]
        H = np.array([[float(x) for x in str(r["hist"]).split("/")] for r in sub])
        left = np.zeros(len(sub))
        for b in range(H.shape[1]):
            ax.barh(range(len(sub)), H[:, b], left=left, label=bins[b], color=f"C{b}")
            left += H[:, b]
        ax.set_yticks(range(len(sub)), labels, fontsize=6)
        ax.set_xlabel("fraction of |cos| values", fontsize=7)
        ax.set_title(f"{net}: |cos| after the first layer", fontsize=8)
        ax.legend(fontsize=5)
    return save(fig, out, "sixt_fig5_hist.png"), (
        "Sixt Fig. 5e–g: distribution of |cos| between the backward signals at the first layer's output "
        "(final-layer injection), stacked in the authors' bins.")


def plot_fig5_injections(records, out):
    rows = [r for r in select(records, "csc_sixt") if r.get("quantity") == "1-csc" and r.get("mode") == "tied"]
    made = []
    for net in sorted({r.get("net") for r in rows}, key=str):
        sub = [r for r in rows if r.get("net") == net]
        injs = list(dict.fromkeys(r.get("inject") for r in sub))
        if len(injs) < 2:
            continue
        colors = palette({r.get("rule") for r in sub})
        fig, axes = figure(len(injs), ncols=3, w=4.2, h=3.0)
        for ax, inj in zip(axes, injs):
            for m in dict.fromkeys(r.get("rule") for r in sub):
                xs, ys = _curve([r for r in sub if r.get("inject") == inj and r.get("rule") == m])
                ax.plot(xs, ys, "o-", ms=2, color=colors[m], label=_label(sub, m))
            ax.set_yscale("log")
            ax.invert_yaxis()
            ax.invert_xaxis()
            ax.set_title(f"{net}: injection at {inj}", fontsize=8)
        axes[0].legend(fontsize=5)
        made.append((save(fig, out, f"sixt_appF_{net}.png"),
                     f"Sixt App. F on {net}: 1 − median CSC for injections at the other layers."))
    return made


def plot_fig3(records, out):
    rows = select(records, "weight_spectra")
    if not rows:
        return None
    made = []
    for net in sorted({r.get("net") for r in rows}, key=str):
        sub = [r for r in rows if r.get("net") == net]
        fig, axes = figure(3, ncols=3, w=4.0, h=3.0)
        for ax, ofs, title in zip(axes, (("A",), ("W", "W*A"), ("T(W)", "T(W*A)")),
                                  ("(a) patterns A (full kernels)", "(b) centre taps", "(c) inter-layer T_l")):
            for of in ofs:
                pts = [(num(r["k"]), num(r.get("value"))) for r in sub if r.get("of") == of]
                pts = [(k, v if v is not None else np.nan) for k, v in pts]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=3, label=of)
            if ofs == ("A",):
                ax.axhline(6, color="r", ls=":", lw=0.8, label="6 (paper)")
            ax.set_yscale("log")
            ax.set_xlabel("layer", fontsize=7)
            ax.set_ylabel("σ1/σ2", fontsize=7)
            ax.set_title(title, fontsize=8)
            ax.legend(fontsize=6)
        made.append((save(fig, out, f"sixt_fig3_{net}.png"),
                     f"Sixt Fig. 3 on {net}: σ1/σ2 of the ReLU patterns A (full kernels), of the weights W and of "
                     "W⊙A (3×3 kernels at their centre tap, dense layers at the centre location), and of the "
                     "inter-layer members T_l — no input, masks or biases."))
    return made


def plot_fig4a(records, out):
    rows = valued(records, "ssim_sixt")
    if not rows:
        return None
    fig, panels = _net_panels(rows, ncols=1, w=8.0, h=3.0)
    for ax, net, sub in panels:
        ms = list(dict.fromkeys(r.get("rule") for r in sub))
        data = [[num(r["value"]) for r in sub if r.get("rule") == m] for m in ms]
        ax.boxplot(data, showfliers=True, flierprops={"markersize": 2})
        ax.set_xticks(range(1, len(ms) + 1), [_label(sub, m) for m in ms])
        for y, st in ((0.4, ":"), (0.8, ":"), (0.9, "--")):
            ax.axhline(y, color="0.5", ls=st, lw=0.7)
        ax.set_ylim(-0.05, 1.05)
        ax.tick_params(axis="x", labelrotation=35, labelsize=6)
        ax.set_ylabel("SSIM", fontsize=7)
        ax.set_title(f"{net}: SSIM(true-logit map, random-logit map)", fontsize=8)
    return save(fig, out, "sixt_fig4a.png"), (
        "Sixt Fig. 4a: SSIM between the maps of the ground-truth label and of a random other logit (authors' "
        "normalization, 5×5 uniform window, max over the sign flip); dotted 0.4/0.8 (the paper's range for the "
        "rest), dashed 0.9 (our 'very close to 1').")


def plot_fig4b(records, out):
    rows = valued(records, "cascading")
    if not rows:
        return None
    fig, panels = _net_panels(rows, ncols=1, w=8.0, h=3.6)
    for ax, net, sub in panels:
        colors = palette({r.get("rule") for r in sub})
        steps = sorted({(num(r["k"]), r.get("layer")) for r in sub})
        for m in dict.fromkeys(r.get("rule") for r in sub):
            rs = sorted((r for r in sub if r.get("rule") == m), key=lambda r: num(r["k"]))
            x = [0] + [num(r["k"]) for r in rs]
            y = [1.0] + [num(r["value"]) for r in rs]
            lo = [1.0] + [num(r.get("ci_lo")) or np.nan for r in rs]
            hi = [1.0] + [num(r.get("ci_hi")) or np.nan for r in rs]
            ax.plot(x, y, "o-", ms=2, color=colors[m], label=_label(sub, m))
            ax.fill_between(x, lo, hi, color=colors[m], alpha=0.2, lw=0)
        ax.set_xticks([0] + [s[0] for s in steps], ["original"] + [str(s[1]) for s in steps], fontsize=6, rotation=30)
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("SSIM to original", fontsize=7)
        ax.set_title(f"{net}: cascading randomization (top layer first)", fontsize=8)
        ax.legend(fontsize=5, ncols=2)
    return save(fig, out, "sixt_fig4b.png"), (
        "Sixt Fig. 4b: median SSIM between the map of the original net and of the net with its layers re-initialized "
        "from the top down to the named layer; bands: 99 % bootstrap intervals of the median (10 000 resamples).")


def plot_fig1(records, out):
    rows = valued(records, "class_difference")
    if not rows:
        return None
    fig, panels = _net_panels(rows, ncols=1, w=8.0, h=3.0)
    for ax, net, sub in panels:
        labels = [r.get("label") or r.get("rule") for r in sub]
        v = [num(r["value"]) for r in sub]
        err = [[max(0.0, vv - (num(r.get("q25")) or vv)) for vv, r in zip(v, sub)],
               [max(0.0, (num(r.get("q75")) or vv) - vv) for vv, r in zip(v, sub)]]
        ax.bar(range(len(sub)), v, yerr=err, capsize=2, color=["C3" if r.get("rule") == "lrp-a1b0" else "C0" for r in sub])
        ax.axhline(PAPER_L1, color="k", ls="--", lw=0.8, label="paper 0.000371 (VGG-16, cat/dog)")
        ax.set_yscale("log")
        ax.set_xticks(range(len(sub)), labels, rotation=35, ha="right", fontsize=6)
        ax.set_ylabel("mean |Δ| normalized maps", fontsize=7)
        ax.set_title(f"{net}: two-object scenes, left vs right label", fontsize=8)
        ax.legend(fontsize=6)
    return save(fig, out, "sixt_fig1.png"), (
        "Sixt Fig. 1e: per method the median over two-object scenes of the per-element mean of |normalize_abs(map "
        "left label) − normalize_abs(map right label)| (the paper's 'L1-norm'); whiskers: quartiles.")


def plot_theorem1(records, out):
    rows = [r for r in select(records, "theorem1") if num(r.get("k")) is not None]
    sim = select(records, "simulation")
    if not rows and not sim:
        return None
    nets = sorted({r.get("net") for r in rows}, key=str)
    fig, axes = figure(len(nets) + (1 if sim else 0), ncols=3, w=4.2, h=3.0)
    for ax, net in zip(axes, nets):
        for rule, q, st, color in (("lrp-a1b0", "sigma2/sigma1", "o-", "C0"), ("lrp-a1b0", "hilbert", "s--", "C1"),
                                   ("gradient", "sigma2/sigma1", "o-", "0.6")):
            pts = [(num(r["k"]), num(r.get("value"))) for r in rows if r.get("net") == net
                   and r.get("quantity") == q and r.get("rule") in (rule, None)]
            pts = sorted((k, v) for k, v in pts if v is not None and np.isfinite(v) and v > 0)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], st, ms=3, color=color, label=f"{rule}: {q}")
        rate = next((r for r in select(records, "theorem1") if r.get("net") == net and r.get("quantity") == "rate"
                     and r.get("rule") in ("lrp-a1b0", None)), None)
        ax.set_yscale("log")
        ax.set_xlabel("k (P_k = M_1⋯M_k)", fontsize=7)
        ax.set_title(f"{net}: LRP-α1β0 prefix products" + (f", factor {num(rate['value']):.3g}/layer"
                                                           if rate and num(rate.get("value")) else ""), fontsize=8)
        ax.legend(fontsize=6)
    if sim:
        ax = axes[len(nets)]
        for v in dict.fromkeys(r.get("rule") for r in sim):
            pts = sorted((num(r["k"]), num(r["value"])) for r in sim if r.get("rule") == v
                         and num(r.get("k")) is not None and num(r.get("value")) is not None)   # NaN: not drawn
            ax.plot([p[0] for p in pts], [max(p[1], 1e-16) for p in pts], "o-", ms=2, label=v)
        ax.set_yscale("log")
        ax.set_xlabel("multiplications", fontsize=7)
        ax.set_ylabel("1 − mean |cos|", fontsize=7)
        ax.set_title("App. B simulation (VGG-16 centre-tap shapes)", fontsize=8)
        ax.legend(fontsize=5)
    return save(fig, out, "sixt_theorem1.png"), (
        "Sixt Thm. 1: σ2/σ1 and Hilbert diameter of 64 sampled columns of the prefix products P_k of LRP-α1β0 chains "
        "(median over images), and the appendix simulation: 32 random vectors through random matrices of VGG-16's "
        "centre-tap shapes, 1 − mean |cos| (median over draws).")


def plot_s2(records, out):
    rows = select(records, "csc_s2")
    if not rows:
        return None
    fig, axes = figure(1, ncols=1, w=5.0, h=3.2)
    ax = axes[0]
    for scale in sorted({num(r.get("input_scale")) for r in rows}):
        xs, ys = _curve([r for r in rows if num(r.get("input_scale")) == scale])
        ax.plot(xs, ys, "o-", ms=3, label=f"inputs ×{scale:g}")
    ax.axhline(1e-6, color="r", ls=":", lw=0.8, label="1e-6 (paper)")
    ax.set_yscale("log")
    ax.invert_yaxis()
    ax.invert_xaxis()
    ax.set_xlabel("layer (0 = input)", fontsize=7)
    ax.set_ylabel("1 − median CSC", fontsize=7)
    ax.set_title("S2: LRP-α1β0 on sixt-cifar", fontsize=8)
    ax.legend(fontsize=6)
    return save(fig, out, "sixt_s2.png"), (
        "S2: 1 − median CSC of LRP-α1β0 on the paper's CIFAR architecture (injection at the logits), at the training "
        "input scale and at the ×255 scale of the authors' code.")


FIGURES = [plot_fig5, plot_fig5_hist, plot_fig5_injections, plot_fig3, plot_fig4a, plot_fig4b, plot_fig1,
           plot_theorem1, plot_s2]
