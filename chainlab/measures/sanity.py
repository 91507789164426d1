"""Sanity checks (Sixt et al. §3–4, Adebayo et al. 2018) with SSIM (scikit-image).

Maps: an explanation of input shape (1, C, H, W) is summed over channels to an H×W map, a flat
input of n = s² values is reshaped to s×s (``image_shape`` overrides); each map is divided by its
max |value| so it lies in [−1, 1], and SSIM uses ``data_range=2`` (win_size 7, or the largest odd
size that fits a small map).

* ``random_logit_ssim(chains)``: SSIM between the map of the true logit (``target`` or the
  prediction) and of a random other logit (uniform, seeded), per chain (records
  ``measure="sanity"``, quantity ``ssim_random_logit``).  Needs only ``chain.explain``.
* ``cascading_randomization(model, x, rule)``: re-initialize the Linear/Conv2d layers from the top
  (the last layer first, cumulatively; torch's ``reset_parameters`` under a seed), extract again
  and report SSIM with the original map; as in Sixt we also compare with the inverted map and
  report the maximum (quantity ``ssim_cascading``, layer = the last randomized layer, k = number
  of randomized layers; extra ``ssim_signed`` without the inversion).
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn as nn

from ._common import record

__all__ = ["ssim", "to_map", "random_logit_ssim", "cascading_randomization", "sanity"]


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
            raise ValueError(f"cannot make a square map of {n} values; pass image_shape")
        m = a.reshape(s, s)
    mx = np.abs(m).max()
    return m / mx if mx > 0 else m


def ssim(a, b, image_shape=None) -> float:
    """SSIM of two explanations' maps (scikit-image, data_range 2)."""
    from skimage.metrics import structural_similarity
    A, B = to_map(a, image_shape), to_map(b, image_shape)
    if A.shape != B.shape:
        raise ValueError(f"maps of different shapes {A.shape} and {B.shape}")
    w = min(7, *A.shape)
    w = w if w % 2 == 1 else w - 1
    if w < 3:
        raise ValueError(f"map of shape {A.shape} is too small for SSIM (needs ≥ 3×3)")
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
            raise ValueError("random-logit SSIM needs a model with at least two outputs")
        o = int(rng.choice(others))
        rows.append(record(ch, "sanity", "ssim_random_logit", None, None,
                           ssim(ch.explain(t), ch.explain(o), image_shape), target=t, random_logit=o))
    return rows


def cascading_randomization(model, x, rule, *, seed: int = 0, target=None, extract=None, image_shape=None,
                            **extract_options) -> list[dict]:
    """SSIM with the original map while Linear/Conv2d layers are re-initialized from the top (records)."""
    if extract is None:
        from ..extract import extract
    base = extract(model, x, rule, **extract_options)
    t = base.predicted if target is None else int(target)
    R0 = base.explain(t)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not layers:
        raise ValueError("the model has no Linear/Conv2d layers to randomize")
    rnd = copy.deepcopy(model)
    rows = []
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        for k, (name, _) in enumerate(reversed(layers), start=1):
            rnd.get_submodule(name).reset_parameters()
            ch = extract(rnd, x, rule, **extract_options)
            R = ch.explain(t)
            s = ssim(R0, R, image_shape)
            s_inv = ssim(R0, -R, image_shape)
            rows.append(record(base, "sanity", "ssim_cascading", name, k, max(s, s_inv), ssim_signed=s))
    finally:
        torch.random.set_rng_state(state)
    return rows


def sanity(model, x, rule, *, seed: int = 0, **opts) -> list[dict]:
    """Both checks for one input: random-logit SSIM and cascading randomization."""
    from ..extract import extract
    ext = {k: v for k, v in opts.items() if k not in ("image_shape", "target")}
    ch = extract(model, x, rule, **ext)
    return (random_logit_ssim([ch], target=opts.get("target"), seed=seed, image_shape=opts.get("image_shape"))
            + cascading_randomization(model, x, rule, seed=seed, **opts))
