"""Binder et al.'s claims in words and figures: the observed numbers beside each verdict, and the report's plots.

Figures (from ``measure="constants"`` / ``"averages"`` / ``"bounds"`` records):

* ``binder_constants.png`` — per rule, the bound's constant c_norm1 = Π‖M_l(x)‖₁ (filled) and the attribution's
  own C_emp = ‖R‖_∞/‖r_L‖₁ (hollow) against Π_l ‖W_l‖_∞, one marker per study net and seed (median over its
  images), one least-squares line per seed; the controlled net W → c·W as a dashed line of diamonds; a dotted
  slope-1 guide (the a-priori gradient constant);
* ``binder_support.png`` — B3: the weight-free factor Π_l c_l(S) of the Hoeffding range over each
  perturbation's support, and beside it the logit range F/|f_k(x)|, against Π_l ‖W_l‖_∞;
* ``bounds_tightness.png`` — C_emp / c_norm1 and c_norm1 / Π c_l per rule and net (and the σ1 bounds'
  tightness where ``bounds`` records exist);
* ``averages.png`` — (``--extended``) the sup-error e(N) of the mean of N perturbed copies against N, per
  perturbation and rule, one line per net, with the slope −½ guide.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .. import stats
from ..context import fmt
from ..panels import figure, num, palette, save, select, style_axes
from . import decide as D
from . import protocol as P

__all__ = ["FIGURES", "HANDLES", "FIGURE_NAMES", "PAPER_NUMBERS", "observed_trend", "observed_b3", "beside_b1",
           "beside_b2", "beside_b3", "numbers", "caveats", "small_distinction", "plot_constants", "plot_support",
           "plot_tightness", "plot_rates"]

PAPER_NUMBERS = "none available: only the abstract is public (seeds 000/001); the claims are qualitative"
FIGURE_NAMES = {"B1": ("binder_constants.png",), "B2": ("binder_constants.png", "bounds_tightness.png"),
                "B3": ("binder_support.png",)}
HANDLES = ("constants", "averages", "bounds")
RULE_ORDER = ("gradient", "zplus", "alpha2-beta1")


def _short(net) -> str:
    return str(net).replace("scenes-cnn-", "")


def _est(e) -> str:
    return e.text(lambda v: fmt(float(v), 3)) if e is not None else "n/a"


# -- words ----------------------------------------------------------------------------------------------------
def observed_trend(d, quantity, rules) -> str:
    """Per rule: the slope over seeds with its interval and per seed, the per-net constants of the first seed,
    and the controlled group's median per-image slope."""
    tr, ct = d["trained"].get(quantity, {}), d["controlled"].get(quantity, {})
    out = []
    if tr:
        xs = d["xs"]
        s0 = min(xs)
        out.append(f"Π‖W_l‖_∞ (seed {s0}): " + ", ".join(f"{_short(n)} {fmt(v, 3)}" for n, v in xs[s0].items()))
        for rule in rules:
            est, per = D.trend(tr[rule], xs)
            vals = {n: D.net_value(v) for n, v in tr[rule][s0].items()}
            out.append(f"{rule}: slope {_est(est)} over {est.n} seed(s) (per seed "
                       + ", ".join(f"{s}: {b:.3f}" for s, b in sorted(per.items())) + "); median "
                       + quantity + f" per net (seed {s0}) " + ", ".join(f"{_short(n)} {fmt(v, 3)}" for n, v in vals.items()))
    if ct:
        for rule in rules:
            b = D.controlled_slopes(ct[rule], d["cxs"])
            out.append(f"controlled {d['controlled_net']} × c: {rule} per-image slope {_est(stats.median_ci(b, unit='images'))}")
    return "; ".join(out) or "nothing measured"


def observed_b3(d) -> str:
    out = []
    for pert, level in P.PERTURBATIONS:
        out.append(f"{pert} {level:g}: " + observed_trend(d, f"support_constant:{pert}", P.BETA + P.DEPENDENT))
    return " | ".join(out)


def _slope_text(table, xs, rules, label) -> str:
    parts = []
    for rule in rules:
        if rule in table:
            parts.append(f"{rule} {_est(D.trend(table[rule], xs)[0])}")
    return f"{label}: " + ", ".join(parts) if parts else ""


