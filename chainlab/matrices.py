"""Explicit backward matrices of single layers.

Every rule for a Linear or Conv2d layer (weight W: n_out × n_in after
unrolling) is written as a short sum of terms

    M = Σ_t diag(a_t) · φ_tᵀ · diag(c_t)          (n_in × n_out)

with a_t a factor over input units (x⁺, x⁻, 1, −l, …), φ_t a modified weight
(W, W⁺, W + γW⁺, W², …) and c_t a factor over output units (the rule's
normalization 1/s(z_j), a ReLU mask, α or −β).  :class:`LayerTerms` holds such
a sum; :func:`materialize` turns it into a dense operator (Linear) or a CSC
sparse operator built directly from the kernel (Conv2d, by the numba kernels in
``chainlab.kernels``) — never through a dense intermediate.

Pooling layers have fixed matrices: max-pool is winner-take-all (one entry
per column, at torch's argmax), average pools are the sum over the window
times the column weight 1/divisor_j.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from .kernels import conv_column_counts, conv_csc_fill
from .operators import DenseOperator, Operator, SparseOperator
from .trace import Record, Stage, conv_padding

__all__ = ["ConvGeometry", "LayerTerms", "materialize", "maxpool_operator", "window_operator", "stabilize"]


def stabilize(d: torch.Tensor, eps: float) -> torch.Tensor:
    """s(d) = d + eps·sign0(d) with sign0(0) = +1 (zennit's stabilizer)."""
    return d + eps * torch.where(d >= 0, 1.0, -1.0).to(d.dtype)


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

    @property
    def n_in(self) -> int:
        return self.C_in * self.H * self.W

    @property
    def n_out(self) -> int:
        return self.C_out * self.OH * self.OW

    def args(self) -> tuple:
        return (self.C_in, self.H, self.W, self.C_out, self.OH, self.OW, self.KH, self.KW,
                self.sh, self.sw, self.ph, self.pw, self.dh, self.dw, self.groups)

    @classmethod
    def of_stage(cls, st: Stage) -> "ConvGeometry":
        m = st.module
        C_in, H, W = st.in_shape
        C_out, OH, OW = st.out_shape
        if st.kind == "conv2d":
            (KH, KW), (sh, sw), (dh, dw) = m.kernel_size, m.stride, m.dilation
            ph, pw = conv_padding(m)
            return cls(C_in, H, W, C_out, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw, m.groups)
        if st.kind == "avgpool2d":
            KH, KW = _pair(m.kernel_size)
            sh, sw = _pair(m.stride if m.stride is not None else m.kernel_size)
            ph, pw = _pair(m.padding)
            return cls(C_in, H, W, C_out, OH, OW, KH, KW, sh, sw, ph, pw, 1, 1, C_in)
        raise ValueError(f"no convolution geometry for stage kind {st.kind!r}")


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v), int(v))


@dataclass
class LayerTerms:
    """M = Σ_t diag(a[t]) φ[t]ᵀ diag(c[t]) for one Linear/Conv2d stage (all float64 numpy).

    a: (T, n_in); phi: (T, *weight.shape); c: (T, n_out);
    bias_relevance: (n_out,) or None — relevance share of the bias per output unit.
    """

    stage: Stage
    a: np.ndarray
    phi: np.ndarray
    c: np.ndarray
    bias_relevance: np.ndarray | None = None


def materialize(terms: LayerTerms, dtype=np.float64) -> Operator:
    """Dense (Linear) or CSC sparse (Conv2d) operator of a :class:`LayerTerms`."""
    st = terms.stage
    live = [t for t in range(terms.a.shape[0]) if terms.a[t].any() and terms.c[t].any()]
    if not live:  # an all-zero matrix: keep one term so the shapes stay defined
        live = [0]
    a, phi, c = terms.a[live], terms.phi[live], terms.c[live]
    if st.kind == "linear":
        # built as Mᵀ = Σ_t diag(c_t) φ_t diag(a_t) in φ's (n_out, n_in) layout, returned as the view M
        Mt = None
        for a_t, phi_t, c_t in zip(a, phi, c):
            term = phi_t * c_t[:, None]
            term *= a_t[None, :]
            Mt = term if Mt is None else Mt.__iadd__(term)
        return DenseOperator(Mt.T.astype(dtype, copy=False), terms.bias_relevance)
    if st.kind == "conv2d":
        geom = ConvGeometry.of_stage(st)
        return SparseOperator(conv_matrix(geom, a, phi, c, dtype), terms.bias_relevance)
    raise ValueError(f"cannot materialize terms of stage kind {st.kind!r}")


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
        raise ValueError(
            f"conv_matrix: shapes A{A.shape}, K{K.shape}, C{Cf.shape} do not match the geometry "
            f"(n_in={geom.n_in}, n_out={geom.n_out}, kernel {expect_k})"
        )
    row_active = (A != 0).any(axis=0)
    col_active = (Cf != 0).any(axis=0)
    counts = conv_column_counts(*geom.args(), row_active, col_active)
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


