"""What S1–S8 observed, in words and figures: the verdicts' texts, the records they rest on, Sixt et al.'s figures.

Records (one tidy table per measure):

* ``csc_sixt``        per (net, method, injection, mode, boundary j): the median over images of the per-image CSC
                      and its exact 95 % interval, the channels d, whether j is eligible / decided / right below a
                      max-pool, the pooled Fig. 5e–g histogram, the random baseline;
* ``csc_sixt_image``  per image the CSC at the decided boundary and at the input (what S1–S3 decide on);
* ``ssim_sixt``       per image the random-logit SSIM (S5); ``csc_s2`` S2's curve at the two input scales;
* ``weight_spectra``  Fig. 3; ``theorem1`` σ2/σ1 and the Hilbert diameter of P_k, the per-image factor, zero
                      columns/rows and Birkhoff's τ per layer; ``simulation`` App. B (median over draws per
                      product, per variant and shape set);
* ``cascading``       per step the median SSIM with its exact 99 % interval (Fig. 4b's level);
                      ``cascading_image`` per image at every step; ``heatmap`` Fig. 1a's maps of the first image;
* ``class_difference`` per two-object scene the mean |Δ| (S8).

Figures (:data:`FIGURES`): Fig. 5a–d (+ App. F, Fig. 6c), Fig. 5e–g, Fig. 3, Fig. 4a, Fig. 4b (+ App. E, Fig. 6a),
Fig. 1a (heat-map grid), Fig. 1e, Thm. 1, App. B, S2.
"""
from __future__ import annotations

import numpy as np

from ... import measures as _measures
from ...measures.csc import random_baseline
from ...measures.maps import undefined
from ..panels import figure, num, palette, save, select, style_axes, valued
from ..stats import median_ci
from ..verdict import Estimate
from . import decide as D
from .protocol import EXTENDED
from .spec import REST, beside, decided, method_label

__all__ = ["FIGURES", "HANDLES", "PAPER_NUMBERS", "encode_map", "decode_map"]

HANDLES = ("csc_sixt", "csc_sixt_image", "ssim_sixt", "csc_s2", "weight_spectra", "theorem1", "simulation",
           "cascading", "cascading_image", "heatmap", "class_difference")
FLOOR = 1e-16
PAPER_L1 = 0.000371
FIG1_METHODS = ("guided-bp", "rectgrad", "dtd", "lrp-a1b0", "lrp-a2b1", "patternattribution", "deeplift-rescale",
                "gradient")          # the authors' Figure 1 rows, sanity_checks.ipynb:793-801

PAPER_NUMBERS = {
    "S1": "Fig. 5 (VGG-16, ResNet-50, CIFAR net): every method but LRP-z and DeepLIFT ≥ 0.99; LRP α5β4 'converges "
          "less strongly for VGG-16'",
    "S2": "Fig. 5d: median CSC > 1 − 1e-6 (CIFAR net)",
    "S3": "DeepLIFT the only modified BP method that does not converge; the Ablation converges",
    "S4": "Fig. 3a: σ1/σ2(A) > 6 for almost all VGG-16 layers",
    "S5": "Fig. 4a: converging ≈ 1, the rest 0.4–0.8",
    "S6": "App. B: non-negative products converge exponentially (no rate given)",
    "S7": "Fig. 4b (VGG-16), App. E (ResNet-50): converging methods ≈ 1 after conv layers are randomized",
    "S8": "Fig. 1e: 0.000371 (one VGG-16 image, cat vs dog)",
}


# ---------------------------------------------------------------------------------------------------------------
# numbers in words


def est(e: Estimate | None) -> str:
    if e is None or e.value is None:
        return "n/a"
    f = lambda v: f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3g}"  # noqa: E731
    if e.lo == e.hi == e.value or e.lo is None:
        return f(e.value)
    lo = "−∞" if e.lo == -np.inf else f(e.lo)
    hi = "∞" if e.hi == np.inf else f(e.hi)
    return f"{f(e.value)} [{lo}, {hi}]"


def missing_text(missing, lead="") -> str:
    return f"{lead}(not run: {', '.join(missing)} — no weights)" if missing else ""


def extended_caveats(ctx, keys) -> tuple:
    """The parts of the protocol this run left to --extended, with the reason."""
    if ctx.s.extended or ctx.s.quick:
        return ()
    return tuple(f"Left to --extended: {EXTENDED[k]}." for k in keys)


def _listing(items) -> str:
    return "; ".join(f"{role}/{method_label(mid)} {est(e)}" for (role, mid), e in items) or "none"


def _seed_prefix(data, s):
    return f"seed {s}: " if len(data) > 1 else ""


def _at_decided(d):
    vals, where = D._at_boundary(d["curves"], d["bounds"])
    return {k: D.estimate(v) for k, v in vals.items()}, where


def observed_csc(data, spec, missing) -> str:
    """Per seed and group: the decided methods' medians at the decided boundary with their intervals."""
    out = []
    groups = {"S1": (("converging", lambda m: m in D.CONVERGING),),
              "S3": (("Rescale/RevealCancel", lambda m: m in D.DEEPLIFT), ("Ablation", lambda m: m in D.ABLATION))}
    for s, d in sorted(data.items()):
        ests, where = _at_decided(d)
        at = ", ".join(f"{r}: {w}" for r, w in sorted(where.items()))
        parts = []
        for label, pred in groups[spec.id]:
            items = [(k, e) for k, e in sorted(ests.items()) if pred(k[1]) and k[1] in decided(spec, k[0])]
            parts.append(f"{label}: {_listing(items)}")
        out.append(f"{_seed_prefix(data, s)}median CSC at the decided boundary ({at}) — " + ". ".join(parts))
    return ". ".join(out) + "." + missing_text(missing, " ")


