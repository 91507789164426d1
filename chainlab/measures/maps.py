"""Explanation maps and their similarity (SSIM, scikit-image): the chain-only half of the sanity checks.

Maps: an explanation of input shape (1, C, H, W) is summed over channels to an H×W map, a flat
input of n = s² values is reshaped to s×s (``image_shape`` overrides); each map is divided by its
max |value| so it lies in [−1, 1], and SSIM uses ``data_range=2`` (win_size 7, or the largest odd
size that fits a small map).

* ``random_logit_ssim(chains)``: SSIM between the map of the true logit (``target`` or the
  prediction) and of a random other logit (uniform, seeded), per chain (records
  ``measure="sanity"``, quantity ``ssim_random_logit``).  Needs only ``chain.explain``.

Sixt et al.'s own protocol (their code), batched over N maps: :func:`reduce_channels` (absmax / sum over
channels per method), :func:`normalize_sanity` (percentile clip and scale to [0, 1]), :func:`ssim_uniform`
(uniform 5×5 window, data_range 2 — skimage's SSIM, vectorized), :func:`ssim_flipped`
(max(SSIM(n(a), n(b)), SSIM(n(a), n(−b)))), :func:`normalize_abs` and :func:`class_difference` (Fig. 1e),
:func:`bootstrap_median` (Fig. 4b's 99 % interval).

The model-needing half (cascading parameter randomization) is :mod:`chainlab.studies.sanity`.
"""
from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

from ..errors import InputError
from ._common import record

__all__ = ["ssim", "to_map", "random_logit_ssim", "REDUCTIONS", "reduce_channels", "normalize_sanity", "ssim_uniform",
           "ssim_flipped", "undefined", "normalize_abs", "class_difference", "bootstrap_median"]


def to_map(expl, image_shape=None) -> np.ndarray:
    """2-D saliency map of an explanation, scaled to [−1, 1] (see module docstring)."""
    a = np.asarray(expl, dtype=np.float64)
    if image_shape is not None:
        m = a.reshape(image_shape)
    elif a.ndim == 4:
        m = a[0].sum(axis=0)
    elif a.ndim == 3:
        m = a.sum(axis=0)
    else:
        n = a.size
        s = int(round(math.sqrt(n)))
        if s * s != n:
            raise InputError(f"cannot make a square map of {n} values; pass image_shape")
        m = a.reshape(s, s)
    mx = np.abs(m).max()
    return m / mx if mx > 0 else m


def ssim(a, b, image_shape=None) -> float:
    """SSIM of two explanations' maps (scikit-image, data_range 2)."""
    A, B = to_map(a, image_shape), to_map(b, image_shape)
    if A.shape != B.shape:
        raise InputError(f"maps of different shapes {A.shape} and {B.shape}")
    w = min(7, *A.shape)
    w = w if w % 2 == 1 else w - 1
    if w < 3:
        raise InputError(f"map of shape {A.shape} is too small for SSIM (needs ≥ 3×3)")
    return float(structural_similarity(A, B, data_range=2.0, win_size=w))


def random_logit_ssim(chains, *, target=None, seed: int = 0, image_shape=None) -> list[dict]:
    """SSIM between the true-logit and a random-logit map, one record per chain."""
    if not isinstance(chains, (list, tuple)):
        chains = [chains]
    rng = np.random.default_rng(seed)
    rows = []
    for ch in chains:
        t = ch.predicted if target is None else int(target)
        others = [j for j in range(len(ch.logits)) if j != t]
        if not others:
            raise InputError("random-logit SSIM needs a model with at least two outputs")
        o = int(rng.choice(others))
        rows.append(record(ch, "sanity", "ssim_random_logit", None, None,
                           ssim(ch.explain(t), ch.explain(o), image_shape), target=t, random_logit=o))
    return rows


# -------------------------------------------------------------------------------------------------
# Sixt et al.'s protocol (their code, WEL::heatmap_postprocess, normalize_sanity, ssim_flipped,
# normalize_visual; see /notes/sixt_protocol.md §3–4), batched over maps

REDUCTIONS = ("absmax", "sum")


def reduce_channels(E, how: str) -> np.ndarray:
    """Explanations E (…, C, H, W) → maps (…, H, W): ``absmax`` max_c |E_c| (gradient-type methods),
    ``sum`` Σ_c E_c (LRP-type methods, DeepLIFT)."""
    E = np.asarray(E, dtype=np.float64)
    if how == "absmax":
        return np.abs(E).max(axis=-3)
    if how == "sum":
        return E.sum(axis=-3)
    raise InputError(f"channel reduction must be one of {', '.join(REDUCTIONS)}, got {how!r}")


def _pct(M, q):
    """Per-map percentile (numpy's linear interpolation) of maps M (N, …) → (N, 1, …)."""
    flat = M.reshape(M.shape[0], -1)
    return np.percentile(flat, q, axis=1).reshape((M.shape[0],) + (1,) * (M.ndim - 1))


