"""Value bounds (Binder et al. 2025) checked on extracted chains.

Norms of a layer matrix M (n_in × n_out, r_in = M r_out):
    ‖M‖₁ = max_j Σ_i |M_ij|  (max column abs sum = the ℓ1→ℓ1 operator norm),
    ‖M‖_∞ = max_i Σ_j |M_ij| (max row abs sum),   σ1(M) ≤ √(‖M‖₁ ‖M‖_∞)  (Schur/Hölder).
Componentwise bound of the explanation R = M_1 ⋯ M_L r_L:
    ‖R‖_∞ ≤ ‖R‖₁ ≤ Π_l ‖M_l‖₁ · ‖r_L‖₁.
A-priori (input-independent) per-layer constants c_l ≥ ‖M_l‖₁ by the layer's rule:
    z⁺, w², flat, z^B (x inside the box), winner-take-all, identity, ReLU mask, avg-pool gradient: 1
        (non-negative entries, columns sum to ≤ 1: the denominators contain the numerators' sum,
        plus b⁺ ≥ 0 and the stabilizer);
    α-β: α + β (each of the two column-stochastic-like parts has column abs sum ≤ 1);
    gradient: ‖W_l‖_∞ (max row abs sum of W; for a conv max_o Σ|K_o|, an upper bound of the unrolled
        matrix's row sums); gradient × input: also × ‖x‖_∞ on the first layer;
    LRP-ε / LRP-0: ‖x_l‖_∞ ‖W_l‖_∞ / ε (|s_ε(z)| ≥ ε; ε = the stabilizer for LRP-0);
    (‖W_l‖_∞ and ‖x_l‖_∞ are recorded at extraction in ``chain.layer_stats``: no model is needed);
    proportional avg-pool: 1 when its entries are ≥ 0 (pool inputs ≥ 0, checked on the matrix);
    otherwise (γ, unknown methods) no a-priori constant (None).
Records (``measure="bounds"``): per layer ``norm1``, ``norm_inf``, ``sigma1``, ``sigma1_bound``,
``apriori``; per chain ``constant`` (Π‖M_l‖₁), ``apriori_constant`` (Π c_l or None),
``sup_R`` observed max |R| over all logits' explanations (r_L = start vector), ``bound`` =
constant·‖r_L‖₁, ``tightness`` = sup_R / bound, ``sigma1_product`` and its bound Π√(‖M‖₁‖M‖_∞).
Any observed value above its bound raises :class:`BoundViolationError` (a bug, never a result).
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from ..errors import BoundViolationError
from ._common import as_matrix, layer_label, record
from .svd import singular_values

__all__ = ["bounds", "norm1", "norm_inf", "apriori_constants", "BoundViolationError", "ONE_RULES"]

REL_TOL = 1e-9
ONE_RULES = {"zplus", "wsquare", "flat", "winner-take-all", "identity", "relu-mask", "avgpool-gradient"}


def _abs_sums(op, axis):
    M = as_matrix(op)
    if sp.issparse(M):
        return np.asarray(abs(M).sum(axis=axis)).reshape(-1)
    return np.abs(np.asarray(M)).sum(axis=axis)


def norm1(op) -> float:
    """‖M‖₁ = max column abs sum."""
    s = _abs_sums(op, 0)
    return float(s.max()) if s.size else 0.0


def norm_inf(op) -> float:
    """‖M‖_∞ = max row abs sum."""
    s = _abs_sums(op, 1)
    return float(s.max()) if s.size else 0.0


def _layer_opts(chain, i):
    lo = chain.options.get("layer_options", {}) if isinstance(getattr(chain, "options", None), dict) else {}
    return {**{k: v for k, v in chain.options.items() if k != "layer_options"}, **lo.get(chain.names[i], {})}


def _nonneg(op) -> bool:
    M = as_matrix(op)
    return bool((M.data >= 0).all()) if sp.issparse(M) else bool((np.asarray(M) >= 0).all())


def apriori_constants(chain) -> list:
    """Per-layer a-priori constants c_l ≥ ‖M_l‖₁ (None where the rule gives none), see module docstring."""
    out = []
    for i, r in enumerate(chain.layer_rules):
        opts = _layer_opts(chain, i)
        stats = chain.layer_stats[i] if i < len(chain.layer_stats) else {}
        c = None
        if r in ONE_RULES:
            c = 1.0
        elif r == "avgpool-proportional" and _nonneg(chain[i]):
            c = 1.0                                   # x_i w / s(Σ x w): pool inputs ≥ 0 ⇒ columns sum to ≤ 1
        elif r == "alpha-beta":
            c = float(opts.get("alpha", 1.0)) + float(opts.get("beta", 0.0))
        elif r == "zbox":
            lo, hi = opts.get("low"), opts.get("high")
            if i == 0 and isinstance(lo, (int, float)) and isinstance(hi, (int, float)) \
                    and chain.x.min() >= lo and chain.x.max() <= hi:
                c = 1.0
        elif "weight_norm_inf" in stats and r in ("gradient", "gradient-x-input"):
            c = stats["weight_norm_inf"]
            if r == "gradient-x-input" and i == 0:
                c *= float(np.abs(chain.x).max())
        elif "weight_norm_inf" in stats and r in ("lrp-epsilon", "lrp-0"):
            eps = opts.get("epsilon") if r == "lrp-epsilon" else None
            eps = float(eps) if eps is not None else float(chain.options.get("stabilizer", 1e-6))
            c = stats["input_norm_inf"] * stats["weight_norm_inf"] / eps
        out.append(c)
    return out


def _check(ok: bool, what: str):
    if not ok:
        raise BoundViolationError(what)


def bounds(chain, *, exact_below: int = 400) -> list[dict]:
    """Bound records for one chain; raises BoundViolationError when an observed value exceeds a bound."""
    chain.require_linear("value bounds")
    rows = []
    n1s, sig_b, sigs = [], [], []
    apri = apriori_constants(chain)
    for i, op in enumerate(chain):
        layer = layer_label(chain, i)
        a, b = norm1(op), norm_inf(op)
        s1 = float(singular_values(op, 1, exact_below)[0])
        sb = math.sqrt(a * b)
        _check(s1 <= sb * (1 + 1e-7) + 1e-12,
               f"σ1 = {s1:.9g} > √(‖M‖₁‖M‖_∞) = {sb:.9g} at layer {i} '{layer}' (rule {chain.layer_rules[i]})")
        if apri[i] is not None:
            _check(a <= apri[i] * (1 + 1e-6) + 1e-12,
                   f"‖M‖₁ = {a:.9g} exceeds the a-priori constant {apri[i]:.9g} of rule {chain.layer_rules[i]!r} "
                   f"at layer {i} '{layer}'")
        rows += [record(chain, "bounds", "norm1", layer, i + 1, a, layer_rule=chain.layer_rules[i]),
                 record(chain, "bounds", "norm_inf", layer, i + 1, b, layer_rule=chain.layer_rules[i]),
                 record(chain, "bounds", "sigma1", layer, i + 1, s1, layer_rule=chain.layer_rules[i]),
                 record(chain, "bounds", "sigma1_bound", layer, i + 1, sb, tightness=s1 / sb if sb > 0 else None,
                        layer_rule=chain.layer_rules[i]),
                 record(chain, "bounds", "apriori", layer, i + 1, apri[i], layer_rule=chain.layer_rules[i])]
        n1s.append(a)
        sig_b.append(sb)
        sigs.append(s1)
    C = math.prod(n1s)
    CA = math.prod(apri) if all(c is not None for c in apri) else None
    if CA is not None:
        _check(C <= CA * (1 + 1e-6) + 1e-12, f"Π‖M_l‖₁ = {C:.9g} exceeds the a-priori constant {CA:.9g}")
    P = chain.to_dense()                                 # column t: explanation of r_L = e_t
    sup_R, worst, bound = 0.0, None, 0.0
    for t in range(chain.n_output):
        r = chain.start_vector(t)
        R = P @ r
        b_t = C * float(np.abs(r).sum())
        sup_t = float(np.abs(R).max()) if R.size else 0.0
        _check(float(np.abs(R).sum()) <= b_t * (1 + 1e-7) + 1e-12,
               f"‖R‖₁ = {np.abs(R).sum():.9g} > Π‖M_l‖₁·‖r_L‖₁ = {b_t:.9g} for logit {t}")
        if b_t > 0 and (worst is None or sup_t / b_t > worst):
            worst, sup_R, bound = sup_t / b_t, sup_t, b_t
    s1P = float(singular_values(P, 1, exact_below)[0])
    s1B = math.prod(sig_b)
    _check(s1P <= math.prod(sigs) * (1 + 1e-7) + 1e-300 and s1P <= s1B * (1 + 1e-7) + 1e-300,
           f"σ1(P_L) = {s1P:.9g} exceeds Π σ1(M_l) = {math.prod(sigs):.9g} or Π√(‖M‖₁‖M‖_∞) = {s1B:.9g}")
    rows += [record(chain, "bounds", "constant", None, None, C),
             record(chain, "bounds", "apriori_constant", None, None, CA),
             record(chain, "bounds", "sup_R", None, None, sup_R),
             record(chain, "bounds", "bound", None, None, bound),
             record(chain, "bounds", "tightness", None, None, worst),
             record(chain, "bounds", "sigma1_product", None, None, s1P),
             record(chain, "bounds", "sigma1_product_bound", None, None, s1B,
                    tightness=s1P / s1B if s1B > 0 else None)]
    return rows