def _tightness(d, rules) -> str:
    tr = d["trained"]
    if "c_emp" not in tr:
        return ""
    out = []
    for rule in rules:
        r = [np.asarray(tr["c_emp"][rule][s][n]) / np.asarray(tr["c_norm1"][rule][s][n])
             for s in tr["c_emp"][rule] for n in tr["c_emp"][rule][s]]
        r = np.concatenate(r) if r else np.zeros(0)
        if r.size:
            out.append(f"{rule} {fmt(float(np.nanmedian(r)), 3)}")
    return "tightness C_emp / c_norm1 (median over images, nets, seeds): " + ", ".join(out)


def beside_b1(d) -> str:
    """C_emp's slopes (the attribution's largest entry: a tightness measure, not the constant), the tightness, and
    the a-priori constants (identities: 1 for z⁺, 3^L for α2β1)."""
    tr = d["trained"]
    out = []
    if "c_emp" in tr:
        out.append(_slope_text(tr["c_emp"], d["xs"], P.BETA + ("gradient",), "slopes of C_emp = ‖R‖_∞/‖r_L‖₁"))
        out.append(_tightness(d, P.BETA + ("gradient",)))
    if "c_apriori" in tr:
        s0 = min(d["xs"])
        out.append("a-priori Π c_l (identities): " + ", ".join(
            f"{rule} {fmt(D.net_value(next(iter(tr['c_apriori'][rule][s0].values()))), 4)}" for rule in P.BETA))
    return "; ".join(o for o in out if o)


def _eps_slopes(table, seeds_nets) -> dict:
    """{net: Estimate over seeds of the slope of log(median constant) on log(1/ε)}."""
    eps = {rule: float(rule.split("=")[1]) for rule in P.DEPENDENT if rule.startswith("lrp-epsilon")}
    out = {}
    nets = sorted({n for s in table[next(iter(eps))].values() for n in s}, key=str)
    for net in nets:
        X, Y = {}, {}
        for rule, e in eps.items():
            for s, by in table[rule].items():
                if net in by and D.net_value(by[net]) is not None:
                    X.setdefault(s, {})[rule] = 1.0 / e
                    Y.setdefault(s, {})[rule] = D.net_value(by[net])
        out[net] = stats.slope_over_seeds(X, Y)[0]
    return out


def beside_b2(d) -> str:
    """The growth as ε → 0 (our derivation; an identity for c_norm1), C_emp's slopes, and the function-preserving
    rescaling."""
    tr = d["trained"]
    out = []
    if "c_norm1" in tr:
        for q, label in (("c_norm1", "c_norm1 (identity: grows as ε → 0)"), ("c_emp", "C_emp")):
            if q in tr:
                e = _eps_slopes(tr[q], d["nets"])
                out.append(f"slope in 1/ε of {label}: " + ", ".join(f"{_short(n)} {_est(v)}" for n, v in e.items()))
        out.append(_slope_text(tr.get("c_emp", {}), d["xs"], P.DEPENDENT, "slopes of C_emp against Π‖W_l‖_∞"))
    r = d.get("rescaled")
    if r:
        ratios = []
        for rule in P.RULES:
            a = D.net_value(r["original"][rule]["c_norm1"])
            b = D.net_value(r["rescaled"][rule]["c_norm1"])
            ratios.append(f"{rule} {fmt(b / a, 4) if a else 'n/a'}")
        out.append(f"function-preserving rescaling of {d['controlled_net']} ((c, 1/c) on consecutive layers, "
                   f"c = {P.RESCALE_C:g}; logits change ≤ {fmt(r['logit_change'], 2)}, decision "
                   f"{'unchanged' if r['same_decision'] else 'CHANGED'}): c_norm1 rescaled/original " + ", ".join(ratios))
    return "; ".join(o for o in out if o)


def beside_b3(d) -> str:
    """The logit range F/|f_k| (what made the per-unit-logit Hoeffding constant grow) and, with --extended, the
    averages study."""
    tr = d["trained"]
    out = []
    for pert, _ in P.PERTURBATIONS:
        q = f"logit_range_rel:{pert}"
        if q in tr:
            out.append(_slope_text(tr[q], d["xs"], ("zplus",), f"{pert}: slope of the logit range F/|f_k(x)|"))
    if not out:
        return ""
    return "; ".join(out) + (" (the Hoeffding premise and the −½ rate are identities: tests/test_binder.py; the "
                             "averages study runs with --extended, averages.png)")


