"""Thin wrappers over the numba kernels: checks once, then one kernel call.

* :func:`spmm` — A @ B, A scipy CSR/CSC (m × k), B dense (k × n) or (k,): dense (m × n), row-major.
* :func:`dense_sparse` — A @ S, A dense (m × k), S scipy sparse (k × n): dense (m × n), Fortran order.
* :func:`spgemm` — A @ B of two sparse matrices, a symbolic pass (nnz per column) then a numeric
  pass; CSC result with sorted rows, or dense when the estimated density exceeds ``dense_above``.
* :func:`column_norms` — per-column max/ℓ1/ℓ2 norms of a dense or sparse matrix.
* :func:`channel_cosine` — per-location |cosine| of the channel vectors of pairs of signals (Sixt's CSC).
* :func:`density` — stored fraction of a dense or sparse matrix.

Values are float32 only when every operand is float32, else float64; index arrays keep their width
(int32 unless one operand needs int64).  The kernels themselves (``chainlab.kernels``) see plain arrays.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .. import kernels as K
from ..errors import InputError

__all__ = ["spmm", "dense_sparse", "spgemm", "column_norms", "channel_cosine", "density"]

_CHUNK = 32                 # columns per parallel task in the SpGEMM kernels
_SCATTER_TASKS = 16         # most column tasks of a CSC × dense product (fixed: sums independent of the threads)
_SLAB_BYTES = 256 << 20     # most extra memory of those tasks' slabs
_NORMS = {"max": 0, "l1": 1, "l2": 2}


def _value_dtype(*dtypes):
    dt = np.result_type(*dtypes)
    return np.dtype(np.float32) if dt == np.float32 else np.dtype(np.float64)


def _sparse(M, fmt, what):
    if not sp.issparse(M):
        raise TypeError(f"{what}: expected a scipy.sparse matrix, got {type(M).__name__}")
    M = M.asformat(fmt)
    if M.indptr.dtype != M.indices.dtype or M.indices.dtype not in (np.int32, np.int64):
        M = M.copy()
        M.indptr = M.indptr.astype(np.int64)
        M.indices = M.indices.astype(np.int64)
    return M


def _index_pair(*Ms):
    """Index arrays of several sparse matrices in one common width (int32 unless one of them needs int64)."""
    wide = any(M.indices.dtype == np.int64 for M in Ms)
    it = np.int64 if wide else np.int32
    return [(np.ascontiguousarray(M.indptr, it), np.ascontiguousarray(M.indices, it)) for M in Ms]


def density(P) -> float:
    """Stored fraction of a matrix: nnz / (m·n) for sparse, nonzero fraction for dense."""
    size = max(P.shape[0] * P.shape[1], 1)
    return (P.nnz if sp.issparse(P) else np.count_nonzero(P)) / size


def _column_bounds(indptr, tasks):
    """bounds (tasks+1,): column ranges of a CSC matrix with about equal numbers of stored entries."""
    nnz = int(indptr[-1])
    cuts = np.searchsorted(indptr, np.linspace(0, nnz, tasks + 1)[1:-1])
    return np.concatenate([[0], np.minimum(cuts, len(indptr) - 1), [len(indptr) - 1]]).astype(np.int64)


def scatter_tasks(nnz: int, m: int, n: int, itemsize: int) -> int:
    """Column tasks T of a CSC (m × k, nnz stored) × dense (k × n) product: a function of the shapes only, never of
    the thread count, so the summation order — and every bit of the result — is the same on 1 or 64 threads.
    T ≤ 16; T ≤ nnz / (2m) (summing the T slabs, T·m·n, costs at most half the scatter, nnz·n); the T − 1 extra
    slabs stay under 256 MB."""
    T = min(_SCATTER_TASKS, nnz // max(2 * m, 1), 1 + _SLAB_BYTES // max(m * n * itemsize, 1))
    return max(int(T), 1)


def spmm(A, B):
    """A @ B for a scipy CSR/CSC matrix A (m × k) and a dense B (k × n) or (k,): dense (m × n), row-major
    (a vector for a vector B).  float32 only when both are float32, else float64.

    CSR: rows in parallel (gather).  CSC with at least about one stored entry per row and column: columns
    split into T tasks (:func:`scatter_tasks`, independent of the thread count), each scattering into its own
    m × n slab, slabs summed in task order (extra memory (T − 1)·m·n); sparser CSC (pooling-like) is converted
    to CSR, which then costs less than the slabs.  Every path gives bit-identical results on any number of
    threads (each output entry is summed in an order fixed by A alone)."""
    if not sp.issparse(A):
        raise TypeError(f"spmm: A must be scipy.sparse, got {type(A).__name__}")
    B = np.asarray(B)
    if B.ndim not in (1, 2) or B.shape[0] != A.shape[1]:
        raise InputError(f"spmm with A of shape {A.shape}: needs a dense operand with {A.shape[1]} rows, "
                         f"got shape {B.shape}")
    scatter = A.format == "csc" and A.nnz >= 2 * (A.shape[0] + A.shape[1])
    A = _sparse(A, "csc" if scatter else "csr", "spmm")
    dt = _value_dtype(A.dtype, B.dtype)
    (ptr, idx), = _index_pair(A)
    data = np.ascontiguousarray(A.data, dt)
    X = np.ascontiguousarray(B, dtype=dt)                      # (k,) or (k, n), row-major
    out = np.empty((A.shape[0],) + X.shape[1:], dt)
    if scatter:
        bounds = _column_bounds(ptr, scatter_tasks(A.nnz, A.shape[0], X.shape[1] if X.ndim == 2 else 1, dt.itemsize))
        slabs = np.empty((len(bounds) - 2,) + out.shape, dt)
        (K.csc_vector if X.ndim == 1 else K.csc_dense)(ptr, idx, data, X, out, bounds, slabs)
    else:
        (K.csr_vector if X.ndim == 1 else K.csr_dense)(ptr, idx, data, X, out)
    return out


def dense_sparse(A, S):
    """A @ S for a dense A (m × k) and a scipy sparse S (k × n): dense (m × n), Fortran order."""
    S = _sparse(S, "csc", "dense_sparse")
    A = np.asarray(A)
    if A.ndim != 2 or A.shape[1] != S.shape[0]:
        raise InputError(f"dense_sparse: cannot multiply shapes {A.shape} and {S.shape}")
    dt = _value_dtype(A.dtype, S.dtype)
    (ptr, idx), = _index_pair(S)
    out = np.empty((A.shape[0], S.shape[1]), dt, order="F")
    K.dense_csc(np.asfortranarray(A, dtype=dt), ptr, idx, np.ascontiguousarray(S.data, dt), out)
    return out


def spgemm(A, B, *, dense_above: float | None = None, sample: int = 512, group: bool = True):
    """C = A @ B of two scipy sparse matrices (m × k, k × n), column by column:
    C[:, j] = Σ_{p in column j of B} B_pj · A[:, p].

    A symbolic pass counts the entries of every column, a numeric pass fills a CSC matrix with sorted
    rows.  Columns of B with identical row patterns (all output channels of a conv at one location)
    are grouped: their product is one dense block A[R, S] @ B[S, G] with the group's columns innermost.
    With ``dense_above`` set, C is returned as a dense Fortran-order array when its density (exact for
    grouped columns, else estimated from ``sample`` evenly spaced columns) exceeds the threshold.
    """
    A = _sparse(A, "csc", "spgemm")
    B = _sparse(B, "csc", "spgemm")
    if A.shape[1] != B.shape[0]:
        raise InputError(f"spgemm: cannot multiply shapes {A.shape} and {B.shape}")
    m, n = A.shape[0], B.shape[1]
    dt = _value_dtype(A.dtype, B.dtype)
    (ap, ai), (bp, bi) = _index_pair(A, B)
    ad, bd = np.ascontiguousarray(A.data, dt), np.ascontiguousarray(B.data, dt)
    cols = np.arange(n, dtype=np.int64)
    gptr = gcols = None
    if group and n >= 8 and m:
        gptr, gcols = _pattern_groups(bp, bi)
        if gptr.size - 1 > n // 4:      # few repeated patterns: the per-column kernels are better
            gptr = None
    if gptr is not None:
        r, same = K.spgemm_group_symbolic(m, ap, ai, bp, bi, gptr, gcols)
        sizes = np.diff(gptr)
        keep = same & (sizes > 1)
        rest = np.sort(np.concatenate([gcols[gptr[g]:gptr[g + 1]] for g in np.flatnonzero(~keep)] or
                                      [np.zeros(0, np.int64)]))
        gptr_s = np.concatenate([[0], np.cumsum(sizes[keep])]).astype(np.int64)
        gcols_s = np.concatenate([gcols[gptr[g]:gptr[g + 1]] for g in np.flatnonzero(keep)] or
                                 [np.zeros(0, np.int64)]).astype(np.int64)
        counts = np.zeros(n, np.int64)
        counts[gcols_s] = np.repeat(r[keep], sizes[keep])
        counts[rest] = K.spgemm_symbolic(m, ap, ai, bp, bi, rest, _CHUNK)
        nnz = int(counts.sum())
        if dense_above is not None and nnz > dense_above * m * n:
            out = np.empty((m, n), dt, order="F")
            K.spgemm_group_numeric(m, ap, ai, ad, bp, bi, bd, gptr_s, gcols_s, bp, bi, bd, True, out)
            K.spgemm_dense(ap, ai, ad, bp, bi, bd, rest, out)
            return out
        cols = rest
    else:
        if dense_above is not None and m and n:
            smp = np.unique(np.linspace(0, n - 1, min(n, sample)).astype(np.int64))
            est = K.spgemm_symbolic(m, ap, ai, bp, bi, smp, _CHUNK).sum() / (smp.size * m)
            if est > dense_above:
                out = np.empty((m, n), dt, order="F")
                K.spgemm_dense(ap, ai, ad, bp, bi, bd, cols, out)
                return out
        counts = K.spgemm_symbolic(m, ap, ai, bp, bi, cols, _CHUNK)
        nnz = int(counts.sum())
    it = np.int32 if max(nnz, m, n) < 2**31 - 1 else np.int64
    indptr = np.zeros(n + 1, it)
    np.cumsum(counts, out=indptr[1:])
    indices, data = np.empty(nnz, it), np.empty(nnz, dt)
    if it != ai.dtype:
        ap, ai, bp, bi = (x.astype(it) for x in (ap, ai, bp, bi))
    if gptr is not None:
        K.spgemm_group_numeric(m, ap, ai, ad, bp, bi, bd, gptr_s, gcols_s, indptr, indices, data, False,
                               np.zeros((1, 1), dt))
    K.spgemm_numeric(m, ap, ai, ad, bp, bi, bd, cols, indptr, indices, data, _CHUNK)
    C = sp.csc_matrix((data, indices, indptr), shape=(m, n), copy=False)
    C.has_sorted_indices = True
    return C


def _pattern_groups(indptr, indices, max_group: int = 256):
    """Columns grouped by the hash of their row pattern (groups of at most ``max_group``): (gptr, gcols)."""
    h = K.csc_pattern_hash(indptr, indices)
    order = np.argsort(h, kind="stable").astype(np.int64)
    hs = h[order]
    starts = np.flatnonzero(np.r_[True, hs[1:] != hs[:-1]])
    bounds = []
    for a, b in zip(starts, np.r_[starts[1:], hs.size]):
        bounds.extend(range(a, b, max_group))
    gptr = np.r_[bounds, hs.size].astype(np.int64)
    return gptr, order


def column_norms(P, ord: str = "max") -> np.ndarray:
    """Per-column norm of a dense or scipy sparse matrix (m × n): max |P_ij| ("max"), Σ_i |P_ij| ("l1") or
    (Σ_i P_ij²)^½ ("l2"); shape (n,), float64."""
    if ord not in _NORMS:
        raise InputError(f"ord must be one of {', '.join(_NORMS)}, got {ord!r}")
    out = np.empty(P.shape[1], np.float64)
    if sp.issparse(P):
        P = _sparse(P, "csc", "column_norms")
        (ptr, _), = _index_pair(P)
        K.csc_column_norms(ptr, np.ascontiguousarray(P.data), _NORMS[ord], out)
    else:
        P = np.asarray(P)
        if P.ndim != 2:
            raise InputError(f"column_norms needs a 2-d matrix, got shape {P.shape}")
        K.dense_column_norms(P if P.flags.f_contiguous else np.asfortranarray(P), _NORMS[ord], out)
    return out


def channel_cosine(X, shape, pairs) -> np.ndarray:
    """Per-location |cosine| of channel vectors, for signals X (C·H·W × n) of shape ``shape`` = (C, H, W) in
    torch's flatten order and index pairs (p, 2): out[l, t] = |⟨x_u(l), x_v(l)⟩| / (‖x_u(l)‖ ‖x_v(l)‖) with
    x_u(l) = X[c·HW + l, u] over channels c, (u, v) = pairs[t]; NaN where a channel vector is zero.
    Returns (H·W × p) float64."""
    C = int(shape[0])
    L = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] != C * L:
        raise InputError(f"channel_cosine: signals of shape {tuple(shape)} need {C * L} rows, got shape {X.shape}")
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if pairs.size and (pairs.min() < 0 or pairs.max() >= X.shape[1]):
        raise InputError(f"channel_cosine: pair indices must lie in [0, {X.shape[1]}), got {pairs.min()}..{pairs.max()}")
    out = np.empty((L, pairs.shape[0]), np.float64)
    K.channel_cosine(np.asfortranarray(X, dtype=np.float64), C, L, np.ascontiguousarray(pairs[:, 0]),
                     np.ascontiguousarray(pairs[:, 1]), out)
    return out
