"""DeepLIFT block chains: summation-to-delta, captum, hand-derived RevealCancel values, block structure.

Oracles: f_k(x) − f_k(x⁰) from the model itself; captum's DeepLift (Rescale); values derived by hand
below (min(x₁, x₂) of Shrikumar et al. 2017 and a two-ReLU net); scipy's gaussian_filter; dense
numpy products for the block algebra.

captum convention: captum's DeepLift uses full backward hooks; when a hooked ReLU feeds a hooked
MaxPool2d directly, the ReLU's hook receives the pool's *unmodified* gradient and captum's
attributions lose summation-to-delta (0.035 off on digits-cnn).  Separating the two modules by a
plain ``clone()`` (same function) restores captum's own rule, and then chainlab equals captum.
"""
import copy

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch
import torch.nn as nn

import chainlab
from chainlab.linalg import BlockOperator, zero_operator
from chainlab.linalg import DenseOperator, SparseOperator
from conftest import conv_net, mlp, rel_err

VARIANTS = ("rescale", "revealcancel")


_cache = {}


def chains_of(shipped):
    name, net, x = shipped
    if name not in _cache:
        _cache.clear()
        _cache[name] = {v: chainlab.extract(net, x, f"deeplift-{v}") for v in VARIANTS}
    if "ablation" not in _cache[name] and name != "sixt-cifar":
        _cache[name]["ablation"] = chainlab.extract(net, x, "deeplift-ablation")
    return _cache[name]


def model_delta(net, x, x0, k):
    with torch.no_grad():
        return float(net(x.double()).reshape(-1)[k] - net(x0.double()).reshape(-1)[k])


# ---------------------------------------------------------------------------------------------
# summation-to-delta


@pytest.mark.parametrize("variant", VARIANTS)
def test_summation_to_delta_shipped(shipped, variant):
    name, net, x = shipped
    chain = chains_of(shipped)[variant]
    assert chain.space == "deeplift" and chain.shapes[0] == tuple(x.shape[1:])
    for k in (chain.predicted, (chain.predicted + 3) % 10):
        C = chain.explain(k)
        assert C.shape == tuple(x.shape)
        delta = model_delta(net, x, torch.zeros_like(x), k)
        assert abs(C.sum() - delta) < 1e-8, (name, variant, k, C.sum(), delta)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("seed", [0, 1])
def test_summation_to_delta_random_nets(variant, seed):
    g = torch.Generator().manual_seed(100 + seed)
    for net, x in ((conv_net(seed), torch.randn(1, 2, 9, 9, generator=g, dtype=torch.float64)),
                   (mlp(seed), torch.randn(1, 7, generator=g, dtype=torch.float64))):
        x0 = 0.5 * torch.randn(x.shape, generator=g, dtype=torch.float64)
        chain = chainlab.extract(net, x, f"deeplift-{variant}", reference=x0)
        for k in range(chain.logits.size):
            assert abs(chain.explain(k).sum() - model_delta(net, x, x0, k)) < 1e-8


def test_deep_plain_conv_net_extracts_and_sums_to_delta():
    """Issue 14's reproducer: 8 × (Conv2d(c, 64, 3, padding=1), Kaiming fan-out, zero bias, ReLU) → Linear(4096, 10).
    The ± parts Δz⁺, Δz⁻ grow ~13× per layer while Δz stays small, so their cancellation alone exceeded the old
    absolute tolerance 1e-8·(1 + max|Δz|) (layer '14': error 2e-8 > 1.3e-8) and extraction was refused."""
    torch.manual_seed(0)
    layers, c = [], 3
    for _ in range(8):
        conv = nn.Conv2d(c, 64, 3, padding=1)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        layers += [conv, nn.ReLU()]
        c = 64
    net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(4096, 10)).double().eval()
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    chain = chainlab.extract(net, x, "deeplift-rescale")
    for k in (chain.predicted, (chain.predicted + 5) % 10):
        delta = model_delta(net, x, torch.zeros_like(x), k)
        assert abs(chain.explain(k).sum() - delta) < 1e-9 * (1 + abs(delta)), k