def beside_csc(ctx, data, spec) -> str:
    """Out-of-scope methods (the spec's exclusions) and the methods the claim excepts, at the decided boundary."""
    out = []
    for s, d in sorted(data.items()):
        ests, _ = _at_decided(d)
        excl = [(k, e) for k, e in sorted(ests.items()) if k[1] in beside(spec, k[0])]
        other = [(k, e) for k, e in sorted(ests.items()) if k[1] not in decided(spec, k[0])
                 and k[1] not in beside(spec, k[0])]
        out.append(f"{_seed_prefix(data, s)}excluded by the spec: {_listing(excl)}. Not in the claim (LRP-z, "
                   f"DeepLIFT, gradient): {_listing(other)}.")
    out.append("(Fig. 5 pools images, pairs and locations into one median per layer; here the image is the unit: "
               "the median over images of the per-image medians, with its interval.)")
    return " ".join(out)


def beside_s3(ctx, data) -> str:
    """--extended: DeepLIFT's ± rule (``deeplift-*-pm``: the parts carried through the net, not the authors' rule)
    at the decided boundary, with the tied and with independent ± injections."""
    out = []
    for s, d in sorted(data.items()):
        for what, key in (("the ± rule (parts carried through the net, two multipliers per neuron; not the authors' "
                           "deeplift package), tied injection", "pm"),
                          ("the ± rule with independent ± injections (excite m⁺ − m⁻, which converges through "
                           "|W|ᵀS whatever DeepLIFT does)", "indep")):
            if not d.get(key):
                continue
            vals, _ = D._at_boundary(d[key], d["bounds"])
            items = [(k, D.estimate(v)) for k, v in sorted(vals.items())]
            out.append(f"{_seed_prefix(data, s)}{what}: {_listing(items)}.")
    return " ".join(out)


def _key(seed, *parts) -> str:
    return ("" if seed == 0 else f"seed {seed} ") + " ".join(str(p) for p in parts)


def _extremes(ests, spec, members, seed, lo_label, hi_label, out):
    """The lowest (and highest) median of the decided ``members`` per role: the README's headline numbers."""
    for role in sorted({r for r, _ in ests}):
        mine = [(e.value, mid) for (r, mid), e in ests.items() if r == role and mid in decided(spec, role)
                and mid in members and e.value is not None]
        if mine:
            if lo_label:
                v, mid = min(mine)
                out[_key(seed, role, f"{lo_label} ({method_label(mid)})")] = v
            if hi_label:
                v, mid = max(mine)
                out[_key(seed, role, f"{hi_label} ({method_label(mid)})")] = v
    return out


def numbers_csc(data, spec) -> dict:
    out = {}
    for s, d in sorted(data.items()):
        ests, _ = _at_decided(d)
        if spec.id == "S1":
            _extremes(ests, spec, D.CONVERGING, s, "lowest", None, out)
        else:
            _extremes(ests, spec, D.DEEPLIFT, s, None, "highest DeepLIFT", out)
            _extremes(ests, spec, D.ABLATION, s, "Ablation", None, out)
    return out


def fig5_names(data) -> tuple:
    nets = sorted({n for d in data.values() for n in d["nets"].values()})
    return tuple(f"sixt_fig5_{n}.png" for n in nets) + (("sixt_fig5_hist.png",) if nets else ())


def observed_s2(per_seed, curves255) -> str:
    out = []
    for s, v in sorted(per_seed.items()):
        for (role, mid), curve in v.items():
            e = D.estimate(1.0 - curve[0])
            e1 = D.estimate(1.0 - curve[1]) if 1 in curve else None
            e255 = D.estimate(1.0 - curves255[(s, role)][0])
            out.append(f"{'seed %d: ' % s if len(per_seed) > 1 else ''}{role}: 1 − CSC at the input {est(e)} "
                       f"(inputs ×255 as the authors: {est(e255)}); after conv1 {est(e1)}")
    return "; ".join(out) + "."


def numbers_s2(per_seed) -> dict:
    return {_key(s, role, "1 − CSC at the input"): D.estimate(1.0 - c[0]).value
            for s, v in per_seed.items() for (role, _), c in v.items()}


def s4_line(net, ratios, spec) -> str:
    med = lambda v: f"{float(np.nanmedian([x if x is not None else np.nan for x in v])):.3g}"  # noqa: E731
    A = ", ".join("∞" if x == np.inf else f"{x:.3g}" for x in ratios["A"] if x is not None)
    return (f"{net}: σ1/σ2(A) per layer {A}; W⊙A vs W (centre taps) median {med(ratios['W*A'])} vs "
            f"{med(ratios['W'])}; T_l median {med(ratios['T(W*A)'])} vs {med(ratios['T(W)'])}")


