"""Guided BP, deconv, RectGrad and the DeepLIFT variants through residual blocks.

Oracles: captum's GuidedBackprop, Deconvolution and DeepLift (Rescale); the direct RectGrad of
tests/test_nonlinear.py (every nn.ReLU replaced by Kim et al.'s rectifying autograd function); a
float64 DeepLIFT of the ± rule (``-pm``) written here from Shrikumar et al. 2017 on dense unrolled layers
(RevealCancel and ablation, which captum does not have); f_k(x) − f_k(x⁰) from the model (summation-to-delta).
The package's rule through blocks is checked against its numpy re-implementation in tests/test_deeplift.py.

Nets: chainlab.nets.zoo.resnet_tiny (basic and bottleneck blocks, 1×1 conv + BN shortcuts that
downsample, identity shortcuts), a hand-made net with an identity shortcut, conv with stride and
padding, BN, no-bias convs and a ReLU directly before a max-pool, and a torchvision-style ResNet-18
(ResNet(BasicBlock, [2, 2, 2, 2]), random init, 32×32 input).

captum conventions (each is a property of captum, measured here, not hidden):

* Module reuse: torchvision's blocks call one nn.ReLU twice (after bn1 and after the sum); captum's
  DeepLift and GuidedBackprop hook modules, so the captum copy (:class:`CapResNet`) gives every call
  its own nn.ReLU (same function).
* ReLU directly before MaxPool2d: captum's DeepLift loses summation-to-delta (tests/test_deeplift.py);
  a ``clone()`` between them restores its rule.
* Overlapping max-pool windows (ResNet's 3×3/2 stem pool): captum's DeepLift max-pool rule un-pools
  with ``max_unpool2d``, which writes instead of adding where windows share a winner, and its maps lose
  summation-to-delta (measured below: the relative error of Σ C is ~1 on a one-pool net, while chainlab's
  is ~1e-15); for the captum comparison the ResNet-18 stem pool is made MaxPool2d(2, 2), which gives the
  same shapes at 32×32.
"""
import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

import chainlab
from chainlab.chain import RectifiedResidual
from chainlab.extraction import DeepLiftResidual
from chainlab.linalg import BlockOperator, BlockSum, DenseOperator, zero_operator
from chainlab.nets.zoo import BasicBlock, Bottleneck, ResNet, resnet_tiny
from conftest import randomize_bn, rel_err
from reference import conv_unrolled
from test_nonlinear import rectgrad_direct

CONFIGS = {
    "basic": dict(block="basic", layers=(2, 1), widths=(4, 6), size=6),
    "bottleneck": dict(block="bottleneck", layers=(2, 1), widths=(2, 3), size=6),
}


def tiny(kind, seed=0):
    return randomize_bn(resnet_tiny(seed=seed, num_classes=5, **CONFIGS[kind]), seed).double().eval()


def rand_input(shape, seed=1, low=-1.0):
    g = torch.Generator().manual_seed(seed)
    return low + (1.0 - low) * torch.rand(shape, generator=g, dtype=torch.float64)


class Clone(nn.Module):
    def forward(self, x):
        return x.clone()


class CapBlock(nn.Module):
    """A torchvision block with one nn.ReLU per call (captum hooks modules)."""

    def __init__(self, b):
        super().__init__()
        self.b = b
        self.relus = nn.ModuleList([nn.ReLU() for _ in range(3)])

    def forward(self, x):
        b = self.b
        out = self.relus[0](b.bn1(b.conv1(x)))
        if isinstance(b, Bottleneck):
            out = b.bn3(b.conv3(self.relus[1](b.bn2(b.conv2(out)))))
        else:
            out = b.bn2(b.conv2(out))
        shortcut = b.downsample(x) if b.downsample is not None else x
        return self.relus[2](out + shortcut)


class CapResNet(nn.Module):
    """The same function as a zoo ResNet for captum: own ReLU per call, clone() between the stem ReLU and pool."""

    def __init__(self, net):
        super().__init__()
        self.net = copy.deepcopy(net)
        self.relu, self.clone = nn.ReLU(), Clone()
        self.blocks = nn.ModuleList([CapBlock(b) for i in range(self.net.n_stages)
                                     for b in getattr(self.net, f"layer{i + 1}")])

    def forward(self, x):
        n = self.net
        x = n.maxpool(self.clone(self.relu(n.bn1(n.conv1(x)))))
        for b in self.blocks:
            x = b(x)
        return n.fc(torch.flatten(n.avgpool(x), 1))