def test_summation_with_blur_reference_and_no_bias_net():
    net = chainlab.models.load("digits-cnn").double()
    x = chainlab.data.model_input("digits-cnn", chainlab.data.load_digits().x_test[7:8]).double()
    chain = chainlab.extract(net, x, "deeplift-revealcancel", reference="blur", sigma=1.5)
    x0 = torch.from_numpy(chain.reference.reshape(x.shape))
    k = chain.predicted
    assert abs(chain.explain(k).sum() - model_delta(net, x, x0, k)) < 1e-8
    torch.manual_seed(3)
    nb = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                       nn.Linear(27, 4, bias=False)).double().eval()
    xb = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    for v in VARIANTS:
        ch = chainlab.extract(nb, xb, f"deeplift-{v}", reference="blur")
        x0 = torch.from_numpy(ch.reference.reshape(xb.shape))
        for k in range(4):
            assert abs(ch.explain(k).sum() - model_delta(nb, xb, x0, k)) < 1e-8


def test_blur_reference_equals_scipy_gaussian_filter():
    from scipy.ndimage import gaussian_filter
    from chainlab.extraction.deeplift import gaussian_blur
    x = torch.rand(1, 3, 10, 12, dtype=torch.float64)
    for sigma in (0.7, 1.0, 2.0):
        ours = gaussian_blur(x, sigma).numpy()
        ref = gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma), mode="mirror", truncate=np.ceil(3 * sigma) / sigma)
        assert np.abs(ours - ref).max() < 1e-12


# ---------------------------------------------------------------------------------------------
# captum


class Clone(nn.Module):
    def forward(self, x):
        return x.clone()


def captum_model(seq):
    """The same function with a clone() before every MaxPool2d (see the module docstring)."""
    mods = []
    for m in seq.children():
        if isinstance(m, nn.MaxPool2d):
            mods.append(Clone())
        mods.append(copy.deepcopy(m))
    return nn.Sequential(*mods).double().eval()


def test_rescale_equals_captum_deeplift(shipped):
    from captum.attr import DeepLift
    name, net, x = shipped
    chain = chains_of(shipped)["rescale"]
    for k in (chain.predicted, (chain.predicted + 1) % 10):
        theirs = DeepLift(captum_model(net)).attribute(x.clone(), baselines=torch.zeros_like(x), target=k)
        assert rel_err(chain.explain(k), theirs.detach().numpy()) < 1e-9, (name, k)


def test_rescale_equals_captum_with_tensor_reference():
    from captum.attr import DeepLift
    net = chainlab.models.load("digits-cnn").double()
    x = chainlab.data.model_input("digits-cnn", chainlab.data.load_digits().x_test[0:1]).double()
    x0 = torch.rand_like(x) * 0.3
    chain = chainlab.extract(net, x, "deeplift-rescale", reference=x0[0])   # unbatched reference accepted
    theirs = DeepLift(captum_model(net)).attribute(x.clone(), baselines=x0, target=2).detach().numpy()
    assert rel_err(chain.explain(2), theirs) < 1e-9


# ---------------------------------------------------------------------------------------------
# block structure


def test_rescale_blocks_collapse(shipped):
    name, net, x = shipped
    chain = chains_of(shipped)["rescale"]
    for op in chain:
        assert op.kind == "block"
        (A, B), (C, D) = op.blocks
        assert A is D and B is C                     # stored once: [[A, B], [B, A]]
        v = np.random.default_rng(0).standard_normal(op.n_out)
        top = A.matvec(v) + B.matvec(v)
        assert np.allclose(op.matvec(np.concatenate([v, v])), np.concatenate([top, top]), atol=1e-12)
    if name == "sixt-cifar":
        return                                       # collapsed() adds blocks of ~10⁷ entries: digits nets only
    col = chain.collapsed()
    k = chain.predicted
    dx = chain.x - chain.reference
    assert rel_err(col.explain(k).reshape(-1) * dx, chain.explain(k).reshape(-1)) < 1e-12


def test_revealcancel_blocks_are_coupled(shipped):
    name, net, x = shipped
    rc = chains_of(shipped)["revealcancel"]
    coupled = 0
    for op in rc:
        (A, B), (C, D) = op.blocks
        if B.nnz and C.nnz and np.any(B.to_sparse("csc").data) and np.any(C.to_sparse("csc").data):
            coupled += 1
    assert coupled >= 2
    small = [op for op in rc if op.nnz < 2_000_000]
    with pytest.raises(ValueError, match="does not collapse"):
        for op in small:
            op.collapse()