def beside_roles(spec, per_seed) -> str:
    roles = sorted({r for v in per_seed.values() for r in v if r in spec.scope.beside and r not in spec.scope.methods})
    return ("measured beside (not decided): " + ", ".join(
        f"{r} — {next(iter(spec.scope.beside[r].values())).cite()}" for r in roles)) if roles else ""


def _sanity_groups(d, spec, key):
    conv = [(k, D.estimate(v)) for k, v in sorted(d[key].items())
            if k[1] in decided(spec, k[0]) and k[1] not in REST]
    rest = [(k, D.estimate(v)) for k, v in sorted(d[key].items()) if k[1] in decided(spec, k[0]) and k[1] in REST]
    return conv, rest


def undefined_text(d, key) -> str:
    """Where a map was constant (SSIM undefined, left out of the median): '<net>/<method> k of n images; …'."""
    items = []
    for (role, mid), v in sorted(d[key].items(), key=str):
        k = undefined(v)
        if k:
            items.append(f"{role}/{method_label(mid)} {k} of {len(v)} images")
    return "; ".join(items)


def observed_sanity(data, spec, key, missing) -> str:
    out = []
    for s, d in sorted(data.items()):
        conv, rest = _sanity_groups(d, spec, key)
        line = f"{_seed_prefix(data, s)}median SSIM — converging: {_listing(conv)}. Rest: {_listing(rest)}"
        und = undefined_text(d, key)
        if und:
            line += (f". SSIM undefined (one map constant — 0/0 in the authors' normalize_sanity —, left out of the "
                     f"median): {und}")
        out.append(line)
    return ". ".join(out) + "." + missing_text(missing, " ")


def beside_sanity(data, spec, key) -> str:
    out = []
    for s, d in sorted(data.items()):
        items = [(k, D.estimate(v)) for k, v in sorted(d[key].items()) if k[1] not in decided(spec, k[0])]
        if items:
            out.append(f"{_seed_prefix(data, s)}{_listing(items)}")
    return ("not decided (the spec's exclusions, LRP-CMP, sixt-cifar): " + " ".join(out)) if out else ""


def numbers_sanity(data, spec, key) -> dict:
    out = {}
    for s, d in sorted(data.items()):
        ests = {k: D.estimate(v) for k, v in d[key].items()}
        _extremes(ests, spec, D.CONVERGING + D.ABLATION, s, "lowest converging", None, out)
        _extremes(ests, spec, REST, s, None, "highest rest", out)
    return out


def s6_net_line(net, ratio, grad, hyp) -> str:
    f = [D.decay_factor(r) for r in ratio]
    g = None if grad is None else [D.decay_factor(r) for r in grad]
    zc = sum(h["zero_columns"] for h in hyp)
    zr = sum(h["zero_rows"] for h in hyp)
    taus = ", ".join(("n/a" + (" (signed)" if h.get("tau_why") == "negative entries" else "")) if h["tau"] is None
                     else f"{h['tau']:.3g}" for h in hyp)
    med_first = float(np.nanmedian(ratio[:, 0])) if ratio.size else np.nan
    med_last = float(np.nanmedian(ratio[:, -1])) if ratio.size else np.nan
    return (f"{net}: σ2/σ1(P_k) {med_first:.3g} → {med_last:.3g} over {ratio.shape[1]} layers (median over "
            f"{ratio.shape[0]} images), factor per layer {est(D.estimate(f))}; "
            + ("" if g is None else f"the gradient's (signed chain, beside) {est(D.estimate(g))}; ")
            + f"the theorem's hypotheses at image 0: {zc} zero columns (excluded by the theorem), "
            f"{zr} zero rows (no hypothesis); Birkhoff τ per layer {taus}")


def sim_line(sim) -> str:
    parts = []
    for lab, v in sim.items():
        parts.append(f"{lab} {est(D.estimate([D.decay_factor(r) for r in v], 'draws'))}")
    return "App. B simulation (VGG-16 centre-tap shapes), factor per product over draws: " + ", ".join(parts) + "."


def numbers_s6(prefix, sim) -> dict:
    out = {}
    for s, p in sorted(prefix.items()):
        for (role, mid), r in sorted(p.items()):
            if mid == "lrp-a1b0":
                out[_key(s, role, "factor per layer")] = D.estimate([D.decay_factor(x) for x in r]).value
    for lab in ("positive", "non-negative", "stochastic", "vanilla"):
        if lab in sim:
            out[f"simulation {lab} factor"] = D.estimate([D.decay_factor(r) for r in sim[lab]], "draws").value
    return out


def observed_s8(data, spec, missing) -> str:
    out = []
    for s, v in sorted(data.items()):
        for role in sorted({r for r, _ in v}):
            z, g = v.get((role, "lrp-a1b0")), v.get((role, "gradient"))
            if z is None:
                continue
            line = f"{_seed_prefix(data, s)}{role}: LRP α1β0 mean |Δ| {est(D.estimate(z))}"
            if g is not None:
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = np.where(np.asarray(g) > 0, np.asarray(z) / np.asarray(g), np.nan)
                line += f", gradient {est(D.estimate(g))}, per-image ratio {est(D.estimate(ratio))}"
            out.append(line)
    return "; ".join(out) + "." + missing_text(missing, " ")


