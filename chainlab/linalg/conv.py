"""Convolutions as sparse matrices: the index geometry and the CSC builder (numba, no dense intermediate).

For a 2-d convolution with input C_in × H × W, output C_out × OH × OW and kernel K (C_out ×
C_in/groups × KH × KW), signals flattened in torch's (C, H, W) order, a rule's layer matrix is a
short sum of terms

    M_ij = Σ_t A[t, i] · K_t[co(j), ci(i), kh, kw] · Cf[t, j]       (i in the window of output j)

with A an input factor (T × n_in), K_t a modified kernel and Cf an output factor (T × n_out).
:func:`conv_matrix` builds it column by column straight into CSC arrays (rows sorted) with the
kernels of :mod:`chainlab.kernels.conv`; :func:`conv_nnz` counts the entries without building it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from ..kernels import conv_column_counts, conv_csc_fill

__all__ = ["ConvGeometry", "conv_matrix", "conv_nnz", "pair"]


def pair(v) -> tuple[int, int]:
    """(a, b) of an int or a pair (torch's kernel_size/stride/padding convention)."""
    return tuple(int(x) for x in v) if isinstance(v, (tuple, list)) else (int(v), int(v))


@dataclass(frozen=True)
class ConvGeometry:
    """Index geometry of a 2-d convolution or pooling window (input C×H×W → output C_out×OH×OW)."""

    C_in: int
    H: int
    W: int
    C_out: int
    OH: int
    OW: int
    KH: int
    KW: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int = 1
    dw: int = 1
    groups: int = 1

    @classmethod
    def of(cls, in_shape, out_shape, kernel_size, stride, padding, dilation=1, groups=1) -> "ConvGeometry":
        """From the (C, H, W) shapes and torch's conv/pool parameters (ints or pairs; padding numeric)."""
        C_in, H, W = (int(v) for v in in_shape)
        C_out, OH, OW = (int(v) for v in out_shape)
        (KH, KW), (sh, sw), (ph, pw), (dh, dw) = pair(kernel_size), pair(stride), pair(padding), pair(dilation)
        return cls(C_in, H, W, C_out, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw, int(groups))

    @property
    def n_in(self) -> int:
        return self.C_in * self.H * self.W

    @property
    def n_out(self) -> int:
        return self.C_out * self.OH * self.OW

    def args(self) -> tuple:
        return (self.C_in, self.H, self.W, self.C_out, self.OH, self.OW, self.KH, self.KW,
                self.sh, self.sw, self.ph, self.pw, self.dh, self.dw, self.groups)


def conv_nnz(geom: ConvGeometry, row_active=None, col_active=None) -> np.ndarray:
    """Entries per output column (n_out,) of the geometry's matrix, counting only active rows/columns."""
    rows = np.ones(geom.n_in, bool) if row_active is None else np.asarray(row_active, bool)
    cols = np.ones(geom.n_out, bool) if col_active is None else np.asarray(col_active, bool)
    return conv_column_counts(*geom.args(), rows, cols)


def conv_matrix(geom: ConvGeometry, A: np.ndarray, K: np.ndarray, Cf: np.ndarray, dtype=np.float64) -> sp.csc_matrix:
    """CSC matrix M_ij = Σ_t A[t,i] K[t,co,ci_g,kh,kw] Cf[t,j] of a convolution geometry (no dense intermediate).

    A: (T, n_in), K: (T, C_out, C_in/groups, KH, KW), Cf: (T, n_out).  Row indices are int32 when
    they and the entry count fit, int64 otherwise.
    """
    A = np.ascontiguousarray(A, dtype=np.float64)
    K = np.ascontiguousarray(K, dtype=np.float64)
    Cf = np.ascontiguousarray(Cf, dtype=np.float64)
    T = A.shape[0]
    expect_k = (T, geom.C_out, geom.C_in // geom.groups, geom.KH, geom.KW)
    if A.shape != (T, geom.n_in) or Cf.shape != (T, geom.n_out) or K.shape != expect_k:
        raise InputError(
            f"conv_matrix: shapes A{A.shape}, K{K.shape}, C{Cf.shape} do not match the geometry "
            f"(n_in={geom.n_in}, n_out={geom.n_out}, kernel {expect_k})"
        )
    row_active = (A != 0).any(axis=0)
    counts = conv_nnz(geom, row_active, (Cf != 0).any(axis=0))
    nnz = int(counts.sum())
    idx_dtype = np.int32 if max(nnz, geom.n_in, geom.n_out) < 2**31 - 1 else np.int64
    indptr = np.zeros(geom.n_out + 1, dtype=idx_dtype)
    np.cumsum(counts, out=indptr[1:])
    indices = np.empty(nnz, dtype=idx_dtype)
    data = np.empty(nnz, dtype=np.dtype(dtype))
    conv_csc_fill(*geom.args(), row_active, A, K, Cf, indptr, indices, data)
    M = sp.csc_matrix((data, indices, indptr), shape=(geom.n_in, geom.n_out), copy=False)
    M.has_sorted_indices = True
    return M