def numbers(decision) -> dict:
    """{part name: point estimate} of the decided parts (the README's generated table reads them)."""
    return {p.name: p.estimate.value for p in decision.parts if p.estimate is not None
            and "(check)" not in p.name and p.estimate.value is not None}


def caveats(ctx, d) -> tuple:
    out = []
    if d["nets"] and not ctx.s.quick:
        acc = []
        for net, seeds in d["nets"].items():
            for s, name in seeds.items():
                a = (getattr(ctx.model(name), "meta", None) or {}).get("test_accuracy")
                if a is not None and a < 0.9:
                    acc.append(f"{name} {100 * a:.1f} %")
        if acc:
            out.append("held-out accuracy below 90 %: " + ", ".join(acc) + " (leave-one-net-out checks cover it)")
    return tuple(out)


def small_distinction(d, quantity, band) -> tuple:
    """A caveat for each dependent rule whose own slope's interval lies in the independence band too: its
    distinction from LRP-β may be significant, but by B1's yardstick it is small."""
    tr = d["trained"].get(quantity, {})
    small = [rule for rule in P.DEPENDENT if rule in tr and D.within_band(D.trend(tr[rule], d["xs"])[0], band)]
    if not small:
        return ()
    return (f"the slope of {', '.join(small)} itself lies within ±{band:g} — independent by B1's band: the "
            "distinction from LRP-β is significant but small",)


# -- figures -----------------------------------------------------------------------------------------------
def _rule_key(rule):
    rule = str(rule)
    if rule in RULE_ORDER:
        return (RULE_ORDER.index(rule), 0.0, rule)
    if rule.startswith("lrp-epsilon="):
        return (len(RULE_ORDER), -float(rule.split("=")[1]), rule)
    return (len(RULE_ORDER) + 1, 0.0, rule)


def _per_net(rows, quantity, role="study", perturbation=None):
    """{(rule, study, seed): (x, median value)} of the per-image records of ``quantity``."""
    vals, xs = defaultdict(list), {}
    for r in rows:
        if r.get("role") != role:
            continue
        key = (r.get("rule"), r.get("study"), r.get("seed") if role == "study" else r.get("scale"))
        if r.get("quantity") == "weight_norm_product" and num(r.get("value")) is not None:
            xs[key[1:]] = num(r["value"])
        elif r.get("quantity") == quantity and r.get("perturbation") == perturbation and num(r.get("value")):
            vals[key].append(num(r["value"]))
    return {k: (xs.get(k[1:]), float(np.median(v))) for k, v in vals.items() if xs.get(k[1:])}


def _panel(ax, pts, ctrl, marker="o", hollow=False, fit=True):
    nets = sorted({k[1] for k in pts}, key=str)
    colors = palette(nets)
    by_seed = defaultdict(dict)
    for (_, net, seed), (x, y) in pts.items():
        by_seed[seed][net] = (x, y)
        ax.scatter([x], [y], s=36, marker=marker, facecolors="none" if hollow else colors[net], edgecolors=colors[net],
                   lw=1.2, zorder=3, label=_short(net) if seed == 0 and not hollow else None)
    slopes = []
    for seed, d in by_seed.items():
        if len(d) >= 2 and fit:
            x, y = np.array([v[0] for v in d.values()]), np.array([v[1] for v in d.values()])
            b = stats.loglog_slope(x, y)
            if b is not None:
                slopes.append(b)
                xx = np.geomspace(x.min(), x.max(), 10)
                ax.plot(xx, np.exp(np.log(y).mean() + b * (np.log(xx) - np.log(x).mean())), "-", color="0.4", lw=0.8)
    if ctrl:
        c = sorted(ctrl.values())
        ax.plot([v[0] for v in c], [v[1] for v in c], "D--", color="k", ms=4, lw=0.8, label="controlled W → cW"
                if not hollow else None)
    return slopes


