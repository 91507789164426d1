"""DeepLIFT: the deeplift package's rule (Sixt et al.'s methods) and the ± block chains (the ``-pm`` variants).

Oracles: f_k(x) − f_k(x⁰) from the model itself; captum's DeepLift (Rescale); values derived by hand
below (min(x₁, x₂) of Shrikumar et al. 2017 and a two-ReLU net, for both rules); scipy's gaussian_filter;
dense numpy products for the block algebra; an independent float64 numpy re-implementation of the
deeplift package's layer equations (tests/deeplift_package_reference.py) on a 3-layer net, a conv net with
stride, padding, no-bias conv, BatchNorm, max- and average pooling, and a residual net; float32 against
float64 (CSC per boundary, summation-to-delta) on the shipped vgg-cifar and resnet-cifar.

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
from conftest import conv_net, mlp, randomize_bn, rel_err

VARIANTS = ("rescale-pm", "revealcancel-pm")        # the ± rule (captum's max-pool: conservative everywhere)
PACKAGE = ("rescale", "revealcancel", "ablation")     # the deeplift package's rule


_cache = {}


def chains_of(shipped):
    name, net, x = shipped
    if name not in _cache:
        _cache.clear()
        _cache[name] = {v: chainlab.extract(net, x, f"deeplift-{v}") for v in VARIANTS}
    if "ablation" not in _cache[name] and name != "sixt-cifar":
        _cache[name]["ablation-pm"] = chainlab.extract(net, x, "deeplift-ablation-pm")
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
    """The ± rule with captum's max-pool conserves on nets with overlapping max-pools and a random reference."""
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
    for rule in ("deeplift-rescale-pm", "deeplift-revealcancel"):      # (no pool: the package's rule conserves too)
        chain = chainlab.extract(net, x, rule)
        for k in (chain.predicted, (chain.predicted + 5) % 10):
            delta = model_delta(net, x, torch.zeros_like(x), k)
            assert abs(chain.explain(k).sum() - delta) < 1e-9 * (1 + abs(delta)), (rule, k)


def test_summation_with_blur_reference_and_no_bias_net():
    net = chainlab.models.load("digits-cnn").double()
    x = chainlab.data.model_input("digits-cnn", chainlab.data.load_digits().x_test[7:8]).double()
    chain = chainlab.extract(net, x, "deeplift-revealcancel-pm", reference="blur", sigma=1.5)
    x0 = torch.from_numpy(chain.reference.reshape(x.shape))
    k = chain.predicted
    assert abs(chain.explain(k).sum() - model_delta(net, x, x0, k)) < 1e-8
    torch.manual_seed(3)
    nb = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                       nn.Linear(27, 4, bias=False)).double().eval()
    xb = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    for v in VARIANTS + PACKAGE[:2]:          # average pools: both rules conserve
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
    chain = chains_of(shipped)["rescale-pm"]
    for k in (chain.predicted, (chain.predicted + 1) % 10):
        theirs = DeepLift(captum_model(net)).attribute(x.clone(), baselines=torch.zeros_like(x), target=k)
        assert rel_err(chain.explain(k), theirs.detach().numpy()) < 1e-9, (name, k)


def test_rescale_equals_captum_with_tensor_reference():
    from captum.attr import DeepLift
    net = chainlab.models.load("digits-cnn").double()
    x = chainlab.data.model_input("digits-cnn", chainlab.data.load_digits().x_test[0:1]).double()
    x0 = torch.rand_like(x) * 0.3
    chain = chainlab.extract(net, x, "deeplift-rescale-pm", reference=x0[0])   # unbatched reference accepted
    theirs = DeepLift(captum_model(net)).attribute(x.clone(), baselines=x0, target=2).detach().numpy()
    assert rel_err(chain.explain(2), theirs) < 1e-9


# ---------------------------------------------------------------------------------------------
# block structure


