"""Cone shrinkage, Hilbert metric and Birkhoff contraction on random nets and matrices."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import chainlab
from chainlab import measures as ms
from chainlab.errors import ConeViolationError
from conftest import conv_net, mlp

from measures_helpers import make_chain

FAST = settings(max_examples=3, deadline=None, derandomize=True)


def test_hilbert_distance_by_hand():
    assert math.isclose(ms.hilbert_distance([1, 2], [2, 1]), math.log(4))
    assert abs(ms.hilbert_distance([1, 2, 3], [2, 4, 6])) < 1e-12
    assert ms.hilbert_distance([1, 0], [1, 1]) == math.inf
    assert math.isclose(ms.birkhoff(math.log(4)), math.tanh(math.log(4) / 4))
    with pytest.raises(ValueError):
        ms.hilbert_distance([1, -1], [1, 1])


@FAST
@given(seed=st.integers(0, 10_000))
def test_birkhoff_inequality_on_random_positive_matrices(seed):
    rng = np.random.default_rng(seed)
    A = rng.uniform(0.05, 1, (6, 5))
    tau = ms.birkhoff(ms.projective_diameter(A)["value"])
    assert tau < 1
    for _ in range(20):
        u, v = rng.uniform(0.01, 1, 5), rng.uniform(0.01, 1, 5)
        assert ms.hilbert_distance(A @ u, A @ v) <= tau * ms.hilbert_distance(u, v) * (1 + 1e-12)
        # the diameter is the sup: images of the cone lie within it
        assert ms.hilbert_distance(A @ u, A @ v) <= ms.projective_diameter(A)["value"] * (1 + 1e-12)


def _check_records(recs):
    ang = [r["value"] for r in recs if r["quantity"] == "angular_diameter"]
    hd = [r["value"] for r in recs if r["quantity"] == "hilbert_diameter"]
    bound = [r["value"] for r in recs if r["quantity"] == "birkhoff_bound"]
    assert len(hd) == len(ang) == len(bound) > 0, "non-negative chain: Hilbert quantities expected"
    assert all(b <= a + 1e-9 for a, b in zip(ang, ang[1:]))
    assert all(b <= a * (1 + 1e-9) + 1e-12 for a, b in zip(hd, hd[1:]))
    assert all(d <= b * (1 + 1e-9) + 1e-12 for d, b in zip(hd, bound))
    assert all(v is not None and not (isinstance(v, float) and math.isnan(v)) for v in ang + hd + bound)
    return ang, hd


@FAST
@given(seed=st.integers(0, 10_000))
def test_cone_non_increasing_for_zplus_on_random_nets(seed):
    for net, x in ((conv_net(seed), torch_input((1, 2, 7, 7), seed)), (mlp(seed), torch_input((1, 7), seed))):
        ch = chainlab.extract(net, x, "zplus", bias="none", avgpool="gradient")
        _check_records(ms.cone(ch))


def test_cone_on_positive_chain_converges_and_birkhoff_is_informative():
    rng = np.random.default_rng(0)
    ch = make_chain([rng.uniform(0.1, 1, (8, 8)) for _ in range(6)])
    ang, hd = _check_records(ms.cone(ch))
    assert hd[-1] < 1e-3 * hd[0] and ang[-1] < ang[0]
    bound = [r["value"] for r in ms.cone(ch) if r["quantity"] == "birkhoff_bound"]
    assert all(math.isfinite(b) for b in bound)


def test_cone_violation_is_detected(monkeypatch):
    """The checks are live: with a wrong (too small) Birkhoff τ the bound must trip."""
    import sys
    cone_mod = sys.modules["chainlab.measures.cone"]
    rng = np.random.default_rng(0)
    ch = make_chain([rng.uniform(0.1, 1, (4, 4)) for _ in range(3)])
    ms.cone(ch)
    monkeypatch.setattr(cone_mod, "birkhoff", lambda delta: 0.0)
    with pytest.raises(ConeViolationError, match="Birkhoff"):
        ms.cone(ch)


def test_angular_diameter_sampled_bounds_bracket_the_exact_value():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(5, 300))
    A[:, 7] = 0.0
    exact = ms.angular_diameter(A)
    samp = ms.angular_diameter(A, exact_columns=50, sample=40)
    assert exact["exact"] and not samp["exact"] and exact["zero_columns"] == 1
    assert samp["value"] <= exact["value"] + 1e-12 <= samp["upper"] + 1e-12


def test_zero_column_counted_and_no_nan():
    M1 = np.array([[1.0, 0.0, 2.0], [2.0, 0.0, 1.0]])
    M2 = np.array([[1.0, 1.0], [3.0, 1.0], [1.0, 2.0]])
    ch = make_chain([M1, M2])
    recs = ms.cone(ch)
    first = [r for r in recs if r["quantity"] == "angular_diameter" and r["k"] == 1][0]
    assert first["zero_columns"] == 1 and first["columns"] == 2
    for r in recs + ms.spectra(ch) + ms.rank1(ch):
        v = r["value"]
        assert v is None or not (isinstance(v, float) and math.isnan(v)), r


def torch_input(shape, seed):
    import torch
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64)
