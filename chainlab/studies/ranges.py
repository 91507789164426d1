"""A-priori ranges of attributions over a set of perturbed inputs, fixed before any copy is drawn.

Perturbation supports (every copy is clipped to the data box [lo, hi] = ``input_bounds``, so each
support is a box S = [s_lo, s_hi] ⊂ [lo, hi]^d; see :func:`chainlab.studies.averages.perturb`):

    smoothgrad  x + N(0, σ²(hi − lo)²) clipped:   S = [lo, hi]^d (the Gaussian has no bounded support)
    noise       x + U(−a, a)^d clipped:           S = [x − a, x + a] ∩ [lo, hi]
    brightness  x + U(−a, a)·1 clipped:           S = [x − a, x + a] ∩ [lo, hi]
    contrast    m + (x − m)·u, u ∈ U(1 − a, 1 + a), m = mean(x), clipped:
                                                  S = [x − a|x − m|, x + a|x − m|] ∩ [lo, hi]

Interval bound propagation (:func:`interval_bounds`) through the traced stages (BatchNorm folded): for
z = W h + b with h in the box [l, u], centre c = (l + u)/2 and radius ρ = (u − l)/2,

    z ∈ [W c + b − |W| ρ,  W c + b + |W| ρ]     (componentwise; exact for each z_j over the box),

a monotone non-decreasing activation (ReLU, Softplus) maps [z_l, z_u] to [ρ(z_l), ρ(z_u)], and max and
average pools are non-decreasing in every input (average pools have weights ≥ 0), so they map the bounds
of their inputs to bounds of their outputs.  Every stage input x_l therefore lies in a box [l_l, u_l]
and every logit f_t in [l_t, u_t] for all x' ∈ S.  (SiLU is not monotone, residual blocks are not
handled: UnsupportedLayerError.)

Range B of every attribution component over S (:func:`apriori_range`), from the chain bound
|R_i(x')| ≤ ‖R(x')‖₁ ≤ Π_l ‖M_l(x')‖₁ ‖r_L(x')‖₁ and the a-priori per-layer constants c_l of
:func:`chainlab.measures.apriori_constants` evaluated with ``input_ranges`` = the IBP boxes (so that c_l ≥
‖M_l(x')‖₁ for every x' ∈ S):

    relevance rules (r_L = f_t(x')·e_t):  B = Π_l c_l · F,   F = max(|l_t|, |u_t|) ≥ |f_t(x')|
    gradient-space rules (r_L = e_t):     B = Π_l c_l
e.g. z⁺: B = F;  α-β: B = (α+β)^L F;  gradient: B = Π_l ρ'_max‖W_l‖_∞;  LRP-ε: B = Π_l (U_l ‖W_l‖_∞ / ε) · F
with U_l = max(|l_l|, |u_l|).  B depends on the weights, x, the support and the rule only — not on the
drawn copies.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InputError, OptionError, UnsupportedLayerError
from ..measures import apriori_constants
from ..trace import trace

__all__ = ["support_box", "interval_bounds", "interval_bounds_many", "support_bounds", "support_bounds_many",
           "apriori_range", "PERTURBATIONS"]

PERTURBATIONS = ("smoothgrad", "noise", "brightness", "contrast")
MONOTONE = ("relu", "softplus")


def support_box(x, perturbation: str, level: float, input_bounds=(0.0, 1.0)):
    """(s_lo, s_hi), arrays of x's shape: the box that contains every perturbed copy (module docstring)."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = (float(v) for v in input_bounds)
    a = float(level)
    if perturbation == "smoothgrad":
        return np.full_like(x, lo), np.full_like(x, hi)
    if perturbation in ("noise", "brightness"):
        d = np.full_like(x, a)
    elif perturbation == "contrast":
        d = a * np.abs(x - x.mean())
    else:
        raise OptionError(f"unknown perturbation {perturbation!r}; known: {', '.join(PERTURBATIONS)}")
    return np.clip(x - d, lo, hi), np.clip(x + d, lo, hi)


def _act(st, z):
    if st.activation is None:
        return z
    if st.activation.kind not in MONOTONE:
        raise UnsupportedLayerError(f"interval bounds need monotone activations; layer {st.describe()} is followed "
                                    f"by {st.activation.describe()}")
    return st.activation(z)


def interval_bounds(model, lo, hi, net=None) -> list[tuple]:
    """[(stage name, input lo, input hi)] for every top-level stage, then ("logits", lo, hi): bounds valid for
    every model input in the box [lo, hi] (interval bound propagation, module docstring); float64 tensors.
    ``net``: the model already traced (:func:`chainlab.trace.trace`)."""
    return interval_bounds_many(model, [(lo, hi)], net)[0]