def beside_s8(data, spec) -> str:
    items = [(k, D.estimate(v)) for d in data.values() for k, v in sorted(d.items())
             if not (k[1] in ("lrp-a1b0", "gradient") and "lrp-a1b0" in decided(spec, k[0]))]
    return ("mean |Δ| of the other methods and nets: " + _listing(items)) if items else ""


def numbers_s8(data) -> dict:
    out = {}
    for s, v in sorted(data.items()):
        for role in sorted({r for r, _ in v}):
            z, g = v.get((role, "lrp-a1b0")), v.get((role, "gradient"))
            if z is not None:
                out[_key(s, role, "α1β0 mean |Δ|")] = D.estimate(z).value
            if g is not None:
                out[_key(s, role, "gradient mean |Δ|")] = D.estimate(g).value
    return out


# ---------------------------------------------------------------------------------------------------------------
# records


def _method_cols(m):
    return {"label": m.label, "group": m.group}


def record_pass(ctx, net, role, seed, out) -> None:
    """The records of one shared pass (module docstring: csc_sixt, csc_sixt_image, ssim_sixt)."""
    bounds = out["bounds"]
    jd = D.decided_boundary(bounds)
    elig = set(D.eligible(bounds))
    labels = {m.id: m for m in out["methods"]}
    for mid, modes in out["curves"].items():
        m = labels[mid]
        for (inj, mode), curve in modes.items():
            hist = out["hist"][mid][(inj, mode)]
            for j, v in sorted(curve.items()):
                e = D.estimate(v)
                h = hist[j]
                ctx.record("csc_sixt", net=net, rule=mid, image=None, quantity="csc", layer=j, k=None, value=e.value,
                           ci_lo=e.lo, ci_hi=e.hi, n_images=e.n, d=bounds[j]["d"], to=bounds[j]["name"],
                           below_pool=bounds[j]["below_pool"], eligible=j in elig, decided=j == jd, inject=inj,
                           mode=mode, role=role, seed=seed, baseline=random_baseline(bounds[j]["d"])["median"],
                           hist="/".join(f"{x:.4g}" for x in (h / h.sum() if h.sum() else h)), **_method_cols(m))
            if inj == out["inject"][0] and mode == "tied":
                for j in sorted({0, jd} - {None}):
                    for i, v in enumerate(curve.get(j, ())):
                        ctx.record("csc_sixt_image", net=net, rule=mid, image=i, quantity="csc", layer=j, k=None,
                                   value=float(v), to=bounds[j]["name"], decided=j == jd, role=role, seed=seed)
        for i, v in enumerate(out["ssim"].get(mid) if out["ssim"].get(mid) is not None else ()):
            ctx.record("ssim_sixt", net=net, rule=mid, image=i, quantity="random_logit", layer=None, k=None,
                       value=float(v), role=role, seed=seed, **_method_cols(m))


def record_ssim(ctx, net, role, seed, m, values) -> None:
    for i, v in enumerate(values):
        ctx.record("ssim_sixt", net=net, rule=m.id, image=i, quantity="random_logit", layer=None, k=None,
                   value=float(v), role=role, seed=seed, **_method_cols(m))


def record_s2(ctx, net, role, seed, curve, curve255, n) -> None:
    for scale, c in ((1.0, curve), (255.0, curve255)):
        for j, v in sorted(c.items()):
            e = D.estimate(1.0 - np.asarray(v))
            ctx.record("csc_s2", net=net, rule="lrp-a1b0", image=None, quantity="1-csc", layer=j, k=j, value=e.value,
                       ci_lo=e.lo, ci_hi=e.hi, input_scale=scale, n_images=n, role=role, seed=seed)


def record_s4_chains(ctx) -> None:
    """S4's per-input chain version (--extended): σ1/σ2 of one image's inter-layer members T_l."""
    for net in ("digits-cnn",):
        for rule in ("gradient", "patternattribution"):
            for ch in ctx.stream(net, rule, n=1):
                for r in _measures.spectra(ch, of=("interlayer",), rank=8):
                    ctx.records.append({**r, "measure": "spectra_chain"})


def record_prefix(ctx, net, role, seed, mid, pr) -> None:
    ratio, hil, names = pr["ratio"], pr["hilbert"], pr["names"]
    for k in range(ratio.shape[1]):
        for q, a in (("sigma2/sigma1", ratio), ("hilbert", hil)):
            col = a[:, k]
            if q == "hilbert" and not np.isfinite(col).any() and not np.isinf(col).any():
                continue
            ctx.record("theorem1", net=net, rule=mid, image=None, quantity=q, layer=names[k], k=k + 1,
                       value=float(np.median(col)) if np.isfinite(col).all() or np.isinf(col).any() else
                       float(np.nanmedian(col)) if np.isfinite(col).any() else None, role=role, seed=seed)
    for i, row in enumerate(ratio):
        ctx.record("theorem1", net=net, rule=mid, image=i, quantity="factor", layer=None, k=None,
                   value=D.decay_factor(row), role=role, seed=seed)


def record_hypotheses(ctx, net, role, seed, hyp) -> None:
    for k, h in enumerate(hyp, start=1):
        for q in ("zero_columns", "zero_rows", "tau"):
            ctx.record("theorem1", net=net, rule="lrp-a1b0", image=0, quantity=q, layer=h["layer"], k=k, value=h[q],
                       columns=h["columns"], rows=h["rows"], role=role, seed=seed)