def test_rescale_blocks_collapse(shipped):
    name, net, x = shipped
    chain = chains_of(shipped)["rescale-pm"]
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
    rc = chains_of(shipped)["revealcancel-pm"]
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
    for st_rule, op, ref in zip(ch["ablation-pm"].layer_rules, ch["ablation-pm"], ch["rescale-pm"]):
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
    for suffix in ("-pm", ""):      # the package's ablation: Δx > 0 everywhere, so m = W⁺ᵀ·1 = (1, 0) as well
        ch = chainlab.extract(net, torch.tensor([[1.0, 1.0]], dtype=torch.float64), "deeplift-ablation" + suffix)
        assert np.array_equal(ch.explain(0).reshape(-1), [1.0, 0.0])
        assert ch.delta(0) == 0.0
        rs = chainlab.extract(net, torch.tensor([[1.0, 1.0]], dtype=torch.float64), "deeplift-rescale" + suffix)
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
    rc = chainlab.extract(net, x, "deeplift-revealcancel-pm")
    mp, mm = rc.multipliers(0)
    assert np.allclose(mp, [1 / 6, 1 / 2], atol=1e-14) and np.allclose(mm, [1 / 2, 5 / 6], atol=1e-14)
    assert np.allclose(rc.explain(0).reshape(-1), [0.5, 0.5], atol=1e-14)
    rs = chainlab.extract(net, x, "deeplift-rescale-pm")
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
    rc = chainlab.extract(net, torch.tensor([[3.0, 1.0]], dtype=torch.float64), "deeplift-revealcancel-pm")
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
    ch = chainlab.extract(net, x, "deeplift-revealcancel-pm", reference=torch.randn(5, dtype=torch.float64))
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
    for rule in ("deeplift-revealcancel-pm", "deeplift-revealcancel"):
        c64 = chainlab.extract(net, x, rule)
        c32 = chainlab.extract(net, x, rule, dtype="float32")
        assert all(op.dtype == np.float32 for op in c32)
        if c32.paired:
            assert all(b.dtype == np.float32 for op in c32 for row in op.blocks for b in row)
        assert rel_err(c32.explain(2), c64.explain(2)) < 1e-5


# ---------------------------------------------------------------------------------------------
# the deeplift package's rule (Sixt et al.'s methods): an independent numpy re-implementation


def _ref_layer(m, mode):
    import deeplift_package_reference as R
    f = lambda t: t.detach().double().numpy()     # noqa: E731
    if isinstance(m, nn.Linear):
        return R.Dense(f(m.weight), f(m.bias) if m.bias is not None else np.zeros(m.out_features))
    if isinstance(m, nn.Conv2d):
        return R.Conv(f(m.weight), None if m.bias is None else f(m.bias), m.stride[0], m.padding[0])
    if isinstance(m, nn.BatchNorm2d):
        return R.BatchNorm(f(m.weight), f(m.bias), f(m.running_mean), f(m.running_var), m.eps)
    if isinstance(m, nn.ReLU):
        return R.ReLU(mode)
    if isinstance(m, nn.MaxPool2d):
        return R.MaxPool(m.kernel_size, m.stride)
    if isinstance(m, nn.AvgPool2d):
        return R.AvgPool(m.kernel_size)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return R.GlobalAvgPool()
    if isinstance(m, nn.Flatten):
        return R.Flatten()
    raise TypeError(type(m))


def _ref_resnet(net, mode):
    """A resnet_tiny as reference layers: stem, blocks as Residual([main, shortcut]) + ReLU, pooling, fc."""
    import deeplift_package_reference as R
    layers = [_ref_layer(m, mode) for m in (net.conv1, net.bn1, net.relu)]
    for i in range(net.n_stages):
        for blk in getattr(net, f"layer{i + 1}"):
            main = [_ref_layer(m, mode) for m in (blk.conv1, blk.bn1, nn.ReLU(), blk.conv2, blk.bn2)]
            short = [] if blk.downsample is None else [_ref_layer(m, mode) for m in blk.downsample]
            layers += [R.Residual([main, short]), R.ReLU(mode)]
    return layers + [R.GlobalAvgPool(), _ref_layer(net.fc, mode)]


def _bn_conv_net(gammas):
    """Conv (no bias, stride 1, padding 1) → BN (γ given) → ReLU → max-pool 2 → conv (stride 2, padding 1) → ReLU
    → avg-pool 2 → flatten → Linear; input (1, 2, 16, 16)."""
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(4, 5, 3, stride=2, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                        nn.Linear(20, 3)).double().eval()
    g = torch.Generator().manual_seed(1)
    bn = net[1]
    bn.running_mean.copy_(torch.rand(4, generator=g, dtype=torch.float64) - 0.5)
    bn.running_var.copy_(torch.rand(4, generator=g, dtype=torch.float64) + 0.5)
    bn.weight.data.copy_(torch.tensor(gammas, dtype=torch.float64))
    bn.bias.data.copy_(torch.rand(4, generator=g, dtype=torch.float64) - 0.5)
    return net