def test_ablation_blocks(shipped):
    """Off-diagonal blocks are exact zeros; diagonal = rescale's W⁺ᵀS and W⁻ᵀS (pools: P S on both)."""
    name, net, x = shipped
    if name == "sixt-cifar":
        pytest.skip("same code path as digits-cnn; saves one sixt-cifar extraction")
    ch = chains_of(shipped)
    rng = np.random.default_rng(1)
    for st_rule, op, ref in zip(ch["ablation"].layer_rules, ch["ablation"], ch["rescale"]):
        (A, B), (C, D) = op.blocks
        assert B.nnz == 0 and C.nnz == 0 and op.is_decoupled()
        (Ar, Br), _ = ref.blocks
        v = rng.standard_normal(op.n_out)
        assert np.array_equal(A.matvec(v), Ar.matvec(v))
        expect_d = Br if st_rule.endswith("linear-block") else Ar
        assert np.array_equal(D.matvec(v), expect_d.matvec(v))


def test_ablation_is_not_conservative_by_hand():
    """f(x) = x₁ − x₂, x = (1, 1), x⁰ = 0: m⁺ = W⁺ᵀ·1 = (1, 0), m⁻ = W⁻ᵀ·1 = (0, −1); Δx⁻ = 0 so C = (1, 0), ΣC = 1 ≠ 0."""
    net = nn.Sequential(nn.Linear(2, 1, bias=False)).double().eval()
    net[0].weight.data = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    ch = chainlab.extract(net, torch.tensor([[1.0, 1.0]], dtype=torch.float64), "deeplift-ablation")
    assert np.array_equal(ch.explain(0).reshape(-1), [1.0, 0.0])
    assert ch.delta(0) == 0.0
    rs = chainlab.extract(net, torch.tensor([[1.0, 1.0]], dtype=torch.float64), "deeplift-rescale")
    assert np.array_equal(rs.explain(0).reshape(-1), [1.0, -1.0])


# ---------------------------------------------------------------------------------------------
# RevealCancel by hand


def _min_net():
    """min(x₁, x₂) = ReLU(x₁) − ReLU(−x₁) − ReLU(x₁ − x₂) (Shrikumar et al. 2017, x₁ written with two ReLUs)."""
    net = nn.Sequential(nn.Linear(2, 3, bias=False), nn.ReLU(), nn.Linear(3, 1, bias=False)).double().eval()
    net[0].weight.data = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, -1.0]], dtype=torch.float64)
    net[2].weight.data = torch.tensor([[1.0, -1.0, -1.0]], dtype=torch.float64)
    return net


def test_revealcancel_min_by_hand():
    """x = (3, 1), x⁰ = 0.  Unit h₃ = ReLU(x₁ − x₂): Δz⁺ = 3, Δz⁻ = −1, so
    Δh⁺ = ½(3 − 0) + ½(2 − 0) = 2.5, Δh⁻ = ½(0 − 0) + ½(2 − 3) = −0.5, s⁺ = 5/6, s⁻ = 1/2.
    h₁ = ReLU(x₁): s⁺ = 1 (s⁻ unused, Δz⁻ = 0 → rescale 1); h₂ = ReLU(−x₁): s± = 0.
    Top: m_h⁺ = m_h⁻ = (1, −1, −1); m_z⁺ = (1, 0, −5/6), m_z⁻ = (1, 0, −1/2).
    m_x⁺ = W⁺ᵀm_z⁺ + W⁻ᵀm_z⁻ = (1/6, 1/2); m_x⁻ = W⁻ᵀm_z⁺ + W⁺ᵀm_z⁻ = (1/2, 5/6).
    C = m_x⁺ ⊙ (3, 1) = (1/2, 1/2): RevealCancel splits min = 1 evenly; Rescale gives (0, 1)."""
    net = _min_net()
    x = torch.tensor([[3.0, 1.0]], dtype=torch.float64)
    rc = chainlab.extract(net, x, "deeplift-revealcancel")
    mp, mm = rc.multipliers(0)
    assert np.allclose(mp, [1 / 6, 1 / 2], atol=1e-14) and np.allclose(mm, [1 / 2, 5 / 6], atol=1e-14)
    assert np.allclose(rc.explain(0).reshape(-1), [0.5, 0.5], atol=1e-14)
    rs = chainlab.extract(net, x, "deeplift-rescale")
    assert np.allclose(rs.explain(0).reshape(-1), [0.0, 1.0], atol=1e-14)


