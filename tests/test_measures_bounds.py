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


@pytest.mark.parametrize("rule,kw", RULES + [("gamma", dict(gamma=0.25)), ("alpha-beta", dict(alpha=1.5, beta=0.5))])
@pytest.mark.parametrize("avgpool", ["gradient", "proportional"])
def test_abs_column_sums_of_implicit_operators_equal_the_materialized_matrix(rule, kw, avgpool):
    """‖M_l‖₁ without multiplying the operator out (one product per term when the terms' weights have disjoint
    supports, else the matrix) equals the column abs sums of the explicit matrix, layer by layer, on a net with
    conv, stride, padding, dilation, BN, no-bias layers, max/avg/adaptive pools; and for α-β (two terms)."""
    net = conv_net(4)
    x = torch.rand((1, 2, 7, 7), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ch = chainlab.extract(net, x, rule, materialize=False, avgpool=avgpool, **kw)
    for op in ch:
        want = np.abs(op.to_dense()).sum(axis=0)
        got = op.abs_column_sums()
        assert got.shape == want.shape
        assert np.allclose(got, want, rtol=1e-12, atol=1e-300 + 1e-14 * np.abs(want).max()), (rule, op)
        assert ms.norm1(op) == pytest.approx(float(want.max()), rel=1e-12, abs=1e-300)
