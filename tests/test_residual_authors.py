"""Sixt et al.'s ResNet rule (extract option residual="authors") against an independent float64 reference.

The reference below is written from the authors' code and innvestigate 1.0.8, with torch only for the forward
convolutions and numpy loops over explicit matrices (nothing of chainlab):
* the sum of a residual block is an αβ layer over the concatenated branch outputs z_t (identity kernels, no bias:
  monkey_patch_lrp_resnet.py:87-130), its relevance per branch clipped to [0, 1000] (:118);
* every BatchNorm is its own αβ layer, a depthwise 1×1 conv with kernel k = γ/√(σ² + eps) and bias c = β − kμ
  (:135-191), evaluated as innvestigate's AlphaBetaRule (relevance_rule.py:245-299): both parts of the bias in both
  denominators, SafeDivide a/(b + 1e-7·1[b = 0]);
* conv and dense layers keep chainlab's αβ rule (rules/lrp.py: α group x⁺W⁺ + x⁻W⁻ over s(Σ + b⁺), β group
  x⁺W⁻ + x⁻W⁺ over s(Σ + b⁻), s(d) = d + 1e-6·sign0(d)); the average pool its proportional split; ReLUs pass
  relevance unchanged.
The net has conv biases, BatchNorms with negative γ, an identity and a 1×1-conv shortcut, stride and padding.
"""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import chainlab
from chainlab.errors import NotLinearError, OptionError
from chainlab.nets.zoo import BasicBlock, ResNet

