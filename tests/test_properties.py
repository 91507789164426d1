"""Oracle 5: property tests over random small architectures built from the supported layer set."""
import numpy as np
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chainlab
from conftest import jacobian, randomize_bn, rel_err

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def out_size(n, k, s, p, d=1):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


@st.composite
def architectures(draw):
    """(model, input) with conv/stride/padding/dilation/BN/no-bias/max/avg/adaptive pools, or an MLP."""
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    layers = []
    if draw(st.booleans()):
        c, h, w = draw(st.integers(1, 3)), draw(st.integers(5, 9)), draw(st.integers(5, 9))
        in_shape = (1, c, h, w)
        for _ in range(draw(st.integers(1, 3))):
            k, s, d = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
            p = draw(st.integers(0, k // 2))
            oh, ow = out_size(h, k, s, p, d), out_size(w, k, s, p, d)
            if oh < 2 or ow < 2:
                break
            co = draw(st.integers(1, 4))
            layers.append(nn.Conv2d(c, co, k, stride=s, padding=p, dilation=d, bias=draw(st.booleans())))
            c, h, w = co, oh, ow
            if draw(st.booleans()):
                layers.append(nn.BatchNorm2d(c))
            if draw(st.booleans()):
                layers.append(nn.ReLU())
            pool = draw(st.sampled_from(["none", "max", "avg", "avgpad"]))
            if pool == "max" and h >= 2 and w >= 2:
                ps = draw(st.integers(1, 2))
                layers.append(nn.MaxPool2d(2, stride=ps))
                h, w = out_size(h, 2, ps, 0), out_size(w, 2, ps, 0)
            elif pool in ("avg", "avgpad") and h >= 2 and w >= 2:
                pad = 1 if pool == "avgpad" else 0
                layers.append(nn.AvgPool2d(2, stride=1, padding=pad, count_include_pad=draw(st.booleans())))
                h, w = out_size(h, 2, 1, pad), out_size(w, 2, 1, pad)
        if draw(st.booleans()):
            oh, ow = draw(st.integers(1, h)), draw(st.integers(1, w))
            layers.append(nn.AdaptiveAvgPool2d((oh, ow)))
            h, w = oh, ow
        layers.append(nn.Flatten())
        n = c * h * w
    else:
        n = draw(st.integers(2, 10))
        in_shape = (1, n)
    for _ in range(draw(st.integers(0, 2))):
        m = draw(st.integers(2, 8))
        layers.append(nn.Linear(n, m, bias=draw(st.booleans())))
        if draw(st.booleans()):
            layers.append(nn.BatchNorm1d(m))
        layers.append(nn.ReLU())
        if draw(st.booleans()):
            layers.append(nn.Dropout(0.5))
        n = m
    layers.append(nn.Linear(n, draw(st.integers(2, 5))))
    model = randomize_bn(nn.Sequential(*layers), seed).double().eval()
    x = torch.randn(in_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1))
    return model, x


@SETTINGS
@given(architectures())
def test_gradient_product_is_the_jacobian(arch):
    model, x = arch
    chain = chainlab.extract(model, x, "gradient")
    assert rel_err(chain.to_dense(), jacobian(model, x)) < 1e-10


@SETTINGS
@given(architectures())
def test_lrp0_is_gradient_times_input(arch):
    model, x = arch
    chain = chainlab.extract(model, x, "lrp-0", stabilizer=1e-13)
    J = jacobian(model, x)
    for k in range(chain.n_output):
        gxi = x.reshape(-1).numpy() * J[:, k]
        if np.abs(gxi).max() > 1e-8:
            assert rel_err(chain.explain(k).reshape(-1), gxi) < 1e-5


@SETTINGS
@given(architectures())
def test_zplus_is_nonnegative_and_column_stochastic_at_most(arch):
    """With avgpool="gradient" always; with the default proportional pools only where pool inputs are ≥ 0
    (zennit's Norm x_i/Σx has negative entries for negative pool inputs)."""
    model, x = arch
    pools_see_nonneg = all(
        isinstance(prev, nn.ReLU) for prev, m in zip(model, list(model)[1:])
        if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)))
    modes = ["gradient", "proportional"] if pools_see_nonneg else ["gradient"]
    for bias, avgpool in [(b, a) for b in ("zennit", "none") for a in modes]:
        chain = chainlab.extract(model, x, "zplus", bias=bias, avgpool=avgpool)
        for op in chain:
            M = op.to_sparse("csc")
            assert M.data.min(initial=0) >= 0
            cs = np.asarray(M.sum(axis=0)).ravel()
            assert cs.max(initial=0) <= 1 + 1e-12


@SETTINGS
@given(architectures(), st.sampled_from([(1.0, 0.0), (2.0, 1.0), (5.0, 4.0)]))
def test_alpha_beta_absolute_column_sums_at_most_alpha_plus_beta(arch, ab):
    model, x = arch
    chain = chainlab.extract(model, x, "alpha-beta", alpha=ab[0], beta=ab[1], avgpool="gradient")
    for op in chain:
        assert np.asarray(abs(op.to_sparse("csc")).sum(axis=0)).max(initial=0) <= ab[0] + ab[1] + 1e-9


@SETTINGS
@given(architectures())
def test_lrp0_conserves_relevance_with_bias_shares_reported(arch):
    model, x = arch
    chain = chainlab.extract(model, x, "lrp-0", bias="full", stabilizer=1e-13)
    k = chain.predicted
    r = chain.start_vector(k)
    absorbed = 0.0
    for op in reversed(chain.operators):
        if op.bias_relevance is not None:
            absorbed += float(op.bias_relevance @ r)
        r = op @ r
    scale = max(abs(chain.logits[k]), np.abs(chain.to_dense()).max() * abs(chain.logits[k]), 1e-12)
    assert abs(r.sum() + absorbed - chain.logits[k]) < 1e-6 * scale