def interval_bounds_many(model, boxes, net=None) -> list[list[tuple]]:
    """:func:`interval_bounds` of several boxes [(lo, hi)] of one model, propagated as one batch (one |W| per
    stage for all of them); one list per box."""
    net = trace(model) if net is None else net
    ls, us = [], []
    for lo, hi in boxes:
        ls.append(net.prepare_input(torch.as_tensor(np.asarray(lo, dtype=np.float64))))
        us.append(net.prepare_input(torch.as_tensor(np.asarray(hi, dtype=np.float64))))
    l, u = torch.cat(ls), torch.cat(us)
    if bool((l > u).any()):
        raise InputError("interval bounds need lo ≤ hi in every component")
    out = []
    with torch.no_grad():
        for st in net.stages:
            if st.kind == "residual":
                raise UnsupportedLayerError(f"interval bounds through residual blocks ({st.describe()}) are not "
                                            "implemented")
            if st.flatten_before or (st.kind == "linear" and l.ndim > 2):
                l, u = l.reshape(l.shape[0], -1), u.reshape(u.shape[0], -1)
            out.append((st.name, l, u))
            if st.is_parametric:
                c, r = (l + u) / 2, (u - l) / 2
                zc = st.linear_map(c, bias=True)
                zr = st.linear_map(r, st.weight.abs())
                l, u = _act(st, zc - zr), _act(st, zc + zr)
            elif st.pool is not None:
                l, u = st.pool.apply(l), st.pool.apply(u)
            elif st.kind == "activation":
                if st.activation.kind not in MONOTONE:
                    raise UnsupportedLayerError(f"interval bounds need monotone activations, got "
                                                f"{st.activation.describe()} at {st.describe()}")
                l, u = st.activation(l), st.activation(u)
            else:
                raise UnsupportedLayerError(f"no interval bound for stage {st.describe()}")
    out.append(("logits", l.reshape(l.shape[0], -1), u.reshape(u.shape[0], -1)))
    return [[(name, lo[b:b + 1], hi[b:b + 1]) if name != "logits" else (name, lo[b], hi[b])
             for name, lo, hi in out] for b in range(len(boxes))]


def support_bounds(model, x, perturbation: str, level: float, input_bounds=(0.0, 1.0), net=None) -> list[tuple]:
    """:func:`interval_bounds` over the support box of ``x``'s perturbation (the same for every rule: computed once
    per input and passed to :func:`apriori_range` as ``bounds``)."""
    return interval_bounds(model, *support_box(x, perturbation, level, input_bounds), net=net)


def support_bounds_many(model, x, perturbations, input_bounds=(0.0, 1.0), net=None) -> list[list[tuple]]:
    """:func:`support_bounds` of ``x`` for every (perturbation, level) of ``perturbations``, in one batch."""
    return interval_bounds_many(model, [support_box(x, p, lv, input_bounds) for p, lv in perturbations], net)


def apriori_range(model, chain, perturbation: str, level: float, input_bounds=(0.0, 1.0), target=None,
                  bounds=None) -> dict:
    """The range B ≥ |R_i(x')| for every copy x' of ``chain.x`` under the perturbation and every component i
    (module docstring); ``chain`` is the chain of the rule at the unperturbed x (it gives the layer rules
    and weight norms); ``bounds``: :func:`support_bounds` of x when already computed.  Returns {B, C = Π_l c_l
    (the factor of the rule, weights and support), F (the logit's interval bound, None for gradient-space rules:
    B = C·F, or B = C), constants (c_l), input_ranges}; raises OptionError when the rule has no a-priori
    constant for some layer."""
    x = chain.x.reshape(chain.input_shape)
    ib = support_bounds(model, x, perturbation, level, input_bounds) if bounds is None else bounds
    stage_bounds, (_, f_lo, f_hi) = ib[:-1], ib[-1]
    if len(stage_bounds) != len(chain):
        raise InputError(f"the traced net has {len(stage_bounds)} stages, the chain {len(chain)} operators")
    ranges = [(float(lo.min()), float(hi.max())) for _, lo, hi in stage_bounds]
    cs = apriori_constants(chain, input_ranges=ranges)
    missing = [f"'{chain.names[i]}' ({chain.layer_rules[i]})" for i, c in enumerate(cs) if c is None]
    if missing:
        raise OptionError(f"rule {chain.rule!r} has no a-priori constant at layer(s) {', '.join(missing)}; "
                          "pass the range B= explicitly")
    t = chain.predicted if target is None else int(target)
    C = math.prod(cs)
    if chain.space == "gradient":
        return {"B": C, "C": C, "F": None, "constants": cs, "input_ranges": ranges}
    F = max(abs(float(f_lo[t])), abs(float(f_hi[t])))
    return {"B": C * F, "C": C, "F": F, "constants": cs, "input_ranges": ranges}
