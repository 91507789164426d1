"""Products of sparse and dense matrices, column norms and channel cosines.

Storage conventions (plain arrays only):

* CSC matrix A (m × k): ``indptr`` (k+1,), ``indices``, ``data``; column c holds rows
  ``indices[indptr[c]:indptr[c+1]]`` with values ``data[...]``.  CSR is the same with rows and
  columns swapped.  Index arrays are int32 or int64 (one compiled version each).
* Dense operands and results are Fortran-ordered (a column is contiguous), except in the sparse ×
  dense kernels, where row-major B and out make the inner loop run over contiguous columns.

Every kernel runs ``prange`` over independent output columns (or blocks of them; rows for CSR ×
dense): a thread writes only its own part, so there are no races and no atomics.
"""
import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def csc_dense(indptr, indices, data, B, out, bounds, work):
    """out = A @ B for CSC A (m × k) and row-major dense B (k × n), out row-major (m × n).

    Task t scatters the columns c in [bounds[t], bounds[t+1]) of A into its own slab S_t (S_0 = out,
    S_t = work[t-1], each m × n): S_t[i, :] += A_ic · B[c, :] (inner loop contiguous over the n columns);
    then out = Σ_t S_t, rows in parallel.  No two tasks write the same memory; work is (T−1, m, n)."""
    n = B.shape[1]
    T = bounds.shape[0] - 1
    for t in prange(T):
        S = out if t == 0 else work[t - 1]
        for i in range(S.shape[0]):
            for j in range(n):
                S[i, j] = 0
        for c in range(bounds[t], bounds[t + 1]):
            for p in range(indptr[c], indptr[c + 1]):
                i = indices[p]
                a = data[p]
                for j in range(n):
                    S[i, j] += a * B[c, j]
    if T > 1:
        for i in prange(out.shape[0]):
            for t in range(T - 1):
                for j in range(n):
                    out[i, j] += work[t, i, j]


@njit(cache=True, parallel=True)
def csc_vector(indptr, indices, data, x, out, bounds, work):
    """y = A @ x for CSC A (m × k) and a vector x (k,): the slab scheme of :func:`csc_dense` with n = 1
    (task t: S_t[indices[p]] += data[p] · x[c] for its columns c; out = Σ_t S_t; work is (T−1, m))."""
    T = bounds.shape[0] - 1
    for t in prange(T):
        S = out if t == 0 else work[t - 1]
        S[:] = 0
        for c in range(bounds[t], bounds[t + 1]):
            v = x[c]
            if v != 0:
                for p in range(indptr[c], indptr[c + 1]):
                    S[indices[p]] += data[p] * v
    if T > 1:
        for i in prange(out.shape[0]):
            for t in range(T - 1):
                out[i] += work[t, i]


