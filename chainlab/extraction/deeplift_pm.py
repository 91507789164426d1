"""DeepLIFT with the (+, −) parts carried through the net: 2×2 block operators (the ``-pm`` variants).

Sixt et al. 2020 eq. 13 read on pairs (the reference x⁰ as in :mod:`.deeplift`).  Every neuron h carries the two
parts of its difference Δh = h − h⁰ = Δh⁺ + Δh⁻ and two multipliers m⁺, m⁻; the backward signal
at a layer boundary with n neurons is the stacked 2n vector [m⁺; m⁻] (+ first, then −).  The
parts are *carried* through the net: at the input Δx⁺ = max(x − x⁰, 0), Δx⁻ = min(x − x⁰, 0);
after that each layer produces the parts of its output from the parts of its input:

* Linear / Conv2d z = Wx + b (BN folded; the bias cancels in Δ), W⁺ = max(W, 0), W⁻ = min(W, 0):
      Δz⁺ = W⁺Δx⁺ + W⁻Δx⁻ ≥ 0,   Δz⁻ = W⁻Δx⁺ + W⁺Δx⁻ ≤ 0,
      m_x⁺ = W⁺ᵀ m_z⁺ + W⁻ᵀ m_z⁻,   m_x⁻ = W⁻ᵀ m_z⁺ + W⁺ᵀ m_z⁻          (the coupled block)
* activation h = f(z) (ReLU, or any monotone activation: softplus, …), multipliers S± = diag(s±),
  Δh± = s± ⊙ Δz±, m_z± = s± ⊙ m_h±:
      Rescale:       s⁺ = s⁻ = Δh/Δz  (f'(z), the gradient at x, where |Δz| < 1e-10, as captum)
      RevealCancel:  Δh⁺ = ½[f(z⁰+Δz⁺) − f(z⁰)] + ½[f(z) − f(z⁰+Δz⁻)],
                     Δh⁻ = ½[f(z⁰+Δz⁻) − f(z⁰)] + ½[f(z) − f(z⁰+Δz⁺)],   s± = Δh±/Δz±
                     (where |Δz±| < 1e-10 the Rescale multiplier of the total is used)
* Max-pool: captum's rule, on both parts: with y = max over window j at x, y⁰ at x⁰, winners a(j),
  a⁰(j): M_ij = ([i = a(j)]·(max(y,y⁰) − y⁰)_j + [i = a⁰(j)]·(y − max(y,y⁰))_j) / Δx_i (summed over
  overlapping windows; the gradient [i = a(j)] in rows with |Δx_i| < 1e-10).  Σ_i M_ij Δx_i = Δy_j,
  so with Δy± = MᵀΔx± it is conservative.  Block diag(M S⁺, M S⁻).
* Average pools are linear with non-negative weights P: the linear rule gives diag(P S⁺, P S⁻).

* Residual block z = Σ_t f_t(h), h_out = f(z): the parts are carried through every branch from the
  block input's parts (an identity shortcut passes them unchanged); the addition is linear, so
  Δz± = Σ_t Δz_t± (the sums of the branches' parts) and the multiplier at the sum passes unchanged
  to every branch (the gradient of a sum, Sixt et al. 2020 eq. 3).  The activation after the sum
  gets its multipliers S± from Δz± of the sum like any other (Rescale, RevealCancel, Rescale for
  ablation), so the block is ONE operator
      Σ_t P_t · diag(S⁺, S⁻),   P_t = the product of branch t's 2×2 block operators (I for the identity),
  a :class:`~chainlab.linalg.ResidualOperator` with the multipliers as its step (for one input a
  :class:`~chainlab.linalg.DeepLiftResidual`, kind "residual", applied factor by factor; its blocks
  (BlockOperator @ BlockOperator stays blockwise) are multiplied out on demand).

The stages are the pair operators of :mod:`chainlab.linalg.pairs` at B inputs (the multipliers and parts
per image): a batch propagates pairs (B, m, 2, *shape) through them, and for one input each becomes its
2×2 :class:`~chainlab.linalg.BlockOperator`.

So the operator of a Linear/Conv2d stage (ReLU after it) is, n_in × n_out blocks,

      [[W⁺ᵀS⁺, W⁻ᵀS⁻],
       [W⁻ᵀS⁺, W⁺ᵀS⁻]]                                       shape (2 n_in, 2 n_out).

The start vector of logit k is [e_k; e_k] (Δf_k = Δf_k⁺ + Δf_k⁻, both with multiplier 1) and the
explanation is the contributions C = m⁺ ⊙ Δx⁺ + m⁻ ⊙ Δx⁻ in the shape of x, with
Σ C = f_k(x) − f_k(x⁰) (summation-to-delta; every step above conserves Σ m⁺Δ⁺ + m⁻Δ⁻); the chain
is a :class:`~chainlab.chain.DeepLiftChain`.

Checks while building: the parts must add up, Δz⁺ + Δz⁻ = Δz at every stage, to a tolerance that
scales with the parts (|Δz⁺|, |Δz⁻| grow ~13× per layer in deep random nets while Δz stays O(1), so
their cancellation alone loses digits in proportion to them).

Precision: the parts grow with depth while Δh stays small (2.4e11 against |Δh| ≤ 14 at vgg-cifar's fc2), so
the contributions m⁺Δh⁺ + m⁻Δh⁻ cancel to many digits; in float32 they are noise.  These variants therefore
compute the parts, the multipliers and the signals in float64 whatever dtype a batch asks for (the forward
is rerun in float64); the result is cast only where it is read.

Variants:

* ``deeplift-rescale-pm``: S⁺ = S⁻ = S.  The blocks *collapse*: A = D = W⁺ᵀS, B = C = W⁻ᵀS, so
  A + B = C + D = WᵀS; the subspace {[v; v]} is invariant and the chain started at [e_k; e_k] is
  the ordinary chain of WᵀS (captum's DeepLift).  ``DeepLiftChain.collapsed()`` returns it.
* ``deeplift-revealcancel-pm``: S⁺ ≠ S⁻ in general, the blocks are genuinely coupled.
* ``deeplift-ablation-pm`` (Sixt et al. §2, "DeepLIFT Ablation"): the intermixing is removed, only W⁺
  in the + chain and only W⁻ in the − chain, with Rescale multipliers:
      [[W⁺ᵀS, 0], [0, W⁻ᵀS]]   (pools: diag(PS, PS); the off-diagonal blocks are exact zeros).
  Removing the cross terms drops W⁻Δx⁻ and W⁻Δx⁺ (resp. W⁺Δx⁻) from the forward accounting, so
  ablation does NOT satisfy summation-to-delta in general (e.g. f(x) = x₁ − x₂ at x = (1, 1),
  x⁰ = 0: Σ C = 1 ≠ 0).  It is the decoupled chain Sixt et al. study for convergence, not an
  attribution method with completeness.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ExtractionError
from ..linalg import DeltaMaxPoolOperator, DiagonalOperator, PairLinear, PairMap, PairScale, PoolOperator, \
    ResidualOperator
from ..linalg.pairs import DELTA_EPS

__all__ = ["pm_stages", "pm_multipliers"]


def pm_multipliers(act, variant: str, z, z0, zp, zm):
    """(s⁺, s⁻) of the activation ``act`` after a stage, all (B, n): pre-activations z (at x), z0 (at x⁰) and the
    parts Δz± (module docstring).  Rescale: Δf/Δz, the gradient f'(z) where |Δz| < DELTA_EPS; RevealCancel:
    Δh±/Δz±, Rescale's multiplier where |Δz±| < DELTA_EPS."""
    dz = z - z0
    small = dz.abs() < DELTA_EPS
    resc = torch.where(small, act.derivative(z), (act(z) - act(z0)) / torch.where(small, 1.0, dz))
    if variant != "revealcancel":
        return resc, resc
    dhp = 0.5 * (act(z0 + zp) - act(z0)) + 0.5 * (act(z) - act(z0 + zm))
    dhm = 0.5 * (act(z0 + zm) - act(z0)) + 0.5 * (act(z) - act(z0 + zp))
    sp_ = torch.where(zp.abs() < DELTA_EPS, resc, dhp / torch.where(zp.abs() < DELTA_EPS, 1.0, zp))
    sm_ = torch.where(zm.abs() < DELTA_EPS, resc, dhm / torch.where(zm.abs() < DELTA_EPS, 1.0, zm))
    return sp_, sm_


