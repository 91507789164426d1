"""Pooling layers as matrices: their torch parameters, windows and the fixed sparse matrices.

A :class:`PoolSpec` holds torch's parameters of one MaxPool2d / AvgPool2d / AdaptiveAvgPool2d
(``apply`` runs it on a batch).  Matrices (n_in × n_out, signals in torch's (C, H, W) order):

* winner-take-all (max-pool): M_ij = col_j if input i is torch's argmax of window j — one entry per
  column (:func:`gather_matrix`);
* average pools: M_ij = a_i · c_j for every input i in window j, where c_j includes the divisor
  1/divisor_j that torch uses (:func:`column_weights`; padding and ``count_include_pad``,
  ``divisor_override`` and adaptive windows as torch) — :func:`window_matrix`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from .conv import ConvGeometry, conv_matrix, conv_nnz, pair

__all__ = ["PoolSpec", "gather_matrix", "window_matrix", "column_weights", "adaptive_windows"]

KINDS = ("maxpool2d", "avgpool2d", "adaptiveavgpool2d")


@dataclass(frozen=True)
class PoolSpec:
    """torch's parameters of a 2-d pooling layer (kind: maxpool2d | avgpool2d | adaptiveavgpool2d)."""

    kind: str
    kernel_size: tuple = (1, 1)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None
    output_size: tuple | None = None

    @classmethod
    def of_module(cls, m) -> "PoolSpec":
        name = type(m).__name__.lower()
        if name == "adaptiveavgpool2d":
            return cls(name, output_size=pair(m.output_size) if m.output_size is not None else None)
        stride = m.stride if m.stride is not None else m.kernel_size
        common = dict(kernel_size=pair(m.kernel_size), stride=pair(stride), padding=pair(m.padding),
                      ceil_mode=bool(m.ceil_mode))
        if name == "maxpool2d":
            return cls(name, dilation=pair(m.dilation), **common)
        return cls(name, count_include_pad=bool(m.count_include_pad), divisor_override=m.divisor_override, **common)

    def apply(self, x: torch.Tensor, return_indices: bool = False):
        """The pooling of a batch x (B, C, H, W); max-pool with ``return_indices`` gives (y, argmax)."""
        if self.kind == "maxpool2d":
            return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                                return_indices=return_indices)
        if self.kind == "avgpool2d":
            y = F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
                             self.divisor_override)
        else:
            y = F.adaptive_avg_pool2d(x, self.output_size)
        return (y, None) if return_indices else y

    def geometry(self, in_shape, out_shape) -> ConvGeometry:
        """Window geometry of an AvgPool2d (one group per channel)."""
        return ConvGeometry.of(in_shape, out_shape, self.kernel_size, self.stride, self.padding, 1, in_shape[0])


def gather_matrix(rows: np.ndarray, col: np.ndarray, n_in: int, dtype=np.float64) -> sp.csc_matrix:
    """Winner-take-all CSC: M[rows_j, j] = col_j, one entry per column (zero entries dropped)."""
    rows = np.asarray(rows, np.int64).reshape(-1)
    col = np.asarray(col, np.float64).reshape(-1)
    n_out = col.size
    keep = col != 0
    indptr = np.zeros(n_out + 1, dtype=np.int64)
    np.cumsum(keep.astype(np.int64), out=indptr[1:])
    idx_dtype = np.int32 if n_in < 2**31 - 1 else np.int64
    return sp.csc_matrix((col[keep].astype(dtype), rows[keep].astype(idx_dtype), indptr.astype(idx_dtype)),
                         shape=(n_in, n_out))


def adaptive_windows(H, W, OH, OW):
    """torch's adaptive pooling windows [hs, he) × [ws, we) in (oh, ow) order."""
    out = []
    for oh in range(OH):
        hs, he = (oh * H) // OH, -((-(oh + 1) * H) // OH)
        for ow in range(OW):
            ws, we = (ow * W) // OW, -((-(ow + 1) * W) // OW)
            out.append((hs, he, ws, we))
    return out


def column_weights(spec: PoolSpec, in_shape, out_shape) -> np.ndarray:
    """1/divisor_j of every output unit of an average pool, as torch computes it; (n_out,)."""
    C, H, W = in_shape
    if spec.kind == "avgpool2d":
        # avg_pool(ones)_j = valid_j / divisor_j, and valid_j counts the window's in-bounds inputs
        mean_of_ones = spec.apply(torch.ones((1, C, H, W), dtype=torch.float64)).reshape(-1).numpy()
        valid = conv_nnz(spec.geometry(in_shape, out_shape))
        return np.divide(mean_of_ones, valid, out=np.zeros_like(mean_of_ones), where=valid > 0)
    _, OH, OW = out_shape
    sizes = np.array([(he - hs) * (we - ws) for (hs, he, ws, we) in adaptive_windows(H, W, OH, OW)], np.float64)
    return np.tile(1.0 / sizes, C)


def window_matrix(spec: PoolSpec, in_shape, out_shape, a: np.ndarray, c: np.ndarray,
                  dtype=np.float64) -> sp.csc_matrix:
    """Average-pool matrix M_ij = a_i · c_j for i in window j (c_j includes 1/divisor_j), CSC."""
    if spec.kind == "avgpool2d":
        geom = spec.geometry(in_shape, out_shape)
        K = np.ones((1, geom.C_out, 1, geom.KH, geom.KW))
        return conv_matrix(geom, np.asarray(a)[None, :], K, np.asarray(c)[None, :], dtype)
    C, H, W = in_shape
    _, OH, OW = out_shape
    rows, cols = [], []
    ch = np.arange(C, dtype=np.int64)
    for p, (hs, he, ws, we) in enumerate(adaptive_windows(H, W, OH, OW)):
        hh, ww = np.meshgrid(np.arange(hs, he), np.arange(ws, we), indexing="ij")
        inplane = (hh * W + ww).reshape(-1)
        rows.append((ch[:, None] * H * W + inplane[None, :]).reshape(-1))
        cols.append(np.repeat(ch * OH * OW + p, inplane.size))
    rows = np.concatenate(rows)
    cols = np.concatenate(cols)
    vals = np.asarray(a)[rows] * np.asarray(c)[cols]
    keep = vals != 0
    M = sp.csc_matrix((vals[keep].astype(dtype), (rows[keep], cols[keep])), shape=(C * H * W, C * OH * OW))
    M.sort_indices()
    return M
