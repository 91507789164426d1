"""The decisions of S1–S8, pure: per-unit numbers in, a :class:`~chainlab.papers.verdict.Decision` out.

Every statistic a verdict rests on is computed here (so a mutant that decides on another statistic is killed by
tests/test_decide_sixt.py): the boundary a CSC claim is decided at (:func:`decided_boundary`: the lowest eligible
one), the median over images and its exact order-statistic interval (:func:`estimate`, papers.stats.median_ci), the
per-unit decay factor of Theorem 1 (:func:`decay_factor`), the shares and ratios of Fig. 3, the per-image ratio
of S8.  Inputs are keyed by role (the paper's net a net stands for, see :mod:`.spec`) and method id:

    curves  {(role, method): {j: (n,) per-image values at boundary j}}      S1, S3
    bounds  {role: {j: {"d": channels, "below_pool": bool, "name": str}}}
    values  {(role, method): (n,) per-image values}                         S2, S5, S7, S8
    ratios  {role: {"A", "W", "W*A", "T(W)", "T(W*A)": [σ1/σ2 per layer]}}  S4
    prefix  {(role, method): (n, L) per-image σ2/σ1 of P_1 … P_L}           S6
    sim     {variant: (draws, steps + 1) 1 − mean|cos| after each product}  S6

A part's ``threshold`` names its group (spec.CLAIM_GROUPS); :func:`group_outcome` reads one group's outcome.
Several training seeds: :func:`over_seeds` (one outcome when the seeds agree, else inconclusive).
"""
from __future__ import annotations

import math

import numpy as np

from ..stats import finite, median_ci
from ..verdict import Decision, Estimate, Outcome, above, agree, all_of, at_least, at_most, below, decision, part
from .spec import ABLATION, CONVERGING, DEEPLIFT, LEVEL, MIN_CHANNELS, REST, SPECS, decided, method_label

__all__ = ["estimate", "eligible", "decided_boundary", "maximum", "decay_factor", "decide_s1", "decide_s2",
           "decide_s3", "decide_s4", "decide_s5", "decide_s6", "decide_s7", "decide_s8", "over_seeds",
           "group_outcome", "FLOOR", "FLAT"]

X = Outcome.NOT_CHECKED
FLOOR = 1e-12          # S6: values at or below are rank 1 at the working precision and left out of the fit
FLAT = 1e-6            # S6: |slope| below is no measurable decay: the prefix columns are float32 (the authors'
                       # precision), σ2/σ1 is resolved to ~1e-7, a constant curve fits slopes of ±1e-7: q = 1


def estimate(values, unit: str = "images") -> Estimate:
    """The median of the finite values and its exact order-statistic interval at the spec's level."""
    return median_ci(values, LEVEL, unit)


def eligible(bounds: dict) -> list:
    """Layer boundaries j ≥ 1 (the input is the explanation, not a layer's relevance) with ≥ MIN_CHANNELS channels
    per location that are not right below a max-pool (ascending)."""
    return sorted(j for j, b in bounds.items() if j >= 1 and b["d"] >= MIN_CHANNELS and not b["below_pool"])


def decided_boundary(bounds: dict):
    """The lowest eligible boundary (None when there is none)."""
    js = eligible(bounds)
    return js[0] if js else None


def maximum(curve: dict, bounds: dict):
    """(j, Estimate) at the eligible boundary with the highest median (reported beside, never decided: an
    interval of a maximum over boundaries is not the interval of that boundary's median)."""
    best = None
    for j in eligible(bounds):
        if j in curve:
            e = estimate(curve[j])
            if e.value is not None and (best is None or e.value > best[1].value):
                best = (j, e)
    return best


def _name(role, mid, where=""):
    return f"{role} / {method_label(mid)}" + (f" @ {where}" if where else "")


def _compare(rel, name, est, spec, t):
    return rel(name, est, spec.threshold(t), t)


def _groups(values: dict, roles, spec, groups, where=lambda role: ""):
    """Parts for {(role, method): per-unit values}: for every role and every group (threshold name, member ids,
    relation) the decided members of the role; a decided member without values is a not-checked part."""
    parts = []
    for role in roles:
        mine = decided(spec, role)
        for t, members, rel in groups:
            for mid in (m for m in mine if m in members):
                v = values.get((role, mid))
                name = _name(role, mid, where(role))
                if v is None:
                    parts.append(part(name, X, None, "not measured", t))
                else:
                    parts.append(_compare(rel, name, estimate(v), spec, t))
    return parts