# ---------------------------------------------------------------------------------------------
# pooling


def maxpool_operator(st: Stage, rec: Record, col: np.ndarray, dtype=np.float64) -> SparseOperator:
    """Winner-take-all: M_ij = col_j if input i is torch's argmax of window j (one entry per column)."""
    C, H, W = st.in_shape
    n_out = int(np.prod(st.out_shape))
    plane = rec.argmax.reshape(C, -1).numpy().astype(np.int64)
    rows = (plane + (np.arange(C, dtype=np.int64) * H * W)[:, None]).reshape(-1)
    keep = col != 0
    counts = keep.astype(np.int64)
    indptr = np.zeros(n_out + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    idx_dtype = np.int32 if C * H * W < 2**31 - 1 else np.int64
    M = sp.csc_matrix(
        (col[keep].astype(dtype), rows[keep].astype(idx_dtype), indptr.astype(idx_dtype)),
        shape=(C * H * W, n_out),
    )
    return SparseOperator(M)


def avgpool_column_weights(st: Stage) -> np.ndarray:
    """1/divisor_j of every output unit of an AvgPool2d or AdaptiveAvgPool2d, as torch computes it."""
    C, H, W = st.in_shape
    m = st.module
    ones = torch.ones((1, C, H, W), dtype=torch.float64)
    if st.kind == "avgpool2d":
        # avg_pool(ones)_j = valid_j / divisor_j, and valid_j counts the window's in-bounds inputs
        mean_of_ones = F.avg_pool2d(ones, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                                    m.divisor_override).reshape(-1).numpy()
        geom = ConvGeometry.of_stage(st)
        valid = conv_column_counts(*geom.args(), np.ones(geom.n_in, bool), np.ones(geom.n_out, bool))
        return np.divide(mean_of_ones, valid, out=np.zeros_like(mean_of_ones), where=valid > 0)
    _, OH, OW = st.out_shape
    sizes = np.array([(he - hs) * (we - ws) for (hs, he, ws, we) in _adaptive_windows(H, W, OH, OW)], np.float64)
    return np.tile(1.0 / sizes, C)


def _adaptive_windows(H, W, OH, OW):
    """torch's adaptive pooling windows [hs, he) × [ws, we) in (oh, ow) order."""
    out = []
    for oh in range(OH):
        hs, he = (oh * H) // OH, -((-(oh + 1) * H) // OH)
        for ow in range(OW):
            ws, we = (ow * W) // OW, -((-(ow + 1) * W) // OW)
            out.append((hs, he, ws, we))
    return out


def window_operator(st: Stage, a: np.ndarray, c: np.ndarray, dtype=np.float64) -> SparseOperator:
    """Average-pool matrix M_ij = a_i · c_j for i in window j (c_j includes 1/divisor_j), CSC."""
    if st.kind == "avgpool2d":
        geom = ConvGeometry.of_stage(st)
        K = np.ones((1, geom.C_out, 1, geom.KH, geom.KW))
        return SparseOperator(conv_matrix(geom, a[None, :], K, c[None, :], dtype))
    C, H, W = st.in_shape
    _, OH, OW = st.out_shape
    rows, cols = [], []
    ch = np.arange(C, dtype=np.int64)
    for p, (hs, he, ws, we) in enumerate(_adaptive_windows(H, W, OH, OW)):
        hh, ww = np.meshgrid(np.arange(hs, he), np.arange(ws, we), indexing="ij")
        inplane = (hh * W + ww).reshape(-1)
        rows.append((ch[:, None] * H * W + inplane[None, :]).reshape(-1))
        cols.append(np.repeat(ch * OH * OW + p, inplane.size))
    rows = np.concatenate(rows)
    cols = np.concatenate(cols)
    vals = a[rows] * c[cols]
    keep = vals != 0
    M = sp.csc_matrix((vals[keep].astype(dtype), (rows[keep], cols[keep])), shape=(C * H * W, C * OH * OW))
    M.sort_indices()
    return SparseOperator(M)
