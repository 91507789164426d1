"""CSC (Sixt §3): identical injections, the random baseline, zero vectors, block and non-linear chains."""
import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

from chainlab import measures as ms

from measures_helpers import make_chain

FAST = settings(max_examples=4, deadline=None, derandomize=True)


def conv_like_chain(seed=0, C=(3, 5, 4), HW=(4, 4)):
    """Random 'conv-shaped' dense chain: boundaries of shape (C_j, H, W)."""
    rng = np.random.default_rng(seed)
    n = [c * HW[0] * HW[1] for c in C]
    mats = [rng.normal(size=(n[i], n[i + 1])) for i in range(len(n) - 1)]
    shapes = [(c,) + HW for c in C]
    return make_chain(mats, shapes=shapes, meta={"net": "toy", "image": 0})


@FAST
@given(seed=st.integers(0, 10_000))
def test_identical_injections_give_csc_one(seed):
    ch = conv_like_chain(seed)
    v = np.random.default_rng(seed).standard_normal(ch[-1].shape[1])
    out = ms.csc_values(ch, len(ch), injections=np.column_stack([v, v, 2 * v]))
    for j, (vals, dropped, d) in out.items():
        assert dropped == 0 and vals.size == 3 * 16
        assert np.allclose(vals, 1.0, atol=1e-12)


@FAST
@given(d=st.sampled_from([1, 2, 3, 7, 40, 300]))
def test_random_baseline_exact_and_matches_simulation(d):
    b = ms.random_baseline(d)
    rng = np.random.default_rng(d)
    n = 40_000
    a, c = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    cos = np.abs((a * c).sum(1)) / (np.linalg.norm(a, axis=1) * np.linalg.norm(c, axis=1))
    se = cos.std() / math.sqrt(n)
    assert abs(cos.mean() - b["mean"]) < 5 * se + 1e-12
    # median: fraction below the exact median is 1/2 within 5 binomial SEs
    assert abs((cos <= b["median"]).mean() - 0.5) < 5 * 0.5 / math.sqrt(n) + (1.0 if d == 1 else 0)
    if d >= 40:   # E|cos| = √(2/(π d))·(1 + O(1/d))
        assert abs(b["mean"] / math.sqrt(2 / (math.pi * d)) - 1) < 1.0 / d


def test_negative_injection_layer_counts_from_the_top():
    rng = np.random.default_rng(5)
    ch = make_chain([rng.normal(size=(6, 5)), rng.normal(size=(5, 4)), rng.normal(size=(4, 3))])
    top = ms.csc([ch], layers=[3], pairs=3)
    assert top and all(r["k"] == 3 for r in top)
    assert ms.csc([ch], layers=[-1], pairs=3) == top
    assert ms.csc([ch], layers=[-3], pairs=3) == ms.csc([ch], layers=[1], pairs=3)
    with pytest.raises(ValueError, match="must be in 1..3"):
        ms.csc([ch], layers=[-4], pairs=3)


def test_csc_of_identity_chain_is_the_random_baseline():
    C, H, W = 24, 8, 8
    n = C * H * W
    ch = make_chain([sp.eye(n, format="csc"), sp.eye(n, format="csc")], shapes=[(C, H, W)] * 3)
    recs = ms.csc([ch], pairs=10)
    csc = {(r["k"], r["layer"]): r for r in recs if r["quantity"] == "csc"}
    base = ms.random_baseline(C)["median"]
    for key, r in csc.items():
        assert r["d"] == C and r["n_values"] == 10 * H * W and r["n_dropped"] == 0
        assert abs(r["value"] - base) < 0.04, (key, r["value"], base)
    # flat boundaries: the whole vector is one location
    flat = make_chain([np.eye(50)])
    (r,) = [r for r in ms.csc(flat) if r["quantity"] == "csc"]
    assert r["d"] == 50 and r["n_values"] == 10


def test_zero_vectors_dropped_and_counted_never_nan():
    C, H, W = 3, 2, 2
    M = np.random.default_rng(0).normal(size=(C * H * W, 5))
    M.reshape(C, H * W, 5)[:, 1, :] = 0.0          # location 1 has a zero channel vector for every signal
    ch = make_chain([M], shapes=[(C, H, W), (5,)])
    recs = ms.csc([ch], pairs=6)
    r = {x["quantity"]: x for x in recs}
    assert r["csc"]["n_dropped"] == 6 and r["csc"]["n_values"] == 6 * 3
    assert r["csc"]["value"] is not None and math.isfinite(r["csc"]["value"])
    allzero = make_chain([np.zeros((4, 3))])
    z = {x["quantity"]: x for x in ms.csc([allzero])}
    assert z["csc"]["value"] is None and z["csc"]["n_dropped"] == 10 and z["csc"]["n_values"] == 0