def _roles(keys):
    return sorted({r for r, _ in keys}, key=str)


def _at_boundary(curves, bounds):
    """{(role, method): per-image values at the role's decided boundary}, and {role: boundary name}."""
    out, where = {}, {}
    for (role, mid), curve in curves.items():
        j = decided_boundary(bounds.get(role, {}))
        if j is not None and j in curve:
            out[(role, mid)] = curve[j]
            where[role] = bounds[role][j]["name"]
    return out, where


def decide_s1(curves: dict, bounds: dict, spec=SPECS["S1"]) -> Decision:
    """Every decided converging method on every net: median CSC at the lowest eligible boundary ≥ 0.99."""
    vals, where = _at_boundary(curves, bounds)
    parts = _groups(vals, _roles(curves), spec, [("converges", CONVERGING, at_least)], lambda r: where.get(r, ""))
    notes = []
    for (role, mid) in sorted(curves, key=str):
        if mid in decided(spec, role) and mid in CONVERGING:
            mx = maximum(curves[(role, mid)], bounds.get(role, {}))
            if mx is not None:
                notes.append(f"{_name(role, mid)}: maximum {mx[1].value:.4g} at {bounds[role][mx[0]]['name']}")
    return decision(parts, notes=("maxima over the eligible boundaries (not decided): " + "; ".join(notes),)
                    if notes else ())


def decide_s2(values: dict, spec=SPECS["S2"]) -> Decision:
    """values {(role, method): per-image 1 − CSC at the input}: the median below 1e-6."""
    return decision(_groups(values, _roles(values), spec, [("gap", ("lrp-a1b0",), below)], lambda r: "input"))


def decide_s3(curves: dict, bounds: dict, spec=SPECS["S3"]) -> Decision:
    """DeepLIFT Rescale/RevealCancel below 0.99, the Ablation at or above 0.99, at the lowest eligible boundary."""
    vals, where = _at_boundary(curves, bounds)
    return decision(_groups(vals, _roles(curves), spec, [("deeplift_below", DEEPLIFT, below),
                                                         ("ablation_converges", ABLATION, at_least)],
                            lambda r: where.get(r, "")))


def _share(flags) -> float:
    return float(np.mean(flags)) if len(flags) else math.nan


def _arr(v):
    return np.asarray([math.nan if x is None else x for x in v], dtype=np.float64)


def decide_s4(ratios: dict, spec=SPECS["S4"]) -> Decision:
    """Per decided role: (a) share of layers with σ1/σ2(A) > 6 ≥ 0.8; (b) share with σ1/σ2(W⊙A) > σ1/σ2(W) > 0.5;
    (c) median σ1/σ2(T_l) of W⊙A over that of W > 1.  Deterministic: exact estimates."""
    parts = []
    for role in sorted(ratios, key=str):
        if "patterns" not in decided(spec, role):
            continue
        r = ratios[role]
        A, W, WA = _arr(r["A"]), _arr(r["W"]), _arr(r["W*A"])
        TW, TWA = finite(r["T(W)"]), finite(r["T(W*A)"])
        a = _share(A > spec.threshold("pattern_ratio"))
        b = _share(WA > W)
        with np.errstate(divide="ignore", invalid="ignore"):      # no T_l, or a zero median: no number (U)
            c = float(np.divide(*(np.median(v) if v.size else math.nan for v in (TWA, TW))))
        parts.append(at_least(f"{role}: share of layers with σ1/σ2(A) > {spec.threshold('pattern_ratio'):g}",
                              Estimate.exact(a), spec.threshold("almost_all"), "almost_all"))
        parts.append(above(f"{role}: share of layers with σ1/σ2(W⊙A) > σ1/σ2(W)", Estimate.exact(b),
                            spec.threshold("wa_layers"), "wa_layers"))
        parts.append(above(f"{role}: median σ1/σ2(T_l) W⊙A / W", Estimate.exact(c), spec.threshold("t_ratio"),
                            "t_ratio"))
    return decision(parts)


_SANITY = [("ssim_converging", CONVERGING + ABLATION, at_least), ("ssim_rest", REST, at_most)]


def decide_s5(values: dict, spec=SPECS["S5"]) -> Decision:
    """values {(role, method): per-image SSIM(true-logit map, random-logit map)}: converging ≥ 0.9, rest ≤ 0.8."""
    return decision(_groups(values, _roles(values), spec, _SANITY))


