"""Sanity checks that change the model (Sixt et al. §4, Adebayo et al. 2018): cascading randomization.

* ``cascading_randomization(model, x, rule)``: re-initialize the Linear/Conv2d layers from the top
  (the last layer first, cumulatively; torch's ``reset_parameters`` under a seed), extract again
  and report SSIM with the original map; as in Sixt we also compare with the inverted map and
  report the maximum (quantity ``ssim_cascading``, layer = the last randomized layer, k = number
  of randomized layers; extra ``ssim_signed`` without the inversion).
* ``sanity(model, x, rule)``: both checks for one input, with the random-logit SSIM of
  :func:`chainlab.measures.random_logit_ssim`.

The extraction function is a parameter (default :func:`chainlab.extract`).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from ..errors import InputError
from ..extraction import extract as _extract
from ..measures._common import record
from ..measures.maps import random_logit_ssim, ssim

__all__ = ["cascading_randomization", "sanity"]


def cascading_randomization(model, x, rule, *, seed: int = 0, target=None, extract=_extract, image_shape=None,
                            **extract_options) -> list[dict]:
    """SSIM with the original map while Linear/Conv2d layers are re-initialized from the top (records)."""
    base = extract(model, x, rule, **extract_options)
    t = base.predicted if target is None else int(target)
    R0 = base.explain(t)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not layers:
        raise InputError("the model has no Linear/Conv2d layers to randomize")
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


def sanity(model, x, rule, *, seed: int = 0, extract=_extract, **opts) -> list[dict]:
    """Both checks for one input: random-logit SSIM and cascading randomization."""
    ext = {k: v for k, v in opts.items() if k not in ("image_shape", "target")}
    ch = extract(model, x, rule, **ext)
    return (random_logit_ssim([ch], target=opts.get("target"), seed=seed, image_shape=opts.get("image_shape"))
            + cascading_randomization(model, x, rule, seed=seed, extract=extract, **opts))
