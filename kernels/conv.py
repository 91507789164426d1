"""Sparse backward matrices of 2-d convolutions, built straight from the kernel.

Geometry: input (C_in, H, W), output (C_out, OH, OW), kernel (KH, KW), stride
(sh, sw), zero padding (ph, pw), dilation (dh, dw), ``groups``.  Output unit
j = (co, oh, ow) reads input unit i = (ci, ih, iw) through kernel tap (kh, kw)
when ih = oh·sh − ph + kh·dh and iw = ow·sw − pw + kw·dw lie inside the input
and ci is in co's group.  Units are numbered in torch's flatten order.

A rule's matrix is a sum of T terms, each a row factor a_t (over inputs), a
modified kernel φ_t and a column factor c_t (over outputs):

    M_ij = Σ_t a_t[i] · φ_t[co, ci − g·C_in/groups, kh, kw] · c_t[j]     (n_in × n_out)

stored as CSC (column j = output unit j) with sorted row indices.  Rows whose
a_t[i] are all zero and columns whose c_t[j] are all zero hold no entries.
"""
import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def conv_column_counts(C_in, H, W, C_out, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw, groups,
                       row_active, col_active):
    """Entries per column: #{(ci, kh, kw) in the receptive field of j with row_active[i]}."""
    cin_g = C_in // groups
    cout_g = C_out // groups
    counts = np.zeros(C_out * OH * OW, np.int64)
    for co in prange(C_out):
        c0 = (co // cout_g) * cin_g
        for oh in range(OH):
            for ow in range(OW):
                j = (co * OH + oh) * OW + ow
                if not col_active[j]:
                    continue
                n = 0
                for ci in range(c0, c0 + cin_g):
                    for kh in range(KH):
                        ih = oh * sh - ph + kh * dh
                        if ih < 0 or ih >= H:
                            continue
                        for kw in range(KW):
                            iw = ow * sw - pw + kw * dw
                            if iw >= 0 and iw < W and row_active[(ci * H + ih) * W + iw]:
                                n += 1
                counts[j] = n
    return counts


@njit(cache=True, parallel=True)
def conv_csc_fill(C_in, H, W, C_out, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw, groups,
                  row_active, A, K, Cf, indptr, indices, data):
    """Fill CSC ``indices``/``data`` (pre-sized by ``indptr``) with M_ij = Σ_t A[t,i]·K[t,co,ci_g,kh,kw]·Cf[t,j]."""
    T = A.shape[0]
    cin_g = C_in // groups
    cout_g = C_out // groups
    for co in prange(C_out):
        c0 = (co // cout_g) * cin_g
        for oh in range(OH):
            for ow in range(OW):
                j = (co * OH + oh) * OW + ow
                p = indptr[j]
                if indptr[j + 1] == p:
                    continue
                for ci in range(c0, c0 + cin_g):
                    for kh in range(KH):
                        ih = oh * sh - ph + kh * dh
                        if ih < 0 or ih >= H:
                            continue
                        for kw in range(KW):
                            iw = ow * sw - pw + kw * dw
                            if iw < 0 or iw >= W:
                                continue
                            i = (ci * H + ih) * W + iw
                            if not row_active[i]:
                                continue
                            v = 0.0
                            for t in range(T):
                                v += A[t, i] * K[t, co, ci - c0, kh, kw] * Cf[t, j]
                            indices[p] = i
                            data[p] = v
                            p += 1
