"""Golub–Kahan–Lanczos singular values (chainlab.measures.krylov) against numpy's dense SVD.

Oracles: np.linalg.svd of the same matrix (random matrices with a prescribed, clustered spectrum,
and the materialized layer matrices of a conv net with stride, padding, pooling and batch-norm).
Theory checked: Ritz values are lower bounds that never decrease with the steps, and the
"residual" stop certifies |θ_i − σ_i| ≤ ρ_i.
"""
import numpy as np
import pytest
import torch

import chainlab
from chainlab.measures import lanczos_singular_values, singular_values, spectra


def with_spectrum(sigma, m, n, seed=0):
    """A (m × n) = Q_1 diag(sigma) Q_2ᵀ with random orthonormal Q_1, Q_2: its singular values are sigma."""
    rng = np.random.default_rng(seed)
    Q1, _ = np.linalg.qr(rng.standard_normal((m, len(sigma))))
    Q2, _ = np.linalg.qr(rng.standard_normal((n, len(sigma))))
    return (Q1 * sigma) @ Q2.T


def run(A, **kw):
    return lanczos_singular_values(lambda v: A @ v, lambda u: A.T @ u, A.shape, **kw)


@pytest.mark.parametrize("shape", [(400, 250), (250, 400)])
@pytest.mark.parametrize("reorth", ["both", "smaller"])
def test_residual_stop_is_a_certificate(shape, reorth):
    # a clustered top: σ1/σ2 − 1 = 1e-3, then a continuous band
    sigma = np.concatenate([[2.0, 2.0 / 1.001], np.linspace(1.95, 0.01, 200)])
    A = with_spectrum(sigma, *shape)
    r = run(A, tol=1e-9, stop="residual", reorthogonalize=reorth)
    assert r.converged == "residual"
    assert np.all(np.abs(r.sigma - sigma[:2]) <= r.residuals + 1e-12)
    np.testing.assert_allclose(r.sigma, sigma[:2], rtol=1e-9)
    assert r.steps < 200                                     # a Krylov method, not a full sweep


def test_ritz_values_are_monotone_lower_bounds():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((300, 200))
    s = np.linalg.svd(A, compute_uv=False)
    r = run(A, top=3, tol=1e-12, stop="residual", maxiter=60)
    H = r.history
    assert H.shape == (r.steps, 3)
    assert np.all(H <= s[:3] * (1 + 1e-12))                  # θ_i ≤ σ_i (interlacing)
    assert np.all(np.diff(H, axis=0) >= -1e-12 * s[0])       # never decrease


def test_stalled_stop_on_a_continuous_spectrum_edge():
    """The case it is built for: no gap at the top (σ_i = 2 − 2(i/n)², a smooth spectrum edge like a conv's)."""
    n = 600
    sigma = 2 - 2 * (np.arange(n) / n) ** 2
    A = with_spectrum(sigma, 900, n, seed=5)
    tol = 1e-3
    r = run(A, tol=tol)
    assert r.converged == "stalled" and r.growth <= tol
    err = (sigma[:2] - r.sigma) / sigma[:2]
    assert np.all(err >= -1e-12)                             # still lower bounds
    assert np.all(err <= 3 * tol), err                       # and within a few tol of the truth
    assert abs(r.sigma[0] / r.sigma[1] - sigma[0] / sigma[1]) <= 3 * tol
    assert 0.3 * err.max() <= r.growth <= 3 * err.max()     # the growth is an estimate of the remaining error


