"""Guided backprop, deconvnet and RectGrad: the linear parts of the net and the rectifier at each ReLU.

Each stage operator is the stage's *linear part* — Wᵀ of a Linear/Conv2d (no mask), winner-take-all for
max-pools, the gradient of average pools, the identity for a leading ReLU — with, after each ReLU, a
:class:`~chainlab.chain.Rectifier` as its step (the layer's forward mask 1[z > 0] and activation
h = ReLU(z), per image; see :mod:`chainlab.chain.rectified` for the three rectifications).  Only ReLU
activations are rectified, as the methods define.

A residual block is a :class:`~chainlab.linalg.ResidualOperator` of the same stage operators per branch
(nested blocks recursively; the identity for an identity shortcut) with the rectifier of the ReLU after
the sum (z the sum) as its step; as a chain operator it is a :class:`~chainlab.chain.RectifiedResidual`.

Option: ``q`` (rectgrad only) — the percentile of RectGrad's threshold, default 98 as in Sixt et al.
"""
from __future__ import annotations

import numpy as np
import torch

from ..chain import BatchChain, Rectifier
from ..errors import UnsupportedLayerError
from ..linalg import DiagonalOperator, LayerTerms, ResidualOperator, TermsOperator
from ..options import number
from .layers import fixed_operator

__all__ = ["build_rectified", "OWN_OPTIONS"]

OWN_OPTIONS = {"guided-bp": (), "deconv": (), "rectgrad": ("q",)}


def _step(st, rec, rule, q, dtype):
    """(stage operator: linear part with the rectifier of the ReLU after it as its step, layer-rule name)."""
    if st.activation is not None and not st.activation.is_relu:
        raise UnsupportedLayerError(f"rule {rule!r} rectifies ReLUs; layer {st.describe()} is followed by "
                                    f"{st.activation.describe()}")
    B = rec.x.shape[0]
    if st.kind == "activation":   # a leading ReLU: its input is the signal before it
        rect = Rectifier(rule, rec.x.reshape((B,) + rec.in_shape), rec.in_shape, q)
        return DiagonalOperator(None, rec.in_shape, dtype, st.name, act=rect), f"{rule}:relu"
    rect = Rectifier(rule, rec.z, rec.out_shape, q) if st.relu else None
    name = f"{rule}:{st.kind}+relu" if st.relu else f"{rule}:{st.kind}"
    if st.kind == "residual":
        branches, names, rules = [], [], []
        for b_st, b_rec in zip(st.branches, rec.branches):
            steps = [_step(s, r, rule, q, dtype) for s, r in zip(b_st, b_rec)]
            branches.append([op for op, _ in steps])
            names.append([s.name for s in b_st])
            rules.append([nm for _, nm in steps])
        return ResidualOperator(branches, None, rec.in_shape, rec.out_shape, dtype, st.name, rect, names, rules), name
    if st.is_parametric:
        op = TermsOperator(LayerTerms([(None, st.weight, None)]), rec.in_shape, rec.out_shape, st.conv, dtype,
                           st.name)
    else:   # pools without the mask of a following activation: the relevance-space gradient maps carry none
        op = fixed_operator(st, rec, "relevance", "gradient", 1.0, dtype)
    return op.with_act(rect), name


def build_rectified(model, net, xt, records, opts, own: dict, rule: str) -> BatchChain:
    """The rectified stage operators of ``rule`` ("guided-bp", "deconv", "rectgrad") at the inputs ``xt``."""
    q = None
    if rule == "rectgrad":
        q = number("q", own.get("q", 98), f"rule {rule!r}", low=0, high=100)
    dtype = np.float32 if records[-1].out.dtype == torch.float32 else np.float64
    steps = [_step(st, rec, rule, q, dtype) for st, rec in zip(net.stages, records)]
    return BatchChain(
        [op for op, _ in steps], names=[st.name for st in net.stages], shapes=net.shapes(records), x=xt,
        logits=records[-1].out.reshape(xt.shape[0], -1).to(torch.float64), rule=rule, kind="rectified",
        space="gradient", dtype=records[-1].out.dtype,
        options={**opts.record(opts.given), **({"q": q} if q is not None else {})},
        layer_rules=[nm for _, nm in steps], meta={"model": net.source})