def _guide(ax, pts):
    xy = [v for v in pts.values() if v[0] and v[1]]
    if xy:
        x0, y0 = xy[0]
        xx = np.geomspace(min(v[0] for v in xy), max(v[0] for v in xy), 10)
        ax.plot(xx, y0 * xx / x0, ":", color="0.6", lw=1)


def plot_constants(records, out):
    rows = select(records, "constants")
    pts = _per_net(rows, "c_norm1")
    emp = _per_net(rows, "c_emp")
    ctl = _per_net(rows, "c_norm1", role="controlled")
    if not pts and not ctl:
        return None
    rules = sorted({k[0] for k in pts} | {k[0] for k in ctl}, key=_rule_key)
    fig, axes = figure(len(rules), ncols=3, w=4.4, h=3.5)
    for ax, rule in zip(axes, rules):
        sub = {k: v for k, v in pts.items() if k[0] == rule}
        ctrl = {k[2]: v for k, v in ctl.items() if k[0] == rule}
        slopes = _panel(ax, sub, ctrl)
        _panel(ax, {k: v for k, v in emp.items() if k[0] == rule}, {}, hollow=True, fit=False)
        _guide(ax, sub or {(rule, "controlled", c): v for c, v in ctrl.items()})
        e = stats.mean_ci(slopes)
        style_axes(ax, f"{rule}: c_norm1 slope {_est(e)}", "Π_l ‖W_l‖_∞", "c_norm1 (filled), C_emp (hollow)",
                   xscale="log", yscale="log")
    axes[0].legend(fontsize=6, loc="best")
    return save(fig, out, "binder_constants.png"), (
        "The constant of the componentwise bound, c_norm1 = Π_l ‖M_l(x)‖₁ (filled), and the attribution's own "
        "C_emp = ‖R(x)‖_∞/‖r_L‖₁ (hollow) against the weight norms Π_l ‖W_l‖_∞, per rule: one marker per study net "
        "and training seed (median over its held-out images), one grey least-squares line per seed (title: mean "
        "slope with its t interval over seeds); black diamonds: the controlled net with its weights multiplied by "
        "c (biases kept); dotted: slope 1. Binder et al.: the LRP-β constants do not depend on the weight norms, "
        "the gradient's and LRP-ε's do.")


def plot_support(records, out):
    rows = select(records, "constants")
    panels = []
    for pert, _ in P.PERTURBATIONS:
        pts = _per_net(rows, "support_constant", perturbation=pert)
        if pts:
            panels.append((pert, "Π c_l(S)", pts))
        f = _per_net(rows, "logit_range_rel", perturbation=pert)
        if f:
            panels.append((pert, "F/|f_k(x)|", {k: v for k, v in f.items() if k[0] == "zplus"}))
    if not panels:
        return None
    fig, axes = figure(len(panels), ncols=2, w=5.2, h=3.8)
    for ax, (pert, label, pts) in zip(axes, panels):
        rules = sorted({k[0] for k in pts}, key=_rule_key)
        colors = palette(rules)
        for rule in rules:
            sub = [(v[0], v[1]) for k, v in pts.items() if k[0] == rule]
            ax.scatter([v[0] for v in sub], [v[1] for v in sub], s=18, color=colors[rule], label=rule)
        style_axes(ax, None, "Π_l ‖W_l‖_∞", xscale="log", yscale="log")
        ax.set_title(f"{pert}: {label}", fontsize=9)
        ax.legend(fontsize=6)
    return save(fig, out, "binder_support.png"), (
        "B3: the factor of the Hoeffding range that does not involve the logit, Π_l c_l(S) — the a-priori per-layer "
        "constants with the layer inputs bounded over the perturbation's support S by interval bound propagation — "
        "per rule against Π_l ‖W_l‖_∞ (one point per study net and seed, median over images); beside it the logit's "
        "range F/|f_k(x)| over S, which grows with the weight norms for every relevance rule alike.")


