"""Value bounds on random nets: never violated; a-priori constants; a tampered chain trips the check."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import chainlab
from chainlab import measures as ms
from conftest import conv_net, mlp

FAST = settings(max_examples=2, deadline=None, derandomize=True)
RULES = [("zplus", {}), ("alpha-beta", dict(alpha=2.0, beta=1.0)), ("gradient", {}), ("lrp-epsilon", dict(epsilon=0.01)),
         ("wsquare", {}), ("flat", {}), ("gradient-x-input", {}), ("lrp-0", {})]


def _x(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@FAST
@given(seed=st.integers(0, 10_000), bias=st.sampled_from(["zennit", "none"]))
def test_bounds_never_violated_on_random_nets(seed, bias):
    for net, x in ((mlp(seed), _x((1, 7), seed)), (conv_net(seed), _x((1, 2, 7, 7), seed))):
        for rule, kw in RULES:
            ch = chainlab.extract(net, x, rule, bias=bias, avgpool="gradient", **kw)
            recs = ms.bounds(ch)
            v = {r["quantity"]: r["value"] for r in recs if r["layer"] is None}
            assert v["sup_R"] <= v["bound"] * (1 + 1e-9)
            assert v["sigma1_product"] <= v["sigma1_product_bound"] * (1 + 1e-9)
            for r in recs:
                if r["quantity"] == "sigma1_bound":
                    s1 = next(q["value"] for q in recs if q["quantity"] == "sigma1" and q["k"] == r["k"])
                    assert s1 <= r["value"] * (1 + 1e-7)
            # independent oracle: the true explanation of every logit, by autograd for the gradient
            if rule == "gradient":
                J = torch.autograd.functional.jacobian(lambda z: net(z).reshape(-1), x).reshape(ch.n_output, -1)
                assert np.abs(J.numpy()).max() <= v["constant"] * (1 + 1e-9)
            if rule in ("zplus", "wsquare", "flat"):
                assert v["apriori_constant"] == 1.0 and v["constant"] <= 1 + 1e-9
            if rule == "alpha-beta":
                assert v["apriori_constant"] == 3.0 ** sum(1 for r in ch.layer_rules if r == "alpha-beta")
            if rule in ("gradient", "lrp-epsilon", "gradient-x-input", "lrp-0"):
                assert v["apriori_constant"] is not None and v["constant"] <= v["apriori_constant"] * (1 + 1e-9)


def test_norms_by_hand():
    M = np.array([[1.0, -2.0], [3.0, 0.5]])
    assert ms.norm1(M) == 4.0 and ms.norm_inf(M) == 3.5
    assert np.linalg.svd(M, compute_uv=False)[0] <= math.sqrt(4.0 * 3.5)


def test_tampered_chain_raises():
    net = mlp(0)
    ch = chainlab.extract(net, _x((1, 7), 0), "zplus")
    ms.bounds(ch)
    ch.operators[1] = chainlab.DenseOperator(2.0 * ch.operators[1].to_dense())   # columns now sum to 2 > 1
    with pytest.raises(chainlab.errors.BoundViolationError, match="a-priori constant 1"):
        ms.bounds(ch)


def test_nonlinear_chain_needs_matrices():
    ch = chainlab.extract(mlp(0), _x((1, 7), 0), "gradient")
    ch.linear = False
    for fn in (ms.bounds, ms.spectra, ms.rank1, ms.cone):
        with pytest.raises(chainlab.NotLinearError, match="not linear"):
            fn(ch)
    assert ms.measure(ch, what=["csc"], pairs=3)


ACS_RULES = RULES + [("gamma", dict(gamma=0.25)), ("alpha-beta", dict(alpha=1.5, beta=0.5)),
                     ("zbox", dict(low=-3.0, high=3.0))]


def grouped_net(seed=0):
    """Grouped and depthwise convs (stride, padding, no bias) with BN, max-pool, a Linear without bias."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 6, 3, stride=2, padding=2, groups=2, bias=False),
                              torch.nn.BatchNorm2d(6), torch.nn.ReLU(),
                              torch.nn.Conv2d(6, 6, 2, groups=6), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(24, 3, bias=False))
    with torch.no_grad():
        net[3].running_mean.uniform_(-0.5, 0.5)
        net[3].running_var.uniform_(0.5, 2.0)
        net[3].weight.uniform_(-1.5, 1.5)
    return net.double().eval()


@pytest.mark.parametrize("rule,kw", ACS_RULES)
@pytest.mark.parametrize("avgpool", ["gradient", "proportional"])
@pytest.mark.parametrize("signed", [False, True])
def test_abs_column_sums_of_implicit_operators_equal_the_materialized_matrix(rule, kw, avgpool, signed, monkeypatch):
    """‖M_l‖₁ without multiplying the operator out equals the column abs sums of the explicit matrix, layer by layer,
    on a net with conv, stride, padding, dilation, BN, no-bias layers, max/avg/adaptive pools and on a net with
    grouped/depthwise convs; at inputs ≥ 0 and signed ones (α-β, z⁺, γ then have x⁺ and x⁻ terms on the first
    layer; z^B's three terms overlap: the blockwise route).  Both routes of TermsOperator.abs_column_sums are
    compared on every layer (the blockwise one forced), and neither builds a matrix."""
    from chainlab.linalg import implicit
    for net, shape in ((conv_net(4), (1, 2, 7, 7)), (grouped_net(5), (1, 2, 9, 9))):
        g = torch.Generator().manual_seed(4)
        x = (torch.randn(shape, generator=g, dtype=torch.float64) if signed
             else torch.rand(shape, generator=g, dtype=torch.float64))
        if rule == "zbox":
            x = x.clamp(-2.9, 2.9)
        ch = chainlab.extract(net, x, rule, materialize=False, avgpool=avgpool, **kw)
        wants = [np.abs(op.to_dense()).sum(axis=0) for op in ch]
        with monkeypatch.context() as m:       # the implicit routes never multiply an operator out
            m.setattr(implicit.TorchOperator, "materialize", lambda self: pytest.fail("materialized"))
            m.setattr(implicit, "conv_matrix", lambda *a, **k: pytest.fail("conv matrix built"))
            gots = [op.abs_column_sums() for op in ch]
            blocks = [op._abs_column_sums_blocks([(None if a is None else a.reshape(-1).double(), phi,
                                                   None if c is None else c.reshape(-1).double())
                                                  for a, phi, c in op.terms])
                      for op in ch if isinstance(op, implicit.TermsOperator) and op.act_step is None]
        tol = dict(rtol=1e-12)
        for op, want, got in zip(ch, wants, gots):
            assert got.shape == want.shape
            assert np.allclose(got, want, atol=1e-300 + 1e-14 * np.abs(want).max(), **tol), (rule, op)
            assert ms.norm1(op) == pytest.approx(float(want.max()), rel=1e-12, abs=1e-300)
        plain = [w for op, w in zip(ch, wants) if isinstance(op, implicit.TermsOperator) and op.act_step is None]
        for want, got in zip(plain, blocks):
            assert np.allclose(got.numpy(), want, atol=1e-300 + 1e-14 * np.abs(want).max(), **tol), rule