def test_revealcancel_two_relu_net_by_hand():
    """h = ReLU(x₁ − x₂), g = ReLU(2h − 1), y = g;  x = (3, 1), x⁰ = 0 (z₂⁰ = −1, g⁰ = 0, y − y⁰ = 3).
    Layer 1 as above: Δh⁺ = 2.5, Δh⁻ = −0.5 (carried), s₁⁺ = 5/6, s₁⁻ = 1/2.
    Layer 2: Δz₂⁺ = 2·2.5 = 5, Δz₂⁻ = 2·(−0.5) = −1;
    Δg⁺ = ½(f(4) − f(−1)) + ½(f(3) − f(−2)) = 3.5, Δg⁻ = ½(f(−2) − f(−1)) + ½(f(3) − f(4)) = −0.5,
    s₂⁺ = 0.7, s₂⁻ = 0.5.  Back: m_z₂ = (0.7, 0.5); m_h = (2·0.7, 2·0.5) = (1.4, 1);
    m_z₁ = (5/6·1.4, 1/2·1) = (7/6, 1/2); m_x⁺ = (7/6, −1/2), m_x⁻ = (1/2, −7/6);
    C = (3·7/6, 1·(−1/2)) = (3.5, −0.5), ΣC = 3."""
    net = nn.Sequential(nn.Linear(2, 1, bias=False), nn.ReLU(), nn.Linear(1, 1), nn.ReLU(),
                        nn.Linear(1, 1, bias=False)).double().eval()
    net[0].weight.data = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    net[2].weight.data = torch.tensor([[2.0]], dtype=torch.float64)
    net[2].bias.data = torch.tensor([-1.0], dtype=torch.float64)
    net[4].weight.data = torch.tensor([[1.0]], dtype=torch.float64)
    rc = chainlab.extract(net, torch.tensor([[3.0, 1.0]], dtype=torch.float64), "deeplift-revealcancel")
    mp, mm = rc.multipliers(0)
    assert np.allclose(mp, [7 / 6, -1 / 2], atol=1e-14) and np.allclose(mm, [1 / 2, -7 / 6], atol=1e-14)
    assert np.allclose(rc.explain(0).reshape(-1), [3.5, -0.5], atol=1e-14)
    (A, B), (C, D) = rc[1].blocks            # layer 2 block: [[W⁺ᵀs⁺, W⁻ᵀs⁻], [W⁻ᵀs⁺, W⁺ᵀs⁻]]
    assert np.allclose(rc[1].to_dense(), [[1.4, 0.0], [0.0, 1.0]], atol=1e-14)


# ---------------------------------------------------------------------------------------------
# the block operator itself


def _rand_block(rng, n, m, sparse_b=False):
    mats = [rng.standard_normal((n, m)) for _ in range(4)]
    ops = [DenseOperator(a) for a in mats]
    if sparse_b:
        import scipy.sparse as sp
        ops[1] = SparseOperator(sp.random(n, m, density=0.3, random_state=1, format="csc"))
        mats[1] = ops[1].to_dense()
        ops[2] = zero_operator(n, m)
        mats[2] = np.zeros((n, m))
    return BlockOperator(*ops), np.block([[mats[0], mats[1]], [mats[2], mats[3]]])