def plot_tightness(records, out):
    rows = select(records, "constants")
    emp = _per_net(rows, "c_emp")
    n1 = _per_net(rows, "c_norm1")
    ap = _per_net(rows, "c_apriori")
    series = {}
    if emp and n1:
        series["C_emp / c_norm1"] = {k: emp[k][1] / n1[k][1] for k in emp if k in n1 and n1[k][1]}
    if n1 and ap:
        series["c_norm1 / Π c_l"] = {k: n1[k][1] / ap[k][1] for k in n1 if k in ap and ap[k][1]}
    sig = defaultdict(dict)
    for r in select(records, "bounds"):
        t = num(r.get("tightness"))
        if r.get("quantity") == "sigma1_product_bound" and t:
            sig["σ1(P) / Π√(‖M_l‖₁‖M_l‖_∞)"][(r.get("rule"), r.get("net"), 0)] = t
    series.update(sig)
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    fig, axes = figure(len(series), ncols=2, w=6.2, h=3.4)
    for ax, (lab, d) in zip(axes, series.items()):
        rules = sorted({k[0] for k in d}, key=_rule_key)
        nets = sorted({k[1] for k in d}, key=str)
        colors = palette(nets)
        width = 0.8 / max(len(nets), 1)
        for j, n in enumerate(nets):
            for i, ru in enumerate(rules):
                v = [val for k, val in d.items() if k[0] == ru and k[1] == n]
                if v:
                    ax.bar(i + (j - (len(nets) - 1) / 2) * width, float(np.median(v)), width=width * 0.95,
                           color=colors[n], label=_short(n) if i == 0 else None)
        ax.set_yscale("log")
        ax.set_xticks(range(len(rules)), [str(r) for r in rules], rotation=25, ha="right", fontsize=7)
        ax.axhline(1.0, color="k", lw=0.8, ls=":")
        style_axes(ax, f"tightness: {lab}", size=9)
    axes[0].legend(fontsize=6)
    return save(fig, out, "bounds_tightness.png"), (
        "How tight the bounds are (observed / bound, log scale; 1 = attained) per rule and net (median over seeds "
        "and images): the attribution's largest entry against the bound's constant at x, and that constant "
        "against the a-priori one; with σ1 bounds measured, σ1 of the product against Π√(‖M_l‖₁‖M_l‖_∞).")


def plot_rates(records, out):
    rows = select(records, "averages")
    err = [r for r in rows if r.get("quantity") == "sup_error" and num(r.get("k")) and num(r.get("value"))]
    if not err:
        return None
    key = lambda r: (r.get("perturbation"), r.get("rule"))  # noqa: E731
    panels = sorted({key(r) for r in err}, key=lambda p: (str(p[0]), _rule_key(p[1])))
    nets = sorted({r.get("net") for r in err}, key=str)
    colors = palette(nets)
    norm = {(r.get("perturbation"), r.get("rule"), r.get("net"), r.get("image")): num(r.get("value")) for r in rows
            if r.get("quantity") == "start_norm"}
    fig, axes = figure(len(panels), ncols=4, w=3.7, h=3.2)
    for ax, (pert, rule) in zip(axes, panels):
        first = None
        for net in nets:
            by = defaultdict(list)
            for r in err:
                if key(r) == (pert, rule) and r.get("net") == net:
                    s = norm.get((pert, rule, net, r.get("image"))) or 1.0
                    by[num(r["k"])].append(num(r["value"]) / s)
            if not by:
                continue
            N = sorted(by)
            e = [np.median(by[n]) for n in N]
            ax.plot(N, e, "o-", ms=3, color=colors[net], label=_short(net))
            first = first or (N[0], e[0], N[-1])
        if first:
            n0, e0, n1 = first
            ns = np.geomspace(n0, n1, 10)
            ax.plot(ns, e0 * (ns / n0) ** -0.5, "k--", lw=1, label="slope −1/2")
        style_axes(ax, f"{pert} · {rule}", "N (copies averaged)", "e(N) / ‖r_L‖₁", xscale="log", xbase=2, yscale="log")
    axes[0].legend(fontsize=6, loc="lower left")
    return save(fig, out, "averages.png"), (
        "Sup-error e(N) = ‖m_N − m_ref‖_∞ of the mean attribution over N perturbed copies against a reference mean of "
        "far more copies, per perturbation and rule, one line per net, divided by ‖r_L(x)‖₁; dashed: slope −½ (the "
        "rate of any i.i.d. mean: an identity, not a claim).")


FIGURES = [plot_constants, plot_support, plot_tightness, plot_rates]