def test_exact_when_the_krylov_space_is_exhausted():
    # all singular values equal (a non-overlapping max-pool: a partial isometry): each block is exact after
    # one step, and the restart finds the second 1
    A = np.zeros((40, 10))
    A[np.arange(10) * 4, np.arange(10)] = 1.0
    r = run(A, tol=1e-6)
    assert r.exhausted and r.steps == 2
    np.testing.assert_allclose(r.sigma, [1.0, 1.0], atol=1e-14)
    assert singular_values(A, 2, exact_below=0, method="lanczos", tol=1e-6) == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_repeated_top_singular_value_of_an_overlapping_max_pool(dtype):
    """Winner-take-all matrix M (inputs × windows, one 1 per column at the window's argmax): MMᵀ is diagonal
    with the number of windows won by each input, so σ = √count.  Two inputs win 4 windows, one wins 3:
    σ1 = σ2 = 2, σ3 = √3.  One Krylov space sees the value 2 only once (it would report σ2 = √3)."""
    counts = [4, 4, 3, 2, 1, 1, 1, 0, 2, 1]
    cols = np.repeat(np.arange(len(counts)), counts)
    M = np.zeros((len(counts), len(cols)))
    M[cols, np.arange(len(cols))] = 1.0
    M = M[:, np.random.default_rng(0).permutation(len(cols))]
    truth = np.linalg.svd(M, compute_uv=False)
    assert truth[:3] == pytest.approx([2, 2, np.sqrt(3)])
    r = lanczos_singular_values(lambda v: M @ v, lambda u: M.T @ u, M.shape, tol=1e-4, dtype=dtype)
    assert r.exhausted
    np.testing.assert_allclose(r.sigma, [2.0, 2.0], rtol=1e-5)
    r3 = lanczos_singular_values(lambda v: M @ v, lambda u: M.T @ u, M.shape, top=3, tol=1e-4, dtype=dtype)
    np.testing.assert_allclose(r3.sigma, truth[:3], rtol=1e-5)


def test_bad_arguments():
    A = np.eye(3)
    with pytest.raises(ValueError, match="stop"):
        run(A, stop="never")
    with pytest.raises(ValueError, match="reorthogonalize"):
        run(A, reorthogonalize="neither")
    with pytest.raises(ValueError, match="top"):
        run(A, top=0)
    with pytest.raises(ValueError, match="method"):
        singular_values(A, 2, method="magic")


def test_layer_spectra_of_a_conv_net_equal_dense_svd():
    """spectra(method="lanczos") on implicit operators of a conv/stride/pad/pool/BN/no-bias net = dense SVD."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 6, 3, stride=2, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(6 * 3 * 3, 5)).double().eval()
    net[1].running_mean.uniform_(-0.5, 0.5)
    net[1].running_var.uniform_(0.5, 2.0)
    x = torch.rand(1, 2, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    imp = chainlab.extract(net, x, "gradient", materialize=False)
    got = spectra(imp, of=("layer",), exact_below=0, method="lanczos", tol=1e-10)
    got = {(r["k"], r["quantity"]): r for r in got}
    for k, op in enumerate(imp, start=1):
        s = np.linalg.svd(op.to_dense(), compute_uv=False)
        if got[(k, "sigma1")]["method"] != "lanczos":
            continue
        assert got[(k, "sigma1")]["value"] == pytest.approx(s[0], rel=1e-8), k
        assert got[(k, "sigma2")]["value"] == pytest.approx(s[1], rel=1e-8), k
    assert any(r["method"] == "lanczos" for r in got.values())


def test_measure_dispatch_passes_the_method_to_spectra():
    """measure(what=["spectra"], method="lanczos") (also `chainlab measure -O method=lanczos`) = the svds records."""
    from chainlab.measures import measure
    model = chainlab.models.load("digits-cnn")
    x = chainlab.data.model_input("digits-cnn", chainlab.data.load_digits().x_test[:1])
    chain = chainlab.extract(model, x, "gradient")
    opts = dict(what=["spectra"], of=("layer",), exact_below=0)
    lz = measure([chain], method="lanczos", tol=1e-10, **opts)
    ref = measure([chain], **opts)
    assert {r["method"] for r in lz if r["quantity"] == "sigma1"} >= {"lanczos"}
    assert [(r["k"], r["quantity"]) for r in lz] == [(r["k"], r["quantity"]) for r in ref]
    for a, b in zip(lz, ref):
        if b["quantity"] in ("sigma1", "sigma2"):
            assert a["value"] == pytest.approx(b["value"], rel=1e-8, abs=1e-12), (a["k"], a["quantity"])