def record_simulation(ctx, shapes_label, sim) -> None:
    for lab, v in sim.items():
        med = np.median(v, axis=0)
        for k, val in enumerate(med):
            ctx.record("simulation", net=shapes_label, rule=lab, image=None, quantity="1-csc", layer=k, k=k,
                       value=float(val), draws=v.shape[0])
        ctx.record("simulation", net=shapes_label, rule=lab, image=None, quantity="factor", layer=None, k=None,
                   value=D.estimate([D.decay_factor(r) for r in v], "draws").value, draws=v.shape[0])


def encode_map(m) -> str:
    """A 2-D map as text: scaled to [−1, 1] by its 99.5th percentile of |m| (the authors' visual normalization),
    two decimals, rows joined by ';', values by ','."""
    m = np.asarray(m, dtype=np.float64)
    s = float(np.percentile(np.abs(m), 99.5)) or 1.0
    v = np.clip(m / s, -1, 1)
    return ";".join(",".join(f"{x:.2f}" for x in row) for row in v)


def decode_map(text: str) -> np.ndarray:
    return np.array([[float(x) for x in row.split(",")] for row in str(text).split(";")])


def record_cascade(ctx, net, role, seed, m, labels, ssim, first, chunk0) -> None:
    """cascading (median per step, exact 99 % interval: Fig. 4b's level), cascading_image, heatmap (Fig. 1a)."""
    for step, (label, v) in enumerate(zip(labels, ssim), start=1):
        e = median_ci(v, 0.99, "images")
        ctx.record("cascading", net=net, rule=m.id, image=None, quantity="ssim", layer=label, k=step, value=e.value,
                   ci_lo=e.lo, ci_hi=e.hi, n_images=e.n, decided=step - 1 == first, role=role, seed=seed,
                   **_method_cols(m))
        for i, x in enumerate(v):
            ctx.record("cascading_image", net=net, rule=m.id, image=i, quantity="ssim", layer=label, k=step,
                       value=float(x), role=role, seed=seed)
    if chunk0.get("original") is not None and len(chunk0["original"]) and (m.id in FIG1_METHODS or
                                                                            m.id.startswith("lrp-cmp")):
        ctx.record("heatmap", net=net, rule=m.id, image=0, quantity="map", layer="original", k=0, value=None,
                   map=encode_map(chunk0["original"][0]), role=role, seed=seed, **_method_cols(m))
        for step, (label, mp) in enumerate(zip(labels, chunk0["maps"]), start=1):
            ctx.record("heatmap", net=net, rule=m.id, image=0, quantity="map", layer=label, k=step, value=None,
                       map=encode_map(mp[0]), role=role, seed=seed, **_method_cols(m))


def record_class_difference(ctx, net, role, seed, methods, diffs) -> None:
    for m in methods:
        for i, v in enumerate(diffs[m.id]):
            ctx.record("class_difference", net=net, rule=m.id, image=i, quantity="mean_abs_diff", layer=None, k=None,
                       value=float(v), role=role, seed=seed, **_method_cols(m))


# ---------------------------------------------------------------------------------------------------------------
# figures


def _label(rows, rid):
    return next((r.get("label") for r in rows if r.get("rule") == rid and r.get("label")), method_label(rid))


def _curve(rows, key="value", transform=lambda v: v):
    pts = sorted((num(r.get("layer")), num(r.get(key))) for r in rows
                 if num(r.get("layer")) is not None and num(r.get(key)) is not None and (num(r.get("d")) or 2) > 1)
    return [p[0] for p in pts], [max(transform(p[1]), FLOOR) for p in pts]


def _final(rows):
    """Rows of the final-layer injection of each net (its first injection name in the records)."""
    first = {}
    for r in rows:
        first.setdefault(r.get("net"), r.get("inject"))
    return [r for r in rows if r.get("inject") == first[r.get("net")]]


