"""DeepLIFT (Shrikumar et al. 2017) as the ``deeplift`` package computes it — the rule Sixt et al. ran.

Reference x⁰ (option ``reference``: "zeros" (default), a tensor/array of x's shape, or "blur", a Gaussian
blur of x with standard deviation ``sigma`` pixels).  Δh = h − h⁰ at every neuron from the two forward
passes.  Sixt et al.'s code (berleon/when-explanations-lie: ``when_explanations_lie.py`` ~437-444 calls
innvestigate's ``deep_lift.wrapper``, i.e. the ``deeplift`` package, with nonlinear_mode "reveal_cancel" or
"rescale"; ``deeplift_resnet.py`` adds the ResNet layers) computes, per layer (kundajelab/deeplift,
``deeplift/layers``):

* Linear / Conv2d z = Wx + b (BN folded; the bias cancels in Δ), W⁺ = max(W, 0), W⁻ = min(W, 0)
  (core.py ``Dense`` ~539-589, convolutional.py ``Conv2D`` ~221-326): the parts of Δz come from the layer's
  *total* input difference Δx split by sign — nothing is carried from layer to layer —
      Δz⁺ = W⁺Δx⁺ + W⁻Δx⁻,   Δz⁻ = W⁻Δx⁺ + W⁺Δx⁻,
  and both input multipliers get the same value, by the sign of Δx_i (P± = [Δx ≷ 0], P⁰ = [Δx = 0]):
      m_x = P⁺(W⁺ᵀm⁺ + W⁻ᵀm⁻) + P⁻(W⁻ᵀm⁺ + W⁺ᵀm⁻) + P⁰ Wᵀ½(m⁺ + m⁻)        (Sixt et al. eq. 13)
  with (m⁺, m⁻) the multipliers of Δz± (so a tied pair m⁺ = m⁻ = m gives m_x = Wᵀm).
* The activation h = f(z) after it (activations.py ``Activation`` ~81-179), multipliers m_z± = s± m_h±:
      Rescale:       s⁺ = s⁻ = Δh/Δz, the gradient at the reference f'(z⁰) where |Δz| < 1e-7
      RevealCancel:  with pc(t) = t + 1e-7·sign0(t) where |t| < 0.5e-7 (helper_functions.py
                     ``pseudocount_near_zero``; 1e-7 = util.py NEAR_ZERO_THRESHOLD),
                     Δh⁺ = ½[f(z⁰+pc(Δz⁺)) − f(z⁰)] + ½[f(z⁰+pc(Δz⁻)+pc(Δz⁺)) − f(z⁰+pc(Δz⁻))],
                     Δh⁻ = ½[f(z⁰+pc(Δz⁻)) − f(z⁰)] + ½[f(z⁰+pc(Δz⁺)+pc(Δz⁻)) − f(z⁰+pc(Δz⁺))],
                     s± = Δh± / pc(Δz±).
  The next layer gives h's two multipliers one value, so the signal at every layer boundary is one
  multiplier per neuron; the pair (m_z⁺, m_z⁻) lives only between an activation and its linear layer.
* Max-pool: the gradient at x for both multipliers (pooling.py ``MaxPool2D``, MaxPoolDeepLiftMode.gradient,
  the package's only mode).  Average pools: their gradient.  Both assume a linear layer follows
  (pooling.py's "Heads-up"); an activation directly after a pool, or before any linear map, gets the
  Rescale multiplier here in every variant (for the leading one this is the package's RevealCancel of the
  sign-split input up to its 1e-7 pseudocount).
* Residual sum z = Σ_t z_t (deeplift_resnet.py ``Add`` ~137: a Dense layer of weights 1 over the summands):
  Δz⁺ = Σ_t (Δz_t)⁺, Δz⁻ = Σ_t (Δz_t)⁻ from each summand's total difference; the activation after the sum
  gets s± from them; summand t receives P_t⁺m⁺ + P_t⁻m⁻ + P_t⁰½(m⁺ + m⁻), P_t by the sign of Δz_t.
* Contributions at a boundary: C = m ⊙ Δh (``_build_target_contrib_vars``, with equal ± multipliers), at the
  input the explanation, Σ C = f_k(x) − f_k(x⁰) (summation-to-delta) wherever each step conserves — every
  step but the max-pool, whose gradient rule is conservative only when the reference's values are equal
  inside each window (for a zero reference: away from the image border).

Variants (Sixt et al.'s methods): ``deeplift-rescale``, ``deeplift-revealcancel`` and
``deeplift-ablation`` — Sixt et al. §2 remove "the intermixing" of eq. 13; their code does it with
``cross_mxts=False`` (deeplift_resnet.py ~339-381, ~468-481), which keeps the pos→pos and neg→neg terms,
      m_x = P⁺ W⁺ᵀm⁺ + P⁻ W⁺ᵀm⁻ + P⁰ Wᵀ½(m⁺ + m⁻),
with Rescale multipliers (the paper's sentence "only W⁺ for the positive rule and W⁻ for the negative
rule" names W⁻ where the code, and the eq. 13 terms left after removing the cross ones, have W⁺; this is
the code's rule).  With BatchNorm folded the ablation differs from the package's separate BN layer on
channels with γ < 0 (the fold turns W⁺ into W⁻ there); Rescale and RevealCancel are fold-invariant.

Each Linear/Conv2d stage is a :class:`~chainlab.linalg.PairLinear` ("package" / "package-ablation") with the
multipliers as its step (:class:`~chainlab.linalg.PairScale`); for one input its matrix is
P⁺(W⁺ᵀS⁺ + W⁻ᵀS⁻) + P⁻(W⁻ᵀS⁺ + W⁺ᵀS⁻) + P⁰Wᵀ½(S⁺ + S⁻), a plain n_in × n_out operator, and the chain a
:class:`~chainlab.chain.DeepLiftChain` of them (start vector e_k).

Precision: every quantity is a difference of two forward passes or a multiplier (|s±| ≤ sup|f'| for ReLU:
s± ∈ [0, 1]), so float32 keeps them to float32 accuracy; the multipliers are computed in float64 from the
float32 pre-activations (f(z⁰ + 1e-7) − f(z⁰) has no digits left in float32 when |z⁰| ≳ 1).

The ``-pm`` variants (``deeplift-rescale-pm``, ``deeplift-revealcancel-pm``, ``deeplift-ablation-pm``) carry
the (+, −) parts through the whole net with m⁺ ≠ m⁻ at every boundary: :mod:`.deeplift_pm`.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..chain import BatchChain
from ..errors import ExtractionError, OptionError
from ..linalg import (DiagonalOperator, GatherOperator, PairLinear, PairScale, PoolOperator, ResidualOperator, Scale,
                      negative_part, positive_part)
from ..linalg.pairs import SignCombine
from ..options import choice, number
from ..trace import eval_mode, trace
from .deeplift_pm import pm_stages
from .layers import winner_rows

__all__ = ["VARIANTS", "OWN_OPTIONS", "make_reference", "build_deeplift", "gaussian_blur", "check_own",
           "package_multipliers", "NEAR_ZERO"]

VARIANTS = ("rescale", "revealcancel", "ablation", "rescale-pm", "revealcancel-pm", "ablation-pm")
OWN_OPTIONS = ("reference", "sigma")
NEAR_ZERO = 1e-7          # deeplift.util.NEAR_ZERO_THRESHOLD


# ---------------------------------------------------------------------------------------------
# reference


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of an image batch (B, C, H, W) with std ``sigma`` pixels (reflect padding)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    C = x.shape[1]
    mode = "reflect" if min(x.shape[2:]) > radius else "replicate"
    h = F.pad(x, (radius, radius, 0, 0), mode=mode)
    h = F.conv2d(h, k.reshape(1, 1, 1, -1).repeat(C, 1, 1, 1), groups=C)
    h = F.pad(h, (0, 0, radius, radius), mode=mode)
    return F.conv2d(h, k.reshape(1, 1, -1, 1).repeat(C, 1, 1, 1), groups=C)


def make_reference(reference, xt: torch.Tensor, sigma=None, where: str = "DeepLIFT") -> torch.Tensor:
    """x⁰ with x's shape (B, …) and dtype from "zeros", "blur" (with sigma) or a tensor/array of one input's shape
    (the same reference for every input)."""
    if isinstance(reference, str):
        if reference == "zeros":
            return torch.zeros_like(xt)
        if reference == "blur":
            s = 1.0 if sigma is None else sigma
            if not (isinstance(s, (int, float)) and s > 0):
                raise OptionError(f"option sigma of {where} must be > 0 (pixels), got {sigma!r}")
            if xt.ndim != 4:
                raise OptionError(
                    f"option reference of {where} must be a tensor here: reference='blur' needs an image input "
                    f"(1, C, H, W); this model takes {tuple(xt.shape)}. Pass the blurred image as reference=<tensor>"
                )
            return gaussian_blur(xt, float(s))
        raise OptionError(f"option reference of {where} must be 'zeros', 'blur' or a tensor of x's shape, "
                          f"got {reference!r}")
    if not isinstance(reference, (torch.Tensor, np.ndarray, list, tuple)):
        raise OptionError(f"option reference of {where} must be 'zeros', 'blur' or a tensor of x's shape, "
                          f"got {reference!r}")
    ref = torch.as_tensor(np.asarray(reference) if not isinstance(reference, torch.Tensor) else reference)
    ref = ref.detach().to(xt.dtype)
    one = tuple(xt[:1].shape)
    if tuple(ref.shape) == one[1:]:
        ref = ref.unsqueeze(0)
    if tuple(ref.shape) != one:
        raise OptionError(
            f"option reference of {where} must have the input's shape {one} (or {one[1:]}), "
            f"got a reference of shape {tuple(ref.shape)}"
        )
    if not torch.isfinite(ref).all():
        raise OptionError(f"option reference of {where} must be finite; it contains NaN or infinite values")
    return ref.expand_as(xt).clone()


def check_own(variant: str, own: dict) -> dict:
    """The DeepLIFT options (reference, sigma) of ``own``, checked."""
    where = f"rule 'deeplift-{variant}'"
    reference = own.get("reference", "zeros")
    sigma = own.get("sigma")
    if sigma is not None:
        if not (isinstance(reference, str) and reference == "blur"):
            raise OptionError(f"option sigma of {where} is only used with reference='blur'")
        sigma = number("sigma", sigma, where, positive=True)
    if isinstance(reference, str):
        choice("reference", reference, ("zeros", "blur"), where)
    elif not isinstance(reference, (torch.Tensor, np.ndarray, list, tuple)):
        raise OptionError(f"option reference of {where} must be 'zeros', 'blur' or a tensor of x's shape, "
                          f"got {reference!r}")
    return {"reference": reference, "sigma": sigma}


# ---------------------------------------------------------------------------------------------
# the package's multipliers


def pseudocount(t: torch.Tensor) -> torch.Tensor:
    """pc(t) = t + 1e-7·sign0(t) where |t| < 0.5e-7, else t (the package's ``pseudocount_near_zero``)."""
    small = t.abs() < 0.5 * NEAR_ZERO
    return t + NEAR_ZERO * (small & (t >= 0)).to(t.dtype) - NEAR_ZERO * (small & (t < 0)).to(t.dtype)


def package_multipliers(act, variant: str, z, z0, zp=None, zm=None):
    """(s⁺, s⁻) of the activation ``act`` (module docstring): z at x, z0 at x⁰, Δz± the parts (RevealCancel), all
    (B, n); computed in float64, returned in z's dtype (s⁻ is s⁺ for Rescale)."""
    dt = z.dtype
    z, z0 = z.to(torch.float64), z0.to(torch.float64)
    if variant == "revealcancel":
        ip, im = pseudocount(zp.to(torch.float64)), pseudocount(zm.to(torch.float64))
        dhp = 0.5 * ((act(z0 + ip) - act(z0)) + (act(z0 + im + ip) - act(z0 + im)))
        dhm = 0.5 * ((act(z0 + im) - act(z0)) + (act(z0 + ip + im) - act(z0 + ip)))
        return (dhp / ip).to(dt), (dhm / im).to(dt)
    dz = z - z0
    near = dz.abs() < NEAR_ZERO
    s = torch.where(near, act.derivative(z0), (act(z) - act(z0)) / torch.where(near, 1.0, dz)).to(dt)
    return s, s


# ---------------------------------------------------------------------------------------------
# stages


def _flat(t):
    return t.reshape(t.shape[0], -1)


def _package_step(act, variant, z, z0, zp, zm, shape):
    """The multipliers of the activation after a linear map or sum as a :class:`PairScale` (None without one)."""
    if act is None:
        return None
    sp_, sm_ = package_multipliers(act, "revealcancel" if variant == "revealcancel" else "rescale", z, z0, zp, zm)
    return PairScale(sp_, sm_, shape, keep_pairs=False)


def _rescale_step(act, z, z0, shape):
    """Rescale's multiplier as a :class:`Scale` (an activation after a pool; None without one)."""
    if act is None:
        return None
    return Scale(package_multipliers(act, "rescale", _flat(z), _flat(z0))[0], shape)


def _package_stage(st, rec, rec0, variant, dtype):
    """The stage operator of one stage (module docstring) at the records at x and x⁰."""
    in_shape, out_shape = rec.in_shape, rec.out_shape
    act = st.activation if st.kind != "activation" else None
    if st.kind == "residual":
        branches, cols, zp, zm = [], [], 0.0, 0.0
        for b_st, b_rec, b_rec0 in zip(st.branches, rec.branches, rec0.branches):
            branches.append([_package_stage(s, r, r0, variant, dtype) for s, r, r0 in zip(b_st, b_rec, b_rec0)])
            dzt = _flat(b_rec[-1].out - b_rec0[-1].out) if b_rec else _flat(rec.x - rec0.x)
            zp, zm = zp + dzt.clamp(min=0), zm + dzt.clamp(max=0)
            cols.append(SignCombine(torch.sign(dzt), out_shape))
        step = _package_step(act, variant, _flat(rec.z), _flat(rec0.z), zp, zm, out_shape)
        names = [[s.name for s in b] for b in st.branches]
        return ResidualOperator(branches, cols, in_shape, out_shape, dtype, st.name, step, names)
    dx = _flat(rec.x - rec0.x)
    if st.is_parametric:
        W = st.weight
        Wp, Wn = positive_part(W), negative_part(W)       # one copy per weight, shared by the images
        a_p, a_m = dx.clamp(min=0).reshape(rec.x.shape), dx.clamp(max=0).reshape(rec.x.shape)
        zp = _flat(st.linear_map(a_p, Wp) + st.linear_map(a_m, Wn))
        zm = _flat(st.linear_map(a_p, Wn) + st.linear_map(a_m, Wp))
        step = _package_step(act, variant, _flat(rec.z), _flat(rec0.z), zp, zm, out_shape)
        mode = "package-ablation" if variant == "ablation" else "package"
        return PairLinear(W, in_shape, out_shape, st.conv, mode, dtype, st.name, step, sigma=torch.sign(dx))
    if st.kind == "activation":
        s = package_multipliers(st.activation, "rescale", _flat(rec.x), _flat(rec0.x))[0]
        return DiagonalOperator(s, in_shape, dtype, st.name)
    step = _rescale_step(act, rec.z, rec0.z, out_shape)
    if st.kind == "maxpool2d":
        return GatherOperator(winner_rows(rec), in_shape, out_shape, dtype, st.name, step)
    if st.kind in ("avgpool2d", "adaptiveavgpool2d"):
        return PoolOperator(st.pool, None, None, in_shape, out_shape, dtype, st.name, step)
    raise ExtractionError(f"no DeepLIFT rule for stage {st.describe()}")


def _layer_rule(st, rule) -> str:
    kind = {"maxpool2d": "maxpool-gradient", "avgpool2d": "avgpool-gradient", "adaptiveavgpool2d": "avgpool-gradient",
            "activation": "activation-rescale", "residual": "residual-add"}.get(st.kind, "linear")
    return f"{rule}:{kind}"


def build_deeplift(model, net, xt, records, opts, own: dict, variant: str) -> BatchChain:
    """The DeepLIFT stage operators of ``variant`` (one of VARIANTS) at the inputs ``xt``: the package's rule in the
    forward's dtype, the ``-pm`` variants in float64 (:mod:`.deeplift_pm`)."""
    rule = f"deeplift-{variant}"
    own = check_own(variant, own)
    reference, sigma = own["reference"], own["sigma"]
    pm = variant.endswith("-pm")
    if pm and records[-1].out.dtype != torch.float64:      # traced again: the float32 net's weights are rounded
        with eval_mode(model):
            net = trace(model)
        xt = xt.to(torch.float64)
        with torch.no_grad():
            records = net.forward(xt)
    x0 = make_reference(reference, xt, sigma, f"rule {rule!r}")
    with torch.no_grad():
        records0 = net.forward(x0)
    B = xt.shape[0]
    shapes = net.shapes(records)
    dtype = np.float32 if records[-1].out.dtype == torch.float32 else np.float64
    if pm:
        ops, layer_rules, deltas = pm_stages(net, records, records0, xt, x0, variant[:-len("-pm")])
        deltas = [tuple(t.reshape((B, 1) + tuple(shapes[j])) for t in pair) for j, pair in enumerate(deltas)]
        delta_input = deltas[0]
    else:
        ops = [_package_stage(st, rec, rec0, variant, dtype) for st, rec, rec0 in zip(net.stages, records, records0)]
        layer_rules = [_layer_rule(st, rule) for st in net.stages]
        outs = [(xt - x0)] + [rec.out - rec0.out for rec, rec0 in zip(records, records0)]
        deltas = [d.reshape((B, 1) + tuple(shapes[j])) for j, d in enumerate(outs)]
        delta_input = (deltas[0].clamp(min=0), deltas[0].clamp(max=0))
    ref_desc = reference if isinstance(reference, str) else f"array{tuple(x0[:1].shape)}"
    own_rec = {"reference": ref_desc, **({"sigma": sigma} if sigma is not None else {})}
    return BatchChain(
        ops, names=[st.name for st in net.stages], shapes=shapes, x=xt,
        logits=records[-1].out.reshape(B, -1).to(torch.float64), rule=rule, kind="deeplift", space="deeplift",
        dtype=records[-1].out.dtype, options={**opts.record(opts.given), **own_rec}, layer_rules=layer_rules,
        deltas=deltas, paired=pm, reference=x0, reference_logits=records0[-1].out.reshape(B, -1).to(torch.float64),
        delta_input=delta_input, variant=variant, meta={"model": net.source})
