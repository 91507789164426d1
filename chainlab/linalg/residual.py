"""Residual blocks h_out = ρ(Σ_t f_t(h)) as one stage: a sum over branches of their stage operators.

A block adds T branches (the residual branch and the shortcut: the identity or a 1×1 conv + BN), each a
list of stage operators (input side first; [] for the identity), and applies an activation after the sum.
Its backward is

    back(X) = Σ_t B_t(c_t(act(X))),    B_t(Y) = back_(t,1)(⋯ back_(t,K)(Y)),    B_t = id for the identity,

with ``act`` the step of the activation after the sum (ρ'(z) in gradient space, a rectifier, DeepLIFT's
multipliers) and c_t a per-branch output-side factor (:class:`~.implicit.Scale` by z_t/s(z) or 1/T in
relevance space; None: the sum's gradient, 1).  :class:`ResidualOperator` applies it on torch batches like
every stage operator; for one image ``materialize`` gives the block as stored factors, not multiplied out:

* :class:`ResidualBlock` — Σ_t P_t diag(c_t ⊙ d), P_t the product of branch t's operators (a Sum of Products);
* :class:`DeepLiftResidual` — Σ_t P_t diag(S⁺, S⁻) of 2×2 block operators (a :class:`~.block.BlockSum`).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ..errors import InputError, NotLinearError
from .block import BlockSum
from .implicit import Scale, TorchOperator, per_image
from .operators import DenseOperator, Diagonal, Product, SparseOperator, Sum
from .pairs import PairScale, diag_block

__all__ = ["ResidualOperator", "ResidualBlock", "DeepLiftResidual", "ClippedSplit"]


class ClippedSplit:
    """Sixt et al.'s share of branch t at a residual sum (their monkey_patch_lrp_resnet.py:87-130: the Add as an
    αβ layer over the concatenated branch outputs, each branch's relevance clipped to [0, 1000]):

        X ↦ clip(p ⊙ X − q ⊙ X, 0, hi),    p = α z_t⁺ / sd(Σ_s z_s⁺),   q = β z_t⁻ / sd(Σ_s z_s⁻),

    sd(d) = d + ε·1[d = 0] (innvestigate's SafeDivide, ε = 1e-7); p, q per image (B|1, 1, *shape).  Not linear (the
    clip); :meth:`linear_part` is the map without it."""

    linear = False

    def __init__(self, p, q, shape, hi: float = 1000.0):
        self.p, self.q = per_image(p, shape), per_image(q, shape)
        self.shape, self.hi = tuple(shape), float(hi)

    @property
    def batch(self) -> int:
        return max(int(self.p.shape[0]), int(self.q.shape[0]))

    def __call__(self, X):
        return (X * (self.p - self.q).to(X.dtype)).clamp(0.0, self.hi)

    def linear_part(self) -> Scale:
        return Scale(self.p - self.q, self.shape)


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
    """Σ_t P_t diag(S⁺, S⁻) of one residual block of a DeepLIFT ± chain (kind ``"residual"``).

    ``terms[t]`` = branch t's block operators followed by the block diag(S⁺, S⁻) of the activation after
    the sum; ``names``/``layer_rules``: per branch.  Applied factor by factor; its blocks A, B, C, D are
    the blockwise products, computed on first use (:class:`~.block.BlockSum`).
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


