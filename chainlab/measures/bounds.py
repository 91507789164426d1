"""Value bounds (Binder et al. 2025) checked on extracted chains, and the empirical constants they bound.

Norms of a layer matrix M (n_in × n_out, r_in = M r_out):
    ‖M‖₁ = max_j Σ_i |M_ij|  (max column abs sum = the ℓ1→ℓ1 operator norm),
    ‖M‖_∞ = max_i Σ_j |M_ij| (max row abs sum = the ℓ∞→ℓ∞ operator norm).
Singular values (Schur / Hölder): σ1(M)² = ‖M‖₂² ≤ ‖M‖₁‖M‖_∞, so σ1(M) ≤ √(‖M‖₁‖M‖_∞); for the product
P = M_1 ⋯ M_L, σ1(P) ≤ Π_l σ1(M_l) ≤ Π_l √(‖M_l‖₁‖M_l‖_∞) (submultiplicativity), and directly
σ1(P) ≤ √(‖P‖₁‖P‖_∞).
Componentwise bound of the explanation R = M_1 ⋯ M_L r_L (r_L = f_k(x)·e_k for relevance rules, e_k for
gradient-space rules): ‖·‖₁ is submultiplicative, so
    ‖R‖_∞ ≤ ‖R‖₁ ≤ Π_l ‖M_l‖₁ · ‖r_L‖₁,
and the empirical componentwise constant of one input, C(x) = ‖R‖_∞ / ‖r_L‖₁ (= sup_i |R_i| / |f_k(x)| for
relevance rules, sup_i |∂f_k/∂x_i| for the gradient), satisfies C(x) ≤ Π_l ‖M_l(x)‖₁ ≤ Π_l c_l.
A-priori (input-independent) per-layer constants c_l ≥ ‖M_l‖₁ by the layer's rule (column j of M is the
share of output j's signal that each input receives):
    z⁺, w², flat, z^B (x inside the box), winner-take-all, identity, ReLU mask, Softplus derivative,
        avg-pool gradient: 1 (entries ≥ 0; the denominators contain the numerators' sum plus b⁺ ≥ 0 and the
        stabilizer, so every column sums to ≤ 1; the masks and sigmoids are ≤ 1);
    α-β: α + β (the α part and the β part are each column-stochastic-like: column abs sums ≤ 1);
    gradient: ρ'_max·‖W_l‖_∞: column j of Wᵀ diag(ρ'(z)) is ρ'(z_j)·W_j,:, whose abs sum is
        ≤ ρ'_max Σ_i |W_ji| (for a conv, max_o Σ|K_o| bounds every row sum of the unrolled matrix;
        ρ'_max = ``derivative_bound``, 1 for ReLU/Softplus); gradient × input: also × ‖x‖_∞ on the first layer;
    LRP-ε / LRP-0: ‖x_l‖_∞ ‖W_l‖_∞ / ε, because column j is x_i W_ji / s_ε(z_j) with |s_ε(z)| = |z| + ε ≥ ε,
        so its abs sum is ≤ ‖x_l‖_∞ Σ_i |W_ji| / ε (ε = the stabilizer for LRP-0);
    proportional avg-pool: 1 when its inputs are ≥ 0 (entries x_i w / s(Σ x w) ≥ 0 sum to ≤ 1);
    otherwise (γ, unknown methods) no a-priori constant (None).
Hence Π c_l is independent of the weights for z⁺ (1) and α-β ((α+β)^L), grows like Π‖W_l‖_∞ for the
gradient and like Π ‖x_l‖_∞‖W_l‖_∞ / ε^L for LRP-ε.  ‖W_l‖_∞, ‖x_l‖_∞ and ρ'_max are recorded at
extraction in ``chain.layer_stats`` (no model needed); ``input_ranges`` replaces the recorded layer
inputs by ranges valid for a whole set of inputs (then Π c_l bounds every input of the set, see
:mod:`chainlab.studies.ranges`).

Records of :func:`bounds` (``measure="bounds"``): per layer ``norm1``, ``norm_inf``, ``sigma1``,
``sigma1_bound``, ``apriori``; per chain ``constant`` (Π‖M_l‖₁), ``apriori_constant`` (Π c_l or None),
``sup_R`` observed max |R| over all logits' explanations (r_L = start vector), ``bound`` =
constant·‖r_L‖₁, ``tightness`` = sup_R / bound, ``sigma1_product`` σ1(P) with ``sigma1_product_bound``
Π√(‖M_l‖₁‖M_l‖_∞), ``sigma1_layers_product`` Π σ1(M_l) and ``sigma1_product_schur`` √(‖P‖₁‖P‖_∞), each
bound with its tightness (observed / bound).
Records of :func:`constants` (``measure="constants"``, one explanation): ``c_emp`` C(x), ``c_apriori``
Π c_l, ``tightness_emp`` C(x) / Π c_l, ``weight_norm_product`` Π‖W_l‖_∞ over the Linear/Conv2d layers;
with ``norms=True`` also per layer ``norm1`` and per chain ``c_norm1`` (Π‖M_l‖₁) and ``tightness_norm1``.
Any observed value above its bound raises :class:`BoundViolationError` (a bug, never a result).
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from ..errors import BoundViolationError
from ._common import as_matrix, layer_label, record
from .svd import singular_values

__all__ = ["bounds", "constants", "norm1", "norm_inf", "apriori_constants", "weight_norm_product",
           "BoundViolationError", "ONE_RULES"]

REL_TOL = 1e-9
ONE_RULES = {"zplus", "wsquare", "flat", "winner-take-all", "identity", "relu-mask", "softplus-derivative",
             "avgpool-gradient"}


def _abs_sums(op, axis):
    M = as_matrix(op)
    if sp.issparse(M):
        return np.asarray(abs(M).sum(axis=axis)).reshape(-1)
    return np.abs(np.asarray(M)).sum(axis=axis)


def norm1(op) -> float:
    """‖M‖₁ = max column abs sum (operators give their column abs sums without being multiplied out where they
    can: :meth:`chainlab.linalg.Operator.abs_column_sums`)."""
    s = op.abs_column_sums() if hasattr(op, "abs_column_sums") else _abs_sums(op, 0)
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


def apriori_constants(chain, input_ranges=None) -> list:
    """Per-layer a-priori constants c_l ≥ ‖M_l‖₁ (None where the rule gives none), see module docstring.

    ``input_ranges``: optional list (one entry per operator, None where unknown) of (lo, hi) with
    lo ≤ x_l ≤ hi for every input of a set; then the constants hold for every input of the set (ε rules use
    max(|lo|, |hi|) for ‖x_l‖_∞, the proportional avg-pool needs lo ≥ 0, z^B needs [lo, hi] inside its box).
    """
    out = []
    for i, r in enumerate(chain.layer_rules):
        opts = _layer_opts(chain, i)
        stats = chain.layer_stats[i] if i < len(chain.layer_stats) else {}
        rng = input_ranges[i] if input_ranges is not None and i < len(input_ranges) else None
        if input_ranges is not None:
            xmin, xmax = (float(rng[0]), float(rng[1])) if rng is not None else (None, None)
        else:
            xv = chain.x if i == 0 else None
            xmin, xmax = (float(xv.min()), float(xv.max())) if xv is not None else (None, None)
        c = None
        if r in ONE_RULES:
            c = 1.0
        elif r == "avgpool-proportional":
            nonneg = (xmin is not None and xmin >= 0) if input_ranges is not None else _nonneg(chain[i])
            c = 1.0 if nonneg else None           # x_i w / s(Σ x w): pool inputs ≥ 0 ⇒ columns sum to ≤ 1
        elif r == "alpha-beta":
            c = float(opts.get("alpha", 1.0)) + float(opts.get("beta", 0.0))
        elif r == "zbox":
            lo, hi = opts.get("low"), opts.get("high")
            if i == 0 and isinstance(lo, (int, float)) and isinstance(hi, (int, float)) \
                    and xmin is not None and xmin >= lo and xmax <= hi:
                c = 1.0
        elif "weight_norm_inf" in stats and r in ("gradient", "gradient-x-input"):
            c = stats["weight_norm_inf"] * stats.get("derivative_bound", 1.0)
            if r == "gradient-x-input" and i == 0:
                c *= max(abs(xmin), abs(xmax)) if xmin is not None else float(np.abs(chain.x).max())
        elif "weight_norm_inf" in stats and r in ("lrp-epsilon", "lrp-0"):
            eps = opts.get("epsilon") if r == "lrp-epsilon" else None
            eps = float(eps) if eps is not None else float(chain.options.get("stabilizer", 1e-6))
            if input_ranges is not None:
                u = max(abs(xmin), abs(xmax)) if xmin is not None else None
            else:
                u = stats["input_norm_inf"]
            c = u * stats["weight_norm_inf"] / eps if u is not None else None
        out.append(c)
    return out


def weight_norm_product(chain):
    """Π_l ‖W_l‖_∞ over the chain's Linear/Conv2d layers (BatchNorm folded), from ``chain.layer_stats``;
    None when the chain does not record weight norms."""
    ws = [st["weight_norm_inf"] for st in chain.layer_stats if "weight_norm_inf" in st]
    return math.prod(ws) if ws else None


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
    s1B, s1L = math.prod(sig_b), math.prod(sigs)
    schur = math.sqrt(norm1(P) * norm_inf(P))
    _check(s1P <= s1L * (1 + 1e-7) + 1e-300 and s1P <= s1B * (1 + 1e-7) + 1e-300,
           f"σ1(P_L) = {s1P:.9g} exceeds Π σ1(M_l) = {s1L:.9g} or Π√(‖M‖₁‖M‖_∞) = {s1B:.9g}")
    _check(s1P <= schur * (1 + 1e-7) + 1e-300, f"σ1(P_L) = {s1P:.9g} exceeds √(‖P‖₁‖P‖_∞) = {schur:.9g}")
    rows += [record(chain, "bounds", "constant", None, None, C),
             record(chain, "bounds", "apriori_constant", None, None, CA),
             record(chain, "bounds", "sup_R", None, None, sup_R),
             record(chain, "bounds", "bound", None, None, bound),
             record(chain, "bounds", "tightness", None, None, worst),
             record(chain, "bounds", "sigma1_product", None, None, s1P),
             record(chain, "bounds", "sigma1_product_bound", None, None, s1B,
                    tightness=s1P / s1B if s1B > 0 else None),
             record(chain, "bounds", "sigma1_layers_product", None, None, s1L,
                    tightness=s1P / s1L if s1L > 0 else None),
             record(chain, "bounds", "sigma1_product_schur", None, None, schur,
                    tightness=s1P / schur if schur > 0 else None)]
    return rows


def constants(chain, target=None, *, norms: bool = False) -> list[dict]:
    """Empirical componentwise constant of one explanation beside its a-priori constant (records).

    C(x) = ‖R‖_∞ / ‖r_L‖₁ for R = M_1 ⋯ M_L r_L, r_L = ``chain.start_vector(target)`` (the predicted logit by
    default); C(x) ≤ Π‖M_l‖₁ ≤ Π c_l (module docstring) — a violation raises BoundViolationError.  Only the
    one explanation is computed (``chain.apply``, implicit operators stay implicit); ``norms=True`` adds the
    per-layer ‖M_l‖₁ (matrix-free operators are multiplied out as CSC, one at a time).
    """
    chain.require_linear("empirical constants")
    r = chain.start_vector(target)                      # validates target
    k = chain.predicted if target is None else int(target)
    s = float(np.abs(r).sum())
    R = np.asarray(chain.apply(r)).reshape(-1)
    sup = float(np.abs(R).max()) if R.size else 0.0
    c = sup / s if s > 0 else None
    apri = apriori_constants(chain)
    CA = math.prod(apri) if all(v is not None for v in apri) else None
    if c is not None and CA is not None:
        _check(c <= CA * (1 + 1e-6) + 1e-12,
               f"empirical constant ‖R‖_∞/‖r_L‖₁ = {c:.9g} exceeds the a-priori constant {CA:.9g} (rule {chain.rule!r})")
    W = weight_norm_product(chain)
    ex = dict(target=k, logit=float(chain.logits[k]), start_norm=s, sup_R=sup)
    rows = [record(chain, "constants", "c_emp", None, None, c, **ex),
            record(chain, "constants", "c_apriori", None, None, CA, **ex),
            record(chain, "constants", "tightness_emp", None, None,
                   c / CA if c is not None and CA else None, **ex),
            record(chain, "constants", "weight_norm_product", None, None, W, **ex)]
    if norms:
        n1s = []
        for i, op in enumerate(chain):
            a = norm1(op)
            if apri[i] is not None:
                _check(a <= apri[i] * (1 + 1e-6) + 1e-12,
                       f"‖M‖₁ = {a:.9g} exceeds the a-priori constant {apri[i]:.9g} of rule {chain.layer_rules[i]!r} "
                       f"at layer {i} '{layer_label(chain, i)}'")
            n1s.append(a)
            rows.append(record(chain, "constants", "norm1", layer_label(chain, i), i + 1, a,
                               apriori=apri[i], layer_rule=chain.layer_rules[i], **ex))
        C = math.prod(n1s)
        if c is not None:
            _check(c <= C * (1 + 1e-7) + 1e-300,
                   f"empirical constant {c:.9g} exceeds Π‖M_l‖₁ = {C:.9g} (rule {chain.rule!r})")
        rows += [record(chain, "constants", "c_norm1", None, None, C, **ex),
                 record(chain, "constants", "tightness_norm1", None, None, C / CA if CA else None, **ex)]
    return rows
