"""Block operators: 2×2 blocks of operators acting on stacked (+, −) signal pairs.

DeepLIFT propagates two multipliers per neuron, one for the positive and one for
the negative part of its difference-from-reference.  A layer's backward map is then
a 2×2 block of ordinary operators (each n_in × n_out)

    [r_in⁺]   [A  B] [r_out⁺]
    [r_in⁻] = [C  D] [r_out⁻],        shape (2 n_in, 2 n_out),

always in the order (+ first, then −): rows 0 … n_in−1 of the stacked signal are
the + part, rows n_in … 2 n_in−1 the − part (likewise for columns).  The four blocks
are stored separately (never as one 2n×2n copy); ``to_dense()`` / ``to_sparse()``
assemble the 2n×2n matrix only on request.  The product of two block operators is a
block operator,

    [A₁ B₁][A₂ B₂]   [A₁A₂ + B₁C₂   A₁B₂ + B₁D₂]
    [C₁ D₁][C₂ D₂] = [C₁A₂ + D₁C₂   C₁B₂ + D₁D₂],

computed blockwise (sparse stays sparse, all-zero blocks stay empty sparse blocks).
Like every :class:`~chainlab.linalg.operators.Operator` it has matvec/matmat/rmatvec/rmatmat,
so ``scipy.sparse.linalg.aslinearoperator`` accepts it.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from .operators import Operator, Product, Sum, as_operator, zero_operator

__all__ = ["BlockOperator", "add_operators"]


def _is_zero(op: Operator) -> bool:
    M = op.stored()
    return M is not None and sp.issparse(M) and M.nnz == 0


def add_operators(a: Operator, b: Operator) -> Operator:
    """a + b as a stored operator: an empty block is skipped, sparse + sparse stays sparse."""
    if a.shape != b.shape:
        raise InputError(f"cannot add operators of shapes {a.shape} and {b.shape}")
    if _is_zero(a):
        return b
    if _is_zero(b):
        return a
    return Sum([a, b]).materialize()


def _mul(a: Operator, b: Operator) -> Operator:
    if a.shape[1] != b.shape[0]:
        raise InputError(f"cannot multiply operators of shapes {a.shape} and {b.shape}")
    if _is_zero(a) or _is_zero(b):
        return zero_operator(a.shape[0], b.shape[1], np.result_type(a.dtype, b.dtype))
    return Product([a, b]).materialize()


class BlockOperator(Operator):
    """M = [[A, B], [C, D]] on stacked signals [r⁺; r⁻] (+ first, then −); shape (2 n_in, 2 n_out).

    ``A, B, C, D`` are operators (or arrays / scipy sparse matrices) of one common shape
    (n_in, n_out).  ``M @ [v⁺; v⁻] = [A v⁺ + B v⁻; C v⁺ + D v⁻]`` and
    ``Mᵀ @ [u⁺; u⁻] = [Aᵀu⁺ + Cᵀu⁻; Bᵀu⁺ + Dᵀu⁻]``.
    """

    kind = "block"

    def __init__(self, A, B, C, D):
        A, B, C, D = (as_operator(o) for o in (A, B, C, D))
        shapes = {tuple(o.shape) for o in (A, B, C, D)}
        if len(shapes) != 1:
            raise InputError(
                f"the four blocks of a BlockOperator must have one shape; got A{A.shape}, B{B.shape}, C{C.shape}, D{D.shape}"
            )
        self.A, self.B, self.C, self.D = A, B, C, D
        self.n_in, self.n_out = A.shape
        self.shape = (2 * self.n_in, 2 * self.n_out)
        self.dtype = np.result_type(A.dtype, B.dtype, C.dtype, D.dtype)
        self.bias_relevance = None

    @property
    def blocks(self):
        """((A, B), (C, D)) as operators."""
        return (self.A, self.B), (self.C, self.D)

    # -- LinearOperator protocol ------------------------------------------------------
    def _matmat(self, V):
        vp, vm = V[: self.n_out], V[self.n_out:]
        top = self.A.matmat(vp) + self.B.matmat(vm)
        bot = self.C.matmat(vp) + self.D.matmat(vm)
        return np.vstack([top, bot])

    def _rmatmat(self, U):
        up, um = U[: self.n_in], U[self.n_in:]
        top = self.A.rmatmat(up) + self.C.rmatmat(um)
        bot = self.B.rmatmat(up) + self.D.rmatmat(um)
        return np.vstack([top, bot])

    def to_dense(self) -> np.ndarray:
        """The 2 n_in × 2 n_out matrix [[A, B], [C, D]] (+ rows/columns first, then −)."""
        return np.block([[self.A.to_dense(), self.B.to_dense()], [self.C.to_dense(), self.D.to_dense()]])

    def to_csc(self):
        return sp.bmat([[o.to_csc() for o in row] for row in self.blocks], format="csc")

    @property
    def nnz(self) -> int:
        """Stored entries of the four blocks (a block shared by two positions counts twice)."""
        return int(sum(o.nnz for o in (self.A, self.B, self.C, self.D)))

    @property
    def T(self) -> "BlockOperator":
        """Mᵀ = [[Aᵀ, Cᵀ], [Bᵀ, Dᵀ]]."""
        return BlockOperator(self.A.T, self.C.T, self.B.T, self.D.T)

    def __matmul__(self, other):
        """``self @ other``: with a block operator the blockwise product (a block operator), with an array M V."""
        if not isinstance(other, Operator):
            return super().__matmul__(other)
        if not isinstance(other, BlockOperator):
            raise InputError(
                f"a block operator composes only with a block operator (both act on (+, −) pairs), got {type(other).__name__}"
            )
        if self.n_out != other.n_in:
            raise InputError(f"cannot multiply block operators of shapes {self.shape} and {other.shape}")
        (A1, B1), (C1, D1) = self.blocks
        (A2, B2), (C2, D2) = other.blocks
        return BlockOperator(
            add_operators(_mul(A1, A2), _mul(B1, C2)), add_operators(_mul(A1, B2), _mul(B1, D2)),
            add_operators(_mul(C1, A2), _mul(D1, C2)), add_operators(_mul(C1, B2), _mul(D1, D2)),
        )

    def astype(self, dtype) -> "BlockOperator":
        return BlockOperator(*(o.astype(dtype) for o in (self.A, self.B, self.C, self.D)))

    # -- DeepLIFT structure ----------------------------------------------------------------
    def is_decoupled(self) -> bool:
        """True when both off-diagonal blocks are stored as exact zeros (nothing mixes + and −)."""
        return all(_is_zero(o) or not np.any(o.to_csc().data) for o in (self.B, self.C))

    def collapse(self, atol: float = 0.0) -> Operator:
        """The n_in × n_out operator A + B, when A + B = C + D (up to ``atol``).

        Then the diagonal subspace {[v; v]} is invariant, M [v; v] = [(A+B) v; (A+B) v], and a chain of
        such blocks started at [e; e] is the ordinary chain of the A + B operators (DeepLIFT-Rescale).
        Raises InputError when the two block rows do not sum to the same operator.
        """
        top = add_operators(self.A, self.B)
        if self.A is self.D and self.B is self.C:   # [[A, B], [B, A]]: equal by construction
            return top
        bot = add_operators(self.C, self.D)
        diff = top.to_csc() - bot.to_csc()
        err = float(np.abs(diff.data).max()) if diff.nnz else 0.0
        if err > atol:
            raise InputError(f"the block rows differ (max |(A+B) − (C+D)| = {err:.3g} > atol={atol}); it does not collapse")
        return top

    def __repr__(self):
        return (f"<BlockOperator 2x({self.n_in}x{self.n_out}) {np.dtype(self.dtype).name} nnz={self.nnz} "
                f"blocks={[o.kind for o in (self.A, self.B, self.C, self.D)]}>")