EPS, KERAS_EPS = 1e-6, 1e-7


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    m = ResNet(BasicBlock, [1, 1], widths=(4, 6), num_classes=3, stem="small").double().eval()
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            mod.bias = nn.Parameter(0.1 * torch.randn(mod.out_channels, dtype=torch.float64))
        if isinstance(mod, nn.BatchNorm2d):
            with torch.no_grad():
                mod.weight.copy_(torch.randn(mod.num_features, dtype=torch.float64))      # some γ < 0
                mod.bias.copy_(0.3 * torch.randn(mod.num_features, dtype=torch.float64))
                mod.running_mean.copy_(0.2 * torch.randn(mod.num_features, dtype=torch.float64))
                mod.running_var.copy_(0.5 + torch.rand(mod.num_features, dtype=torch.float64))
    m.input_shape = (1, 3, 6, 6)
    X = torch.rand((3, 3, 6, 6), dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return m, X


def sd(d):
    return d + KERAS_EPS * (d == 0)


def s(d):
    return d + EPS * np.where(d >= 0, 1.0, -1.0)


def conv_matrix(conv, shape):
    """W[i, j] = ∂(conv x)_j / ∂x_i of the conv without bias (n_in × n_out), and the bias per output unit."""
    n = int(np.prod(shape))
    E = torch.eye(n, dtype=torch.float64).reshape((n,) + tuple(shape))
    with torch.no_grad():
        out = F.conv2d(E, conv.weight, None, conv.stride, conv.padding)
    b = conv.bias.detach().numpy()[:, None].repeat(out.shape[2] * out.shape[3], axis=1).reshape(-1)
    return out.reshape(n, -1).numpy(), b, tuple(out.shape[1:])


def alpha_beta(x, W, b, R, alpha, beta):
    """chainlab's αβ rule of a layer z = Wᵀx + b (W: n_in × n_out) on relevance R (n_out,), as loops."""
    n_in, n_out = W.shape
    xp, xn = np.maximum(x, 0), np.minimum(x, 0)
    out = np.zeros(n_in)
    for j in range(n_out):
        wp, wn = np.maximum(W[:, j], 0), np.minimum(W[:, j], 0)
        act = xp * wp + xn * wn
        inh = xp * wn + xn * wp
        out += alpha * act / s(act.sum() + max(b[j], 0)) * R[j]
        if beta:
            out -= beta * inh / s(inh.sum() + min(b[j], 0)) * R[j]
    return out


def bn_alpha_beta(bn, y, R, alpha, beta):
    """The BatchNorm as innvestigate's αβ layer (module docstring), y its input (C, H, W), R of its output."""
    k = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()[:, None, None]
    c = (bn.bias.detach().numpy()[:, None, None] - k * bn.running_mean.detach().numpy()[:, None, None])
    u = k * y
    up, un = np.maximum(u, 0), np.minimum(u, 0)
    return (alpha * up / sd(up + c) - beta * un / sd(un + c)) * R


def conv_bn(conv, bn, x, R, alpha, beta):
    """Relevance at the input x (C, H, W) of conv → BN, given the relevance R at the BN's output."""
    W, b, shape = conv_matrix(conv, x.shape)
    y = (x.reshape(-1) @ W + b).reshape(shape)
    return alpha_beta(x.reshape(-1), W, b, bn_alpha_beta(bn, y, R.reshape(shape), alpha, beta).reshape(-1),
                      alpha, beta).reshape(x.shape), y


def reference(model, x, k, alpha, beta):
    """Relevance of logit k at the input x (3, H, W) under the authors' ResNet rule (module docstring)."""
    t = lambda a: torch.as_tensor(a)[None]  # noqa: E731
    with torch.no_grad():
        h0 = model.relu(model.bn1(model.conv1(t(x))))[0].numpy()
        blocks, h = [], h0
        for blk in (model.layer1[0], model.layer2[0]):
            a1 = blk.conv1(t(h))
            h1 = blk.relu(blk.bn1(a1))[0].numpy()
            zb = blk.bn2(blk.conv2(t(h1)))[0].numpy()
            zs = h if blk.downsample is None else blk.downsample(t(h))[0].numpy()
            blocks.append((blk, h, h1, zb, zs))
            h = np.maximum(zb + zs, 0)
        v = h.mean(axis=(1, 2))
        logits = model.fc(t(v))[0].numpy()
    R = np.zeros(3)
    R[k] = logits[k]
    Wfc, bfc = model.fc.weight.detach().numpy().T, model.fc.bias.detach().numpy()
    Rv = alpha_beta(v, Wfc, bfc, R, alpha, beta)
    C, H, W_ = h.shape
    Rh = h / (H * W_) / s(v)[:, None, None] * Rv[:, None, None]        # proportional average pool
    for blk, hin, h1, zb, zs in reversed(blocks):
        sp, sn = np.maximum(zb, 0) + np.maximum(zs, 0), np.minimum(zb, 0) + np.minimum(zs, 0)
        def split(z):
            return np.clip(alpha * np.maximum(z, 0) / sd(sp) * Rh - beta * np.minimum(z, 0) / sd(sn) * Rh, 0, 1000)
        Rb, Rs = split(zb), split(zs)
        R1, _ = conv_bn(blk.conv2, blk.bn2, h1, Rb, alpha, beta)
        Rin, _ = conv_bn(blk.conv1, blk.bn1, hin, R1, alpha, beta)
        if blk.downsample is not None:
            Rs, _ = conv_bn(blk.downsample[0], blk.downsample[1], hin, Rs, alpha, beta)
        Rh = Rin + Rs
    Rx, _ = conv_bn(model.conv1, model.bn1, x, Rh, alpha, beta)
    return Rx


@pytest.mark.parametrize("rule,opts,ab", [("zplus", {}, (1.0, 0.0)),
                                          ("alpha-beta", {"alpha": 2.0, "beta": 1.0}, (2.0, 1.0)),
                                          ("alpha-beta", {"alpha": 5.0, "beta": 4.0}, (5.0, 4.0))])
def test_authors_resnet_rule_equals_the_reference(net, rule, opts, ab):
    model, X = net
    bc = chainlab.extract_batch(model, X, rule, dtype="float64", residual="authors", **opts)
    targets = np.array([0, 2, 1])
    E = bc.explain(targets).numpy()
    for i, k in enumerate(targets):
        ref = reference(model, X[i].numpy(), int(k), *ab)
        np.testing.assert_allclose(E[i], ref, rtol=1e-9, atol=1e-12 * np.abs(ref).max())
    # the chainlab default differs (relevance split z_t/s(z), BatchNorm folded): the option does something
    P = chainlab.extract_batch(model, X, rule, dtype="float64", **opts).explain(targets).numpy()
    assert np.abs(P - E).max() > 1e-3 * np.abs(E).max()


def test_the_clip_makes_the_chain_non_linear_and_only_alpha_beta_rules_take_it(net):
    model, X = net
    ch = chainlab.extract(model, X[:1], "zplus", residual="authors", materialize=False)
    assert ch.options["residual"] == "authors"
    with pytest.raises(NotLinearError):
        chainlab.extract(model, X[:1], "zplus", residual="authors")          # materialized: no matrix
    with pytest.raises(OptionError, match="authors"):
        chainlab.extract_batch(model, X, "lrp-epsilon", residual="authors")
    with pytest.raises(OptionError, match="bias"):
        chainlab.extract_batch(model, X, "zplus", residual="authors", bias="full")
    g = chainlab.extract_batch(model, X, "gradient", residual="authors").explain(np.array([0, 1, 2]))
    g0 = chainlab.extract_batch(model, X, "gradient").explain(np.array([0, 1, 2]))
    torch.testing.assert_close(g, g0)                                            # gradient space: no split