def test_block_operator_algebra():
    rng = np.random.default_rng(0)
    M1, D1 = _rand_block(rng, 4, 5)
    M2, D2 = _rand_block(rng, 5, 3, sparse_b=True)
    assert M1.shape == (8, 10) and np.array_equal(M1.to_dense(), D1)
    assert np.allclose(M1.to_sparse("csc").toarray(), D1)
    V = rng.standard_normal((10, 2))
    assert np.allclose(M1 @ V, D1 @ V) and np.allclose(M1.rmatmat(rng.standard_normal((8, 2))).shape, (10, 2))
    U = rng.standard_normal((8, 3))
    assert np.allclose(M1.rmatmat(U), D1.T @ U) and np.allclose(M1.T.to_dense(), D1.T)
    P = M1 @ M2
    assert isinstance(P, BlockOperator) and np.allclose(P.to_dense(), D1 @ D2)
    Z = BlockOperator(zero_operator(5, 3), M2.B, M2.C, M2.D) @ BlockOperator(*(zero_operator(3, 2),) * 4)
    assert Z.nnz == 0 and Z.blocks[0][0].kind == "sparse"
    L = spla.aslinearoperator(M1)
    assert np.allclose(L.matvec(V[:, 0]), D1 @ V[:, 0]) and np.allclose(L.rmatvec(U[:, 0]), D1.T @ U[:, 0])
    s = spla.svds(L, k=2, return_singular_vectors=False)
    assert np.allclose(sorted(s), sorted(np.linalg.svd(D1, compute_uv=False))[-2:])
    with pytest.raises(ValueError, match="one shape"):
        BlockOperator(np.zeros((2, 2)), np.zeros((2, 3)), np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="composes only with a block operator"):
        M1 @ DenseOperator(np.zeros((10, 2)))


def test_chain_dense_equals_block_product():
    net = mlp(4, sizes=(5, 6, 4, 3))
    x = torch.randn(1, 5, dtype=torch.float64)
    ch = chainlab.extract(net, x, "deeplift-revealcancel", reference=torch.randn(5, dtype=torch.float64))
    dense = ch.to_dense()
    ref = ch[0].to_dense() @ ch[1].to_dense() @ ch[2].to_dense()
    assert dense.shape == (10, 6) and np.allclose(dense, ref, atol=1e-13)
    k = 1
    e = np.zeros(6)
    e[k] = e[3 + k] = 1
    m = dense @ e
    dp, dm = ch.delta_input
    assert np.allclose(m[:5] * dp + m[5:] * dm, ch.explain(k).reshape(-1))
    assert np.allclose((ch[0] @ ch[1] @ ch[2]).to_dense(), ref)


# ---------------------------------------------------------------------------------------------
# bad input


def test_bad_reference_and_options():
    net = chainlab.models.load("digits-cnn")
    x = chainlab.data.model_input("digits-cnn", chainlab.data.load_digits().x_test[:1])
    with pytest.raises(ValueError, match=r"input's shape \(1, 1, 8, 8\).*reference of shape \(1, 1, 7, 8\)"):
        chainlab.extract(net, x, "deeplift-rescale", reference=torch.zeros(1, 1, 7, 8))
    with pytest.raises(ValueError, match="option reference of rule 'deeplift-rescale' must be one of zeros, blur; got 'ones'"):
        chainlab.extract(net, x, "deeplift-rescale", reference="ones")
    with pytest.raises(ValueError, match="option sigma of rule 'deeplift-rescale' must be > 0, got -1"):
        chainlab.extract(net, x, "deeplift-rescale", reference="blur", sigma=-1)
    with pytest.raises(ValueError, match="option sigma of rule 'deeplift-rescale' is only used with reference='blur'"):
        chainlab.extract(net, x, "deeplift-rescale", sigma=2.0)
    with pytest.raises(ValueError, match="unknown option.*'epsilon'.*deeplift-ablation"):
        chainlab.extract(net, x, "deeplift-ablation", epsilon=0.1)
    mlp_net = chainlab.models.load("digits-mlp")
    xm = chainlab.data.model_input("digits-mlp", chainlab.data.load_digits().x_test[:1])
    with pytest.raises(ValueError, match=r"blur' needs an image input.*\(1, 64\)"):
        chainlab.extract(mlp_net, xm, "deeplift-revealcancel", reference="blur")
    with pytest.raises(ValueError, match="NaN"):
        chainlab.extract(mlp_net, xm, "deeplift-rescale", reference=torch.full((64,), float("nan")))


def test_float32_option():
    net, x = conv_net(3), torch.randn(1, 2, 9, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    c64 = chainlab.extract(net, x, "deeplift-revealcancel")
    c32 = chainlab.extract(net, x, "deeplift-revealcancel", dtype="float32")
    assert all(op.dtype == np.float32 and b.dtype == np.float32 for op in c32 for row in op.blocks for b in row)
    assert rel_err(c32.explain(2), c64.explain(2)) < 1e-5