@pytest.mark.parametrize("variant", PACKAGE)
def test_package_rule_equals_numpy_reference(variant):
    """deeplift-{rescale, revealcancel, ablation} equal the package's equations re-implemented in float64 numpy loops
    (tests/deeplift_package_reference.py) to 1e-10: a 3-layer MLP and a conv net with BN, max- and average pooling,
    stride, padding and a no-bias conv (random references: the max-pool gradient is taken at x), and a residual net.
    BN is folded by chainlab, a separate layer in the reference; for the ablation the fold and the package's BN layer
    differ on channels with γ < 0 (the module docstring), so its conv net has γ > 0."""
    import deeplift_package_reference as R
    mode = "revealcancel" if variant == "revealcancel" else "rescale"
    g = torch.Generator().manual_seed(11)
    mlp3 = mlp(5, sizes=(6, 8, 7, 4))
    gammas = [0.7, 0.9, 1.2, 0.4] if variant == "ablation" else [0.7, -0.9, 1.2, -0.4]
    conv = _bn_conv_net(gammas)
    cases = [(mlp3, [_ref_layer(m, mode) for m in mlp3], torch.randn(1, 6, generator=g, dtype=torch.float64)),
             (conv, [_ref_layer(m, mode) for m in conv], torch.randn(1, 2, 16, 16, generator=g, dtype=torch.float64))]
    res = randomize_bn(chainlab.zoo.resnet_tiny(seed=3, num_classes=4), 3).double().eval()
    cases.append((res, _ref_resnet(res, mode), torch.randn(res.input_shape, generator=g, dtype=torch.float64)))
    for net, layers, x in cases:
        x0 = 0.4 * torch.randn(x.shape, generator=g, dtype=torch.float64)
        ch = chainlab.extract(net, x, f"deeplift-{variant}", reference=x0)
        assert not ch.paired
        nonzero = 0
        for k in range(ch.logits.size):
            ref = R.contributions(layers, x[0].numpy(), x0[0].numpy(), k, ablation=(variant == "ablation"))
            nonzero += bool(np.abs(ref).max() > 0)
            assert np.abs(ch.explain(k)[0] - ref).max() <= 1e-10 * max(np.abs(ref).max(), 1e-3), (variant, k)
            if variant != "ablation" and not any(isinstance(m, nn.MaxPool2d) for m in net.modules()):
                # conservative without max-pool, up to the package's 1e-7 pseudocount (Δz± below 0.5e-7 are moved
                # by 1e-7, so each such unit's Δh± by ≤ 1e-7·sup|f'|) and Rescale's gradient where |Δz| < 1e-7
                C = ch.explain(k)
                assert abs(C.sum() - model_delta(net, x, x0, k)) < 1e-6 * np.abs(C).sum()
        assert nonzero >= 2, (type(net).__name__, variant)


def test_package_revealcancel_min_by_hand():
    """min(x₁, x₂) at x = (3, 1), x⁰ = 0 under the package's rule.  Layer 1 (Δx > 0: the parts are those of the ±
    rule): h₁ s± = 1; h₃ s⁺ = 5/6, s⁻ = 1/2; h₂ = ReLU(−x₁) has Δz⁺ = 0, pc(0) = 1e-7:
    s⁺ = [½(f(1e-7) − f(0)) + ½(f(−3 + 1e-7) − f(−3))]/1e-7 = 1/2, s⁻ = ½(f(1e-7 − 3) − f(1e-7))/(−3) = 1e-7/6.
    Top m_h = (1, −1, −1): m_z⁺ = (1, −1/2, −5/6), m_z⁻ = (1, −1e-7/6, −1/2).  m_x = W⁺ᵀm_z⁺ + W⁻ᵀm_z⁻
    = (1 − 5/6 + 1e-7/6, 1/2) (both inputs Δx > 0); C = (1/2 + 5e-8, 1/2).  The ± rule gives (1/2, 1/2) exactly."""
    net = _min_net()
    rc = chainlab.extract(net, torch.tensor([[3.0, 1.0]], dtype=torch.float64), "deeplift-revealcancel")
    np.testing.assert_allclose(rc.explain(0).reshape(-1), [0.5 + 5e-8, 0.5], rtol=0, atol=1e-14)
    mp, mm = rc.multipliers(0)
    assert mp is mm


