"""Explanation maps and their similarity (SSIM, scikit-image): the chain-only half of the sanity checks.

Maps: an explanation of input shape (1, C, H, W) is summed over channels to an H×W map, a flat
input of n = s² values is reshaped to s×s (``image_shape`` overrides); each map is divided by its
max |value| so it lies in [−1, 1], and SSIM uses ``data_range=2`` (win_size 7, or the largest odd
size that fits a small map).

* ``random_logit_ssim(chains)``: SSIM between the map of the true logit (``target`` or the
  prediction) and of a random other logit (uniform, seeded), per chain (records
  ``measure="sanity"``, quantity ``ssim_random_logit``).  Needs only ``chain.explain``.

The model-needing half (cascading parameter randomization) is :mod:`chainlab.studies.sanity`.
"""
from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

from ..errors import InputError
from ._common import record

__all__ = ["ssim", "to_map", "random_logit_ssim"]


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