class IdentityNet(nn.Module):
    """conv + BN → ReLU → max-pool 2×2 (directly) → block with an identity shortcut (no-bias conv + BN, conv)
    → ReLU after the sum → conv stride 2 → ReLU → global average → Linear.  ``clone``: x.clone() between
    the first ReLU and the max-pool (the same function, for captum's DeepLift)."""

    def __init__(self, clone=False):
        super().__init__()
        self.clone = clone
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.c1, self.bnc, self.r1 = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU()
        self.c2, self.r2 = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()
        self.down, self.r3 = nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU()
        self.gap, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(6, 5)

    def forward(self, x):
        h = self.relu1(self.bn1(self.conv1(x)))
        if self.clone:
            h = h.clone()
        h = self.pool(h)
        h = self.r2(self.c2(self.r1(self.bnc(self.c1(h)))) + h)
        h = self.r3(self.down(h))
        return self.fc(torch.flatten(self.gap(h), 1))


def identity_net(seed=0, clone=False):
    torch.manual_seed(seed)
    net = randomize_bn(IdentityNet(clone), seed).double().eval()
    return net


def captum_copy(net):
    if isinstance(net, IdentityNet):
        cap = identity_net(clone=True)
        cap.load_state_dict(net.state_dict())
        return cap.double().eval()
    return CapResNet(net).double().eval()


NETS = {"basic": lambda: tiny("basic"), "bottleneck": lambda: tiny("bottleneck"), "identity": identity_net}
SHAPES = {"identity": (1, 3, 8, 8)}


def net_and_input(name):
    net = NETS[name]()
    return net, rand_input(SHAPES.get(name, getattr(net, "input_shape", None)))


# ---------------------------------------------------------------------------------------------
# guided BP, deconv, RectGrad


@pytest.mark.parametrize("name", sorted(NETS))
def test_rectified_methods_equal_captum_and_direct_rectgrad(name):
    from captum.attr import Deconvolution, GuidedBackprop
    net, x = net_and_input(name)
    cap = captum_copy(net)
    with torch.no_grad():
        assert torch.allclose(cap(x), net(x), rtol=0, atol=1e-12)
    grad = chainlab.extract(net, x, "gradient")
    for rule in ("guided-bp", "deconv", "rectgrad"):
        ch = chainlab.extract(net, x, rule)
        blocks = [op for op in ch if op.kind == "residual"]
        assert blocks and all(isinstance(op, RectifiedResidual) for op in blocks)
        assert any(len(b) == 0 for op in blocks for b in op.branches)           # an identity shortcut
        nonzero = 0
        for k in range(5):
            if rule == "rectgrad":
                theirs = rectgrad_direct(net, x, k)
            else:
                theirs = {"guided-bp": GuidedBackprop, "deconv": Deconvolution}[rule](cap).attribute(
                    x.clone(), target=k).detach().numpy()
            nonzero += bool(np.abs(theirs).max() > 0)
            assert rel_err(ch.explain(k), theirs) < 1e-10 or np.abs(ch.explain(k) - theirs).max() == 0, (name, rule, k)
        assert nonzero >= 3, (name, rule)
        # the rectifiers act: the maps are not the gradient's
        assert rel_err(ch.explain(0), grad.explain(0)) > 1e-3, (name, rule)