def test_package_revealcancel_two_relu_net_by_hand():
    """h = ReLU(x₁ − x₂), g = ReLU(2h − 1), x = (3, 1), x⁰ = 0, z₂⁰ = −1.  The package splits layer 2's *total*
    input Δh = 2 > 0: Δz₂⁺ = 4, Δz₂⁻ = 0 (the ± rule carries Δh± = (2.5, −0.5): Δz₂± = (5, −1)).
    with pc(Δz₂⁻) = pc(0) = 1e-7: s₂⁺ = [½(f(3) − f(−1)) + ½(f(3 + 1e-7) − f(−1 + 1e-7))]/4 = (3 + 1e-7/2)/4,
    s₂⁻ = ½(f(3 + 1e-7) − f(3))/1e-7 = 1/2; m_h = W⁺ s₂⁺ = 3/2 + 2.5e-8 =: μ; layer 1: s₁± = (5/6, 1/2),
    m_z₁ = (5μ/6, μ/2), m_x = (5μ/6, −μ/2), C = (5μ/2, −μ/2) = (15/4 + 6.25e-8, −3/4 − 1.25e-8): Σ C = 3 = Δf up to
    the pseudocount's 5e-8.  (The ± rule: C = (3.5, −0.5).)"""
    net = nn.Sequential(nn.Linear(2, 1, bias=False), nn.ReLU(), nn.Linear(1, 1), nn.ReLU(),
                        nn.Linear(1, 1, bias=False)).double().eval()
    net[0].weight.data = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    net[2].weight.data = torch.tensor([[2.0]], dtype=torch.float64)
    net[2].bias.data = torch.tensor([-1.0], dtype=torch.float64)
    net[4].weight.data = torch.tensor([[1.0]], dtype=torch.float64)
    rc = chainlab.extract(net, torch.tensor([[3.0, 1.0]], dtype=torch.float64), "deeplift-revealcancel")
    mu = 1.5 + 2.5e-8
    np.testing.assert_allclose(rc.explain(0).reshape(-1), [2.5 * mu, -0.5 * mu], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rc[1].to_dense(), [[mu]], rtol=1e-12)        # layer 2's matrix: W⁺s₂⁺


def test_package_rescale_equals_captum_without_max_pool():
    """The package's Rescale is captum's DeepLift wherever no max-pool is involved (the linear rule with tied
    multipliers is WᵀS): digits-mlp, and a no-bias net with an average pool, at a random reference."""
    from captum.attr import DeepLift
    net = chainlab.models.load("digits-mlp").double()
    x = chainlab.data.model_input("digits-mlp", chainlab.data.load_digits().x_test[2:3]).double()
    torch.manual_seed(3)
    nb = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                       nn.Linear(27, 4, bias=False)).double().eval()
    for model, inp in ((net, x), (nb, torch.rand(1, 1, 8, 8, dtype=torch.float64))):
        x0 = 0.3 * torch.rand_like(inp)
        ch = chainlab.extract(model, inp, "deeplift-rescale", reference=x0)
        for k in (0, 2):
            theirs = DeepLift(model).attribute(inp.clone(), baselines=x0, target=k).detach().numpy()
            assert rel_err(ch.explain(k), theirs) < 1e-9, k


# ---------------------------------------------------------------------------------------------
# float32 against float64 on the shipped CIFAR nets (issue 24 §1)


@pytest.fixture(scope="module")
def cifar_nets():
    sc = chainlab.data.load_scenes("test", 2, seed=0)
    out = {}
    for name in ("vgg-cifar", "resnet-cifar"):
        net = chainlab.models.load(name)
        out[name] = (net, chainlab.data.model_input(net, sc.x).double())
    return out


def _csc_per_boundary(bc):
    from chainlab.measures.csc import cosine_gaps, csc_summary, pair_list
    L = len(bc)
    V = torch.as_tensor(np.random.default_rng(0).standard_normal((bc.batch, 5) + tuple(bc.shapes[L])))
    out = {}
    for j, S in bc.signals(bc.inject(V), L):
        shape = bc.shapes[j]
        d = int(shape[0]) if len(shape) == 3 else int(np.prod(shape))
        out[j] = csc_summary([cosine_gaps(S.to(torch.float64).numpy(), shape, pair_list(5, 10))], d)["csc"]
    return out