def _check_parts(st, plus, minus, delta, what):
    """Δ⁺ + Δ⁻ = Δ up to rounding that scales with the parts (see the module docstring)."""
    if not delta.numel():
        return
    err = float((plus + minus - delta).abs().max())
    tol = 1e-8 * (1.0 + float(delta.abs().max())) + 1e-12 * float(plus.abs().max() + minus.abs().max())
    if err > tol:
        raise ExtractionError(f"DeepLIFT {what} of layer {st.describe()} do not add up (error {err:.3g} > {tol:.3g})")


def _kind_name(st, rule) -> str:
    if st.is_parametric:
        kind = "linear-block"
    elif st.kind == "residual":
        kind = "residual"
    else:
        kind = {"maxpool2d": "maxpool-deeplift", "activation": "relu-deeplift"}.get(st.kind, "avgpool-linear")
    return f"{rule}:{kind}"


def _stage(st, rec, rec0, dp, dm, variant, rule):
    """(stage operator, Δh⁺, Δh⁻) of one stage given the parts (Δx⁺, Δx⁻) (B, n_in) of its input."""
    B = rec.x.shape[0]
    flat = lambda t: t.reshape(t.shape[0], -1)    # noqa: E731
    in_shape, out_shape = rec.in_shape, rec.out_shape
    act = st.activation if st.kind != "activation" else None
    z, z0 = flat(rec.z), flat(rec0.z)
    if st.kind == "residual":
        branches, names, rules = [], [], []
        zp = zm = None
        for b_st, b_rec, b_rec0 in zip(st.branches, rec.branches, rec0.branches):
            ops, bp, bm = [], dp, dm
            for s, r, r0 in zip(b_st, b_rec, b_rec0):
                op, bp, bm = _stage(s, r, r0, bp, bm, variant, rule)
                ops.append(op)
            zp = bp if zp is None else zp + bp      # Δz± of the sum: the sums of the branches' parts
            zm = bm if zm is None else zm + bm
            branches.append(ops)
            names.append([s.name for s in b_st])
            rules.append([_kind_name(s, rule) for s in b_st])
        _check_parts(st, zp, zm, z - z0, "parts Δz⁺ + Δz⁻ of the sum")
        sp_, sm_ = _pair_multipliers(act, variant, z, z0, zp, zm)
        op = ResidualOperator(branches, None, in_shape, out_shape, np.float64, st.name, PairScale(sp_, sm_, out_shape),
                              names, rules)
    else:
        if st.is_parametric:
            W = st.weight
            a_p, a_m = dp.reshape(rec.x.shape), dm.reshape(rec.x.shape)
            Wp, Wn = W.clamp(min=0), W.clamp(max=0)
            zp = flat(st.linear_map(a_p, Wp) + st.linear_map(a_m, Wn))
            zm = flat(st.linear_map(a_p, Wn) + st.linear_map(a_m, Wp))
            lin = None
        elif st.kind == "activation":
            zp, zm, act = dp, dm, st.activation
            z, z0 = flat(rec.x), flat(rec0.x)
            lin = DiagonalOperator(None, in_shape, np.float64, st.name)
        elif st.kind == "maxpool2d":
            lin = DeltaMaxPoolOperator(rec, rec0, np.float64, st.name)
            zp, zm = (flat(lin.lin_t(p.reshape((B, 1) + in_shape))) for p in (dp, dm))
        elif st.kind in ("avgpool2d", "adaptiveavgpool2d"):
            lin = PoolOperator(st.pool, None, None, in_shape, out_shape, np.float64, st.name)
            zp, zm = (flat(st.pool.apply(p.reshape((B,) + in_shape))) for p in (dp, dm))
        else:
            raise ExtractionError(f"no DeepLIFT rule for stage {st.describe()}")
        _check_parts(st, zp, zm, z - z0, "parts Δz⁺ + Δz⁻")
        sp_, sm_ = _pair_multipliers(act, variant, z, z0, zp, zm)
        step = PairScale(sp_, sm_, out_shape)
        if st.is_parametric:
            mode = "decoupled" if variant == "ablation" else "coupled"
            op = PairLinear(st.weight, in_shape, out_shape, st.conv, mode, np.float64, st.name, step)
        else:
            op = PairMap(lin, step)
    dp, dm = sp_ * zp, sm_ * zm   # the parts carried to the next stage
    _check_parts(st, dp, dm, flat(rec.out - rec0.out), "output parts Δh⁺ + Δh⁻")
    return op, dp, dm


def _pair_multipliers(act, variant, z, z0, zp, zm):
    """(s⁺, s⁻) of the activation after a stage (ones without one); s⁻ is s⁺ when they are one multiplier."""
    if act is None:
        ones = torch.ones_like(z)
        return ones, ones
    return pm_multipliers(act, variant, z, z0, zp, zm)


def pm_stages(net, records, records0, xt, x0, variant):
    """(stage operators, layer-rule names, [(Δh⁺_j, Δh⁻_j)] per boundary as (B, n_j)) of the ± variant ``variant``
    ("rescale", "revealcancel", "ablation") at float64 records."""
    B = xt.shape[0]
    rule = f"deeplift-{variant}-pm"
    dx = (xt - x0).reshape(B, -1)
    dp, dm = dx.clamp(min=0), dx.clamp(max=0)
    deltas, ops, names = [(dp, dm)], [], []
    for st, rec, rec0 in zip(net.stages, records, records0):
        op, dp, dm = _stage(st, rec, rec0, dp, dm, variant, rule)
        ops.append(op)
        names.append(_kind_name(st, rule))
        deltas.append((dp, dm))
    return ops, names, deltas