def test_rectgrad_q_and_segments_through_blocks():
    """q reaches the rectifiers inside the branches; apply(start, stop) over a block composes."""
    net, x = net_and_input("basic")
    ch = chainlab.extract(net, x, "rectgrad", q=80)
    assert rel_err(ch.explain(2), rectgrad_direct(net, x, 2, q=80)) < 1e-10
    i = ch.names.index("layer2.0")
    E = np.eye(5)[:, [1, 4]]
    full = ch.apply(E)
    assert np.allclose(ch.apply(ch.apply(E, start=i), stop=i), full, rtol=0, atol=1e-13)
    assert np.allclose(full[:, 1], ch.apply(E[:, 1]), rtol=0, atol=1e-13)
    # the block's operator is its linear part Σ_t L_t (no rectifier): the Jacobian of the block without ReLUs
    op = ch[i]
    V = np.random.default_rng(0).standard_normal((op.shape[1], 2))
    linear = sum(np.linalg.multi_dot([A.to_dense() for A in b] + [V]) if len(b) > 1 else
                 (b[0].to_dense() @ V if b else V) for b in op.branches)
    assert np.allclose(op.matmat(V), linear, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# DeepLIFT


def model_delta(net, x, x0):
    with torch.no_grad():
        return (net(x) - net(x0)).reshape(-1).numpy()


@pytest.mark.parametrize("name", sorted(NETS))
def test_deeplift_summation_to_delta_and_captum_rescale(name):
    from captum.attr import DeepLift
    net, x = net_and_input(name)
    cap = captum_copy(net)
    x0s = {"zeros": torch.zeros_like(x), "random": 0.5 * rand_input(x.shape, seed=7)}
    for ref_name, x0 in x0s.items():
        delta = model_delta(net, x, x0)
        for variant in ("rescale-pm", "revealcancel-pm"):
            ch = chainlab.extract(net, x, f"deeplift-{variant}", reference=x0)
            assert [op.kind for op in ch].count("residual") >= 1
            assert all(isinstance(op, DeepLiftResidual) for op in ch if op.kind == "residual")
            for k in range(5):
                C = ch.explain(k)
                assert abs(C.sum() - delta[k]) <= 1e-10 * abs(delta[k]), (name, ref_name, variant, k)
                if variant == "rescale-pm":
                    theirs = DeepLift(cap).attribute(x.clone(), baselines=x0, target=k).detach().numpy()
                    assert rel_err(C, theirs) < 1e-10, (name, ref_name, k)


@pytest.mark.parametrize("name", ["basic", "bottleneck"])
def test_package_deeplift_through_blocks(name):
    """The package's rule through residual blocks (the authors' Add: a Dense layer of weights 1): summation-to-delta
    up to its 1e-7 pseudocount (no max-pool in these nets), Rescale = captum's DeepLift, and a plain chain whose blocks
    are Sums of Products (one multiplier per neuron)."""
    from captum.attr import DeepLift
    net, x = net_and_input(name)
    cap = captum_copy(net)
    x0 = 0.5 * rand_input(x.shape, seed=7)
    delta = model_delta(net, x, x0)
    for variant in ("rescale", "revealcancel", "ablation"):
        ch = chainlab.extract(net, x, f"deeplift-{variant}", reference=x0)
        assert not ch.paired and [op.kind for op in ch].count("residual") >= 1
        for k in range(5):
            C = ch.explain(k)
            if variant != "ablation":
                assert abs(C.sum() - delta[k]) <= 1e-6 * np.abs(C).sum(), (name, variant, k)
            if variant == "rescale":
                theirs = DeepLift(cap).attribute(x.clone(), baselines=x0, target=k).detach().numpy()
                assert rel_err(C, theirs) < 1e-9, (name, k)


# -- an independent float64 DeepLIFT (Shrikumar et al. 2017) on dense unrolled layers ------------------


def _fold(conv, bn, in_shape):
    """(W dense n_out × n_in, b per unit, out_shape) of conv + BN, unrolled by reference.conv_unrolled."""
    s = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
    Wk = (conv.weight.detach() * s.reshape(-1, 1, 1, 1)).numpy()
    b = (bn.bias.detach() - bn.running_mean * s).numpy()
    W, out_shape = conv_unrolled(Wk, in_shape, conv.stride, conv.padding)
    return W, np.repeat(b, out_shape[1] * out_shape[2]), out_shape


def dense_layers(net):
    """A resnet_tiny (basic blocks) as nested dense ops: ("affine", W, b, relu), ("pool", P) and ("res", [branches],
    relu)."""
    shape = net.input_shape[1:]
    W, b, shape = _fold(net.conv1, net.bn1, shape)
    ops = [("affine", W, b, True)]
    for i in range(net.n_stages):
        for blk in getattr(net, f"layer{i + 1}"):
            W1, b1, s1 = _fold(blk.conv1, blk.bn1, shape)
            W2, b2, s2 = _fold(blk.conv2, blk.bn2, s1)
            main = [("affine", W1, b1, True), ("affine", W2, b2, False)]
            short = [] if blk.downsample is None else [("affine", *_fold(blk.downsample[0], blk.downsample[1],
                                                                        shape)[:2], False)]
            ops.append(("res", [main, short], True))
            shape = s2
    C, H, Wd = shape
    avg = np.kron(np.eye(C), np.full((1, H * Wd), 1.0 / (H * Wd)))
    ops.append(("pool", avg, np.zeros(C), False))
    ops.append(("affine", net.fc.weight.detach().numpy(), net.fc.bias.detach().numpy(), False))
    return ops


def _relu(v):
    return np.maximum(v, 0.0)


def _slopes(z, z0, dzp, dzm, variant):
    """(s⁺, s⁻) of a ReLU: Rescale Δy/Δx; RevealCancel from Shrikumar et al. eq. for Δy⁺, Δy⁻."""
    dz = z - z0
    resc = np.where(np.abs(dz) < 1e-10, (z > 0).astype(float), (_relu(z) - _relu(z0)) / np.where(dz == 0, 1, dz))
    if variant != "revealcancel":
        return resc, resc
    dyp = 0.5 * (_relu(z0 + dzp) - _relu(z0)) + 0.5 * (_relu(z0 + dzm + dzp) - _relu(z0 + dzm))
    dym = 0.5 * (_relu(z0 + dzm) - _relu(z0)) + 0.5 * (_relu(z0 + dzp + dzm) - _relu(z0 + dzp))
    sp_ = np.where(np.abs(dzp) < 1e-10, resc, dyp / np.where(dzp == 0, 1, dzp))
    sm_ = np.where(np.abs(dzm) < 1e-10, resc, dym / np.where(dzm == 0, 1, dzm))
    return sp_, sm_


def dl_forward(ops, h, h0, dp, dm, variant, saved):
    for op in ops:
        if op[0] in ("affine", "pool"):
            _, W, b, relu = op
            Wp, Wn = np.maximum(W, 0), np.minimum(W, 0)
            z, z0 = W @ h + b, W @ h0 + b
            zp, zm = Wp @ dp + Wn @ dm, Wn @ dp + Wp @ dm
            rec = {"W": W, "pool": op[0] == "pool"}
        else:
            _, branches, relu = op
            rec = {"branches": [[] for _ in branches]}
            outs = [dl_forward(br, h, h0, dp, dm, variant, sv) for br, sv in zip(branches, rec["branches"])]
            z, z0 = sum(o[0] for o in outs), sum(o[1] for o in outs)
            zp, zm = sum(o[2] for o in outs), sum(o[3] for o in outs)
        sp_, sm_ = _slopes(z, z0, zp, zm, variant) if relu else (np.ones_like(z), np.ones_like(z))
        rec.update(sp=sp_, sm=sm_)
        saved.append(rec)
        h, h0 = (_relu(z), _relu(z0)) if relu else (z, z0)
        dp, dm = sp_ * zp, sm_ * zm
    return h, h0, dp, dm


def dl_backward(saved, mp, mm, variant):
    for rec in reversed(saved):
        mp, mm = rec["sp"][:, None] * mp, rec["sm"][:, None] * mm
        if "W" in rec:
            Wp, Wn = np.maximum(rec["W"], 0), np.minimum(rec["W"], 0)
            if variant == "ablation" and rec["pool"]:      # a pool is no weight layer: P on both parts
                mp, mm = rec["W"].T @ mp, rec["W"].T @ mm
            elif variant == "ablation":                     # Sixt et al.: only W⁺ for m⁺, only W⁻ for m⁻
                mp, mm = Wp.T @ mp, Wn.T @ mm
            else:
                mp, mm = Wp.T @ mp + Wn.T @ mm, Wn.T @ mp + Wp.T @ mm
        else:   # the sum passes the multipliers to every branch; the input's are the branches' sums
            outs = [dl_backward(sv, mp, mm, variant) for sv in rec["branches"]]
            mp, mm = sum(o[0] for o in outs), sum(o[1] for o in outs)
    return mp, mm


def deeplift_reference(net, x, x0, variant):
    """Contributions C (n_input × n_logits): column k = m⁺ ⊙ Δx⁺ + m⁻ ⊙ Δx⁻ started at m⁺ = m⁻ = e_k."""
    ops = dense_layers(net)
    xv, x0v = x.reshape(-1).numpy(), x0.reshape(-1).numpy()
    dx = xv - x0v
    saved = []
    dl_forward(ops, xv, x0v, np.maximum(dx, 0), np.minimum(dx, 0), "revealcancel" if variant == "revealcancel"
               else "rescale", saved)
    E = np.eye(saved[-1]["sp"].size)
    mp, mm = dl_backward(saved, E, E, variant)
    return mp * np.maximum(dx, 0)[:, None] + mm * np.minimum(dx, 0)[:, None]


@pytest.mark.parametrize("variant", ["rescale", "revealcancel", "ablation"])
def test_deeplift_equals_dense_float64_reference(variant):
    """The ± rule (``-pm``) against the dense float64 reference above."""
    net = tiny("basic", seed=2)
    x = rand_input(net.input_shape, seed=3)
    x0 = 0.3 * rand_input(net.input_shape, seed=4)
    ch = chainlab.extract(net, x, f"deeplift-{variant}-pm", reference=x0)
    C = deeplift_reference(net, x, x0, variant)
    for k in range(5):
        ref = C[:, k]
        assert np.abs(ref).max() > 0
        assert rel_err(ch.explain(k).reshape(-1), ref) < 1e-10, (variant, k)
    if variant != "ablation":
        return
    for op in ch:   # ablation: every block, residual ones included, is decoupled
        assert op.is_decoupled()


def test_deeplift_residual_blocks():
    """Rescale collapses through blocks (collapsed chain × Δx = contributions); RevealCancel does not; the
    multiplied-out blocks equal the factor-by-factor application."""
    net, x = net_and_input("bottleneck")
    rs = chainlab.extract(net, x, "deeplift-rescale-pm")
    dx = rs.x - rs.reference
    col = rs.collapsed()
    for k in (0, 3):
        assert rel_err(col.explain(k).reshape(-1) * dx, rs.explain(k).reshape(-1)) < 1e-12
    rc = chainlab.extract(net, x, "deeplift-revealcancel-pm")
    i = rc.names.index("layer2.0")
    op = rc[i]
    assert op.kind == "residual" and len(op.branches) == 2 and len(op.terms[0]) == 4   # 3 convs + diag(S⁺, S⁻)
    rng = np.random.default_rng(0)
    V, U = rng.standard_normal((op.shape[1], 3)), rng.standard_normal((op.shape[0], 2))
    dense = op.to_dense()                     # from the multiplied-out blocks
    assert rel_err(op.matmat(V), dense @ V) < 1e-12 and rel_err(op.rmatmat(U), dense.T @ U) < 1e-12
    assert np.abs(op.B.to_dense()).max() > 0 and np.abs(op.C.to_dense()).max() > 0      # coupled
    with pytest.raises(ValueError, match="does not collapse"):
        rc.collapsed()
    assert rel_err(rc.to_dense()[:, 0], rc.apply(np.eye(rc.n_output)[:, 0])) < 1e-12
    c32 = chainlab.extract(net, x, "deeplift-revealcancel-pm", dtype="float32")
    assert c32[i].dtype == np.float32 and rel_err(c32.explain(1), rc.explain(1)) < 1e-5


def test_block_sum_algebra():
    """BlockSum Σ_t Π_k B_tk against numpy products of the assembled 2n × 2m matrices."""
    rng = np.random.default_rng(5)

    def blk(n, m):
        mats = [rng.standard_normal((n, m)) for _ in range(4)]
        return BlockOperator(*(DenseOperator(a) for a in mats)), np.block([[mats[0], mats[1]], [mats[2], mats[3]]])

    (B1, D1), (B2, D2), (B3, D3) = blk(3, 4), blk(4, 2), blk(3, 2)
    S = BlockSum([[B1, B2], [B3]])
    expect = D1 @ D2 + D3
    assert S.shape == (6, 4) and np.allclose(S.to_dense(), expect)
    V, U = rng.standard_normal((4, 2)), rng.standard_normal((6, 3))
    assert np.allclose(S @ V, expect @ V) and np.allclose(S.rmatmat(U), expect.T @ U)
    B4, D4 = blk(2, 5)
    assert np.allclose(S.T.to_dense(), expect.T) and np.allclose((S @ B4).to_dense(), expect @ D4)
    assert S.nnz == B1.nnz + B2.nnz + B3.nnz
    Z = zero_operator(3, 2)
    assert not S.is_decoupled() and BlockSum([[BlockOperator(B3.A, Z, Z, B3.D)]]).is_decoupled()
    with pytest.raises(ValueError, match="cannot multiply block operators"):
        BlockSum([[B1, B3]])
    with pytest.raises(ValueError, match="cannot add block products"):
        BlockSum([[B1], [B3]])


# ---------------------------------------------------------------------------------------------
# torchvision-style ResNet-18


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    net = randomize_bn(ResNet(BasicBlock, [2, 2, 2, 2], num_classes=10), 0).double().eval()
    return net, torch.randn(1, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(2))


def test_resnet18_guided_bp(resnet18):
    from captum.attr import GuidedBackprop
    net, x = resnet18
    cap = CapResNet(net).double().eval()
    gbp = chainlab.extract(net, x, "guided-bp")
    assert [op.kind for op in gbp].count("residual") == 8
    theirs = GuidedBackprop(cap).attribute(x.clone(), target=3).detach().numpy()
    assert rel_err(gbp.explain(3), theirs) < 1e-10


def test_resnet18_deeplift_rescale_equals_captum_with_a_non_overlapping_stem_pool(resnet18):
    from captum.attr import DeepLift
    net, x = resnet18
    net = copy.deepcopy(net)
    net.maxpool = nn.MaxPool2d(2, 2)           # captum un-pools overlapping windows wrongly (module docstring)
    ch = chainlab.extract(net, x, "deeplift-rescale-pm")
    delta = model_delta(net, x, torch.zeros_like(x))
    C = ch.explain(3)
    assert abs(C.sum() - delta[3]) <= 1e-10 * abs(delta[3])
    theirs = DeepLift(CapResNet(net).double().eval()).attribute(x.clone(), baselines=torch.zeros_like(x),
                                                                target=3).detach().numpy()
    assert rel_err(C, theirs) < 1e-10


def test_captum_deeplift_overlapping_maxpool_convention():
    """The convention of the module docstring, measured: with an overlapping 3×3/2 max-pool captum's DeepLift
    misses summation-to-delta by far, chainlab's DeepLIFT keeps it (and with a 2×2/2 pool both agree)."""
    from captum.attr import DeepLift
    x = rand_input((1, 3, 8, 8), seed=2)
    out = {}
    for pool in (nn.MaxPool2d(3, 2, 1), nn.MaxPool2d(2, 2)):
        torch.manual_seed(0)
        layers = [nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), pool, nn.Flatten(), nn.Linear(64, 3)]
        net = nn.Sequential(*layers).double().eval()
        cap = nn.Sequential(*layers[:2], Clone(), *layers[2:]).double().eval()
        delta = model_delta(net, x, torch.zeros_like(x))[1]
        ours = chainlab.extract(net, x, "deeplift-rescale-pm").explain(1)
        theirs = DeepLift(cap).attribute(x.clone(), baselines=torch.zeros_like(x), target=1).detach().numpy()
        out[pool.kernel_size] = (abs(ours.sum() - delta) / abs(delta), abs(theirs.sum() - delta) / abs(delta),
                                 rel_err(ours, theirs))
    assert out[3][0] < 1e-12 and out[3][1] > 1e-2 and out[3][2] > 1e-2
    assert out[2][0] < 1e-12 and out[2][1] < 1e-12 and out[2][2] < 1e-10


def test_residual_deeplift_chain_archives_as_blocks(tmp_path):
    """A DeepLIFT residual block is written as its four multiplied-out blocks; the loaded chain applies the same."""
    from chainlab import archive
    net, x = net_and_input("identity")
    ch = chainlab.extract(net, x, "deeplift-revealcancel-pm")
    key = archive.append(tmp_path / "a.h5", ch)
    with archive.open(tmp_path / "a.h5") as r:
        back = r.load(key)
    i = ch.names.index(next(n for n, op in zip(ch.names, ch) if op.kind == "residual"))
    assert back[i].kind == "block"
    R = np.random.default_rng(0).standard_normal((ch.n_output, 2))
    np.testing.assert_allclose(back.apply(R), ch.apply(R), rtol=1e-12, atol=1e-14)
