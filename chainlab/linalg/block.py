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
:class:`BlockSum` is a sum of such products, Σ_t B_t1 B_t2 ⋯ B_tK (a DeepLIFT residual block),
applied factor by factor and multiplied out blockwise only when its blocks are asked for.
Like every :class:`~chainlab.linalg.operators.Operator` it has matvec/matmat/rmatvec/rmatmat,
so ``scipy.sparse.linalg.aslinearoperator`` accepts it.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from .operators import Operator, Product, Sum, _result_dtype, as_operator, zero_operator

__all__ = ["BlockOperator", "BlockSum", "add_operators"]


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


class BlockSum(BlockOperator):
    """M = Σ_t B_t1 B_t2 ⋯ B_tK of block operators (input side first), shape (2 n_in, 2 n_out).

    ``terms`` is a list of non-empty lists of :class:`BlockOperator` s; within a term consecutive
    factors chain, and every term has the same overall shape.  ``matmat``/``rmatmat`` apply the
    factors one by one (nothing is multiplied out), so a block of a deep residual branch costs what
    its factors cost.  The four blocks ``A, B, C, D`` (and ``blocks``, ``to_dense``, ``to_csc``,
    products with ``@``) are the blockwise products P_t = B_t1 @ ⋯ @ B_tK summed blockwise; they are
    computed on first use and kept.  ``nnz`` counts the factors' stored entries (like
    :class:`~.operators.Sum`).  Structure is read from the factors: :meth:`collapse` is
    Σ_t Π_k collapse(B_tk) (a product and a sum of collapsing blocks collapse), :meth:`is_decoupled`
    holds when every factor is decoupled.
    """

    kind = "block-sum"

    def __init__(self, terms, bias_relevance=None):
        terms = [list(t) for t in terms]
        if not terms or any(not t for t in terms):
            raise InputError("a BlockSum needs at least one term, each with at least one factor")
        for t in terms:
            for f in t:
                if not isinstance(f, BlockOperator):
                    raise InputError(f"the factors of a BlockSum are block operators, got {type(f).__name__}")
            for a, b in zip(t, t[1:]):
                if a.n_out != b.n_in:
                    raise InputError(f"cannot multiply block operators of shapes {a.shape} and {b.shape}")
        shapes = {(t[0].n_in, t[-1].n_out) for t in terms}
        if len(shapes) != 1:
            raise InputError(f"cannot add block products of shapes {', '.join(str(s) for s in sorted(shapes))}")
        self.terms = terms
        self.n_in, self.n_out = shapes.pop()
        self.shape = (2 * self.n_in, 2 * self.n_out)
        self.dtype = _result_dtype([f for t in terms for f in t])
        self.bias_relevance = bias_relevance
        self._multiplied = None

    # -- application, factor by factor -------------------------------------------------------
    def _matmat(self, V):
        out = np.zeros((self.shape[0], V.shape[1]), dtype=np.result_type(self.dtype, V.dtype))
        for t in self.terms:
            W = V
            for f in reversed(t):
                W = f._matmat(W)
            out += W
        return out

    def _rmatmat(self, U):
        out = np.zeros((self.shape[1], U.shape[1]), dtype=np.result_type(self.dtype, U.dtype))
        for t in self.terms:
            W = U
            for f in t:
                W = f._rmatmat(W)
            out += W
        return out

    # -- the multiplied-out blocks ---------------------------------------------------------------
    def multiplied(self) -> BlockOperator:
        """Σ_t P_t as one :class:`BlockOperator` with stored blocks (computed once)."""
        if self._multiplied is None:
            total = None
            for t in self.terms:
                P = t[0]
                for f in t[1:]:
                    P = P @ f
                if len(t) == 1:   # a single factor: its blocks as stored operators
                    P = BlockOperator(*(o.materialize() for o in (P.A, P.B, P.C, P.D)))
                total = P if total is None else BlockOperator(
                    *(add_operators(a, b) for a, b in zip((total.A, total.B, total.C, total.D), (P.A, P.B, P.C, P.D))))
            self._multiplied = total
        return self._multiplied

    A = property(lambda self: self.multiplied().A)
    B = property(lambda self: self.multiplied().B)
    C = property(lambda self: self.multiplied().C)
    D = property(lambda self: self.multiplied().D)

    @property
    def nnz(self) -> int:
        """Stored entries of the factors (the sum is not multiplied out)."""
        return int(sum(f.nnz for t in self.terms for f in t))

    @property
    def T(self) -> "BlockSum":
        return BlockSum([[f.T for f in reversed(t)] for t in self.terms])

    def astype(self, dtype) -> "BlockSum":
        return BlockSum([[f.astype(dtype) for f in t] for t in self.terms], self.bias_relevance)

    def is_decoupled(self) -> bool:
        """True when every factor is decoupled (then so is every product and their sum)."""
        return all(f.is_decoupled() for t in self.terms for f in t)

    def collapse(self, atol: float = 0.0) -> Operator:
        """Σ_t Π_k (A_tk + B_tk), when every factor collapses (:meth:`BlockOperator.collapse`); not multiplied out."""
        return Sum([Product([f.collapse(atol) for f in t]) for t in self.terms])

    def __repr__(self):
        return (f"<BlockSum 2x({self.n_in}x{self.n_out}) {np.dtype(self.dtype).name} terms="
                f"{[len(t) for t in self.terms]}>")
