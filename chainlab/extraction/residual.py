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

With bias="full" the block's ``bias_relevance`` collects the biases of the inner layers:
b_block = Σ_t c_t ⊙ Σ_k (M_t(k+1) ⋯ M_tK)ᵀ b_tk, so colsum(M) + b_block = z/s(z) for conserving rules.
The same :class:`~chainlab.linalg.ResidualOperator` carries the rectified methods (the rectifier after the
sum as its step) and DeepLIFT (its multipliers), see :mod:`.rectified`, :mod:`.deeplift`.
"""
from __future__ import annotations

import torch

from ..errors import ExtractionError
from ..linalg import DeepLiftResidual, ResidualBlock, ResidualOperator, Scale
from ..rules import stabilize
from ..trace import Record, Stage
from .layers import output_derivative

__all__ = ["ResidualBlock", "DeepLiftResidual", "block_operator"]


def block_operator(stage: Stage, record: Record, *, space: str, build, split: str, stabilizer: float,
                   dtype, rule_name, derivative=None) -> ResidualOperator:
    """The operator (1) of the residual ``stage`` at ``record`` (B inputs; see the module docstring).

    ``build(inner_stage, inner_record) -> stage operator`` makes the operator of one inner stage;
    ``rule_name(inner_stage)`` names each inner layer's rule; ``derivative`` replaces ρ' of the activation after
    the sum (:func:`~.layers.output_derivative`).
    """
    if stage.kind != "residual" or record.branches is None:
        raise ExtractionError(f"stage {stage.describe()} is not a residual block")
    B = record.z.shape[0]
    z = record.z.reshape(B, -1)
    out_shape = record.out_shape
    branches, cols, names, rules = [], [], [], []
    for b_stages, b_records in zip(stage.branches, record.branches):
        branches.append([build(s, r) for s, r in zip(b_stages, b_records)])
        if space == "gradient":
            cols.append(None)
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