class ResidualOperator(TorchOperator):
    """One residual block as a stage operator (module docstring; kind ``"residual"``).

    branches: [[stage operators of branch t, input side first]]; cols: per branch a factor (a :class:`Scale`,
    or any map of signals) or None; act: the step of the activation after the sum; names/layer_rules: per
    branch, for the materialized block."""

    kind = "residual"

    def __init__(self, branches, cols, in_shape, out_shape, dtype=np.float64, name="", act=None, names=None,
                 layer_rules=None):
        super().__init__(in_shape, out_shape, dtype, name, act)
        self.branches = [list(b) for b in branches]
        self.cols = list(cols) if cols is not None else [None] * len(self.branches)
        if len(self.cols) != len(self.branches):
            raise InputError(f"residual block {name!r}: {len(self.cols)} column factors for {len(self.branches)} "
                             "branches")
        for b in self.branches:
            if not b and self.shape[0] != self.shape[1]:
                raise InputError(f"identity branch of residual block {name!r} maps {self.shape[0]} to "
                                 f"{self.shape[1]} values")
        self.names = names or [[getattr(s, "name", "") for s in b] for b in self.branches]
        self.layer_rules = layer_rules or [[] for _ in self.branches]

    @property
    def batch(self) -> int:
        sizes = [s.batch for b in self.branches for s in b]
        sizes += [getattr(c, "batch", 1) for c in self.cols if c is not None]
        return max([1, getattr(self.act_step, "batch", 1)] + sizes)

    def _with(self, dtype=None, act=False, branches=None):
        return ResidualOperator(self.branches if branches is None else branches, self.cols, self.in_shape,
                                self.out_shape, self.dtype if dtype is None else dtype, self.name,
                                self.act_step if act is False else act, self.names, self.layer_rules)

    def astype(self, dtype):
        return self._with(dtype=np.dtype(dtype), branches=[[s.astype(dtype) for s in b] for b in self.branches])

    def linear_part(self):
        """The block without any activation step, inside its branches too: Σ_t L_t1 ⋯ L_tK."""
        op = self._with(act=None, branches=[[s.linear_part() for s in b] for b in self.branches])
        op.cols = [c.linear_part() if c is not None and not getattr(c, "linear", True) else c for c in self.cols]
        return op

    @property
    def linear(self) -> bool:
        return (super().linear and all(s.linear for b in self.branches for s in b)
                and all(getattr(c, "linear", True) for c in self.cols if c is not None))

    def lin(self, X):
        out = None
        for stages, c in zip(self.branches, self.cols):
            Y = X if c is None else c(X)
            for s in reversed(stages):
                Y = s.back(Y)
            out = Y if out is None else out + Y
        return out

    def lin_t(self, U):
        out = None
        for stages, c in zip(self.branches, self.cols):
            Y = U
            for s in stages:
                Y = s.back_t(Y)
            if c is not None:
                Y = c.transpose(Y)
            out = Y if out is None else out + Y
        return out

    def _column(self, t) -> np.ndarray:
        """The output-side diagonal of branch t for one image: c_t ∘ act applied to ones (linear diagonal steps)."""
        one = torch.ones((1, 1) + self.out_shape, dtype=torch.float64)
        v = self.act(one)
        c = self.cols[t]
        v = v if c is None else c(v)
        return v.reshape(-1).numpy()

    def abs_column_sums(self):
        """Σ_i |M_ij| per output column j of one image's block M = Σ_t P_t diag(c_t), shape (n_out,).  Two routes,
        both exact:

        * every branch's stages entrywise ≥ 0 (z⁺, w², flat; :meth:`~.implicit.TorchOperator.nonnegative`): column
          j of M is Σ_t c_tj P_t e_j with every P_t e_j ≥ 0, so where the non-zero c_tj share one sign,
          Σ_i |M_ij| = |Σ_t c_tj (P_tᵀ 1)_j| — one transposed pass per branch.  Only the columns J with shares of
          both signs (a residual split z_t / s(z) with branches of opposite signs) need more: beside an identity
          shortcut only the diagonal entries (P_t)_jj (:meth:`_mixed_columns`), else the columns J multiplied out,
          each branch's last stage restricted to J (cost ∝ |J|);
        * otherwise its materialized terms multiplied out and added (:meth:`~.operators.Sum.abs_column_sums`; no
          CSC copy of a dense product)."""
        if self.batch == 1 and self.linear and not isinstance(self.act_step, PairScale) \
                and all(s.nonnegative() for b in self.branches for s in b):
            return self._abs_column_sums_nonnegative()
        return self.materialize().abs_column_sums()

    def _abs_column_sums_nonnegative(self) -> np.ndarray:
        cols = np.stack([self._column(t) for t in range(len(self.branches))])          # (T, n_out): c_t ⊙ act
        sums = []
        for b in self.branches:
            v = np.ones(self.shape[0])
            for s in b:                                                                # P_tᵀ 1, input side first
                v = s.rmatvec(v)
            sums.append(np.asarray(v, np.float64).reshape(-1))
        out = np.abs((cols * np.stack(sums)).sum(axis=0))
        J = np.flatnonzero((cols > 0).any(axis=0) & (cols < 0).any(axis=0))
        if J.size:
            out[J] = self._mixed_columns(J, cols[:, J], [v[J] for v in sums])
        return out

    def _mixed_columns(self, J, cols, sums) -> np.ndarray:
        """Σ_i |M_ij| of the mixed-sign columns J.  One branch t beside the identity: M e_j = c_tj P_t e_j + c_0j e_j
        overlaps in row j alone, so Σ_i |M_ij| = |c_tj| ((P_tᵀ1)_j − (P_t)_jj) + |c_tj (P_t)_jj + c_0j| — the
        diagonal entries only.  Otherwise the columns J multiplied out."""
        live = [t for t, b in enumerate(self.branches) if b]
        if len(self.branches) == 2 and len(live) == 1:
            t = live[0]
            d = self._branch_diagonal(self.branches[t], J)
            return np.abs(cols[t]) * (sums[t] - d) + np.abs(cols[t] * d + cols[1 - t])
        return self._columns_block(J, cols).abs_column_sums()

    @staticmethod
    def _branch_diagonal(stages, J) -> np.ndarray:
        """(P)_jj for j ∈ J of a square branch product P = F_1 ⋯ F_K: rows J of F_1 ⋯ F_(K−1) against the columns J
        of F_K (cost ∝ |J|)."""
        mats = [s.materialize().stored() for s in stages]
        last = sp.csc_matrix(mats[-1])[:, J]
        if len(mats) == 1:
            return np.asarray(last[J, :].diagonal(), dtype=np.float64)
        A = sp.csr_matrix(mats[0])[J, :]
        for F in mats[1:-1]:
            A = A @ sp.csc_matrix(F)
        return np.asarray(A.multiply(last.T.tocsr()).sum(axis=1), dtype=np.float64).reshape(-1)

    def _columns_block(self, J, cols) -> Sum:
        """M[:, J] = Σ_t P_t[:, J] diag(c_t[J]) as stored factors: each branch's last stage restricted to the
        columns J (an identity branch: the columns J of I)."""
        terms = []
        for b, c in zip(self.branches, cols):
            if b:
                last = b[-1].materialize().stored()
                last = last.tocsc()[:, J] if sp.issparse(last) else np.asarray(last)[:, J]
                factors = [s.materialize() for s in b[:-1]]
                factors.append(SparseOperator(last) if sp.issparse(last) else DenseOperator(last))
            else:
                factors = [SparseOperator(sp.csc_matrix((np.ones(len(J)), (J, np.arange(len(J)))),
                                                        shape=(self.shape[0], len(J))))]
            terms.append(Product(factors + [Diagonal(c, self.dtype)]))
        return Sum(terms)

    def materialize(self):
        """The block for one image as stored factors (not multiplied out): a :class:`DeepLiftResidual` when its
        activation step is DeepLIFT's ± multipliers, else a :class:`ResidualBlock` (with ``bias_relevance``)."""
        if self.batch != 1:
            raise InputError(f"residual block {self.name!r} holds the factors of {self.batch} images; only one "
                             "image's block has a matrix")
        if isinstance(self.act_step, PairScale) and self.act_step.keep_pairs:
            sp_, sm_ = self.act_step.diagonals()
            D = diag_block(sp_, sm_, self.dtype)
            return DeepLiftResidual([[s.materialize() for s in b] + [D] for b in self.branches], self.names,
                                    self.layer_rules)
        if not self.linear:
            raise NotLinearError(f"residual block {self.name!r} rectifies its signal; only its linear part has a "
                                 "matrix (linear_part())")
        terms = []
        for t, b in enumerate(self.branches):
            terms.append(Product([s.materialize() for s in b] + [Diagonal(self._column(t), self.dtype)]))
        return ResidualBlock(terms, self.bias_relevance, self.names, self.layer_rules)

    @property
    def bias_relevance(self):
        """b_block = Σ_t c_t ⊙ Σ_k (M_t(k+1) ⋯ M_tK)ᵀ b_tk: the inner layers' bias relevance carried to the block's
        output (one image; None when no inner layer reports one)."""
        if self.batch != 1 or not self.linear:
            return None
        acc, found = np.zeros(self.shape[1]), False
        for t, b in enumerate(self.branches):
            inner = np.zeros(self.shape[1])
            for k, A in enumerate(b):
                if A.bias_relevance is None:
                    continue
                found = True
                v = np.asarray(A.bias_relevance, dtype=np.float64)
                for B in b[k + 1:]:
                    v = B.rmatvec(v)
                inner += v
            acc += self._column(t) * inner
        return acc if found else None

    @bias_relevance.setter
    def bias_relevance(self, value):
        pass

    def _count(self):
        return int(sum(s.nnz for b in self.branches for s in b) + sum(self.shape[1] for b in self.branches))

    def __repr__(self):
        inner = " + ".join("[" + " · ".join(type(s).__name__ for s in b) + "]" for b in self.branches)
        return f"<ResidualOperator {self.name!r} {self.shape[0]}x{self.shape[1]} {inner}>"