def plot_fig5(records, out):
    from matplotlib.ticker import NullLocator

    rows = [r for r in select(records, "csc_sixt") if r.get("mode") in ("tied", "independent")]
    if not rows:
        return None
    rows = _final(rows)
    made = []
    for net in sorted({r.get("net") for r in rows}, key=str):
        sub = [r for r in rows if r.get("net") == net]
        methods = [m for m in dict.fromkeys(r.get("rule") for r in sub) if m != "gradient"]
        fig, axes = figure(len(methods), ncols=5, w=3.0, h=2.5)
        grad = [r for r in sub if r.get("rule") == "gradient" and r.get("mode") == "tied"]
        one = lambda v: 1.0 - v  # noqa: E731
        for ax, m in zip(axes, methods):
            mine = [r for r in sub if r.get("rule") == m]
            tied = [r for r in mine if r.get("mode") == "tied"]
            xs, ys = _curve(tied, transform=one)
            ax.plot(xs, ys, "o-", ms=3, color="C0", label=_label(sub, m))
            xl, yl = _curve(tied, "ci_hi", one)
            xh, yh = _curve(tied, "ci_lo", one)
            if xl and len(xl) == len(xh):
                ax.fill_between(xl, yl, yh, color="C0", alpha=0.2, lw=0)
            xi, yi = _curve([r for r in mine if r.get("mode") == "independent"], transform=one)
            if xi:
                ax.plot(xi, yi, "o:", ms=2, color="C1", label="± independent")
            xg, yg = _curve(grad, transform=one)
            if xg:
                ax.plot(xg, yg, "-", color="0.6", lw=1, label="gradient")
            xb, yb = _curve(tied, "baseline", one)
            if xb:
                ax.plot(xb, yb, "k--", lw=0.8, label="random")
            for r in tied:
                if r.get("below_pool"):
                    ax.axvline(num(r["layer"]), color="0.85", lw=3, zorder=0)
                if r.get("decided"):
                    ax.axvline(num(r["layer"]), color="g", ls=":", lw=0.8)
            ax.axhline(0.01, color="r", ls=":", lw=0.8)
            ax.set_yscale("log")
            ax.yaxis.set_minor_locator(NullLocator())     # 1 − CSC spans up to 16 decades: the decades suffice
            ax.invert_yaxis()
            ax.invert_xaxis()
            names = {num(r["layer"]): r.get("to") for r in tied if r.get("to") is not None}
            ax.set_xticks(sorted(names), [str(names[k]) for k in sorted(names)], rotation=60, fontsize=5)
            style_axes(ax, _label(sub, m), ticks=6)
            ax.legend(fontsize=5)
        if methods:
            inj = next((r.get("inject") for r in sub if r.get("inject")), "?")
            fig.suptitle(f"{net}: 1 − CSC per layer (injection at {inj}, left → input, right)", fontsize=9)
            made.append((save(fig, out, f"sixt_fig5_{net}.png"),
                         f"Sixt Fig. 5 on {net}: 1 − the median over images of the per-image median |cos| of the "
                         "channel vectors of 10 pairs of backward signals (5 N(0, I) vectors per image injected at the "
                         "logits), band: its exact 95 % interval; log axis inverted (up = converged). Grey: the "
                         "gradient; dashed: random vectors of the same dimension; red dotted: CSC = 0.99; green "
                         "dotted: the decided boundary; grey bars: boundaries right below a max-pool (not eligible); "
                         "orange dotted: DeepLIFT's ± rule (-pm) with independent ± injections."))
    return made


def plot_fig5_hist(records, out):
    rows = [r for r in _final(select(records, "csc_sixt")) if r.get("mode") == "tied" and r.get("decided")
            and r.get("hist")]
    if not rows:
        return None
    nets = sorted({r.get("net") for r in rows}, key=str)
    fig, axes = figure(len(nets), ncols=3, w=5.0, h=3.2)
    bins = ("<0.9", "[.9,.99)", "[.99,.999)", "[.999,.9999)", "≥.9999")
    for ax, net in zip(axes, nets):
        sub = [r for r in rows if r.get("net") == net]
        labels = [r.get("label") or r.get("rule") for r in sub]
        H = np.array([[float(x) for x in str(r["hist"]).split("/")] for r in sub])
        left = np.zeros(len(sub))
        for b in range(H.shape[1]):
            ax.barh(range(len(sub)), H[:, b], left=left, label=bins[b], color=f"C{b}")
            left += H[:, b]
        ax.set_yticks(range(len(sub)), labels, fontsize=6)
        ax.set_xlabel("fraction of |cos| values", fontsize=7)
        ax.set_title(f"{net}: |cos| at {sub[0].get('to')}", fontsize=8)
        ax.legend(fontsize=5)
    return save(fig, out, "sixt_fig5_hist.png"), (
        "Sixt Fig. 5e–g: distribution of |cos| between the backward signals at the decided boundary (the first conv's "
        "output; final-layer injection), pooled over images, pairs and locations, in the authors' bins.")


def plot_fig5_injections(records, out):
    rows = [r for r in select(records, "csc_sixt") if r.get("mode") == "tied"]
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
                xs, ys = _curve([r for r in sub if r.get("inject") == inj and r.get("rule") == m],
                                transform=lambda v: 1.0 - v)
                ax.plot(xs, ys, "o-", ms=2, color=colors[m], label=_label(sub, m))
            ax.set_yscale("log")
            ax.invert_yaxis()
            ax.invert_xaxis()
            ax.set_title(f"{net}: injection at {inj}", fontsize=8)
        axes[0].legend(fontsize=5)
        made.append((save(fig, out, f"sixt_appF_{net}.png"),
                     f"Sixt App. F on {net}: 1 − CSC for injections at the other layers."))
    return made


def plot_fig6c(records, out):
    """Fig. 6c: the CSC of the LRP-CMP variants beside α1β0, α2β1, LRP-z and the gradient (the authors' lrp_cmp_names,
    cosine_similarity_convergence.ipynb:914-921)."""
    keep = ("lrp-a1b0", "lrp-a2b1", "lrp-z", "lrp-cmp-a1b0", "lrp-cmp-a2b1", "gradient")
    rows = [r for r in _final(select(records, "csc_sixt")) if r.get("mode") == "tied" and r.get("rule") in keep]
    if not any(str(r.get("rule")).startswith("lrp-cmp") for r in rows):
        return None
    nets = sorted({r.get("net") for r in rows}, key=str)
    fig, axes = figure(len(nets), ncols=3, w=4.2, h=3.0)
    colors = palette(keep)
    for ax, net in zip(axes, nets):
        for m in keep:
            xs, ys = _curve([r for r in rows if r.get("net") == net and r.get("rule") == m],
                            transform=lambda v: 1.0 - v)
            if xs:
                ax.plot(xs, ys, "o-", ms=2, color=colors[m], label=method_label(m))
        ax.set_yscale("log")
        ax.invert_yaxis()
        ax.invert_xaxis()
        ax.set_title(f"{net}: LRP-CMP", fontsize=8)
        ax.legend(fontsize=5)
    return save(fig, out, "sixt_fig6c.png"), (
        "Sixt Fig. 6c: 1 − CSC of LRP-CMP (α1β0 / α2β1 on the convs, LRP-ε on the dense layers) beside LRP α1β0, "
        "α2β1, LRP-z and the gradient (no decision rests on LRP-CMP).")


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


