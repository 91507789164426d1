"""Guided backprop, deconvnet and RectGrad: the linear parts of the net and the rectifier at each ReLU.

The chain (:class:`~chainlab.chain.RectifiedChain`) holds per stage the *linear part* only — Wᵀ of
a Linear/Conv2d (no mask), winner-take-all for max-pools, the gradient of average pools, the
identity for a leading ReLU — and, after each ReLU, a :class:`~chainlab.chain.Rectifier` with the
layer's forward mask 1[z > 0] and activation h = ReLU(z) (see :mod:`chainlab.chain.rectified` for
the three rectifications).  Only ReLU activations are rectified, as the methods define.

A residual block becomes a :class:`~chainlab.chain.RectifiedResidual`: the same (linear part,
rectifier) steps for the stages of each branch (nested blocks recursively), the identity for an
identity shortcut; the ReLU after the sum is rectified like any other ReLU, with z the sum.

Option: ``q`` (rectgrad only) — the percentile of RectGrad's threshold, default 98 as in Sixt et al.
"""
from __future__ import annotations

import numpy as np

from ..chain import RectifiedChain, RectifiedResidual, Rectifier
from ..errors import UnsupportedLayerError
from ..linalg import Diagonal, LayerTerms, TermsOperator
from ..options import number
from .layers import fixed_operator

__all__ = ["build_rectified", "OWN_OPTIONS"]

OWN_OPTIONS = {"guided-bp": (), "deconv": (), "rectgrad": ("q",)}


def _linear_part(st, rec, dtype):
    """Wᵀ (no mask) of a stage as a stored operator n_in × n_out; pools: their gradient."""
    if st.is_parametric:
        n_in, n_out = int(np.prod(rec.in_shape)), int(np.prod(rec.out_shape))
        terms = LayerTerms(np.ones((1, n_in)), st.weight.numpy()[None], np.ones((1, n_out)))
        return TermsOperator(terms, rec.in_shape, rec.out_shape, st.conv, dtype, st.name).materialize()
    if st.kind == "activation":
        return Diagonal(np.ones(int(np.prod(rec.in_shape)), dtype)).materialize()
    # pools without the mask of a following activation: the relevance-space gradient matrices carry none
    return fixed_operator(st, rec, "relevance", "gradient", 1.0, dtype, True)


def _rectifier(st, rec, rule, q):
    """(rectifier of the ReLU after stage ``st`` or None, its layer-rule name)."""
    if st.activation is not None and not st.activation.is_relu:
        raise UnsupportedLayerError(f"rule {rule!r} rectifies ReLUs; layer {st.describe()} is followed by "
                                    f"{st.activation.describe()}")
    if st.kind == "activation":   # a leading ReLU: its input is the signal before it
        x = rec.x.reshape(-1).numpy()
        return Rectifier(rule, (x > 0).astype(np.float64), np.maximum(x, 0.0), q), f"{rule}:relu"
    if st.relu:
        z = rec.z.reshape(-1).numpy()
        return Rectifier(rule, (z > 0).astype(np.float64), np.maximum(z, 0.0), q), f"{rule}:{st.kind}+relu"
    return None, f"{rule}:{st.kind}"


def _step(st, rec, rule, q, dtype):
    """(linear part or RectifiedResidual, rectifier or None, layer-rule name) of one stage."""
    rect, name = _rectifier(st, rec, rule, q)
    if st.kind == "residual":
        branches, names, rules = [], [], []
        for b_st, b_rec in zip(st.branches, rec.branches):
            steps = [_step(s, r, rule, q, dtype) for s, r in zip(b_st, b_rec)]
            branches.append([(op, rc) for op, rc, _ in steps])
            names.append([s.name for s in b_st])
            rules.append([nm for _, _, nm in steps])
        op = RectifiedResidual(branches, int(np.prod(rec.out_shape)), names, rules)
    else:
        op = _linear_part(st, rec, dtype)
    return op, rect, name


def build_rectified(model, net, xt, records, opts, own: dict, rule: str) -> RectifiedChain:
    """The rectified chain of ``rule`` ("guided-bp", "deconv", "rectgrad")."""
    q = None
    if rule == "rectgrad":
        q = number("q", own.get("q", 98), f"rule {rule!r}", low=0, high=100)
    steps = [_step(st, rec, rule, q, opts.np_dtype) for st, rec in zip(net.stages, records)]
    return RectifiedChain(
        [op for op, _, _ in steps], names=[st.name for st in net.stages], shapes=net.shapes(records),
        input_shape=tuple(xt.shape), x=xt.reshape(-1).numpy(),
        logits=records[-1].out.reshape(-1).numpy(), rule=rule,
        options={**opts.record(opts.given), **({"q": q} if q is not None else {})}, space="gradient",
        layer_rules=[nm for _, _, nm in steps], meta={"model": net.source}, rectifiers=[rc for _, rc, _ in steps],
    )