@pytest.mark.parametrize("name", ["vgg-cifar", "resnet-cifar"])
def test_float32_csc_equals_float64_per_boundary(cifar_nets, name):
    """Every DeepLIFT variant: the CSC per boundary (5 vectors per image injected at the logits, 10 pairs) in float32
    and in float64 differ by ≤ 0.01 at every boundary (the package's rule in float32; the ± rule computes in float64
    whatever the dtype — in float32 its parts made the CSC noise: RevealCancel's maps had cosine 0.2–0.67 to float64
    on resnet-cifar), and the maps agree (cosine ≥ 0.999)."""
    net, X = cifar_nets[name]
    for v in PACKAGE + ("rescale-pm", "revealcancel-pm", "ablation-pm"):
        b32 = chainlab.extract_batch(net, X, f"deeplift-{v}", dtype="float32")
        b64 = chainlab.extract_batch(net, X, f"deeplift-{v}", dtype="float64")
        c32, c64 = _csc_per_boundary(b32), _csc_per_boundary(b64)
        assert c32.keys() == c64.keys() and len(c32) == len(b32)
        for j in c64:
            assert (c32[j] is None) == (c64[j] is None), (v, j)
            if c64[j] is not None:
                assert abs(c32[j] - c64[j]) <= 0.01, (name, v, j, c32[j], c64[j])
        t = b64.predicted
        m32, m64 = (b.explain(t).to(torch.float64).reshape(len(t), -1) for b in (b32, b64))
        assert float(torch.nn.functional.cosine_similarity(m32, m64, dim=1).min()) >= 0.999, (name, v)


def _pool_defect(net, X, bc, t):
    """Σ over max-pool stages of Σ_j m_j (y⁰_j − x⁰_a(j)) per image, float64: what the package's max-pool rule (the
    gradient at x, winners a(j)) fails to conserve — Σ_i m_i Δx_i = Σ_j m_j (y_j − x⁰_a(j)) at its input against
    Σ_j m_j (y_j − y⁰_j) at its output.  m_j: the multipliers arriving at the pool, propagated from the start."""
    from chainlab.linalg import GatherOperator
    tnet = chainlab.trace.trace(net)
    recs, recs0 = tnet.forward(X), tnet.forward(torch.zeros_like(X))
    B = X.shape[0]
    Y = bc.start(t).to(torch.float64)
    out = torch.zeros(B, dtype=torch.float64)
    for j in range(len(bc) - 1, -1, -1):
        st = bc.stages[j]
        Y = Y.reshape((B, 1) + tuple(st.out_shape))
        if isinstance(st, GatherOperator) and tnet.stages[j].kind == "maxpool2d" and st.act_step is None:
            rows = st.rows.reshape(st.rows.shape[0], -1).expand(B, -1)
            x0a = recs0[j].x.reshape(B, -1).gather(1, rows)
            out += (Y.reshape(B, -1) * (recs0[j].z.reshape(B, -1) - x0a)).sum(1)
        Y = st.back(Y)
    return out.numpy()


FLOAT32_SUM_TOL = 1e-4


def test_float32_summation_to_delta(cifar_nets):
    """Summation-to-delta in float32: |Σ C − Δf| ≤ 1e-4 · Σ|C| (Δf = f(x) − f(0) of the float64 model).  Tolerance:
    float32's unit roundoff is u = 6e-8; each of the ≤ 20 linear maps sums ≤ 2304 products (3×3×256) of bounded
    multipliers and differences, whose rounding errors stay ≲ u·√n ≈ 3e-6 of their absolute sum per map, ≲ 6e-5 over
    the net (the package's pseudocount adds ~1e-7); measured ≤ 1e-7 (scripts/verify_deeplift_precision.py).  The
    package's rule on resnet-cifar (no max-pool) and on vgg-cifar after removing its max-pool rule's own defect
    (computed from the multipliers, nonzero at the border windows — without it the check fails); the ± rule
    (computed in float64) on vgg-cifar, where its float32 parts made the sums miss by 86 (21 on resnet-cifar; there its
    parts reach 1e15 and even float64 keeps only ~5e-4 of Σ|C|, so it is not checked here)."""
    for name, rules in (("resnet-cifar", ("rescale", "revealcancel")),
                        ("vgg-cifar", ("rescale", "revealcancel", "rescale-pm", "revealcancel-pm"))):
        net, X = cifar_nets[name]
        net64 = copy.deepcopy(net).double()
        with torch.no_grad():
            f = net64(X) - net64(torch.zeros_like(X))
        for v in rules:
            bc = chainlab.extract_batch(net, X, f"deeplift-{v}", dtype="float32")
            t = bc.predicted
            C = bc.explain(t).to(torch.float64).reshape(len(t), -1).numpy()
            delta = f[np.arange(len(t)), t].numpy()
            err = C.sum(1) - delta
            if name == "vgg-cifar" and not v.endswith("-pm"):
                defect = _pool_defect(net64, X, chainlab.extract_batch(net, X, f"deeplift-{v}"), t)
                assert (np.abs(defect) > 10 * FLOAT32_SUM_TOL * np.abs(C).sum(1)).any(), v    # the correction matters
                err = err - defect
            assert (np.abs(err) <= FLOAT32_SUM_TOL * np.abs(C).sum(1)).all(), (name, v, err, np.abs(C).sum(1))
