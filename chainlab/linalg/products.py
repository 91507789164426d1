"""Products of many layer matrices: the storage policy of every step.

A partial product P (numpy array or scipy CSC, m × n) is multiplied by the next factor M, any
object of the operator protocol (:mod:`chainlab.linalg.operators`).  The factor is asked two
things only: ``M.stored()`` — its stored matrix (numpy array or scipy CSR/CSC), or None for a
matrix-free operator — and, for matrix-free ones, ``M.to_csc()`` (materialize) or ``M.rmatmat``
(apply).  Never its kind.

:func:`multiply` chooses the representation of every step by cost: against a dense M, P is made
dense (BLAS dgemm) once its density exceeds DENSIFY_FOR_DENSE, else :func:`~.spmat.spmm`; against
a sparse M, P stays sparse (:func:`~.spmat.spgemm`, cost Σ_k nnz(P[:, k])·nnz(M[k, :])) up to
density DENSIFY_FOR_SPARSE, above it :func:`~.spmat.dense_sparse` (cost m·nnz(M)) — or BLAS dgemm on M made
dense when M is denser than BLAS_ABOVE (cost m·k·n at BLAS speed; scripts/bench_products.py).  A matrix-free
M is materialized when P is sparse, else applied as (Mᵀ Pᵀ)ᵀ through its own ``rmatmat``.  The
result is stored dense above ``dense_above``, else as CSC.

On lists of factors (input side first): :func:`product` (M_1 ⋯ M_n as one matrix),
:func:`prefix_products` (every P_k, renormalized per step with a log-scale kept so that deep chains
neither overflow nor underflow) and :func:`stream_apply` (M_1 ⋯ M_n @ R in column blocks under a
memory budget).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from .spmat import column_norms, dense_sparse, density, spgemm, spmm

__all__ = ["DENSE_ABOVE", "DENSIFY_FOR_DENSE", "DENSIFY_FOR_SPARSE", "BLAS_ABOVE", "DEFAULT_MAX_MEMORY", "PrefixProduct",
           "check_chained", "multiply", "product", "prefix_products", "stream_apply"]

DENSE_ABOVE = 0.25          # products denser than this are stored dense
DENSIFY_FOR_DENSE = 0.15    # P is made dense before a product with a dense factor above this density
DENSIFY_FOR_SPARSE = 0.3    # … and before a product with a sparse factor above this density
BLAS_ABOVE = 0.1           # a sparse M denser than this meets a dense P as a dense array (BLAS)
DEFAULT_MAX_MEMORY = 2**31  # bytes of intermediate signals in stream_apply (2 GiB)


class PrefixProduct(NamedTuple):
    """One prefix product P_k = M_1 ⋯ M_k (or M_(start+1) ⋯ M_k): true P_k = exp(log_scale) · matrix.

    k : int — 1-based position in the chain of the last factor; matrix : numpy ndarray or scipy
    csc_matrix (n_input × n_k); log_scale : float (0.0 without normalization).
    """

    k: int
    matrix: object
    log_scale: float

    def value(self):
        """exp(log_scale) · matrix (may overflow/underflow for deep chains — that is why it is kept apart)."""
        return self.matrix * math.exp(self.log_scale)


def _settle(R, dense_above):
    """Representation of a product: scipy CSC at density ≤ dense_above/2 (hysteresis), else dense."""
    if sp.issparse(R):
        if density(R) > dense_above:
            return np.asfortranarray(R.toarray())
        return R.tocsc()
    R = np.asarray(R)
    if R.size and np.count_nonzero(R) <= 0.5 * dense_above * R.size:
        C = sp.csc_matrix(R)
        C.has_sorted_indices = True
        return C
    return R


def _start(op, dense_above):
    """P_1 = M as a CSC matrix or a dense array (a copy; matrix-free operators are materialized)."""
    M = op.stored()
    if M is None:
        return _settle(op.to_csc(), dense_above)
    if sp.issparse(M):
        return _settle(M.tocsc(copy=True), dense_above)
    return _settle(np.array(M, order="F"), dense_above)


def multiply(P, op, *, dense_above: float = DENSE_ABOVE):
    """P @ M for a partial product P (numpy array or scipy CSC, m × n) and the next factor M (see module doc)."""
    M = op.stored()
    if M is None:
        if sp.issparse(P) or density(P) <= DENSIFY_FOR_SPARSE:
            M = op.to_csc()
        else:
            return _settle(np.asarray(op.rmatmat(np.asarray(P).T)).T, dense_above)
    if not sp.issparse(M):
        if sp.issparse(P) and density(P) <= DENSIFY_FOR_DENSE:
            return _settle(spmm(P, M), dense_above)
        Pd = P.toarray() if sp.issparse(P) else P
        return _settle(Pd @ M, dense_above)
    d = density(P)
    if sp.issparse(P) and d > DENSIFY_FOR_SPARSE:
        P = P.toarray()
    elif not sp.issparse(P) and d <= DENSIFY_FOR_SPARSE / 2:
        P = sp.csc_matrix(P)
    if sp.issparse(P):
        return _settle(spgemm(P, M, dense_above=dense_above), dense_above)
    M = M.tocsc()
    counts = np.diff(M.indptr)
    if counts.max(initial=0) <= 1:         # one entry per column at most (a diagonal, a gather): scaled columns of P
        out = np.zeros((P.shape[0], M.shape[1]), np.result_type(P.dtype, M.dtype), order="F")
        Pf = np.asfortranarray(P)                           # contiguous columns (a fancy-indexed gather is 20× slower)
        for j in np.flatnonzero(counts):
            np.multiply(Pf[:, M.indices[M.indptr[j]]], M.data[M.indptr[j]], out=out[:, j])
        return _settle(out, dense_above)
    if density(M) > BLAS_ABOVE and M.shape[0] <= 2 * P.shape[0]:    # M dense: at most twice the result's memory
        return _settle(np.asarray(P) @ M.toarray(), dense_above)
    return _settle(dense_sparse(P, M), dense_above)


def check_chained(ops) -> list:
    """``ops`` as a list after checking that it is non-empty and that consecutive shapes fit."""
    ops = list(ops)
    if not ops:
        raise InputError("a product needs at least one factor")
    for a, b in zip(ops, ops[1:]):
        if a.shape[1] != b.shape[0]:
            raise InputError(f"cannot multiply operators of shapes {a.shape} and {b.shape}")
    return ops


def product(ops, *, dense_above: float = DENSE_ABOVE):
    """M_1 ⋯ M_n of a non-empty list of operators as a numpy array or scipy CSC matrix."""
    ops = check_chained(ops)
    P = _start(ops[0], dense_above)
    for op in ops[1:]:
        P = multiply(P, op, dense_above=dense_above)
    return P


def prefix_products(ops, normalize: bool = True, *, first: int = 1, dense_above: float = DENSE_ABOVE):
    """Yield PrefixProduct(k, matrix, log_scale) for P_k = ops[0] ⋯ ops[i], k = first + i (1-based labels).

    With ``normalize`` every step divides the product by its largest absolute entry s and adds log s
    to ``log_scale``, so P_k = exp(log_scale) · matrix with max |matrix| = 1 (or matrix = 0).  Each
    yielded matrix is a fresh array the caller may keep.
    """
    log_scale = 0.0
    P = None
    for i, op in enumerate(ops):
        P = _start(op, dense_above) if P is None else multiply(P, op, dense_above=dense_above)
        if normalize:
            s = float(column_norms(P, "max").max()) if P.shape[1] else 0.0
            if s > 0 and np.isfinite(s):
                if sp.issparse(P):
                    P.data /= s
                else:
                    P /= s
                log_scale += math.log(s)
        yield PrefixProduct(first + i, P, log_scale)


def stream_apply(ops, R, *, max_memory: float | None = None, basis: bool | None = None):
    """M_1 ⋯ M_n @ R for operators ``ops`` (input side first) and R (n_top × K), streamed in column blocks.

    Block width b is chosen so that one step's input and output blocks, b·(n_in + n_out) values, fit in
    ``max_memory`` bytes (default 2 GiB; the result itself and the operators come on top).  With
    ``basis`` (default: when K > n_top) the n_top unit vectors are propagated instead and the result is
    (M_1 ⋯ M_n I) @ R — the same product associated differently, cheaper when K > n_top.
    """
    ops = list(ops)
    R2 = np.asarray(R)
    K_cols = R2.shape[1]
    n_top = R2.shape[0]
    if basis is None:
        basis = K_cols > n_top
    if basis:
        B = stream_apply(ops, np.eye(n_top, dtype=R2.dtype), max_memory=max_memory, basis=False)
        return B @ R2
    budget = DEFAULT_MAX_MEMORY if max_memory is None else float(max_memory)
    if not budget > 0:
        raise InputError(f"max_memory must be a positive number of bytes, got {max_memory!r}")
    itemsize = max([np.dtype(op.dtype).itemsize for op in ops] + [R2.dtype.itemsize, 8])
    per_col = itemsize * max(op.shape[0] + op.shape[1] for op in ops)
    width = max(1, int(budget // per_col))
    if K_cols <= width:
        out = R2
        for op in reversed(ops):
            out = op.matmat(out)
        return out
    out = None
    for s in range(0, K_cols, width):
        blk = R2[:, s:s + width]
        for op in reversed(ops):
            blk = op.matmat(blk)
        if out is None:
            out = np.empty((blk.shape[0], K_cols), blk.dtype, order="F")
        out[:, s:s + width] = blk
    return out