def decide_s7(values: dict, spec=SPECS["S7"], where=None) -> Decision:
    """values {(role, method): per-image SSIM to the original at the first conv step}: as S5."""
    where = where or {}
    return decision(_groups(values, _roles(values), spec, _SANITY, lambda r: where.get(r, "")))


def decay_factor(y, floor: float = FLOOR):
    """q = e^b of the least-squares line log y_k = a + b·k over the finite y_k > floor (k = 0, 1, …: the index in
    ``y``); b with |b| < FLAT is 0 (a constant curve: rounding must not decide whether q < 1); None with fewer than
    two such points."""
    y = np.asarray([math.nan if v is None else v for v in y], dtype=np.float64)
    k = np.arange(y.size, dtype=np.float64)
    ok = np.isfinite(y) & (y > floor)
    if ok.sum() < 2:
        return None
    k, ly = k[ok], np.log(y[ok])
    dk = k - k.mean()
    b = float(dk @ ly) / float(dk @ dk)                     # Σ dk = 0: ly needs no centring
    return 1.0 if abs(b) < FLAT else float(math.exp(b))  # equivalent mutant: < vs ≤ only at |b| == FLAT


def decide_s6(prefix: dict, sim: dict, spec=SPECS["S6"]) -> Decision:
    """Chains: per image the factor of σ2/σ1(P_k) over k, its median over images below 1; simulation: per draw the
    factor of 1 − mean|cos| over the products, its median over draws below 1, for the non-negative variants."""
    factors = {key: [decay_factor(row) for row in np.atleast_2d(np.asarray(v, dtype=np.float64))]
               for key, v in prefix.items()}
    parts = _groups(factors, _roles(prefix), spec, [("factor", ("lrp-a1b0",), below)])
    for variant in spec.scope.methods.get("simulation", ()):
        name = f"simulation / {variant}"
        if variant not in sim:
            parts.append(part(name, X, None, "not measured", "sim_factor"))
            continue
        per_draw = [decay_factor(row) for row in np.atleast_2d(np.asarray(sim[variant], dtype=np.float64))]
        parts.append(below(name, estimate(per_draw, "draws"), spec.threshold("sim_factor"), "sim_factor"))
    return decision(parts)


def decide_s8(values: dict, spec=SPECS["S8"]) -> Decision:
    """values {(role, method): per-image mean |Δ| of the two labels' normalized maps}: LRP-α1β0's median ≤ 0.01 and
    the median of the per-image ratio α1β0 / gradient ≤ 0.1."""
    parts = []
    for role in _roles(values):
        if "lrp-a1b0" not in decided(spec, role):
            continue
        z, g = values.get((role, "lrp-a1b0")), values.get((role, "gradient"))
        if z is None:
            parts.append(part(f"{role} / LRP α1β0", X, None, "not measured", "class_diff"))
            continue
        parts.append(at_most(f"{role} / LRP α1β0 mean |Δ|", estimate(z), spec.threshold("class_diff"), "class_diff"))
        if g is None:
            parts.append(part(f"{role} / LRP α1β0 ÷ gradient", X, None, "not measured", "class_ratio"))
            continue
        with np.errstate(divide="ignore", invalid="ignore"):      # a zero gradient difference: no ratio (left out)
            ratio = np.asarray(z, dtype=np.float64) / np.asarray(g, dtype=np.float64)
        parts.append(at_most(f"{role} / LRP α1β0 ÷ gradient (per image)", estimate(ratio),
                             spec.threshold("class_ratio"), "class_ratio"))
    return decision(parts)


def group_outcome(d: Decision, threshold: str) -> Outcome:
    """The outcome of one group of a decision: its parts (those compared with ``threshold``) combined."""
    return all_of([p for p in d.parts if p.threshold == threshold])


def over_seeds(decisions: dict) -> tuple:
    """(Decision, {seed: Outcome}) of a claim decided per training seed: the outcome is the seeds' common outcome,
    inconclusive when they differ (:func:`~chainlab.papers.verdict.agree`); the parts are every seed's, named by
    their seed when there are several."""
    per_seed = {s: d.outcome for s, d in sorted(decisions.items())}
    many = len(decisions) > 1
    parts, notes = [], []
    for s, d in sorted(decisions.items()):
        for p in d.parts:
            parts.append(part(f"seed {s}: {p.name}" if many else p.name, p.outcome, p.estimate, p.relation,
                              p.threshold))
        notes += [f"seed {s}: {n}" if many else n for n in d.notes]
    return Decision(agree(per_seed.values()), tuple(parts), tuple(notes)), per_seed
