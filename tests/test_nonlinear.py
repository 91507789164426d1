"""Guided BP, deconv, RectGrad: captum's GuidedBackprop / Deconvolution and a direct RectGrad.

The RectGrad oracle below is written from Kim et al. 2019 without chainlab: every nn.ReLU of the
model is replaced by an autograd function whose backward is g ↦ g·1[h·g > τ], τ = the q-th
percentile (torch.quantile, linear interpolation) of h·g over the layer, h the ReLU's output.
"""
import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

import chainlab
from chainlab.errors import NotLinearError
from conftest import conv_net, mlp, rel_err


class _RectReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, q):
        h = z.clamp(min=0)
        ctx.save_for_backward(h)
        ctx.q = q
        return h

    @staticmethod
    def backward(ctx, g):
        (h,) = ctx.saved_tensors
        prod = (h * g).reshape(-1)
        tau = torch.quantile(prod, ctx.q / 100.0)
        return g * ((h * g) > tau).to(g.dtype), None


class RectReLU(nn.Module):
    def __init__(self, q):
        super().__init__()
        self.q = q

    def forward(self, z):
        return _RectReLU.apply(z, self.q)


def rectgrad_direct(model, x, target, q=98.0):
    m = copy.deepcopy(model).double().eval()
    for name, mod in list(m.named_modules()):
        for cname, child in list(mod.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(mod, cname, RectReLU(q))
    x = x.clone().double().requires_grad_(True)
    m(x).reshape(-1)[target].backward()
    return x.grad.numpy()


def _chain(shipped, rule, **opt):
    name, net, x = shipped
    return chainlab.extract(net, x, rule, **opt)


@pytest.mark.parametrize("rule,captum_method", [("guided-bp", "GuidedBackprop"), ("deconv", "Deconvolution")])
def test_rectified_methods_equal_captum(shipped, rule, captum_method):
    import captum.attr
    name, net, x = shipped
    ch = _chain(shipped, rule)
    for k in (ch.predicted, (ch.predicted + 4) % 10):
        theirs = getattr(captum.attr, captum_method)(net).attribute(x.clone(), target=k).detach().numpy()
        assert rel_err(ch.explain(k), theirs) < 1e-10, (name, k)


def test_rectgrad_equals_direct_implementation(shipped):
    name, net, x = shipped
    for q in ((98,) if name == "sixt-cifar" else (98, 80)):
        ch = _chain(shipped, "rectgrad", q=q)
        for k in (ch.predicted, (ch.predicted + 2) % 10):
            ours = ch.explain(k)
            theirs = rectgrad_direct(net, x, k, q)
            assert np.abs(theirs).max() > 0
            assert rel_err(ours, theirs) < 1e-10, (name, q, k)


@pytest.mark.parametrize("rule", ["guided-bp", "deconv", "rectgrad"])
def test_random_nets_and_apply(rule):
    from captum.attr import Deconvolution, GuidedBackprop
    net, x = conv_net(1), torch.randn(1, 2, 9, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    ch = chainlab.extract(net, x, rule)
    for k in range(5):
        if rule == "rectgrad":
            theirs = rectgrad_direct(net, x, k)
        else:
            theirs = {"guided-bp": GuidedBackprop, "deconv": Deconvolution}[rule](net).attribute(x.clone(), target=k)
            theirs = theirs.detach().numpy()
        assert rel_err(ch.explain(k), theirs) < 1e-10
    # apply on several columns = column by column; start/stop segments compose
    E = np.eye(5)[:, [0, 3]]
    full = ch.apply(E)
    assert np.allclose(full[:, 1], ch.apply(E[:, 1]))
    mid = ch.apply(E, start=2)
    assert np.allclose(ch.apply(mid, stop=2), full)


@pytest.mark.parametrize("rule", ["guided-bp", "deconv", "rectgrad"])
def test_not_linear_errors(rule):
    ch = chainlab.extract(mlp(0), torch.randn(1, 7, dtype=torch.float64), rule)
    assert ch.linear is False and chainlab.extract(mlp(0), torch.randn(1, 7), "gradient").linear is True
    for call in (ch.to_dense, ch.product, ch.prefix_products):
        with pytest.raises(NotLinearError, match=r"not a product of matrices.*rule 'gradient'") as e:
            call()
        assert rule in str(e.value)
    # the operators themselves are the plain linear parts Wᵀ
    assert np.allclose(ch[0].to_dense(), mlp(0)[0].weight.detach().numpy().T)


def test_guided_bp_is_not_linear_in_the_start_vector():
    """ρ is positively homogeneous but not additive: apply(a + b) ≠ apply(a) + apply(b)."""
    net = chainlab.models.load("digits-mlp").double()
    x = chainlab.data.model_input("digits-mlp", chainlab.data.load_digits().x_test[:1]).double()
    ch = chainlab.extract(net, x, "guided-bp")
    a, b = np.eye(10)[1], -np.eye(10)[2]
    assert np.allclose(ch.apply(3 * a), 3 * ch.apply(a))
    assert not np.allclose(ch.apply(a + b), ch.apply(a) + ch.apply(b))


def test_bad_options():
    net, x = mlp(0), torch.randn(1, 7, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"option q of rule 'rectgrad' must lie in \[0, 100\], got 120"):
        chainlab.extract(net, x, "rectgrad", q=120)
    with pytest.raises(ValueError, match="unknown option.*'q'.*guided-bp"):
        chainlab.extract(net, x, "guided-bp", q=90)
