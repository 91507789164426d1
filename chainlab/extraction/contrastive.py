"""Contrastive LRP (Sixt et al. 2020 eq. 15) as a whole-chain method: the z⁺ chain, a contrastive explanation.

``contrastive-lrp`` and ``contrastive-lrp-nomax`` build the layer-rule chain of z⁺ (:class:`~chainlab.rules.ZPlus`
on every Linear/Conv2d, the fixed matrices of :mod:`.layers` on pools, residual blocks as in
:mod:`.residual`) with every common option the z⁺ rule takes, and return it as a
:class:`~chainlab.chain.ContrastiveChain`, whose ``explain(k)`` is

    max(0, n(r^{z⁺}(x | r_L = y ⊙ m_k)) − n(r^{z⁺}(x | r_L = y ⊙ (1 − m_k)))),   n(r) = r / Σ r

(without the max for ``-nomax``).  The operators are exactly those of ``extract(model, x, "zplus", …)``; a batch
(:func:`~.batch.extract_batch`) propagates through the same z⁺ stages and contrasts the maps per image.
"""
from __future__ import annotations

from ..chain import BatchChain
from ..rules import Composite, ZPlus
from .layerwise import build_layerwise

__all__ = ["VARIANTS", "build_contrastive"]

VARIANTS = {"contrastive-lrp": True, "contrastive-lrp-nomax": False}   # name -> apply max(0, ·)


def build_contrastive(model, net, xt, records, opts, own: dict, rule: str) -> BatchChain:
    """The z⁺ stages of ``net`` at ``xt`` with the contrastive explanation of ``rule`` (a key of VARIANTS)."""
    return build_layerwise(model, net, xt, records, opts, Composite(default=ZPlus(), name=rule), {},
                           kind="contrastive", clip=VARIANTS[rule], name=rule)
