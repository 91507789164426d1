"""smooth-gradient: the gradient chain with soft masks s(βz) — against autograd oracles and SmoothGrad.

What equals what:
* at every depth, the chain = autograd of the ReLU net whose ReLU backward is replaced by s(βz) (a custom
  autograd function: forward ReLU, backward g·s(βz));
* for one hidden layer (softplus mask), the chain = autograd of the same weights with ReLU → Softplus(β);
  with two hidden layers it is not (the second pre-activation differs between the two nets);
* for one hidden layer, Gaussian mask with β_j = 1/(σ‖w_j‖) (option sigma) = E SmoothGrad(σ): checked
  against a large sample with a Bonferroni z-test whose critical value is derived, not tuned.
"""
import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy.stats import norm

import chainlab
from chainlab.errors import OptionError
from chainlab.studies import smoothgrad
from conftest import conv_net, rel_err


class SoftReLU(torch.autograd.Function):
    """Forward ReLU, backward g · s(β z)."""

    @staticmethod
    def forward(ctx, z, beta, kind):
        ctx.save_for_backward(z)
        ctx.beta, ctx.kind = beta, kind
        return z.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        bz = ctx.beta * z
        s = torch.sigmoid(bz) if ctx.kind == "softplus" else 0.5 * (1 + torch.erf(bz / math.sqrt(2)))
        return g * s, None, None


class SoftReLUModule(nn.Module):
    def __init__(self, beta, kind):
        super().__init__()
        self.beta, self.kind = beta, kind

    def forward(self, z):
        return SoftReLU.apply(z, self.beta, self.kind)


def swap_relus(net, factory):
    """A copy of net with every nn.ReLU replaced by factory() (same weights)."""
    import copy
    net = copy.deepcopy(net)
    for _, m in list(net.named_modules()):
        for cname, c in list(m.named_children()):
            if isinstance(c, nn.ReLU):
                setattr(m, cname, factory())
    return net


def autograd_jacobian(net, x):
    x = x.clone().requires_grad_(True)
    J = torch.autograd.functional.jacobian(lambda v: net(v).reshape(-1), x)
    return J.reshape(J.shape[0], -1).T.numpy()


def pool_then_relu_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(2, 3, 3, padding=1)), ("pool", nn.MaxPool2d(2)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)), ("relu2", nn.ReLU()),
        ("flatten", nn.Flatten()), ("fc", nn.Linear(4 * 2 * 2, 5))])).double().eval()


@pytest.mark.parametrize("kind", ["softplus", "gaussian"])
@pytest.mark.parametrize("make", [conv_net, pool_then_relu_net])
def test_soft_mask_chain_equals_autograd_with_a_soft_relu_backward(kind, make):
    net = make(1)
    x = torch.randn(1, 2, 9, 9, dtype=torch.float64) if make is conv_net else torch.randn(1, 2, 8, 8,
                                                                                         dtype=torch.float64)
    ch = chainlab.extract(net, x, "smooth-gradient", activation=kind, beta=2.5)
    ref = autograd_jacobian(swap_relus(net, lambda: SoftReLUModule(2.5, kind)), x)
    assert rel_err(ch.to_dense(), ref) < 1e-10
    assert rel_err(chainlab.extract(net, x, "smooth-gradient", activation=kind, beta=2.5,
                                    materialize=False).to_dense(), ref) < 1e-10
    masks = [m for m in ch.masks if m is not None]
    assert masks and all(((m > 0) & (m < 1)).all() for m in masks)


def test_infinite_beta_is_the_gradient():
    net = conv_net(3)
    x = torch.randn(1, 2, 9, 9, dtype=torch.float64)
    a = chainlab.extract(net, x, "smooth-gradient", beta=math.inf).to_dense()
    assert np.array_equal(a, chainlab.extract(net, x, "gradient").to_dense())


def _hidden(n_layers, seed=0, n_in=6, width=8):
    torch.manual_seed(seed)
    layers, d = [], n_in
    for _ in range(n_layers):
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    return nn.Sequential(*layers, nn.Linear(d, 4)).double().eval()


def test_one_hidden_layer_is_the_softplus_net_two_are_not():
    beta = 3.0
    x = torch.randn(1, 6, dtype=torch.float64)
    one = _hidden(1, 4)
    chain = chainlab.extract(one, x, "smooth-gradient", beta=beta).to_dense()
    softplus_net = swap_relus(one, lambda: nn.Softplus(beta=beta))
    assert rel_err(chain, autograd_jacobian(softplus_net, x)) < 1e-12
    two = _hidden(2, 5)
    chain2 = chainlab.extract(two, x, "smooth-gradient", beta=beta).to_dense()
    assert rel_err(chain2, autograd_jacobian(swap_relus(two, lambda: nn.Softplus(beta=beta)), x)) > 1e-3
    assert rel_err(chain2, autograd_jacobian(swap_relus(two, lambda: SoftReLUModule(beta, "softplus")), x)) < 1e-12


def one_hidden_conv(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 5 * 5, 4)).double().eval()