def normalize_sanity(M, percentile: float = 99.5) -> np.ndarray:
    """clip((m − P_p(m)) / (P_(100−p)(m) − P_p(m)), 0, 1) per map of M (N, H, W) (Sixt's code: P_p ↦ 0,
    P_(100−p) ↦ 1 — the map is inverted, the same for both maps of a comparison).  A map whose two percentiles
    coincide (a constant map, e.g. an all-zero one) is NaN everywhere, as 0/0 in the authors' code: its SSIM is
    undefined, not 0 (a claim counts such images apart, :func:`undefined`)."""
    M = np.asarray(M, dtype=np.float64)
    vmin, vmax = _pct(M, percentile), _pct(M, 100.0 - percentile)
    den = vmax - vmin
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den != 0, (M - vmin) / np.where(den != 0, den, 1.0), np.nan)
    return np.clip(out, 0.0, 1.0)


def ssim_uniform(A, B, win: int = 5, data_range: float = 2.0) -> np.ndarray:
    """Mean SSIM of map pairs A, B (N, H, W) with a uniform win×win window, K1 = 0.01, K2 = 0.03, sample
    covariance, averaged over the windows that fit (skimage's ``structural_similarity(a, b, win_size=win,
    data_range=data_range)``, which crops (win−1)/2 pixels of its reflect-padded filter); (N,)."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if A.shape != B.shape or A.ndim != 3:
        raise InputError(f"ssim_uniform needs two stacks of maps of one shape (N, H, W), got {A.shape}, {B.shape}")
    if win % 2 != 1 or min(A.shape[1:]) < win:
        raise InputError(f"SSIM window {win} must be odd and fit the maps of shape {A.shape[1:]}")

    def box(X):               # mean over every full win×win window: (N, H−win+1, W−win+1)
        c = np.cumsum(np.cumsum(np.pad(X, ((0, 0), (1, 0), (1, 0))), axis=1), axis=2)
        s = c[:, win:, win:] - c[:, :-win, win:] - c[:, win:, :-win] + c[:, :-win, :-win]
        return s / (win * win)

    ux, uy = box(A), box(B)
    uxx, uyy, uxy = box(A * A), box(B * B), box(A * B)
    cov = win * win / (win * win - 1.0)
    vx, vy, vxy = cov * (uxx - ux * ux), cov * (uyy - uy * uy), cov * (uxy - ux * uy)
    C1, C2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    S = ((2 * ux * uy + C1) * (2 * vxy + C2)) / ((ux * ux + uy * uy + C1) * (vx + vy + C2))
    return S.reshape(S.shape[0], -1).mean(axis=1)


def ssim_flipped(X, Y, percentile: float = 99.5, win: int = 5, data_range: float = 2.0) -> np.ndarray:
    """max(SSIM(n(x), n(y)), SSIM(n(x), n(−y))) per pair of maps X, Y (N, H, W), n = :func:`normalize_sanity`
    (Sixt's ``ssim_flipped``: a sign flip is not a different explanation); (N,)."""
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    nx = normalize_sanity(X, percentile)
    return np.maximum(ssim_uniform(nx, normalize_sanity(Y, percentile), win, data_range),
                      ssim_uniform(nx, normalize_sanity(-Y, percentile), win, data_range))


def undefined(values) -> int:
    """How many per-image values are NaN (an SSIM with a constant map, :func:`normalize_sanity`)."""
    return int(np.isnan(np.asarray(values, dtype=np.float64)).sum())


def normalize_abs(X, percentile: float = 99.5) -> np.ndarray:
    """|normalize_visual(x, p)| per map of X (N, …): positives / P_p(x), negatives / −P_(100−p)(x), clipped to
    [−1, 1]; a map of one sign: |x| / P_p(|x|) (Sixt's two_classes notebook); (N, …) in [0, 1] (one sign: ≥ 0)."""
    X = np.asarray(X, dtype=np.float64)
    out = np.empty_like(X)
    for i, x in enumerate(X):
        if (x > 0).all() or (x < 0).all():
            a = np.abs(x)
            out[i] = a / np.percentile(a, percentile)
            continue
        vmax, vmin = np.percentile(x, percentile), np.percentile(x, 100.0 - percentile)
        pos, neg = x * (x >= 0), x * (x < 0)
        if vmax != 0:
            pos = pos / vmax
        if vmin != 0:
            neg = -neg / vmin
        out[i] = np.abs(np.clip(pos + neg, -1.0, 1.0))
    return out


def class_difference(A, B, percentile: float = 99.5) -> tuple[np.ndarray, np.ndarray]:
    """(mean, sum) over the elements of |normalize_abs(a) − normalize_abs(b)| per pair of full explanations
    A, B (N, …) (no channel reduction) — Sixt's "L1-norm" 0.000371 of Fig. 1e is the mean."""
    D = np.abs(normalize_abs(A, percentile) - normalize_abs(B, percentile)).reshape(len(A), -1)
    return D.mean(axis=1), D.sum(axis=1)


def bootstrap_median(values, *, resamples: int = 10_000, level: float = 0.99, seed: int = 0) -> tuple:
    """(median, lower, upper): the percentile bootstrap interval of the median (``resamples`` draws with
    replacement; Sixt's Fig. 4b: 10 000 resamples, 99 %)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        return None, None, None
    idx = np.random.default_rng(seed).integers(0, v.size, size=(resamples, v.size))
    stats = np.median(v[idx], axis=1)
    a = (1.0 - level) / 2 * 100
    return float(np.median(v)), float(np.percentile(stats, a)), float(np.percentile(stats, 100 - a))
