"""Residual blocks: a block h_out = ρ(Σ_t f_t(h)) becomes ONE stage operator, a sum over its branches.

A residual block adds T branches (T = 2 in ResNets: the residual branch g and the shortcut, the
identity or a 1×1 conv + BN) and optionally applies an activation ρ after the sum:

    z = Σ_t f_t(h),   h_out = ρ(z),   f_t = (stages of branch t),  f_t = id for an identity shortcut.

Each branch t has its own stage operators M_t1 … M_tK (built with the layer rules) and their product
P_t = M_t1 ⋯ M_tK (n_in × n_out; P_t = I for the identity).  The block's operator is

    M = Σ_t P_t · diag(c_t) · diag(d)                                (1)

(:class:`~chainlab.linalg.ResidualOperator`; for one input materialized as a
:class:`~chainlab.linalg.ResidualBlock`, a Sum of Products)

* gradient space: d = ρ'(z) (the post-add ReLU mask; the block's ``act`` step) and c_t = 1, so
  M = (P_shortcut + P_branch) diag(ρ'(z)) — Sixt et al. 2020, eq. 3 (I + G), transposed into our
  r_in = M r_out convention, with the shortcut matrix in place of I for a downsampling shortcut;
* relevance space (the activation is the identity there): the relevance at the sum z = Σ_t z_t is
  split between the branches, then each branch propagates its share with its own layer rules:
      residual="proportional" (default):  c_t = z_t / s(z)   (zennit's SumSingle / Norm rule),
      residual="equal":                   c_t = 1 / T.

      residual="authors":                 Sixt et al.'s rule for αβ chains (their monkey_patch_lrp_resnet.py:87-130):
          the sum is an αβ layer over the concatenated branch outputs (innvestigate 1.0.8's AlphaBetaRule,
          relevance_rule.py:245-299), c_t(X) = clip(α z_t⁺/sd(Σ z⁺) X − β z_t⁻/sd(Σ z⁻) X, 0, 1000)
          (:class:`~chainlab.linalg.ClippedSplit`: not linear), with α, β of the branches' αβ rule; and every
          BatchNorm is its own αβ layer (:func:`authors_bn_operator`, :136-191) instead of being folded.

With bias="full" the block's ``bias_relevance`` collects the biases of the inner layers:
b_block = Σ_t c_t ⊙ Σ_k (M_t(k+1) ⋯ M_tK)ᵀ b_tk, so colsum(M) + b_block = z/s(z) for conserving rules.
The same :class:`~chainlab.linalg.ResidualOperator` carries the rectified methods (the rectifier after the
sum as its step) and DeepLIFT (its multipliers), see :mod:`.rectified`, :mod:`.deeplift`.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from ..errors import ExtractionError, OptionError
from ..linalg import ClippedSplit, DeepLiftResidual, LayerTerms, ResidualBlock, ResidualOperator, Scale, TermsOperator
from ..rules import AlphaBeta, LayerContext, ZPlus, stabilize
from ..trace import Record, Stage
from .layers import output_derivative

__all__ = ["ResidualBlock", "DeepLiftResidual", "block_operator", "alpha_beta_of", "authors_bn_operator"]

KERAS_EPS = 1e-7          # innvestigate's SafeDivide: a / (b + ε·1[b = 0]), ε = keras.backend.epsilon()


def _safe(d: torch.Tensor) -> torch.Tensor:
    return d + KERAS_EPS * (d == 0).to(d.dtype)


def alpha_beta_of(rule, where: str) -> tuple:
    """(α, β) of an αβ rule (z⁺ is α1β0); OptionError for any other rule (the authors' residual rule is αβ's)."""
    if isinstance(rule, ZPlus):
        return 1.0, 0.0
    if isinstance(rule, AlphaBeta):
        return float(rule.alpha), float(rule.beta)
    raise OptionError(f'residual="authors" is Sixt et al.\'s rule for LRP-αβ chains; {where} has rule '
                      f"{getattr(rule, 'name', rule)!r}")


def _authors_split(z_t, z_all, alpha, beta, out_shape) -> ClippedSplit:
    """Branch t's share of the sum z = Σ_s z_s as the authors' αβ Add (module docstring); z_t (B, n), z_all [(B, n)]."""
    sp = sum(v.clamp(min=0) for v in z_all)
    sn = sum(v.clamp(max=0) for v in z_all)
    return ClippedSplit(alpha * z_t.clamp(min=0) / _safe(sp), beta * z_t.clamp(max=0) / _safe(sn), out_shape)


def authors_bn_operator(rule, ctx: LayerContext, model, dtype) -> TermsOperator | None:
    """A Linear/Conv2d stage with a folded BatchNorm as two αβ layers (the authors' BatchNorm handling): the rule's
    matrix of the layer alone (its own weight W and bias b, output y = W x + b) times diag(g) of the BatchNorm as a
    depthwise 1×1 αβ layer with kernel k = γ/√(σ² + eps) and bias c = β − kμ (monkey_patch_lrp_resnet.py:165-179),
    evaluated as innvestigate does (both bias parts in both denominators, SafeDivide): with u = k ⊙ y,

        g = α u⁺/sd(u⁺ + c) − β u⁻/sd(u⁻ + c).

    None when no BatchNorm was folded into the stage."""
    st, rec = ctx.stage, ctx.record
    bns = [m for m in (model.get_submodule(p) for p in st.members) if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    if not bns:
        return None
    if ctx.bias_policy == "full":
        raise OptionError('residual="authors" does not report bias relevance (bias="full"): its BatchNorm layers '
                          "have a bias of their own")
    alpha, beta = alpha_beta_of(rule, f"layer {st.describe()}")
    bn, layer = bns[0], st.module
    dt = rec.x.dtype
    W = layer.weight.detach().to(dt)
    b = layer.bias.detach().to(dt) if layer.bias is not None else torch.zeros(W.shape[0], dtype=dt)
    gamma = bn.weight.detach().to(dt) if bn.weight is not None else 1.0
    k = gamma / torch.sqrt(bn.running_var.detach().to(dt) + bn.eps)
    c = (bn.bias.detach().to(dt) if bn.bias is not None else 0.0) - k * bn.running_mean.detach().to(dt)
    B = rec.x.shape[0]
    y = st.linear_map(rec.x, weight=W).reshape(B, -1)
    bias = b.repeat_interleave(y.shape[1] // b.numel())
    y = y + bias
    kk, cc = k.repeat_interleave(y.shape[1] // k.numel()), c.repeat_interleave(y.shape[1] // c.numel())
    u = kk * y
    g = alpha * u.clamp(min=0) / _safe(u.clamp(min=0) + cc) - beta * u.clamp(max=0) / _safe(u.clamp(max=0) + cc)
    inner = LayerContext(dataclasses.replace(st, weight=W.to(st.weight.dtype), bias=b.to(st.weight.dtype)),
                         dataclasses.replace(rec, z=y.reshape(rec.z.shape)), ctx.index, ctx.is_first,
                         bias_policy=ctx.bias_policy, stabilizer=ctx.stabilizer)
    lt = rule.terms(inner)
    terms = [(a, phi, g if col is None else col * g) for a, phi, col in lt.terms]
    return TermsOperator(LayerTerms(terms, lt.mask, None), rec.in_shape, rec.out_shape, st.conv, dtype, st.name)


def block_operator(stage: Stage, record: Record, *, space: str, build, split: str, stabilizer: float,
                   dtype, rule_name, derivative=None, alpha_beta=None) -> ResidualOperator:
    """The operator (1) of the residual ``stage`` at ``record`` (B inputs; see the module docstring).

    ``build(inner_stage, inner_record) -> stage operator`` makes the operator of one inner stage;
    ``rule_name(inner_stage)`` names each inner layer's rule; ``derivative`` replaces ρ' of the activation after
    the sum (:func:`~.layers.output_derivative`); ``alpha_beta(inner_stage) -> (α, β)``: split="authors"'s αβ.
    """
    if stage.kind != "residual" or record.branches is None:
        raise ExtractionError(f"stage {stage.describe()} is not a residual block")
    B = record.z.shape[0]
    z = record.z.reshape(B, -1)
    out_shape = record.out_shape
    branches, cols, names, rules = [], [], [], []
    outs = [(b_records[-1].out if b_records else record.x).reshape(B, -1) for b_records in record.branches]
    if space != "gradient" and split == "authors":
        inner = [s for b in stage.branches for s in b if s.is_parametric]
        ab = alpha_beta(inner[-1]) if inner else (1.0, 0.0)
    for t, (b_stages, b_records) in enumerate(zip(stage.branches, record.branches)):
        branches.append([build(s, r) for s, r in zip(b_stages, b_records)])
        if space == "gradient":
            cols.append(None)
        elif split == "authors":
            cols.append(_authors_split(outs[t], outs, ab[0], ab[1], out_shape))
        elif split == "proportional":
            z_t = (b_records[-1].out if b_records else record.x).reshape(B, -1)
            cols.append(Scale(z_t / stabilize(z, stabilizer), out_shape))
        else:
            cols.append(Scale(torch.full((1, z.shape[1]), 1.0 / len(stage.branches), dtype=z.dtype), out_shape))
        names.append([s.name for s in b_stages])
        rules.append([rule_name(s) for s in b_stages])
    d = output_derivative(stage, record, space, derivative)
    act = None if d is None else Scale(d, out_shape)
    return ResidualOperator(branches, cols, record.in_shape, out_shape, dtype, stage.name, act, names, rules)
