"""Products of layer matrices at scale: thin wrappers around the numba kernels, and chain products.

Wrappers (check dtype, index width, contiguity and shapes once, then call one kernel):

* :func:`spmm` — A @ B, A scipy CSR/CSC (m × k), B dense (k × n): dense (m × n), row-major.
* :func:`dense_sparse` — A @ S, A dense (m × k), S scipy sparse (k × n): dense (m × n).
* :func:`spgemm` — A @ B of two sparse matrices, a symbolic pass (nnz per column) then a numeric
  pass; CSC result with sorted rows, or dense when the estimated density exceeds ``dense_above``.
* :func:`block_apply`, :func:`block_product` — 2×2 block operators [[A, B], [C, D]] acting on
  stacked signals [r⁺; r⁻].
* :func:`column_norms`, :func:`normalize_columns` — per-column max/ℓ1/ℓ2 norms and renormalization.
* :func:`channel_cosine` — per-location |cosine| of channel vectors of pairs of signals (CSC measure).

Chain products (used by :class:`chainlab.Chain`): :func:`multiply` chooses the representation
of every step — a product stays scipy CSC while its density is at most ``dense_above`` and is
dense (numpy, BLAS for dense × dense) above; :func:`chain_product`, :func:`prefix_products`
(renormalized per step, log-scale kept: true P_k = exp(log_scale) · matrix) and
:func:`stream_apply` (many columns in blocks under a memory budget).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np
import scipy.sparse as sp

from . import kernels as K
from .errors import NotLinearError
from .operators import DenseOperator, Operator, SparseOperator

__all__ = [
    "DENSE_ABOVE", "DEFAULT_MAX_MEMORY", "PrefixProduct", "spmm", "dense_sparse", "spgemm", "block_apply",
    "block_product", "column_norms", "normalize_columns", "channel_cosine", "multiply", "matmat", "chain_product",
    "prefix_products", "stream_apply", "density", "DENSIFY_FOR_DENSE", "DENSIFY_FOR_SPARSE",
]

DENSE_ABOVE = 0.25          # products denser than this are stored dense
DENSIFY_FOR_DENSE = 0.15    # P is made dense before a product with a dense factor above this density
DENSIFY_FOR_SPARSE = 0.3    # … and before a product with a sparse factor above this density
DEFAULT_MAX_MEMORY = 2**31  # bytes of intermediate signals in stream_apply (2 GiB)
_CHUNK = 32                 # columns per parallel task in the SpGEMM kernels
_NORMS = {"max": 0, "l1": 1, "l2": 2}


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


# ---------------------------------------------------------------------------------------------
# argument checks shared by the wrappers

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


def _dense(B, rows, what, dt):
    B = np.asarray(B)
    if B.ndim not in (1, 2) or B.shape[0] != rows:
        raise ValueError(f"{what}: needs a dense operand with {rows} rows, got shape {B.shape}")
    return np.asfortranarray(B.reshape(rows, -1), dtype=dt)


def density(P) -> float:
    """Stored fraction of a matrix: nnz / (m·n) for sparse, nonzero fraction for dense."""
    size = max(P.shape[0] * P.shape[1], 1)
    return (P.nnz if sp.issparse(P) else np.count_nonzero(P)) / size


# ---------------------------------------------------------------------------------------------
# wrappers

def _column_bounds(indptr, tasks):
    """bounds (tasks+1,): column ranges of a CSC matrix with about equal numbers of stored entries."""
    nnz = int(indptr[-1])
    cuts = np.searchsorted(indptr, np.linspace(0, nnz, tasks + 1)[1:-1])
    return np.concatenate([[0], np.minimum(cuts, len(indptr) - 1), [len(indptr) - 1]]).astype(np.int64)


def spmm(A, B):
    """A @ B for a scipy CSR/CSC matrix A (m × k) and a dense B (k × n) or (k,): dense (m × n), row-major
    (a vector for a vector B).  float32 only when both are float32, else float64.

    CSR: rows in parallel (gather).  CSC with at least about one stored entry per row and column: columns
    split over the threads, each scattering into its own m × n slab, slabs summed (extra memory
    (threads − 1)·m·n); sparser CSC (pooling-like) is converted to CSR, which then costs less than the slabs."""
    if not sp.issparse(A):
        raise TypeError(f"spmm: A must be scipy.sparse, got {type(A).__name__}")
    B = np.asarray(B)
    if B.ndim not in (1, 2) or B.shape[0] != A.shape[1]:
        raise ValueError(f"spmm with A of shape {A.shape}: needs a dense operand with {A.shape[1]} rows, "
                         f"got shape {B.shape}")
    scatter = A.format == "csc" and A.nnz >= 2 * (A.shape[0] + A.shape[1])
    A = _sparse(A, "csc" if scatter else "csr", "spmm")
    dt = _value_dtype(A.dtype, B.dtype)
    (ptr, idx), = _index_pair(A)
    data = np.ascontiguousarray(A.data, dt)
    X = np.ascontiguousarray(B, dtype=dt)                      # (k,) or (k, n), row-major
    out = np.empty((A.shape[0],) + X.shape[1:], dt)
    if scatter:
        bounds = _column_bounds(ptr, numba.get_num_threads())
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
        raise ValueError(f"dense_sparse: cannot multiply shapes {A.shape} and {S.shape}")
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
        raise ValueError(f"spgemm: cannot multiply shapes {A.shape} and {B.shape}")
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


def _blocks(blocks):
    (A, B), (C, D) = blocks
    return [b.to_sparse("csc") if isinstance(b, SparseOperator) else (b.array if isinstance(b, DenseOperator) else b)
            for b in (A, B, C, D)]


def block_apply(blocks, V):
    """[o⁺; o⁻] = [[A, B], [C, D]] @ [v⁺; v⁻] for blocks of shape (m × k) and V of shape (2k × n) or (2k,):
    o⁺ = A v⁺ + B v⁻, o⁻ = C v⁺ + D v⁻, result (2m × n).  One fused kernel when all blocks are sparse."""
    A, B, C, D = _blocks(blocks)
    m, k = A.shape
    V = np.asarray(V)
    if V.ndim not in (1, 2) or V.shape[0] != 2 * k:
        raise ValueError(f"block_apply: blocks of shape {(m, k)} need {2 * k} rows, got shape {V.shape}")
    V2 = V.reshape(2 * k, -1)
    if all(sp.issparse(b) for b in (A, B, C, D)):
        Ms = [_sparse(b, "csc", "block_apply") for b in (A, B, C, D)]
        dt = _value_dtype(V.dtype, *(M.dtype for M in Ms))
        args = []
        for (ptr, idx), M in zip(_index_pair(*Ms), Ms):
            args += [ptr, idx, np.ascontiguousarray(M.data, dt)]
        out = np.empty((2 * m, V2.shape[1]), dt, order="F")
        K.block2_csc_dense(*args, np.asfortranarray(V2, dtype=dt), out)
    else:
        top, bot = V2[:k], V2[k:]
        out = np.vstack([matmat(A, top) + matmat(B, bot), matmat(C, top) + matmat(D, bot)])
    return out.reshape(-1) if V.ndim == 1 else out


def block_product(X, Y, *, dense_above: float = DENSE_ABOVE):
    """Product of two 2×2 block matrices ((A, B), (C, D)) @ ((E, F), (G, H)) =
    ((AE + BG, AF + BH), (CE + DG, CF + DH)); blocks are numpy arrays, scipy matrices or operators.
    Blocks of the result are numpy arrays or scipy CSC matrices (representation as :func:`multiply`)."""
    A, B, C, D = _blocks(X)
    E, F, G, H = _blocks(Y)

    def add(P, Q):
        R = P + Q
        return np.asarray(R) if isinstance(R, np.matrix) else R

    mul = lambda P, Q: multiply(P, Q, dense_above=dense_above)  # noqa: E731
    return ((add(mul(A, E), mul(B, G)), add(mul(A, F), mul(B, H))),
            (add(mul(C, E), mul(D, G)), add(mul(C, F), mul(D, H))))


def column_norms(P, ord: str = "max") -> np.ndarray:
    """Per-column norm of a dense or scipy sparse matrix (m × n): max |P_ij| ("max"), Σ_i |P_ij| ("l1") or
    (Σ_i P_ij²)^½ ("l2"); shape (n,), float64."""
    if ord not in _NORMS:
        raise ValueError(f"ord must be one of {', '.join(_NORMS)}, got {ord!r}")
    out = np.empty(P.shape[1], np.float64)
    if sp.issparse(P):
        P = _sparse(P, "csc", "column_norms")
        (ptr, _), = _index_pair(P)
        K.csc_column_norms(ptr, np.ascontiguousarray(P.data), _NORMS[ord], out)
    else:
        P = np.asarray(P)
        if P.ndim != 2:
            raise ValueError(f"column_norms needs a 2-d matrix, got shape {P.shape}")
        K.dense_column_norms(P if P.flags.f_contiguous else np.asfortranarray(P), _NORMS[ord], out)
    return out


def normalize_columns(P, ord: str = "l2"):
    """(P · diag(1/‖P[:, j]‖), norms): a copy of P with every nonzero column scaled to norm 1 (zero columns stay 0)."""
    norms = column_norms(P, ord)
    s = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    if sp.issparse(P):
        Q = _sparse(P, "csc", "normalize_columns").copy()
        if Q.dtype.kind != "f":
            Q = Q.astype(np.float64)
        (ptr, _), = _index_pair(Q)
        K.csc_scale_columns(ptr, Q.data, s.astype(Q.dtype))
    else:
        Q = np.array(P, dtype=_value_dtype(np.asarray(P).dtype), order="F")
        K.dense_scale_columns(Q, s.astype(Q.dtype))
    return Q, norms


def channel_cosine(X, shape, pairs) -> np.ndarray:
    """Per-location |cosine| of channel vectors, for signals X (C·H·W × n) of shape ``shape`` = (C, H, W) in
    torch's flatten order and index pairs (p, 2): out[l, t] = |⟨x_u(l), x_v(l)⟩| / (‖x_u(l)‖ ‖x_v(l)‖) with
    x_u(l) = X[c·HW + l, u] over channels c, (u, v) = pairs[t]; NaN where a channel vector is zero.
    Returns (H·W × p) float64."""
    C = int(shape[0])
    L = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] != C * L:
        raise ValueError(f"channel_cosine: signals of shape {tuple(shape)} need {C * L} rows, got shape {X.shape}")
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if pairs.size and (pairs.min() < 0 or pairs.max() >= X.shape[1]):
        raise ValueError(f"channel_cosine: pair indices must lie in [0, {X.shape[1]}), got {pairs.min()}..{pairs.max()}")
    out = np.empty((L, pairs.shape[0]), np.float64)
    K.channel_cosine(np.asfortranarray(X, dtype=np.float64), C, L, np.ascontiguousarray(pairs[:, 0]),
                     np.ascontiguousarray(pairs[:, 1]), out)
    return out


# ---------------------------------------------------------------------------------------------
# chain products

def matmat(op, V):
    """op @ V for an operator, numpy array or scipy matrix, through the kernels where they apply."""
    if isinstance(op, SparseOperator) or sp.issparse(op):
        return spmm(op.matrix if isinstance(op, SparseOperator) else op, V)
    if isinstance(op, DenseOperator):
        return op.array @ V
    if isinstance(op, np.ndarray):
        return op @ V
    return op.matmat(V)


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
    """P_1 = M as a CSC matrix or a dense array (a copy; implicit operators are materialized)."""
    if isinstance(op, DenseOperator) or isinstance(op, np.ndarray):
        arr = op.array if isinstance(op, DenseOperator) else op
        return _settle(np.array(arr, order="F"), dense_above)
    if isinstance(op, SparseOperator) or sp.issparse(op):
        M = op.matrix if isinstance(op, SparseOperator) else op
        return _settle(M.tocsc(copy=True), dense_above)
    if getattr(op, "kind", None) in ("implicit", "residual"):
        return _settle(op.to_sparse("csc"), dense_above)
    return _settle(op.to_dense(), dense_above)


def multiply(P, op, *, dense_above: float = DENSE_ABOVE):
    """P @ M for a partial product P (numpy array or scipy CSC, m × n) and the next factor M (operator or matrix).

    The representation of the operands is chosen per step by cost: against a dense M, P is made dense
    (BLAS dgemm) once its density exceeds DENSIFY_FOR_DENSE (sparse × dense moves several times fewer
    flops per second than dgemm; measured on 2 shared cores), else :func:`spmm`; against a sparse M, P stays sparse (:func:`spgemm`,
    cost Σ_k nnz(P[:, k])·nnz(M[k, :])) up to density DENSIFY_FOR_SPARSE, above it :func:`dense_sparse`
    (cost m·nnz(M)).  Implicit operators are materialized when P is sparse, else applied as (Mᵀ Pᵀ)ᵀ
    through their own ``rmatmat`` (residual blocks, kind "residual", likewise: multiplied out by ``to_sparse``).
    The result is stored dense above ``dense_above``, else as CSC.
    """
    if isinstance(op, DenseOperator) or isinstance(op, np.ndarray):
        M = op.array if isinstance(op, DenseOperator) else op
        if sp.issparse(P) and density(P) <= DENSIFY_FOR_DENSE:
            return _settle(spmm(P, M), dense_above)
        Pd = P.toarray() if sp.issparse(P) else P
        return _settle(Pd @ M, dense_above)
    if getattr(op, "kind", None) in ("implicit", "residual") and (sp.issparse(P) or density(P) <= DENSIFY_FOR_SPARSE):
        op = op.to_sparse("csc")
    if isinstance(op, SparseOperator) or sp.issparse(op):
        M = op.matrix if isinstance(op, SparseOperator) else op
        d = density(P)
        if sp.issparse(P) and d > DENSIFY_FOR_SPARSE:
            P = P.toarray()
        elif not sp.issparse(P) and d <= DENSIFY_FOR_SPARSE / 2:
            P = sp.csc_matrix(P)
        if sp.issparse(P):
            return _settle(spgemm(P, M, dense_above=dense_above), dense_above)
        return _settle(dense_sparse(P, M), dense_above)
    Pd = P.toarray() if sp.issparse(P) else np.asarray(P)
    return _settle(np.asarray(op.rmatmat(Pd.T)).T, dense_above)


def _check_linear(chain, what):
    if not getattr(chain, "linear", True):
        raise NotLinearError(f"{what}: the chain of rule {chain.rule!r} is not linear (its backward is input-"
                             "dependent); only apply() propagates signals through it")


def _range(chain, start, stop, what):
    L = len(chain)
    stop = L if stop is None else stop
    if not (0 <= start < stop <= L):
        raise ValueError(f"{what}: need 0 <= start < stop <= {L} (the chain's length), got start={start}, stop={stop}")
    return start, stop


def chain_product(chain, start: int = 0, stop: int | None = None, *, dense_above: float = DENSE_ABOVE) -> Operator:
    """M_(start+1) ⋯ M_stop (0-based ``chain[start:stop]``) as a SparseOperator (CSC) or DenseOperator."""
    _check_linear(chain, "product")
    start, stop = _range(chain, start, stop, "product")
    P = _start(chain[start], dense_above)
    for op in chain.operators[start + 1:stop]:
        P = multiply(P, op, dense_above=dense_above)
    return SparseOperator(P) if sp.issparse(P) else DenseOperator(P)


def prefix_products(chain, normalize: bool = True, start: int = 0, stop: int | None = None, *,
                    dense_above: float = DENSE_ABOVE):
    """Yield PrefixProduct(k, matrix, log_scale) for P_k = M_(start+1) ⋯ M_k, k = start+1 … stop (1-based).

    With ``normalize`` every step divides the product by its largest absolute entry s and adds log s
    to ``log_scale``, so P_k = exp(log_scale) · matrix with max |matrix| = 1 (or matrix = 0): deep
    chains neither overflow nor underflow.  Each yielded matrix is a fresh array the caller may keep.
    """
    _check_linear(chain, "prefix_products")
    start, stop = _range(chain, start, stop, "prefix_products")
    log_scale = 0.0
    P = None
    for k in range(start, stop):
        P = _start(chain[k], dense_above) if P is None else multiply(P, chain[k], dense_above=dense_above)
        if normalize:
            s = float(column_norms(P, "max").max()) if P.shape[1] else 0.0
            if s > 0 and np.isfinite(s):
                if sp.issparse(P):
                    P.data /= s
                else:
                    P /= s
                log_scale += math.log(s)
        yield PrefixProduct(k + 1, P, log_scale)


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
        raise ValueError(f"max_memory must be a positive number of bytes, got {max_memory!r}")
    itemsize = max([np.dtype(op.dtype).itemsize for op in ops] + [R2.dtype.itemsize, 8])
    per_col = itemsize * max(op.shape[0] + op.shape[1] for op in ops)
    width = max(1, int(budget // per_col))
    if K_cols <= width:
        out = R2
        for op in reversed(ops):
            out = matmat(op, out)
        return out
    out = None
    for s in range(0, K_cols, width):
        blk = R2[:, s:s + width]
        for op in reversed(ops):
            blk = matmat(op, blk)
        if out is None:
            out = np.empty((blk.shape[0], K_cols), blk.dtype, order="F")
        out[:, s:s + width] = blk
    return out
