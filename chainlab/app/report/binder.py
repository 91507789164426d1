"""The figures of Binder et al.'s claims (value bounds, constants across weight norms, convergence of averages).

* ``constants_vs_weight_norm.png`` — C_emp (sup over the input set) against Π_l ‖W_l‖_∞ per rule, log–log:
  one filled marker per net, faint dots per image (max over its copies), the rescaled net hollow, the
  least-squares line with its slope and bootstrap CI, and a dotted slope-1 guide (a rule that follows
  Π‖W_l‖ runs parallel to it) — records ``measure="constants"``, quantity ``c_emp``;
* ``averages.png`` — e(N) against N per perturbation and rule, log–log, one line per net, normalized by
  ‖r_L(x)‖₁ so nets compare; a dashed slope −1/2 guide and the Hoeffding level (t(N) + t(n_ref))/‖r_L‖₁
  dotted (``hoeffding_t`` when records have no ``error_bound``) — records ``measure="averages"``;
* ``averages_constants.png`` — the fitted constant K_rel = e(N)√N/‖r_L‖₁ per net against Π‖W_l‖_∞ per rule
  (bars: 95 % bootstrap over the copies), with the slope and its CI;
* ``bounds_tightness.png`` — tightness per rule and net: C_emp / Π c_l and Π‖M_l‖₁ / Π c_l (log), and for the
  σ1 bounds σ1(P)/Π√(‖M_l‖₁‖M_l‖_∞), σ1(P)/√(‖P‖₁‖P‖_∞) and the median per-layer σ1(M_l)/√(‖M_l‖₁‖M_l‖_∞).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from ...measures import bootstrap_slope, replicate_slope, unit_values
from .panels import figure, num, palette, save, select

__all__ = ["FIGURES", "plot_constants", "plot_rates", "plot_fitted_constants", "plot_tightness"]

RULE_ORDER = ("gradient", "zplus", "alpha2-beta1")


def _rule_key(rule):
    rule = str(rule)
    if rule in RULE_ORDER:
        return (RULE_ORDER.index(rule), 0.0, rule)
    if rule.startswith("lrp-epsilon="):
        return (len(RULE_ORDER), -float(rule.split("=")[1]), rule)
    return (len(RULE_ORDER) + 1, 0.0, rule)


def _xs(rows, measure):
    out = {}
    for r in rows:
        if r.get("measure") == measure and r.get("quantity") == "weight_norm_product" and num(r.get("value")):
            out[r.get("net")] = float(r["value"])
    return out


def _net_colors(nets):
    return palette([n for n in nets if "rescaled" not in str(n)])


def _color(colors, net):
    base = str(net).replace("-rescaled", "")
    return colors.get(base, colors.get(net, "k"))


def _slope_label(res):
    if res.get("slope") is None:
        return "slope n/a"
    ci = "" if res.get("lo") is None else f" [{res['lo']:.2f}, {res['hi']:.2f}]"
    return f"slope {res['slope']:.2f}{ci}"


def _fit_line(ax, res, color="k"):
    if res.get("slope") is None or len(res["x"]) < 2:
        return
    x = np.array([res["x"][g] for g in res["y"]])
    y = np.array([res["y"][g] for g in res["y"]])
    u, v = np.log(x), np.log(y)
    xs = np.geomspace(x.min(), x.max(), 20)
    ax.plot(xs, np.exp(v.mean() + res["slope"] * (np.log(xs) - u.mean())), "-", color=color, lw=1.2)
    ax.plot(xs, np.exp(v.mean() + 1.0 * (np.log(xs) - u.mean())), ":", color="0.5", lw=1)


def plot_constants(records, out):
    rows = select(records, "constants")
    vals = unit_values(rows, "c_emp", measure="constants")
    xs = _xs(rows, "constants")
    if not vals or not xs:
        return None
    rules = sorted({g[1] for g in vals}, key=_rule_key)
    nets = sorted({g[0] for g in vals if g[0] in xs}, key=str)
    colors = _net_colors(nets)
    fig, axes = figure(len(rules), ncols=3, w=4.4, h=3.5)
    for ax, rule in zip(axes, rules):
        fit_nets = [n for n in nets if "rescaled" not in str(n)]
        res = bootstrap_slope({n: vals.get((n, rule), {}) for n in fit_nets}, {n: xs[n] for n in fit_nets},
                              n_boot=300)
        for n in nets:
            per = vals.get((n, rule))
            if not per:
                continue
            c = _color(colors, n)
            hollow = "rescaled" in str(n)
            ax.scatter([xs[n]] * len(per), list(per.values()), s=6, color=c, alpha=0.25, lw=0)
            ax.scatter([xs[n]], [max(per.values())], s=60 if hollow else 45, marker="D" if hollow else "o",
                       facecolors="none" if hollow else c, edgecolors=c, lw=1.5, label=str(n), zorder=3)
        _fit_line(ax, res)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{rule}: {_slope_label(res)}", fontsize=9)
        ax.set_xlabel("Π_l ‖W_l‖_∞ (a-priori gradient constant)", fontsize=8)
        ax.set_ylabel("C_emp = sup ‖R‖_∞ / ‖r_L‖₁", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6, loc="best")
    return save(fig, out, "constants_vs_weight_norm.png"), (
        "Empirical componentwise constant C_emp = sup over the input set of ‖R(x)‖_∞/‖r_L‖₁ (sup |R_i|/|f_k(x)| "
        "for relevance rules, sup |∂f_k/∂x_i| for the gradient) against the product of the layers' weight "
        "norms Π‖W_l‖_∞, per rule; large markers: the sup per net, faint dots: each test image (max over its "
        "copies), hollow diamond: the function-preserving (c, 1/c) rescaling (not fitted). Solid: least-squares "
        "fit (slope and 95 % bootstrap CI over images in the title); dotted: slope 1. Binder et al.: LRP-β "
        "constants do not depend on the weight norms (slope ≈ 0), gradient constants do (≈ 1).")


def _rate_axes(n_panels, ncols=4):
    """Per panel two stacked log axes sharing x: a short one on top for the (far higher) Hoeffding level, a tall
    one for the measured errors — a broken y axis."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogLocator, NullFormatter

    ncols = max(1, min(ncols, n_panels))
    nrows = -(-n_panels // ncols)
    fig = Figure(figsize=(3.7 * ncols, 3.9 * nrows), dpi=100, layout="constrained")
    gs = fig.add_gridspec(2 * nrows, ncols, height_ratios=[1, 3] * nrows)
    pairs = []
    for i in range(n_panels):
        r, c = divmod(i, ncols)
        bot = fig.add_subplot(gs[2 * r + 1, c])
        top = fig.add_subplot(gs[2 * r, c], sharex=bot)
        top.spines["bottom"].set_visible(False)
        bot.spines["top"].set_visible(False)
        top.tick_params(labelbottom=False, bottom=False, labelleft=False, left=False, which="both")
        top.set_yscale("log")
        top.yaxis.set_major_locator(LogLocator(numticks=3))
        top.yaxis.set_minor_formatter(NullFormatter())
        for ax, y in ((top, 0), (bot, 1)):
            ax.plot([0, 1], [y, y], transform=ax.transAxes, color="k", lw=0, marker=[(-1, -0.5), (1, 0.5)], ms=8,
                    mew=1, clip_on=False)
        pairs.append((top, bot))
    return fig, pairs


def plot_rates(records, out):
    rows = select(records, "averages")
    err = [r for r in rows if r.get("quantity") == "sup_error" and num(r.get("k")) and num(r.get("value"))]
    if not err:
        return None
    key = lambda r: (r.get("perturbation"), r.get("rule"))  # noqa: E731
    panels = sorted({key(r) for r in err}, key=lambda p: (str(p[0]), _rule_key(p[1])))
    nets = sorted({r.get("net") for r in err}, key=str)
    colors = _net_colors(nets)
    norm = {(r.get("perturbation"), r.get("rule"), r.get("net")): num(r.get("value")) for r in rows
            if r.get("quantity") == "start_norm"}
    bound_q = "error_bound" if any(r.get("quantity") == "error_bound" for r in rows) else "hoeffding_t"
    fig, pairs = _rate_axes(len(panels))
    for (top, ax), (pert, rule) in zip(pairs, panels):
        first, hoef = None, []
        for net in nets:
            s = norm.get((pert, rule, net)) or 1.0
            by, bd = defaultdict(list), defaultdict(list)
            for r in rows:
                if key(r) == (pert, rule) and r.get("net") == net and num(r.get("k")):
                    if r.get("quantity") == "sup_error" and num(r.get("value")):
                        by[num(r["k"])].append(num(r["value"]) / s)
                    elif r.get("quantity") == bound_q and num(r.get("value")):
                        bd[num(r["k"])].append(num(r["value"]) / s)
            if not by:
                continue
            N = sorted(by)
            e = [np.median(by[n]) for n in N]
            c = _color(colors, net)
            ax.plot(N, e, "o-", ms=3, color=c, label=str(net))
            if bd:
                Nb = sorted(bd)
                hoef += [np.median(bd[n]) for n in Nb]
                top.plot(Nb, [np.median(bd[n]) for n in Nb], ":", color=c, lw=1.5)
            if first is None:
                first = (N[0], e[0], N[-1])
        if first is not None:
            n0, e0, n1 = first
            ns = np.geomspace(n0, n1, 10)
            ax.plot(ns, e0 * (ns / n0) ** -0.5, "k--", lw=1, label="slope −1/2")
        ax.set_yscale("log")
        ax.set_xscale("log", base=2)
        title = f"{pert} · {rule}" if pert else str(rule)
        if hoef:
            title += f"\nHoeffding level (dotted): {min(hoef):.1e} … {max(hoef):.1e}"
        top.set_title(title, fontsize=8)
        ax.set_xlabel("N (copies averaged)", fontsize=8)
        ax.set_ylabel("e(N) / ‖r_L‖₁" if norm else "e(N)", fontsize=8)
        ax.tick_params(labelsize=7)
    pairs[0][1].legend(fontsize=6, loc="lower left")
    return save(fig, out, "averages.png"), (
        "Sup-error e(N) = ‖m_N − m_ref‖_∞ of the mean attribution over N perturbed copies against a reference "
        "mean of far more copies (mean over disjoint groups), per perturbation and rule, one line per net, "
        "divided by ‖r_L(x)‖₁ (|f_k(x)| for relevance rules, 1 for the gradient) so nets compare; dashed: slope "
        "−1/2. Upper strip (broken axis, same units): the Hoeffding level t(N) + t(n_ref) with the a-priori range "
        "B fixed before sampling, dotted in the net's colour — many orders of magnitude above the measured errors.")


def plot_fitted_constants(records, out):
    rows = select(records, "averages")
    point, reps, xs, apri = {}, defaultdict(list), {}, {}
    for r in rows:
        k = (r.get("perturbation"), r.get("rule"), r.get("net"))
        q, v = r.get("quantity"), num(r.get("value"))
        if v is None:
            continue
        if q == "K_rel":
            point[k] = v
        elif q == "K_rel_boot":
            reps[k].append(v)
        elif q == "weight_norm_product":
            xs[r.get("net")] = v
        elif q == "K_apriori_rel":
            apri[k] = v
    if not point or not xs:
        return None
    rules = sorted({k[1] for k in point}, key=_rule_key)
    perts = sorted({k[0] for k in point}, key=str)
    nets = sorted({k[2] for k in point}, key=str)
    colors = _net_colors(nets)
    markers = dict(zip(perts, "os^v"))
    fig, axes = figure(len(rules), ncols=4, w=3.6, h=3.3)
    for ax, rule in zip(axes, rules):
        titles = []
        for pert in perts:
            sub = {k[2]: v for k, v in point.items() if k[:2] == (pert, rule)}
            res = replicate_slope(sub, {n: reps.get((pert, rule, n), []) for n in sub}, xs)
            titles.append(f"{pert}: {_slope_label(res)}")
            for n, v in sub.items():
                rp = reps.get((pert, rule, n), [])
                lo, hi = (np.quantile(rp, 0.025), np.quantile(rp, 0.975)) if len(rp) >= 10 else (v, v)
                ax.errorbar([xs[n]], [v], yerr=[[max(v - lo, 0)], [max(hi - v, 0)]], fmt=markers[pert],
                            color=_color(colors, n), ms=5, capsize=2,
                            label=f"{n}" if pert == perts[0] else None)
            _fit_line(ax, res, color="0.3")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{rule}\n" + "\n".join(titles), fontsize=7)
        ax.set_xlabel("Π_l ‖W_l‖_∞", fontsize=8)
        ax.set_ylabel("K_rel = median_N e(N)√N / ‖r_L‖₁", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6, loc="best", title="markers: " + ", ".join(f"{markers[p]} {p}" for p in perts),
                   title_fontsize=6)
    return save(fig, out, "averages_constants.png"), (
        "Fitted constant of the convergence of averages, K_rel = e(N)·√N / ‖r_L(x)‖₁ (median over N), per net "
        "against Π‖W_l‖_∞, per rule and perturbation (marker); bars: 95 % bootstrap over the perturbed copies; "
        "solid: least-squares fit, slope and CI in the title; dotted: slope 1. Binder et al.: the LRP-β "
        "constants do not move with the weight norms, those of the gradient and LRP-ε do.")


def plot_tightness(records, out):
    cons = select(records, "constants")
    bnd = select(records, "bounds")
    series = {}
    for q, lab in (("tightness_emp", "C_emp / Π c_l"), ("tightness_norm1", "Π‖M_l‖₁ / Π c_l")):
        d = unit_values(cons, q, measure="constants")
        if d:
            series[lab] = {g: max(v.values()) for g, v in d.items()}
    sig = defaultdict(dict)
    for r in bnd:
        t = num(r.get("tightness"))
        g = (r.get("net"), r.get("rule"))
        if r.get("quantity") == "sigma1_product_bound" and t:
            sig["σ1(P) / Π√(‖M_l‖₁‖M_l‖_∞)"][g] = t
        elif r.get("quantity") == "sigma1_product_schur" and t:
            sig["σ1(P) / √(‖P‖₁‖P‖_∞)"][g] = t
        elif r.get("quantity") == "sigma1_bound" and t:
            sig.setdefault("median_l σ1(M_l) / √(‖M_l‖₁‖M_l‖_∞)", {}).setdefault(g, []).append(t)
    for lab in [k for k in sig if k.startswith("median")]:
        sig[lab] = {g: float(np.median(v)) for g, v in sig[lab].items()}
    series.update(sig)
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    fig, axes = figure(len(series), ncols=2, w=6.2, h=3.4)
    for ax, (lab, d) in zip(axes, series.items()):
        nets = sorted({g[0] for g in d}, key=str)
        rules = sorted({g[1] for g in d}, key=_rule_key)
        colors = _net_colors(nets)
        width = 0.8 / max(len(nets), 1)
        for j, n in enumerate(nets):
            xs = [i + (j - (len(nets) - 1) / 2) * width for i, ru in enumerate(rules) if (n, ru) in d]
            ys = [d[(n, ru)] for ru in rules if (n, ru) in d]
            ax.bar(xs, ys, width=width * 0.95, color=_color(colors, n), label=str(n),
                   hatch="//" if "rescaled" in str(n) else None)
        ax.set_yscale("log")
        ax.set_xticks(range(len(rules)), [str(r) for r in rules], rotation=25, ha="right", fontsize=7)
        ax.set_ylabel(lab, fontsize=8)
        ax.axhline(1.0, color="k", lw=0.8, ls=":")
        ax.tick_params(labelsize=7)
        ax.set_title(f"tightness: {lab}", fontsize=9)
    axes[0].legend(fontsize=6)
    return save(fig, out, "bounds_tightness.png"), (
        "How tight the bounds are (observed / bound, log scale; 1 = attained), per rule and net: the empirical "
        "componentwise constant and the product of the measured layer norms Π‖M_l‖₁ against the a-priori "
        "constant Π c_l (max over the input set); the σ1 bounds of the product P = M_1⋯M_L (per-layer Schur "
        "bounds multiplied, and the Schur bound of P itself) and the median per-layer Schur tightness.")


FIGURES = [plot_constants, plot_rates, plot_fitted_constants, plot_tightness]