def _panels_by_net(rows, ncols, w, h):
    nets = sorted({r.get("net") for r in rows}, key=str)
    fig, axes = figure(len(nets), ncols=ncols, w=w, h=h)
    return fig, [(ax, net, [r for r in rows if r.get("net") == net]) for ax, net in zip(axes, nets)]


def plot_fig4a(records, out):
    rows = valued(records, "ssim_sixt")
    if not rows:
        return None
    fig, panels = _panels_by_net(rows, 1, 8.0, 3.0)
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
        "rest), dashed 0.9 (our reading of 'very close to 1').")


def plot_fig4b(records, out):
    rows = valued(records, "cascading")
    if not rows:
        return None
    fig, panels = _panels_by_net(rows, 1, 8.0, 3.6)
    for ax, net, sub in panels:
        colors = palette({r.get("rule") for r in sub})
        steps = sorted({(num(r["k"]), r.get("layer")) for r in sub})
        for m in dict.fromkeys(r.get("rule") for r in sub):
            rs = sorted((r for r in sub if r.get("rule") == m), key=lambda r: num(r["k"]))
            x = [0] + [num(r["k"]) for r in rs]
            y = [1.0] + [num(r["value"]) for r in rs]
            lo = [1.0] + [num(r.get("ci_lo")) if num(r.get("ci_lo")) is not None else np.nan for r in rs]
            hi = [1.0] + [num(r.get("ci_hi")) if num(r.get("ci_hi")) is not None else np.nan for r in rs]
            ax.plot(x, y, "o-", ms=2, color=colors[m], label=_label(sub, m),
                    ls="--" if str(m).startswith("lrp-cmp") else "-")
            ax.fill_between(x, lo, hi, color=colors[m], alpha=0.2, lw=0)
        ax.set_xticks([0] + [s[0] for s in steps], ["original"] + [str(s[1]) for s in steps], fontsize=6, rotation=30)
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("SSIM to original", fontsize=7)
        ax.set_title(f"{net}: cascading randomization (top layer first)", fontsize=8)
        ax.legend(fontsize=5, ncols=2)
    return save(fig, out, "sixt_fig4b.png"), (
        "Sixt Fig. 4b (vgg-cifar), App. E (resnet-cifar), Fig. 6a (LRP-CMP, dashed): median SSIM between the map of "
        "the original net and of the net with its layers re-initialized from the top down to the named layer; bands: "
        "exact 99 % intervals of the median over images (the paper's level).")


def plot_fig1a(records, out):
    rows = [r for r in select(records, "heatmap") if r.get("map")]
    if not rows:
        return None
    made = []
    for net in sorted({r.get("net") for r in rows}, key=str):
        sub = [r for r in rows if r.get("net") == net]
        methods = [m for m in dict.fromkeys(r.get("rule") for r in sub)]
        cols = sorted({(num(r["k"]), r.get("layer")) for r in sub})
        fig, axes = figure(len(methods) * len(cols), ncols=len(cols), w=0.9, h=0.9)
        for i, m in enumerate(methods):
            for c, (k, layer) in enumerate(cols):
                ax = axes[i * len(cols) + c]
                r = next((r for r in sub if r.get("rule") == m and num(r["k"]) == k), None)
                if r is not None:
                    ax.imshow(decode_map(r["map"]), cmap="seismic", vmin=-1, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(str(layer), fontsize=5)
                if c == 0:
                    ax.set_ylabel(_label(sub, m), fontsize=5, rotation=0, ha="right")
        made.append((save(fig, out, f"sixt_fig1a_{net}.png"),
                     f"Sixt Fig. 1a on {net}: the maps of the first test image (channel-reduced, scaled by their "
                     "99.5th percentile of |map|; red positive, blue negative) of the original net and after each "
                     "cascading step (layers re-initialized from the top, cumulatively)."))
    return made


def plot_fig1(records, out):
    rows = valued(records, "class_difference")
    if not rows:
        return None
    fig, panels = _panels_by_net(rows, 1, 8.0, 3.0)
    for ax, net, sub in panels:
        ms = list(dict.fromkeys(r.get("rule") for r in sub))
        data = [[num(r["value"]) for r in sub if r.get("rule") == m] for m in ms]
        ax.boxplot(data, showfliers=False)
        ax.axhline(PAPER_L1, color="k", ls="--", lw=0.8, label="paper 0.000371 (VGG-16, cat/dog)")
        ax.set_yscale("log")
        ax.set_xticks(range(1, len(ms) + 1), [_label(sub, m) for m in ms], rotation=35, ha="right", fontsize=6)
        ax.set_ylabel("mean |Δ| normalized maps", fontsize=7)
        ax.set_title(f"{net}: two-object scenes, left vs right label", fontsize=8)
        ax.legend(fontsize=6)
    return save(fig, out, "sixt_fig1.png"), (
        "Sixt Fig. 1e: per method the per-element mean of |normalize_abs(map left label) − normalize_abs(map right "
        "label)| over two-object scenes (the paper's 'L1-norm'); boxes: quartiles over scenes.")


def plot_theorem1(records, out):
    rows = [r for r in select(records, "theorem1") if num(r.get("k")) is not None and r.get("image") is None]
    if not rows:
        return None
    nets = sorted({r.get("net") for r in rows}, key=str)
    fig, axes = figure(len(nets), ncols=3, w=4.2, h=3.0)
    for ax, net in zip(axes, nets):
        for rule, q, st, color in (("lrp-a1b0", "sigma2/sigma1", "o-", "C0"), ("lrp-a1b0", "hilbert", "s--", "C1"),
                                   ("gradient", "sigma2/sigma1", "o-", "0.6")):
            pts = [(num(r["k"]), num(r.get("value"))) for r in rows if r.get("net") == net
                   and r.get("quantity") == q and r.get("rule") == rule]
            pts = sorted((k, v) for k, v in pts if v is not None and v > 0)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], st, ms=3, color=color, label=f"{rule}: {q}")
        ax.set_yscale("log")
        ax.set_xlabel("k (P_k = M_1⋯M_k)", fontsize=7)
        ax.set_title(f"{net}: prefix products (median over images)", fontsize=8)
        ax.legend(fontsize=6)
    return save(fig, out, "sixt_theorem1.png"), (
        "Sixt Thm. 1: σ2/σ1 and the Hilbert diameter of 64 sampled columns of the prefix products P_k of LRP-α1β0 "
        "chains (median over images), the gradient's σ2/σ1 beside.")


