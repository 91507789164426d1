"""Spectra, prefix products, T_l and rank-1 convergence: oracles are dense numpy SVDs and loop-built products."""
import math

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

from chainlab import measures as ms
from chainlab.measures.prefix import prefix_products

from measures_helpers import loop_product, make_chain

FAST = settings(max_examples=4, deadline=None, derandomize=True)


@FAST
@given(seed=st.integers(0, 10_000))
def test_svds_agrees_with_dense_svd(seed):
    rng = np.random.default_rng(seed)
    A = sp.random(420, 380, density=0.05, random_state=seed, format="csc") + sp.eye(420, 380) * rng.uniform(0, 2)
    exact = np.linalg.svd(A.toarray(), compute_uv=False)[:3]
    iterative = ms.singular_values(ms_op(A), 3, exact_below=10)       # forced svds
    assert np.allclose(iterative, exact, rtol=1e-7, atol=1e-12)
    U, s, Vh = ms.singular_triplets(ms_op(A), rank=3, exact_below=10)
    assert np.allclose(s, exact, rtol=1e-7)
    assert np.allclose(U.T @ A.toarray() @ Vh.T, np.diag(s), atol=1e-6 * s[0])


def ms_op(A):
    from chainlab import SparseOperator
    return SparseOperator(A)


def test_prefix_products_match_loop_products_and_survive_long_chains():
    rng = np.random.default_rng(1)
    mats = [rng.uniform(0, 3, (4, 5)), sp.random(5, 6, density=0.6, random_state=2, format="csc"),
            rng.normal(size=(6, 3))]
    ch = make_chain(mats)
    for pp in prefix_products(ch):
        want = loop_product(mats[: pp.k])
        got = math.exp(pp.log_scale) * (pp.matrix.toarray() if sp.issparse(pp.matrix) else pp.matrix)
        assert np.allclose(got, want, rtol=1e-12, atol=1e-12)
    # 60 layers of 1e8·I: the true product is 1e480 (overflows float64), the normalized one does not
    long = make_chain([1e8 * np.eye(3) + 1e7 * rng.uniform(size=(3, 3)) for _ in range(60)])
    last = list(prefix_products(long))[-1]
    assert np.isfinite(last.matrix).all() and np.abs(last.matrix).max() == 1.0
    assert 60 * math.log(1e8) < last.log_scale < 60 * math.log(3e8)


def test_rank1_matrix_ratio_is_inf_not_a_crash():
    u, v = np.array([1.0, 2.0, -1.0]), np.array([0.5, 1.0, 3.0, 1.0])
    ch = make_chain([np.outer(u, v), np.eye(4) * 2.0])
    recs = ms.spectra(ch)
    ratios = [r["value"] for r in recs if r["quantity"] == "sigma1/sigma2" and r["of"] in ("layer", "prefix")]
    assert ratios[0] == math.inf and ratios[2] == math.inf and ratios[3] == math.inf    # M_1, P_1, P_2
    r1 = {(r["quantity"], r["k"]): r["value"] for r in ms.rank1(ch)}
    assert r1[("sigma2/sigma1", 2)] == 0.0 and r1[("stable_rank", 2)] == 1.0
    zero = make_chain([np.zeros((3, 2))])
    z = [r for r in ms.spectra(zero) if r["quantity"] == "sigma1/sigma2"]
    assert all(r["value"] is None for r in z)


def test_rank1_quantities_against_numpy():
    rng = np.random.default_rng(5)
    mats = [rng.normal(size=(7, 6)), rng.uniform(size=(6, 5)), rng.normal(size=(5, 4))]
    ch = make_chain(mats)
    P = loop_product(mats)
    U, s, Vh = np.linalg.svd(P)
    resid = np.linalg.norm(P - s[0] * np.outer(U[:, 0], Vh[0])) / np.linalg.norm(P)
    p = s / s.sum()
    r = {r["quantity"]: r["value"] for r in ms.rank1(ch) if r["k"] == 3}
    assert math.isclose(r["sigma2/sigma1"], s[1] / s[0], rel_tol=1e-10)
    assert math.isclose(r["rank1_residual"], resid, rel_tol=1e-10)
    assert math.isclose(r["stable_rank"], np.linalg.norm(P) ** 2 / s[0] ** 2, rel_tol=1e-10)
    assert math.isclose(r["effective_rank"], math.exp(-sum(q * math.log(q) for q in p)), rel_tol=1e-10)
    assert math.isclose(r["log_sigma1"], math.log(s[0]), rel_tol=1e-10)
    lay = {(r["quantity"], r["k"]): r["value"] for r in ms.spectra(ch, top=3) if r["of"] == "layer"}
    for k, M in enumerate(mats, start=1):
        sv = np.linalg.svd(M, compute_uv=False)
        assert math.isclose(lay[("sigma1", k)], sv[0], rel_tol=1e-12)
        assert math.isclose(lay[("sigma3", k)], sv[2], rel_tol=1e-12)


def test_interlayer_members_factor_the_product():
    """U_l √Σ_l T_l √Σ_(l+1) V_(l+1) = M_l M_(l+1) (hand derivation from M = U Σ V)."""
    rng = np.random.default_rng(3)
    A, B = rng.normal(size=(5, 4)), rng.normal(size=(4, 6))
    ch = make_chain([A, B])
    (T,) = ms.interlayer_members(ch)
    Ua, sa, _ = np.linalg.svd(A, full_matrices=False)
    _, sb, Vb = np.linalg.svd(B, full_matrices=False)
    assert np.allclose(Ua @ np.diag(np.sqrt(sa)) @ T @ np.diag(np.sqrt(sb)) @ Vb, A @ B, atol=1e-12)
    rec = {r["quantity"]: r["value"] for r in ms.spectra(ch) if r["of"] == "interlayer"}
    st_ = np.linalg.svd(T, compute_uv=False)
    assert math.isclose(rec["sigma1/sigma2"], st_[0] / st_[1], rel_tol=1e-12)
