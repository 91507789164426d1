"""Faithfulness of an explanation map by pixel deletion and insertion (Petsiuk et al. 2018, RISE §4.1).

For an image x (C, H, W), its map m (H, W) — the map whose EF is measured: the signed channel sum — a
baseline image b (C, H, W) and the class k:

* the pixels (positions of the H×W grid, all channels together) are ordered by m, largest first (ties by
  position: a stable sort);
* step t = 0 … T changes the first n_t = round(t·HW/T) pixels of that order: deletion replaces them in x by
  b, insertion puts them from x into b;
* s_t = softmax(f(x_t))_k, and the area under the curve over the fraction changed, by the trapezoid rule:
      AUC = (1/T) · (Σ_{t=0..T} s_t − (s_0 + s_T)/2).

A faithful map names first the pixels the class needs: deleting them drops p_k fast (low deletion AUC),
inserting them raises it fast (high insertion AUC).  ``faithfulness = insertion − deletion`` (higher = more
faithful).  The models are run in batches without gradients; X, maps and the baseline are numpy arrays.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError

__all__ = ["pixel_order", "step_counts", "deletion_insertion", "trapezoid_auc"]


def pixel_order(maps) -> np.ndarray:
    """(n, H·W) pixel indices of every map (n, H, W), largest value first, ties by index."""
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim != 3:
        raise InputError(f"pixel_order needs maps (n, H, W), got shape {m.shape}")
    return np.argsort(-m.reshape(m.shape[0], -1), axis=1, kind="stable")


def step_counts(n_pixels: int, steps: int) -> np.ndarray:
    """n_t = round(t·HW/T) for t = 0 … T."""
    if steps < 1:
        raise InputError(f"faithfulness needs at least one step, got {steps}")
    return np.rint(np.arange(steps + 1) * n_pixels / steps).astype(np.int64)


def trapezoid_auc(scores) -> np.ndarray:
    """AUC of (…, T + 1) scores over t/T ∈ [0, 1] by the trapezoid rule."""
    s = np.asarray(scores, dtype=np.float64)
    T = s.shape[-1] - 1
    return (s.sum(axis=-1) - 0.5 * (s[..., 0] + s[..., -1])) / T


def deletion_insertion(model, X, maps, targets, baseline, *, steps: int = 16, batch: int = 512) -> tuple:
    """(deletion AUC (n,), insertion AUC (n,), deletion scores (n, T+1), insertion scores (n, T+1)) — see the
    module docstring.  X (n, C, H, W); maps (n, H, W); targets (n,); baseline (C, H, W) or (n, C, H, W)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 4:
        raise InputError(f"deletion/insertion needs images (n, C, H, W), got shape {X.shape}")
    n, C, H, W = X.shape
    maps = np.asarray(maps, dtype=np.float64)
    if maps.shape != (n, H, W):
        raise InputError(f"maps of shape {maps.shape} for images {X.shape}: need (n, H, W)")
    B = np.broadcast_to(np.asarray(baseline, dtype=np.float64), X.shape)
    t = np.asarray(targets, dtype=np.int64).reshape(-1)
    order = pixel_order(maps)
    counts = step_counts(H * W, steps)
    rank = np.empty_like(order)
    rank[np.arange(n)[:, None], order] = np.arange(H * W)[None, :]
    dtype = next(model.parameters()).dtype
    scores = {}
    for mode in ("deletion", "insertion"):
        out = np.empty((n, steps + 1))
        for s in range(0, n, max(1, batch // (steps + 1))):
            idx = slice(s, min(n, s + max(1, batch // (steps + 1))))
            changed = (rank[idx, None, :] < counts[None, :, None]).reshape(-1, 1, H, W)      # (k·(T+1), 1, H, W)
            x = np.repeat(X[idx], steps + 1, axis=0)
            b = np.repeat(B[idx], steps + 1, axis=0)
            xt = np.where(changed, b, x) if mode == "deletion" else np.where(changed, x, b)
            with torch.no_grad():
                p = torch.softmax(model(torch.as_tensor(xt, dtype=dtype)).double(), dim=1).numpy()
            k = np.repeat(t[idx], steps + 1)
            out[idx] = p[np.arange(p.shape[0]), k].reshape(-1, steps + 1)
        scores[mode] = out
    return trapezoid_auc(scores["deletion"]), trapezoid_auc(scores["insertion"]), scores["deletion"], scores["insertion"]
