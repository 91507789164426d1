"""Data-independent singular-value ratios of weights W, patterns A and W ⊙ A (Sixt et al. Fig. 3).

No input, no ReLU masks, no biases, no pooling: the matrices are the kernels themselves, in the
chain's orientation M = Kᵀ (c_in × c_out), K the layer's weight (or pattern, or W ⊙ A):

* :func:`centre_tap` — a k×k conv kernel (c_out, c_in, k, k) sliced to its centre tap K[:, :, k//2, k//2]
  (Fig. 3b/c: "we sliced the 3x3 convolutional kernels to 1x1 kernels"); a dense layer after a flatten of
  (C, H, W) at the centre location (H//2, W//2) (the authors take fc1 of VGG-16 at [3, 3] of 7×7).
* :func:`full_kernel` — the whole kernel as a (k·k·c_in × c_out) matrix (Fig. 3a, the patterns A).
* :func:`sigma_ratio` — σ1/σ2 (dense SVD).
* :func:`interlayer_ratios` — σ1/σ2 of T_l = √Σ_l V_l U_(l+1) √Σ_(l+1) for consecutive M_l = U_l Σ_l V_l
  (full SVDs, Σ zero-padded to square, as the authors' pattern_attr notebook).
* :func:`fig3` — the records of all three panels for one net: of = "A" (full kernels), "W", "W*A"
  (centre taps) and "T(W)", "T(W*A)" (inter-layer members), quantity ``sigma1/sigma2``.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from . import lapack
from ._common import ratio

__all__ = ["centre_tap", "full_kernel", "sigma_ratio", "interlayer_members_full", "interlayer_ratios", "fig3"]


def centre_tap(K, in_shape=None) -> np.ndarray:
    """M (c_in × c_out) of a conv kernel K (c_out, c_in, kh, kw) at its centre tap, or of a dense weight K
    (n_out, C·H·W) at the centre location of its input of shape ``in_shape`` = (C, H, W) (dense weights on
    flat inputs: Kᵀ itself)."""
    K = np.asarray(K, dtype=np.float64)
    if K.ndim == 4:
        return K[:, :, K.shape[2] // 2, K.shape[3] // 2].T.copy()
    if K.ndim != 2:
        raise InputError(f"a kernel has 2 (dense) or 4 (conv) dimensions, got shape {K.shape}")
    if in_shape is not None and len(in_shape) == 3:
        C, H, W = in_shape
        if C * H * W != K.shape[1]:
            raise InputError(f"dense weight with {K.shape[1]} inputs does not fit the input shape {in_shape}")
        return K.reshape(K.shape[0], C, H, W)[:, :, H // 2, W // 2].T.copy()
    return K.T.copy()


def full_kernel(K) -> np.ndarray:
    """K (c_out, c_in, kh, kw) as the (kh·kw·c_in × c_out) matrix (the authors' ``to_mat``); dense: Kᵀ."""
    K = np.asarray(K, dtype=np.float64)
    if K.ndim == 4:
        return K.transpose(2, 3, 1, 0).reshape(-1, K.shape[0])
    return K.T.copy()


def sigma_ratio(M):
    """σ1/σ2 of a matrix (inf for rank 1, None for 0)."""
    s = lapack.svd(np.asarray(M, dtype=np.float64), compute_uv=False)
    return ratio(float(s[0]), float(s[1]) if s.size > 1 else 0.0)


def _diag(s, n):
    D = np.zeros((n, n))
    k = min(n, s.size)
    D[np.arange(k), np.arange(k)] = s[:k]
    return D


def interlayer_members_full(mats) -> list:
    """T_l = diag(√σ_l) V_l U_(l+1) diag(√σ_(l+1)) (square, zero-padded) for consecutive matrices M_l."""
    svd = [lapack.svd(np.asarray(M, dtype=np.float64), full_matrices=True) for M in mats]
    out = []
    for (_, s1, v1), (u2, s2, _) in zip(svd, svd[1:]):
        if v1.shape[0] != u2.shape[0]:
            raise InputError(f"consecutive matrices do not chain: {v1.shape[0]} outputs, {u2.shape[0]} inputs")
        out.append(_diag(np.sqrt(s1), v1.shape[0]) @ (v1 @ u2) @ _diag(np.sqrt(s2), u2.shape[1]))
    return out


def interlayer_ratios(mats) -> list:
    return [sigma_ratio(T) for T in interlayer_members_full(mats)]


def fig3(layers, *, net=None) -> list[dict]:
    """Records of Fig. 3 for ``layers`` = [{name, W (c_in × c_out centre tap), A (same), A_full}] in forward
    order: σ1/σ2 of A_full, W, W⊙A per layer (k = 1…) and of T_l for W and W⊙A (k = l, layer = name of l)."""
    rows = []

    def rec(of, layer, k, value):
        rows.append({"net": net, "rule": None, "image": None, "measure": "weight_spectra",
                     "quantity": "sigma1/sigma2", "layer": layer, "k": k, "value": value, "of": of})

    for k, L in enumerate(layers, start=1):
        rec("A", L["name"], k, sigma_ratio(L["A_full"]))
        rec("W", L["name"], k, sigma_ratio(L["W"]))
        rec("W*A", L["name"], k, sigma_ratio(L["W"] * L["A"]))
    for of, mats in (("T(W)", [L["W"] for L in layers]), ("T(W*A)", [L["W"] * L["A"] for L in layers])):
        for k, r in enumerate(interlayer_ratios(mats), start=1):
            rec(of, layers[k - 1]["name"], k, r)
    return rows