def test_nonnegative_chain_converges_and_pooling_over_images():
    rng = np.random.default_rng(2)
    chains = []
    for i in range(3):
        mats = [rng.uniform(size=(20, 20)) for _ in range(6)]
        chains.append(make_chain(mats, meta={"net": "toy", "image": i}))
    recs = ms.csc(chains, layers=[6])
    c = {r["layer"]: r for r in recs if r["quantity"] == "csc"}
    assert c[0]["n_images"] == 3 and c[0]["n_values"] == 30
    assert c[0]["value"] > 1 - 1e-6 > c[5]["value"]          # 6 positive layers: aligned; 1 layer: not


def test_nonlinear_chain_uses_apply_and_matches_linear_path():
    ch = conv_like_chain(4)
    lin = ms.csc([ch], pairs=3)
    ch.linear = False
    nonlin = ms.csc([ch], pairs=3)
    assert np.allclose([r["value"] for r in lin], [r["value"] for r in nonlin], rtol=1e-12, atol=0)


def test_deeplift_channel_vectors_split_plus_and_minus():
    C, H, W = 2, 1, 3
    R = np.arange(2 * C * H * W, dtype=float).reshape(-1, 1)     # [+ (C,H,W); − (C,H,W)]
    V = ms.channel_vectors(R, (C, H, W), paired=True)
    assert V.shape == (6, 2, 1)
    assert V[1, :, 0].tolist() == [1.0, 4.0]                    # + part, location 1: +c0, +c1
    assert V[4, :, 0].tolist() == [7.0, 10.0]                   # − part, location 1: −c0, −c1


def test_deeplift_space_chain_measures_each_sign_chain():
    C, H, W = 3, 2, 2
    n = C * H * W
    A = np.random.default_rng(3).normal(size=(n, 4))
    blk = np.block([[A, 0 * A], [0 * A, A]])                   # (2n, 2·4): [+; −] rows
    ch = make_chain([blk], shapes=[(C, H, W), (4,)], space="deeplift")
    ch.paired = True                                           # a ± chain: stacked (+, −) signals
    (r,) = [x for x in ms.csc([ch], pairs=3) if x["quantity"] == "csc"]
    assert r["d"] == C and r["n_values"] == 3 * 2 * H * W and r["n_dropped"] == 0
    base = [x for x in ms.csc([ch], pairs=3) if x["quantity"] == "baseline"][0]
    assert base["value"] == ms.random_baseline(C)["median"]


def test_deeplift_injection_is_tied():
    """With [[A, 0], [0, A]] and a tied injection the + and − signals are equal at every location."""
    n = 5
    A = np.random.default_rng(4).normal(size=(n, 3))
    blk = np.block([[A, 0 * A], [0 * A, A]])
    seen = []

    class Spy:
        shape, dtype = blk.shape, blk.dtype

        def matmat(self, V):
            seen.append(V)
            return blk @ V
    ch = make_chain([blk], shapes=[(n,), (3,)], space="deeplift")
    ch.paired = True                                           # a ± chain: stacked (+, −) signals
    ch.operators[0] = Spy()
    ms.csc_values(ch, 1, pairs=3)
    V = seen[0]
    assert V.shape == (6, 3) and np.array_equal(V[:3], V[3:])


def test_nonlinear_chain_stepwise_propagation_equals_direct_apply():
    """CSC steps a guided-BP signal down one layer at a time; that must equal apply(start=j, stop=L)."""
    import chainlab
    from chainlab.measures.csc import channel_vectors

    def abs_cos(V, pairs):            # numpy reference: V (locations, d, m), pair-major, zero vectors dropped
        out = []
        for a, b in pairs:
            na, nb = np.linalg.norm(V[:, :, a], axis=1), np.linalg.norm(V[:, :, b], axis=1)
            ok = (na > 0) & (nb > 0)
            out.append(np.minimum(np.abs((V[ok, :, a] * V[ok, :, b]).sum(1)) / (na[ok] * nb[ok]), 1.0))
        return np.concatenate(out)

    net = chainlab.models.load("digits-cnn")
    x = chainlab.data.model_input("digits-cnn", chainlab.data.load_digits().x_test[:1])
    ch = chainlab.extract(net, x, "guided-bp")
    L = len(ch)
    V = np.random.default_rng(0).standard_normal((ch[L - 1].shape[1], 3))
    vals = ms.csc_values(ch, L, pairs=3, injections=V)
    for j in (0, 2, L - 2):
        R = ch.apply(V, start=j, stop=L)
        expect = abs_cos(channel_vectors(R, ch.shapes[j]), [(0, 1), (0, 2), (1, 2)])
        assert expect.size > 0
        np.testing.assert_allclose(vals[j][0], expect, rtol=1e-12, atol=1e-15)
