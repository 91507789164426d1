"""Residual blocks: a block h_out = ρ(Σ_t f_t(h)) becomes ONE chain operator, a Sum of Products.

A residual block adds T branches (T = 2 in ResNets: the residual branch g and the shortcut, the
identity or a 1×1 conv + BN) and optionally applies an activation ρ after the sum:

    z = Σ_t f_t(h),   h_out = ρ(z),   f_t = (stages of branch t),  f_t = id for an identity shortcut.

Each branch t has its own chain of layer operators M_t1 … M_tK (built with the layer rules) and
their product P_t = M_t1 ⋯ M_tK (n_in × n_out; P_t = I for the identity).  The block's operator is

    M = Σ_t P_t · diag(c_t)                                          (1)

* gradient space: c_t = ρ'(z) (the post-add ReLU mask; ones without activation) for every t, so
  M = (P_shortcut + P_branch) diag(ρ'(z)) — Sixt et al. 2020, eq. 3 (I + G), transposed into our
  r_in = M r_out convention, with the shortcut matrix in place of I for a downsampling shortcut;
* relevance space (the activation is the identity there): the relevance at the sum z = Σ_t z_t is
  split between the branches, then each branch propagates its share with its own layer rules:
      residual="proportional" (default):  c_t = z_t / s(z)   (zennit's SumSingle / Norm rule),
      residual="equal":                   c_t = 1 / T.

With bias="full" the block's ``bias_relevance`` collects the biases of the inner layers:
b_block = Σ_t c_t ⊙ Σ_k (M_t(k+1) ⋯ M_tK)ᵀ b_tk, so colsum(M) + b_block = z/s(z) for conserving rules.
The block is applied factor by factor (``matmat``/``rmatmat``) and multiplied out only on ``to_csc``.

DeepLIFT chains (:mod:`.deeplift`) use the same form with 2×2 block operators: :class:`DeepLiftResidual`
is Σ_t P_t · diag(S⁺, S⁻), P_t the product of branch t's block operators (the identity block for an
identity shortcut) and S± the multipliers of the activation after the sum (:class:`~chainlab.linalg.BlockSum`).
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ExtractionError
from ..linalg import BlockSum, Diagonal, Product, Sum
from ..rules import stabilize
from ..trace import Record, Stage
from .layers import output_derivative

__all__ = ["ResidualBlock", "DeepLiftResidual", "block_operator"]


class ResidualBlock(Sum):
    """Σ_t P_t diag(c_t) of one residual block (kind ``"residual"``); ``names``/``layer_rules``: per branch."""

    kind = "residual"

    def __init__(self, terms, bias_relevance=None, names=None, layer_rules=None):
        super().__init__(terms, bias_relevance)
        self.names = names or [[] for _ in self.terms]
        self.layer_rules = layer_rules or [[] for _ in self.terms]

    @property
    def branches(self) -> list:
        """The inner layer operators of each branch (without the column scaling diag(c_t)); [] for an identity."""
        return [t.factors[:-1] for t in self.terms]

    def astype(self, dtype):
        return ResidualBlock([t.astype(dtype) for t in self.terms], self.bias_relevance, self.names, self.layer_rules)

    def scale_rows(self, v) -> "ResidualBlock":
        """diag(v) @ self (gradient × input when a block is the first operator)."""
        d = Diagonal(v, self.dtype)
        return ResidualBlock([Product([d, t]) for t in self.terms], self.bias_relevance, self.names, self.layer_rules)

    def __repr__(self):
        inner = " + ".join(repr(t) for t in self.terms)
        return f"<ResidualBlock {self.shape[0]}x{self.shape[1]} {np.dtype(self.dtype).name} [{inner}]>"


class DeepLiftResidual(BlockSum):
    """Σ_t P_t diag(S⁺, S⁻) of one residual block of a DeepLIFT chain (kind ``"residual"``).

    ``terms[t]`` = branch t's block operators followed by the block diag(S⁺, S⁻) of the activation after
    the sum; ``names``/``layer_rules``: per branch.  Applied factor by factor; its blocks A, B, C, D are
    the blockwise products, computed on first use (:class:`~chainlab.linalg.BlockSum`).
    """

    kind = "residual"

    def __init__(self, terms, names=None, layer_rules=None):
        super().__init__(terms)
        self.names = names or [[] for _ in self.terms]
        self.layer_rules = layer_rules or [[] for _ in self.terms]

    @property
    def branches(self) -> list:
        """The block operators of each branch (without diag(S⁺, S⁻)); [] for an identity."""
        return [t[:-1] for t in self.terms]

    def astype(self, dtype):
        return DeepLiftResidual([[f.astype(dtype) for f in t] for t in self.terms], self.names, self.layer_rules)


def block_operator(stage: Stage, record: Record, *, space: str, build, split: str, stabilizer: float,
                   dtype, rule_name, derivative=None) -> ResidualBlock:
    """The operator (1) of the residual ``stage`` at ``record`` (see the module docstring).

    ``build(inner_stage, inner_record) -> Operator`` makes the operator of one inner stage (materialized
    or implicit: the block never multiplies its factors unless asked to); ``rule_name(inner_stage)`` names
    each inner layer's rule; ``derivative`` replaces ρ' of the activation after the sum
    (:func:`~.layers.output_derivative`).
    """
    if stage.kind != "residual" or record.branches is None:
        raise ExtractionError(f"stage {stage.describe()} is not a residual block")
    z = record.z.reshape(-1).to(torch.float64)
    h = record.x.reshape(-1).to(torch.float64)
    n_in, n_out = h.numel(), z.numel()
    terms, names, rules, biases = [], [], [], []
    for b_stages, b_records in zip(stage.branches, record.branches):
        ops = [build(s, r) for s, r in zip(b_stages, b_records)]
        if space == "gradient":
            col = output_derivative(stage, record, space, derivative)
        elif split == "proportional":
            z_t = b_records[-1].out.reshape(-1) if b_records else h
            col = (z_t.to(torch.float64) / stabilize(z, stabilizer)).numpy()
        else:
            col = np.full(n_out, 1.0 / len(stage.branches))
        if not ops and n_in != n_out:
            raise ExtractionError(f"identity branch of residual block {stage.describe()} maps {n_in} to {n_out} values")
        terms.append(Product(ops + [Diagonal(col, dtype)]))
        names.append([s.name for s in b_stages])
        rules.append([rule_name(s) for s in b_stages])
        # bias relevance of the inner layers, carried to the block's output columns
        if any(A.bias_relevance is not None for A in ops):
            acc = np.zeros(n_out)
            for k, A in enumerate(ops):
                if A.bias_relevance is None:
                    continue
                v = np.asarray(A.bias_relevance, dtype=np.float64)
                for B in ops[k + 1:]:
                    v = B.rmatvec(v)
                acc += v
            biases.append(col * acc)
    bias_rel = np.sum(biases, axis=0) if biases else None
    return ResidualBlock(terms, bias_rel, names, rules)
