"""Implicit operators for residual and VGG-type nets, and matrix-free prefix-product singular values.

Oracles: the materialized extraction (explicit CSC/dense matrices built independently of the torch
conv path), the autograd Jacobian, and numpy's dense SVD of P_k.
"""
import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

import chainlab
from chainlab.measures import prefix_power, prefix_spectra_power, spectra
from chainlab.nets.zoo import VGG, resnet_tiny
from conftest import jacobian, randomize_bn, rel_err

RESNETS = {
    "basic": dict(block="basic", layers=(2, 1), widths=(4, 6), size=6),
    "bottleneck": dict(block="bottleneck", layers=(1, 1), widths=(2, 3), size=6),
}
# VGG-16's code path (13 convs of 3×3, max-pools, adaptive avg-pool, 3 Linear) with few channels and
# three max-pools, so that 8×8 inputs keep every layer small enough for a dense SVD
NARROW_VGG16 = [4, 4, "M", 8, 8, "M", 8, 8, 8, "M", 8, 8, 8, 8, 8, 8]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions one vector at a time (ARPACK): torch's intra-op threads only cost time here."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_resnet(kind, seed=0):
    return randomize_bn(resnet_tiny(seed=seed, num_classes=5, **RESNETS[kind]), seed).double().eval()


def narrow_vgg(seed=0):
    torch.manual_seed(seed)
    net = VGG(NARROW_VGG16, num_classes=10, pool_size=2, hidden=32).double().eval()
    net.input_shape = (1, 3, 8, 8)
    return net