def plot_appB(records, out):
    rows = [r for r in select(records, "simulation") if r.get("quantity") == "1-csc"]
    if not rows:
        return None
    groups = sorted({r.get("net") for r in rows}, key=str)
    sweep = lambda v: str(v).startswith("alpha-beta")  # noqa: E731
    panels = []
    for shapes in groups:
        sub = [r for r in rows if r.get("net") == shapes]
        panels.append((sub, lambda v: not sweep(v), f"App. B ({shapes}): variants"))
        if any(sweep(r.get("rule")) for r in sub):
            panels.append((sub, sweep, f"App. B ({shapes}): αβ sweep α·N⁺ + (α − 1)·N⁻"))
    fig, axes = figure(len(panels), ncols=2, w=4.4, h=3.0)
    for ax, (sub, pick, title) in zip(axes, panels):
        for v in [v for v in dict.fromkeys(r.get("rule") for r in sub) if pick(v)]:
            pts = sorted((num(r["k"]), num(r["value"])) for r in sub if r.get("rule") == v
                         and num(r.get("k")) is not None and num(r.get("value")) is not None)
            ax.plot([p[0] for p in pts], [max(p[1], 1e-16) for p in pts], "o-", ms=2, label=v)
        ax.set_yscale("log")
        ax.invert_yaxis()
        ax.set_xlabel("multiplications", fontsize=7)
        ax.set_ylabel("1 − mean |cos|", fontsize=7)
        ax.set_title(title, fontsize=8)
        ax.legend(fontsize=5)
    return save(fig, out, "sixt_appB.png"), (
        "Sixt App. B: 32 random vectors multiplied by matrices of the shapes named (output side first), 1 − mean |cos| "
        "(median over draws); 'ReLU learned': the net's trained centre taps with the clip after each product; "
        "'pattern A⊙W': its W⊙A; the αβ sweep: α·N⁺ + (α − 1)·N⁻.")


def plot_s2(records, out):
    rows = select(records, "csc_s2")
    if not rows:
        return None
    fig, axes = figure(1, ncols=1, w=5.0, h=3.2)
    ax = axes[0]
    for scale in sorted({num(r.get("input_scale")) for r in rows}):
        pts = sorted((num(r["layer"]), num(r["value"])) for r in rows if num(r.get("input_scale")) == scale
                     and num(r.get("value")) is not None and r.get("seed") in (0, None))
        ax.plot([p[0] for p in pts], [max(p[1], FLOOR) for p in pts], "o-", ms=3, label=f"inputs ×{scale:g}")
    ax.axhline(1e-6, color="r", ls=":", lw=0.8, label="1e-6 (paper)")
    ax.set_yscale("log")
    ax.invert_yaxis()
    ax.invert_xaxis()
    ax.set_xlabel("layer (0 = input)", fontsize=7)
    ax.set_ylabel("1 − CSC (median over images)", fontsize=7)
    ax.set_title("S2: LRP-α1β0 on sixt-cifar", fontsize=8)
    ax.legend(fontsize=6)
    return save(fig, out, "sixt_s2.png"), (
        "S2: 1 − CSC of LRP-α1β0 on the paper's CIFAR architecture (injection at the logits), at the training input "
        "scale and at the ×255 scale of the authors' code.")


FIGURES = [plot_fig5, plot_fig5_hist, plot_fig5_injections, plot_fig6c, plot_fig3, plot_fig4a, plot_fig4b, plot_fig1a,
           plot_fig1, plot_theorem1, plot_appB, plot_s2]