@pytest.mark.parametrize("make, shape", [(one_hidden_conv, (1, 2, 5, 5)), (lambda s: _hidden(1, s), (1, 6))])
def test_smoothgrad_expectation_is_the_gaussian_soft_mask_with_beta_from_sigma(make, shape):
    """E_ε ∇f(x+ε) = Wᵀ diag(Φ(z_j/(σ‖w_j‖))) aᵀ for one hidden layer: sample mean vs the exact chain.

    Each component of the sample mean of N i.i.d. gradients has standard error s/√N (s its sample std); under
    the identity the standardized deviations are ≈ N(0,1) (N = 20000), so their maximum over the d components
    exceeds z* = Φ⁻¹(1 − α/(2d)) with probability ≤ α (Bonferroni), α = 1e-4.  Power check (must fail): the
    same statistic against the mask for 2σ."""
    net = make(7)
    torch.manual_seed(8)
    x = torch.rand(shape, dtype=torch.float64) - 0.3
    sigma, N = 0.4, 20000
    k = int(net(x).argmax())
    exact = chainlab.extract(net, x, "smooth-gradient", activation="gaussian", sigma=sigma).explain(k).reshape(-1)
    rng = np.random.default_rng(0)
    noisy = torch.as_tensor(x.numpy() + rng.normal(0, sigma, size=(N,) + tuple(shape[1:])))
    noisy.requires_grad_(True)
    (g,) = torch.autograd.grad(net(noisy)[:, k].sum(), noisy)     # w.r.t. the inputs only
    G = g.reshape(N, -1).numpy()
    mean, se = G.mean(0), G.std(0, ddof=1) / math.sqrt(N)
    d = mean.size
    zcrit = norm.ppf(1 - 1e-4 / (2 * d))
    live = se > 0
    z = np.abs(mean - exact)[live] / se[live]
    assert z.max() < zcrit, (z.max(), zcrit)
    assert np.allclose(mean[~live], exact[~live], atol=1e-12)
    wrong = chainlab.extract(net, x, "smooth-gradient", activation="gaussian", sigma=2 * sigma).explain(k).reshape(-1)
    assert (np.abs(mean - wrong)[live] / se[live]).max() > zcrit
    # the studies' SmoothGrad (float64, same distribution) agrees within the same statistical tolerance
    sg = smoothgrad(net, x.numpy(), sigma=sigma, n=4000, targets=[k], of="logit", dtype="float64")[0].reshape(-1)
    assert (np.abs(sg - exact)[live] / (G.std(0, ddof=1)[live] / math.sqrt(4000))).max() < zcrit


def test_beta_per_unit_and_per_channel_and_sigma_agree():
    net = one_hidden_conv(2)
    x = torch.rand(1, 2, 5, 5, dtype=torch.float64)
    W = net[0].weight.detach()
    ones = torch.ones_like(x)
    norms = torch.nn.functional.conv2d(ones, W ** 2, padding=1).reshape(-1).sqrt().numpy()
    a = chainlab.extract(net, x, "smooth-gradient", activation="gaussian", sigma=0.3).to_dense()
    b = chainlab.extract(net, x, "smooth-gradient", activation="gaussian", beta={"0": 1 / (0.3 * norms)}).to_dense()
    assert rel_err(a, b) < 1e-12
    c = chainlab.extract(net, x, "smooth-gradient", beta={"0": [2.0, 2.0, 2.0]}).to_dense()
    assert rel_err(c, chainlab.extract(net, x, "smooth-gradient", beta=2.0).to_dense()) < 1e-14
    ch = chainlab.extract(net, x, "smooth-gradient", beta={"0": 2.0})
    assert ch.options["beta"] == {"0": 2.0} and ch.options["layer_options"]["0"]["activation"] == "softplus"


def test_options_are_checked():
    net = one_hidden_conv(3)
    x = torch.rand(1, 2, 5, 5, dtype=torch.float64)
    bad = [(dict(activation="tanh"), r"^option activation of rule 'smooth-gradient' must be one of softplus, gaussian"),
           (dict(beta=0.0), r"^option beta of rule 'smooth-gradient' must be > 0"),
           (dict(beta=math.nan), r"^option beta of rule 'smooth-gradient' must be a finite number"),
           (dict(beta={"nope": 1.0}), r"names 'nope', not a layer followed by a ReLU; those are: 0"),
           (dict(beta={"0": [1.0, 2.0]}), r"for layer '0' has 2 values; the layer has 75 units in 3 channels"),
           (dict(beta={"0": [1.0, -2.0, 1.0]}), r"for layer '0' must be > 0"),
           (dict(sigma=-1.0), r"^option sigma of rule 'smooth-gradient' must be > 0")]
    for kw, msg in bad:
        with pytest.raises(OptionError, match=msg):
            chainlab.extract(net, x, "smooth-gradient", **kw)


def test_a_composite_mixing_soft_and_hard_masks_refuses_a_relu_after_a_pool():
    net = pool_then_relu_net(2)
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    comp = {"conv1": "gradient", "default": "smooth-gradient"}
    with pytest.raises(OptionError, match="mixes rules that propagate activations differently"):
        chainlab.extract(net, x, comp)
    conv_only = conv_net(0)                  # all activations follow Linear/Conv2d: a mixed composite is fine
    ch = chainlab.extract(conv_only, torch.randn(1, 2, 9, 9, dtype=torch.float64),
                          {"conv1": "gradient", "default": "smooth-gradient"})
    assert ch.layer_rules[0] == "gradient" and ch.layer_rules[1] == "smooth-gradient"


def test_soft_masks_after_residual_sums_on_a_tiny_resnet():
    """The post-add ReLU of every block gets the soft mask too (the rule's activation_derivative)."""
    from test_residual import tiny, tiny_input
    net = tiny("basic")
    x = tiny_input(net)
    ch = chainlab.extract(net, x, "smooth-gradient", beta=1.5, materialize=False)
    ref = autograd_jacobian(swap_relus(net, lambda: SoftReLUModule(1.5, "softplus")), x)
    assert rel_err(ch.to_dense(), ref) < 1e-10
    blocks = [i for i, op in enumerate(ch) if op.kind == "residual"]
    assert blocks and all(ch.masks[i] is not None and ((ch.masks[i] > 0) & (ch.masks[i] < 1)).all() for i in blocks)