def rand_input(shape, seed=1, low=-1.0):
    g = torch.Generator().manual_seed(seed)
    return low + (1.0 - low) * torch.rand(shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("kind", sorted(RESNETS))
@pytest.mark.parametrize("rule", ["gradient", "zplus", "lrp-epsilon"])
def test_implicit_residual_equals_materialized(kind, rule):
    net = tiny_resnet(kind)
    x = rand_input(net.input_shape, low=0.0 if rule == "zplus" else -1.0)
    mat = chainlab.extract(net, x, rule)
    imp = chainlab.extract(net, x, rule, materialize=False)
    blocks = [op for op in imp if op.kind == "residual"]
    assert blocks and all(A.kind == "implicit" for op in blocks for b in op.branches for A in b)
    assert all(op.kind in ("implicit", "residual") for op in imp)
    rng = np.random.default_rng(0)
    for i, (a, b) in enumerate(zip(imp, mat)):
        D = b.to_dense()
        V = rng.normal(size=(a.shape[1], 3))
        U = rng.normal(size=(a.shape[0], 2))
        assert rel_err(a.matmat(V), D @ V) < 1e-10, (i, imp.names[i])      # torch conv path
        assert rel_err(a.rmatmat(U), D.T @ U) < 1e-10, (i, imp.names[i])
        assert rel_err(a.to_sparse("csc").toarray(), D) < 1e-10, (i, imp.names[i])   # factors' to_sparse
    # whole chain, matrix-free: explanation and full product
    assert rel_err(imp.explain(), mat.explain()) < 1e-10
    P = imp.apply(np.eye(imp.n_output))
    assert rel_err(P, mat.to_dense()) < 1e-10
    if rule == "gradient":
        assert rel_err(P, jacobian(net, x)) < 1e-10
    # scipy's svds accepts a residual operator of implicit factors
    i = next(j for j, op in enumerate(imp) if op.kind == "residual")
    s = spla.svds(spla.aslinearoperator(imp[i]), k=2, return_singular_vectors=False, tol=1e-10)
    assert rel_err(np.sort(s)[::-1], np.linalg.svd(mat[i].to_dense(), compute_uv=False)[:2]) < 1e-8


def test_rapply_is_the_transpose_of_apply():
    net = tiny_resnet("basic")
    chain = chainlab.extract(net, rand_input(net.input_shape), "gradient", materialize=False)
    k = 4
    P = chain.apply(np.eye(chain[k - 1].shape[1]), 0, k)
    U = np.random.default_rng(2).normal(size=(chain.n_input, 3))
    assert rel_err(chain.rapply(U, 0, k), P.T @ U) < 1e-12
    assert rel_err(chain.rapply(U[:, 0], 0, k), P.T @ U[:, 0]) < 1e-12
    with pytest.raises(ValueError, match="rows"):
        chain.rapply(np.ones(3), 0, k)


def test_layer_spectra_on_implicit_vgg_equal_materialized():
    net = narrow_vgg()
    x = rand_input(net.input_shape, low=0.0)
    imp = chainlab.extract(net, x, "gradient", materialize=False)
    mat = chainlab.extract(net, x, "gradient")
    kinds = {op.kind for op in imp}
    assert kinds == {"implicit"}, kinds
    # exact_below=0 forces svds on every layer operator that is not tiny
    a = spectra(imp, of=("layer",), exact_below=0)
    b = spectra(mat, of=("layer",), exact_below=10_000)   # dense SVD where it fits
    va = {(r["k"], r["quantity"]): r["value"] for r in a}
    vb = {(r["k"], r["quantity"]): r["value"] for r in b}
    assert va.keys() == vb.keys() and len(va) == 3 * len(imp)
    for key in va:
        if key[1] in ("sigma1", "sigma2") and vb[key] > 0:
            assert abs(va[key] - vb[key]) <= 1e-7 * vb[key], (key, va[key], vb[key])
    assert any(r["method"] == "svds" for r in a)


@pytest.mark.parametrize("net_kind", ["vgg", "resnet"])
def test_prefix_power_equals_dense_svd(net_kind):
    if net_kind == "vgg":
        net = narrow_vgg()
        ks = [2, 5, 9]
    else:
        net = tiny_resnet("basic")
        ks = [1, 3, 5]
    x = rand_input(net.input_shape, low=0.0)
    chain = chainlab.extract(net, x, "zplus", materialize=False)
    dense = chainlab.extract(net, x, "zplus")
    for k in ks:
        Pk = dense.apply(np.eye(dense[k - 1].shape[1]), 0, k)     # materialized operators, dense P_k
        s = np.linalg.svd(Pk, compute_uv=False)
        r = prefix_power(chain, k, top=2, extra=8, tol=1e-10)
        assert r.converged, (k, r)
        assert np.allclose(r.sigma, s[:2], rtol=1e-8, atol=0), (k, r.sigma, s[:2])
    rows = prefix_spectra_power(chain, ks[:1], extra=8, tol=1e-10)
    got = {r["quantity"]: r["value"] for r in rows}
    Pk = dense.apply(np.eye(dense[ks[0] - 1].shape[1]), 0, ks[0])
    s = np.linalg.svd(Pk, compute_uv=False)
    assert abs(got["sigma1/sigma2"] - s[0] / s[1]) < 1e-7 * s[0] / s[1]
    assert {r["method"] for r in rows} == {"power"}


def test_prefix_power_rank_deficient_and_bad_input():
    net = tiny_resnet("basic")
    chain = chainlab.extract(net, rand_input(net.input_shape), "gradient", materialize=False)
    L = len(chain)
    # the last prefix has as many columns as classes (5): top=5 gives all of them
    r = prefix_power(chain, L, top=5, extra=0, tol=1e-10)
    s = np.linalg.svd(chain.apply(np.eye(chain.n_output)), compute_uv=False)
    assert np.allclose(r.sigma, s[:5], rtol=1e-8)
    with pytest.raises(ValueError, match="k must be"):
        prefix_power(chain, 0)
    with pytest.raises(ValueError, match="k must be"):
        prefix_power(chain, L + 1)


def test_singular_values_falls_back_when_arpack_breaks_down(monkeypatch):
    """ARPACK error 3 (no shifts) on the degenerate spectrum of a max-pool operator at 224×224: block iteration,
    for the singular values and for the singular triplets (T_l of large layers)."""
    from chainlab.measures import svd as svd_mod

    net = narrow_vgg()
    chain = chainlab.extract(net, rand_input(net.input_shape, low=0.0), "gradient", materialize=False)
    exact = {i: np.linalg.svd(op.to_dense(), compute_uv=False)[:2] for i, op in enumerate(chain)
             if op.shape[0] * op.shape[1] < 300_000}

    def broken(*a, **k):
        raise spla.ArpackError(3)

    monkeypatch.setattr(svd_mod.spla, "eigsh", broken)
    for i, s in exact.items():
        got = svd_mod.singular_values(chain[i], 2, exact_below=0, tol=1e-10)
        assert np.allclose(got, s, rtol=1e-7), (chain.names[i], got, s)
        U, sv, Vh = svd_mod.singular_triplets(chain[i], rank=2, exact_below=0, tol=1e-10)
        assert np.allclose(sv, s, rtol=1e-7), (chain.names[i], sv, s)
        assert np.allclose(U.T @ chain[i].matmat(Vh.T), np.diag(sv), atol=1e-6 * s[0])   # Uᵀ M V = Σ


@pytest.mark.parametrize("materialize", [True, False])
def test_products_of_residual_chains_are_exact(materialize):
    """Chain.product / prefix_products multiply residual blocks (materialized or implicit factors) out exactly."""
    net = tiny_resnet("basic")
    x = rand_input(net.input_shape)
    chain = chainlab.extract(net, x, "gradient", materialize=materialize)
    J = jacobian(net, x)
    assert rel_err(chain.product().to_dense(), J) < 1e-10
    k = next(i for i, op in enumerate(chain) if op.kind == "residual") + 1
    pp = list(chain.prefix_products(normalize=True, stop=k))[-1]
    ref = chain.apply(np.eye(chain[k - 1].shape[1]), 0, k)
    got = np.exp(pp.log_scale) * (pp.matrix.toarray() if hasattr(pp.matrix, "toarray") else pp.matrix)
    assert rel_err(got, ref) < 1e-10


def test_prefix_power_on_a_rank_one_product():
    """z⁺ on the whole narrow VGG: P_L is rank 1 to rounding (σ2/σ1 ~ 1e-16); σ2 is noise and needs no convergence."""
    net = narrow_vgg()
    x = rand_input(net.input_shape, low=0.0)
    chain = chainlab.extract(net, x, "zplus", materialize=False)
    L = len(chain)
    s = np.linalg.svd(chainlab.extract(net, x, "zplus").to_dense(), compute_uv=False)
    assert s[1] < 1e-12 * s[0]                         # the premise: rank 1 numerically
    r = prefix_power(chain, L, tol=1e-10, maxiter=50)
    assert r.converged and r.iterations < 50
    assert abs(r.sigma[0] - s[0]) <= 1e-10 * s[0] and r.sigma[1] < 1e-12 * s[0]


def test_csc_on_implicit_chains_equals_materialized():
    from chainlab.measures import csc

    net = narrow_vgg()
    xs = [rand_input(net.input_shape, seed=s, low=0.0) for s in (1, 2)]
    imp = [chainlab.extract(net, x, "zplus", materialize=False) for x in xs]
    mat = [chainlab.extract(net, x, "zplus") for x in xs]
    L = len(imp[0])
    a, b = csc(imp, layers=[L // 2, L], pairs=3), csc(mat, layers=[L // 2, L], pairs=3)
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert (x["k"], x["layer"], x["quantity"]) == (y["k"], y["layer"], y["quantity"])
        assert (x["value"] is None and y["value"] is None) or abs(x["value"] - y["value"]) < 1e-10, (x, y)