@njit(cache=True, parallel=True)
def csr_dense(indptr, indices, data, B, out):
    """out = A @ B for CSR A (m × k) and row-major dense B (k × n), out row-major (m × n):
    out[i, :] = Σ_p data[p] · B[indices[p], :] over the entries p of row i (rows in parallel)."""
    for i in prange(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = 0
        for p in range(indptr[i], indptr[i + 1]):
            a = data[p]
            c = indices[p]
            for j in range(out.shape[1]):
                out[i, j] += a * B[c, j]


@njit(cache=True, parallel=True)
def csr_vector(indptr, indices, data, x, out):
    """y = A @ x for CSR A (m × k): y_i = Σ_p data[p] · x[indices[p]] over row i (rows in parallel, the sum
    kept in a register)."""
    for i in prange(out.shape[0]):
        s = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            s += data[p] * x[indices[p]]
        out[i] = s


@njit(cache=True, parallel=True)
def dense_csc(A, indptr, indices, data, out):
    """out = A @ S for dense A (m × k) and CSC S (k × n):  out[:, j] = Σ_p data[p] · A[:, indices[p]], p in column j."""
    for j in prange(out.shape[1]):
        out[:, j] = 0
        for p in range(indptr[j], indptr[j + 1]):
            v = data[p]
            c = indices[p]
            for i in range(A.shape[0]):
                out[i, j] += A[i, c] * v


@njit(cache=True, parallel=True)
def spgemm_symbolic(m, a_indptr, a_indices, b_indptr, b_indices, cols, chunk):
    """Symbolic pass of C = A @ B (CSC × CSC): counts[t] = |∪_{p in column cols[t] of B} rows(A[:, b_indices[p]])|."""
    counts = np.zeros(cols.shape[0], np.int64)
    for ch in prange((cols.shape[0] + chunk - 1) // chunk):
        mark = np.full(m, -1, np.int64)
        for t in range(ch * chunk, min(cols.shape[0], (ch + 1) * chunk)):
            j = cols[t]
            n = 0
            for p in range(b_indptr[j], b_indptr[j + 1]):
                k = b_indices[p]
                for q in range(a_indptr[k], a_indptr[k + 1]):
                    i = a_indices[q]
                    if mark[i] != t:
                        mark[i] = t
                        n += 1
            counts[t] = n
    return counts


@njit(cache=True, parallel=True)
def spgemm_numeric(m, a_indptr, a_indices, a_data, b_indptr, b_indices, b_data, cols,
                   c_indptr, c_indices, c_data, chunk):
    """Numeric pass of C = A @ B (CSC × CSC → CSC, sorted rows; c_indptr from the symbolic pass) for the
    columns j in ``cols``: C[:, j] = Σ_{p in column j of B} b_data[p] · A[:, b_indices[p]] in a dense accumulator."""
    for ch in prange((cols.shape[0] + chunk - 1) // chunk):
        mark = np.full(m, -1, np.int64)
        acc = np.zeros(m, c_data.dtype)
        for t in range(ch * chunk, min(cols.shape[0], (ch + 1) * chunk)):
            j = cols[t]
            s = c_indptr[j]
            cnt = 0
            for p in range(b_indptr[j], b_indptr[j + 1]):
                v = b_data[p]
                k = b_indices[p]
                for q in range(a_indptr[k], a_indptr[k + 1]):
                    i = a_indices[q]
                    if mark[i] != j:
                        mark[i] = j
                        acc[i] = a_data[q] * v
                        c_indices[s + cnt] = i
                        cnt += 1
                    else:
                        acc[i] += a_data[q] * v
            if cnt * 16 > m:  # dense-ish column: a scan in row order is cheaper than a sort
                cnt = 0
                for i in range(m):
                    if mark[i] == j:
                        c_indices[s + cnt] = i
                        cnt += 1
            else:
                c_indices[s:s + cnt] = np.sort(c_indices[s:s + cnt])
            for u in range(s, s + cnt):
                c_data[u] = acc[c_indices[u]]


@njit(cache=True, parallel=True)
def spgemm_dense(a_indptr, a_indices, a_data, b_indptr, b_indices, b_data, cols, out):
    """C = A @ B (CSC × CSC) into a dense (m × n) out, for the columns j in ``cols``:
    out[:, j] = Σ_{p in column j of B} b_data[p] · A[:, b_indices[p]]."""
    for t in prange(cols.shape[0]):
        j = cols[t]
        out[:, j] = 0
        for p in range(b_indptr[j], b_indptr[j + 1]):
            v = b_data[p]
            k = b_indices[p]
            for q in range(a_indptr[k], a_indptr[k + 1]):
                out[a_indices[q], j] += a_data[q] * v


@njit(cache=True, parallel=True)
def csc_pattern_hash(indptr, indices):
    """h[j]: a 64-bit hash of column j's row pattern (length and indices); equal patterns give equal hashes."""
    n = indptr.shape[0] - 1
    h = np.empty(n, np.int64)
    for j in prange(n):
        x = np.int64(indptr[j + 1] - indptr[j]) * 1000003 + 7
        for p in range(indptr[j], indptr[j + 1]):
            x = x * 1000003 + indices[p] + 1   # wraps around modulo 2^64
        h[j] = x
    return h


@njit(cache=True, parallel=True)
def spgemm_group_symbolic(m, a_indptr, a_indices, b_indptr, b_indices, gptr, gcols):
    """Symbolic pass for groups of columns of B (group g = gcols[gptr[g]:gptr[g+1]]): same[g] tells whether all
    of the group's columns have the row pattern S_g of its first column, r[g] = |∪_{k in S_g} rows(A[:, k])|."""
    G = gptr.shape[0] - 1
    r = np.zeros(G, np.int64)
    same = np.ones(G, np.bool_)
    for g in prange(G):
        j0 = gcols[gptr[g]]
        s0 = b_indptr[j0]
        s = b_indptr[j0 + 1] - s0
        for t in range(gptr[g] + 1, gptr[g + 1]):
            j = gcols[t]
            if b_indptr[j + 1] - b_indptr[j] != s:
                same[g] = False
            else:
                for p in range(s):
                    if b_indices[b_indptr[j] + p] != b_indices[s0 + p]:
                        same[g] = False
                        break
            if not same[g]:
                break
        mark = np.zeros(m, np.bool_)
        n = 0
        for p in range(s0, s0 + s):
            k = b_indices[p]
            for q in range(a_indptr[k], a_indptr[k + 1]):
                if not mark[a_indices[q]]:
                    mark[a_indices[q]] = True
                    n += 1
        r[g] = n
    return r, same


@njit(cache=True, parallel=True)
def spgemm_group_numeric(m, a_indptr, a_indices, a_data, b_indptr, b_indices, b_data, gptr, gcols,
                         c_indptr, c_indices, c_data, dense, out):
    """Numeric pass for groups of columns G of B that share one row pattern S (``same`` groups of
    :func:`spgemm_group_symbolic`): C[R, G] = A[R, S] @ B[S, G], R the union of the rows of A[:, S], accumulated
    as a dense |R| × |G| block with the group's columns innermost (contiguous, SIMD).  Written to CSC
    (sorted rows R in every column of G) or, with ``dense``, into the dense (m × n) ``out``."""
    for g in prange(gptr.shape[0] - 1):
        ng = gptr[g + 1] - gptr[g]
        j0 = gcols[gptr[g]]
        s0 = b_indptr[j0]
        s = b_indptr[j0 + 1] - s0
        pos = np.full(m, -1, np.int64)
        n = 0
        for p in range(s0, s0 + s):
            k = b_indices[p]
            for q in range(a_indptr[k], a_indptr[k + 1]):
                if pos[a_indices[q]] < 0:
                    pos[a_indices[q]] = 0
                    n += 1
        rows = np.empty(n, np.int64)
        n = 0
        for i in range(m):
            if pos[i] == 0:
                pos[i] = n
                rows[n] = i
                n += 1
        acc = np.zeros((n, ng), c_data.dtype)
        bv = np.empty(ng, c_data.dtype)
        for p in range(s):
            k = b_indices[s0 + p]
            for t in range(ng):
                bv[t] = b_data[b_indptr[gcols[gptr[g] + t]] + p]
            for q in range(a_indptr[k], a_indptr[k + 1]):
                row = pos[a_indices[q]]
                a = a_data[q]
                for t in range(ng):
                    acc[row, t] += a * bv[t]
        for t in range(ng):
            j = gcols[gptr[g] + t]
            if dense:
                out[:, j] = 0
                for u in range(n):
                    out[rows[u], j] = acc[u, t]
            else:
                c0 = c_indptr[j]
                for u in range(n):
                    c_indices[c0 + u] = rows[u]
                    c_data[c0 + u] = acc[u, t]


@njit(cache=True, parallel=True)
def dense_column_norms(A, kind, out):
    """out[j] = max_i |A_ij| (kind 0), Σ_i |A_ij| (kind 1) or (Σ_i A_ij²)^½ (kind 2) for dense A (m × n)."""
    for j in prange(A.shape[1]):
        s = 0.0
        for i in range(A.shape[0]):
            v = abs(A[i, j])
            if kind == 0:
                s = max(s, v)
            elif kind == 1:
                s += v
            else:
                s += v * v
        out[j] = np.sqrt(s) if kind == 2 else s


@njit(cache=True, parallel=True)
def csc_column_norms(indptr, data, kind, out):
    """The column norms of :func:`dense_column_norms` for a CSC matrix (only stored entries are read)."""
    for j in prange(indptr.shape[0] - 1):
        s = 0.0
        for p in range(indptr[j], indptr[j + 1]):
            v = abs(data[p])
            if kind == 0:
                s = max(s, v)
            elif kind == 1:
                s += v
            else:
                s += v * v
        out[j] = np.sqrt(s) if kind == 2 else s


@njit(cache=True, parallel=True)
def channel_cosine(X, C, L, first, second, out):
    """Per-location channel cosine of pairs of signals (Sixt's CSC).  X (C·L × n): n signals of shape (C, L)
    in torch's flatten order (L = H·W locations).  For pair t = (u, v) = (first[t], second[t]) and location l:
    out[l, t] = |Σ_c X[cL+l, u] X[cL+l, v]| / (‖X[·L+l, u]‖ ‖X[·L+l, v]‖), NaN when either norm is 0."""
    for t in prange(first.shape[0]):
        u = first[t]
        v = second[t]
        for l in range(L):
            uv = 0.0
            uu = 0.0
            vv = 0.0
            for c in range(C):
                a = X[c * L + l, u]
                b = X[c * L + l, v]
                uv += a * b
                uu += a * a
                vv += b * b
            out[l, t] = abs(uv) / np.sqrt(uu * vv) if (uu > 0 and vv > 0) else np.nan
