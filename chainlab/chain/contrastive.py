"""Contrastive LRP (Gu et al. 2018, as Sixt et al. 2020 write it in eq. 15): a contrast of two z⁺ maps.

The chain's operators are the z⁺ chain M_1 ⋯ M_L of the input (a linear chain: products, spectra
and every other measure apply to them, and ``apply`` is the z⁺ propagation).  Only the
explanation differs.  With y = f(x) the logits, m_k = e_k the mask of the target class and
P = M_1 ⋯ M_L,

    r_k  = P (y ⊙ m_k)          the z⁺ map of the class        (= the z⁺ explanation of logit k)
    r_¬k = P (y ⊙ (1 − m_k))    the z⁺ map of all other logits, each started at its own value
    n(r) = r / Σ_i r_i           (a map normalized by its sum; n of a map with Σ r = 0 is undefined)

    contrastive-lrp:        explain(k) = max(0, n(r_k) − n(r_¬k))     (eq. 15)
    contrastive-lrp-nomax:  explain(k) =         n(r_k) − n(r_¬k)     (Sixt et al. Fig. 1: "no max is applied")

``explain`` is therefore not linear in the start vector (the normalization and the max), which is
why it is offered as an explanation computed from the linear z⁺ chain, not as a chain of its own.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError
from .base import Chain, check_target

__all__ = ["ContrastiveChain", "contrast"]


def contrast(r_k: torch.Tensor, r_other: torch.Tensor, clip: bool) -> torch.Tensor:
    """max(0, n(r_k) − n(r_¬k)) (without the max for ``clip=False``) per image: r_k, r_other (B, *shape), n(r) = r/Σr
    over each image's map.  A map summing to 0 (or not finite) has no normalization: InputError."""
    out = []
    for r, what in ((r_k, "the target logit"), (r_other, "the other logits")):
        total = r.reshape(r.shape[0], -1).sum(dim=1)
        bad = (total == 0) | ~torch.isfinite(total)
        if bool(bad.any()):
            b = int(torch.nonzero(bad)[0, 0])
            raise InputError(f"contrastive LRP normalizes each map by its sum, but the z⁺ map of {what} sums to "
                             f"{float(total[b])!r}" + (f" (image {b})" if r.shape[0] > 1 else ""))
        out.append(r / total.reshape((-1,) + (1,) * (r.ndim - 1)))
    c = out[0] - out[1]
    return torch.clamp(c, min=0.0) if clip else c


class ContrastiveChain(Chain):
    """The z⁺ chain with the contrastive-LRP explanation (module docstring); ``clip``: apply max(0, ·)."""

    def __init__(self, *args, clip: bool = True, **kw):
        super().__init__(*args, **kw)
        self.clip = bool(clip)

    @classmethod
    def of(cls, chain: Chain, *, rule: str, clip: bool) -> "ContrastiveChain":
        """The contrastive view of a z⁺ ``chain`` (its operators shared, not copied), named ``rule``."""
        return cls(chain.operators, names=chain.names, shapes=chain.shapes, input_shape=chain.input_shape, x=chain.x,
                   logits=chain.logits, rule=rule, options=chain.options, space=chain.space,
                   layer_rules=chain.layer_rules, meta=chain.meta, layer_stats=chain.layer_stats, clip=clip)

    def maps(self, target: int | None = None):
        """(r_k, r_¬k): the z⁺ maps of y ⊙ m_k and of y ⊙ (1 − m_k), each flat (n_input,)."""
        k = check_target(target, self.n_output, self.predicted)
        starts = np.zeros((self.n_output, 2), dtype=self.dtype)
        starts[:, 1] = self.logits
        starts[k, 1] = 0.0
        starts[k, 0] = self.logits[k]
        R = self.apply(starts)
        return R[:, 0], R[:, 1]

    def explain(self, target: int | None = None, of: str = "logit") -> np.ndarray:
        """max(0, n(r_k) − n(r_¬k)) (or without the max, ``clip=False``) in the shape of x."""
        if of != "logit":
            raise InputError(f"contrastive LRP contrasts the z⁺ maps of the logits (of='logit'), not {of!r}")
        r_k, r_other = self.maps(target)
        c = contrast(torch.from_numpy(np.asarray(r_k, np.float64))[None], torch.from_numpy(np.asarray(r_other,
                     np.float64))[None], self.clip)
        return c[0].numpy().reshape(self.input_shape)
