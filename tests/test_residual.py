"""Residual networks: a block is one operator; oracles are autograd, conservation, captum and a loop-built split."""
import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch
import torch.nn as nn
import torch.nn.functional as F

import chainlab
from chainlab.errors import UnsupportedLayerError
from chainlab.extraction import ResidualBlock as ResidualOperator
from chainlab.nets.zoo import resnet_tiny
from conftest import jacobian, randomize_bn, rel_err

CONFIGS = {
    # (block, layers per stage, stage widths): both stages start with a downsampling 1×1 conv + BN
    # shortcut where the width or stride changes, later blocks have identity shortcuts
    "basic": dict(block="basic", layers=(2, 1), widths=(4, 6), size=6),
    "bottleneck": dict(block="bottleneck", layers=(2, 1), widths=(2, 3), size=6),
}


def tiny(kind, seed=0):
    net = resnet_tiny(seed=seed, num_classes=5, **CONFIGS[kind])
    return randomize_bn(net, seed).double().eval()


def tiny_input(net, seed=1, low=-1.0):
    g = torch.Generator().manual_seed(seed)
    return low + (1.0 - low) * torch.rand(net.input_shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_gradient_chain_equals_autograd_jacobian(kind):
    net = tiny(kind)
    x = tiny_input(net)
    chain = chainlab.extract(net, x, "gradient")
    kinds = [op.kind for op in chain]
    assert kinds.count("residual") == 3, kinds      # one operator per block
    assert any(len(b) == 0 for op in chain if op.kind == "residual" for b in op.branches)   # identity
    assert any(len(b) == 1 for op in chain if op.kind == "residual" for b in op.branches)   # 1×1 shortcut
    J = jacobian(net, x)
    assert rel_err(chain.to_dense(), J) < 1e-10
    # materialized blocks give the same product as the matrix-free application
    P = np.eye(chain.n_input)
    for op in chain:
        P = P @ (op.to_sparse("csr").toarray() if op.kind == "residual" else op.to_dense())
    assert rel_err(P, J) < 1e-10


def test_block_is_shortcut_plus_branch_sixt_eq3():
    """One block by hand: M = (S + G) diag(1[z > 0]), S = shortcut matrix (I or 1×1 conv), G = branch gradient."""
    net = tiny("basic")
    x = tiny_input(net)
    chain = chainlab.extract(net, x, "gradient")
    i = chain.names.index("layer2.0")        # downsampling block
    op = chain[i]
    # forward to the block input with torch
    with torch.no_grad():
        a = net.relu(net.bn1(net.conv1(x)))
        a = net.layer1(a)
    blk = net.layer2[0]

    def branch(v):
        return blk.bn2(blk.conv2(blk.relu(blk.bn1(blk.conv1(v)))))

    def short(v):
        return blk.downsample(v)

    Gb = torch.autograd.functional.jacobian(lambda v: branch(v).reshape(-1), a).reshape(-1, a.numel()).T
    Gs = torch.autograd.functional.jacobian(lambda v: short(v).reshape(-1), a).reshape(-1, a.numel()).T
    z = (branch(a) + short(a)).reshape(-1)
    expected = ((Gb + Gs) * (z > 0).double()[None, :]).numpy()
    assert rel_err(op.to_dense(), expected) < 1e-12
    # matrix-free products agree with the dense matrix, and scipy's LinearOperator accepts the block
    V = np.random.default_rng(0).normal(size=(op.shape[1], 3))
    U = np.random.default_rng(1).normal(size=(op.shape[0], 2))
    assert rel_err(op.matmat(V), expected @ V) < 1e-12
    assert rel_err(op.rmatmat(U), expected.T @ U) < 1e-12
    assert rel_err(op.T.to_dense(), expected.T) < 1e-12
    s = spla.svds(spla.aslinearoperator(op), k=1, return_singular_vectors=False)
    assert abs(s[0] - np.linalg.svd(expected, compute_uv=False)[0]) < 1e-8


def positive_tiny(kind, seed=0):
    """A tiny ResNet with non-negative conv/fc weights: on a non-negative input no z⁺ column dies.

    (With signed weights some z⁺ columns have an empty positive part — all inputs with W⁺ > 0 are
    zero — and pass no relevance, in plain chains as in blocks; conservation is a statement about
    the columns that carry relevance, which here are all of them.)
    """
    net = tiny(kind, seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.abs_()
    return net


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_zplus_conserves_through_blocks(kind):
    """z⁺ with bias="none": every column of every block sums to z/s(z) ≈ 1, and so does the whole chain."""
    net = positive_tiny(kind)
    x = tiny_input(net, low=0.0)
    eps = 1e-12
    chain = chainlab.extract(net, x, "zplus", bias="none", stabilizer=eps)
    n_blocks = 0
    for op in chain:
        if op.kind == "residual":
            n_blocks += 1
            assert np.abs(op.column_sums() - 1).max() < 1e-9
    assert n_blocks == 3
    assert np.abs(chain.to_dense().sum(axis=0) - 1).max() < 1e-9
    R = chain.explain()
    assert abs(R.sum() - chain.logits[chain.predicted]) < 1e-9 * abs(chain.logits[chain.predicted])
    # the equal split conserves as well, and differs from the proportional one
    eq = chainlab.extract(net, x, "zplus", bias="none", stabilizer=eps, residual="equal")
    assert np.abs(eq.to_dense().sum(axis=0) - 1).max() < 1e-9
    assert rel_err(eq.explain(), R) > 1e-3


def test_lrp0_bias_full_conserves_with_signed_weights():
    """LRP-0, bias="full", signed weights: colsum(M_block) + bias_relevance = z/s(z) in every column
    (LRP-0's denominators are the true pre-activations, so no column dies)."""
    net = tiny("bottleneck")
    x = tiny_input(net)
    chain = chainlab.extract(net, x, "lrp-0", bias="full", stabilizer=1e-13)
    k = chain.predicted
    r, absorbed = chain.start_vector(k), 0.0
    for op in reversed(chain.operators):
        if op.kind == "residual":
            assert op.bias_relevance is not None
            live = np.abs(op.column_sums() + op.bias_relevance - 1)
            assert live.max() < 1e-6
        if op.bias_relevance is not None:
            absorbed += float(op.bias_relevance @ r)
        r = op @ r
    assert abs(r.sum() + absorbed - chain.logits[k]) < 1e-8 * abs(chain.logits[k])


def _loop_reference(net, x, split, eps):
    """float64 loop-built LRP-ε (ε = stabilizer) through a tiny basic ResNet, element by element.

    Every conv/BN pair is folded by hand, each layer's relevance is distributed with explicit loops
    over (output unit, input unit) pairs, the add splits R_j into R_j z_t,j / s(z_j) or R_j / 2.
    """
    def fold(conv, bn):
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        W = conv.weight * s.reshape(-1, 1, 1, 1)
        b = bn.bias - bn.running_mean * s
        return W.detach().numpy(), b.detach().numpy(), conv.stride[0], conv.padding[0]

    def conv_lrp(a, W, b, stride, pad, R):
        # z_j = Σ_i a_i W_ji + b_j by loops; R_i = Σ_j a_i W_ji / s(z_j) R_j
        C, H, Wd = a.shape
        Co, _, K, _ = W.shape
        OH = (H + 2 * pad - K) // stride + 1
        ap = np.zeros((C, H + 2 * pad, Wd + 2 * pad))
        ap[:, pad:pad + H, pad:pad + Wd] = a
        Rin = np.zeros_like(ap)
        for co in range(Co):
            for oh in range(OH):
                for ow in range(OH):
                    patch = ap[:, oh * stride:oh * stride + K, ow * stride:ow * stride + K]
                    contrib = patch * W[co]
                    z = contrib.sum() + b[co]
                    s = z + eps * (1 if z >= 0 else -1)
                    Rin[:, oh * stride:oh * stride + K, ow * stride:ow * stride + K] += contrib / s * R[co, oh, ow]
        return Rin[:, pad:pad + H, pad:pad + Wd]

    def conv_fwd(a, W, b, stride, pad):
        return F.conv2d(torch.tensor(a)[None], torch.tensor(W), torch.tensor(b), stride, pad)[0].numpy()

    with torch.no_grad():
        stem = fold(net.conv1, net.bn1)
        a0 = x[0].numpy()
        h = np.maximum(conv_fwd(a0, *stem), 0)
        blocks = []
        for layer in (net.layer1, net.layer2):
            for blk in layer:
                p1, p2 = fold(blk.conv1, blk.bn1), fold(blk.conv2, blk.bn2)
                ps = fold(blk.downsample[0], blk.downsample[1]) if blk.downsample is not None else None
                u = np.maximum(conv_fwd(h, *p1), 0)
                zb = conv_fwd(u, *p2)
                zs = conv_fwd(h, *ps) if ps is not None else h
                blocks.append((h, p1, u, p2, ps, zb, zs))
                h = np.maximum(zb + zs, 0)
        g = h.mean(axis=(1, 2))
        Wfc, bfc = net.fc.weight.numpy(), net.fc.bias.numpy()
        logits = Wfc @ g + bfc
    k = int(np.argmax(logits))
    # fc: R_i = g_i W_ki / s(z_k) · z_k
    zk = logits[k]
    Rg = g * Wfc[k] / (zk + eps * (1 if zk >= 0 else -1)) * zk
    # adaptive avg-pool (proportional): R_(c,p) = h_(c,p)/(HW) / s(g_c) · Rg_c
    R = np.zeros_like(h)
    for c in range(h.shape[0]):
        gc = g[c]
        R[c] = h[c] / h[c].size / (gc + eps * (1 if gc >= 0 else -1)) * Rg[c]
    for (hin, p1, u, p2, ps, zb, zs) in reversed(blocks):
        z = zb + zs
        s = z + eps * np.where(z >= 0, 1.0, -1.0)
        Rb, Rs = (R * zb / s, R * zs / s) if split == "proportional" else (R / 2, R / 2)
        Ru = conv_lrp(u, *p2, Rb)
        Rin = conv_lrp(hin, *p1, Ru)
        Rin = Rin + (conv_lrp(hin, *ps, Rs) if ps is not None else Rs)
        R = Rin
    return conv_lrp(a0, *stem, R)[None], k


@pytest.mark.parametrize("split", ["proportional", "equal"])
def test_lrp_epsilon_split_equals_loop_reference(split):
    """LRP-ε through blocks (proportional and equal splits) against an element-by-element float64 loop.

    captum is compared separately below on a BN-free net; this reference also covers BN (folded by
    hand here) and the "equal" split, which captum cannot express.
    """
    net = tiny("basic")
    x = tiny_input(net)
    eps = 1e-9
    chain = chainlab.extract(net, x, "lrp-epsilon", epsilon=eps, stabilizer=eps, residual=split)
    ref, k = _loop_reference(net, x, split, eps)
    assert chain.predicted == k
    assert rel_err(chain.explain(k), ref) < 1e-9
    assert chain.options["residual"] == split
    assert chain.layer_rules[chain.names.index("layer1.0")] == f"residual-{split}"


class Add(nn.Module):
    """a + b as a module, so that captum can attach a rule to the residual sum."""

    def forward(self, a, b):
        return a + b


class CaptumBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.short = nn.Conv2d(cin, cout, 1, stride) if (stride != 1 or cin != cout) else None
        self.add = Add()
        self.relu2 = nn.ReLU()

    def forward(self, x):
        out = self.conv2(self.relu1(self.conv1(x)))
        s = self.short(x) if self.short is not None else x
        return self.relu2(self.add(out, s))


class CaptumResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, 1, 1)
        self.relu = nn.ReLU()
        self.b1 = CaptumBlock(4, 4, 1)
        self.b2 = CaptumBlock(4, 6, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        h = self.b2(self.b1(self.relu(self.conv(x))))
        return self.fc(torch.flatten(self.pool(h), 1))


def captum_resnet_and_input():
    """The seeded CaptumResNet with non-negative biases and a non-negative input (where captum's z⁺, which uses
    x·W⁺ and the raw bias, equals chainlab's)."""
    torch.manual_seed(3)
    net = CaptumResNet().double().eval()
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.bias.data.abs_()
    return net, torch.rand(1, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))


@pytest.mark.parametrize("rule", ["lrp-epsilon", "zplus"])
def test_equals_captum_lrp_with_rule_on_the_sum(rule):
    """captum's LRP has no notion of a functional add; with the sum wrapped as a module that carries
    captum's EpsilonRule it computes R·z_t/s(z) per input of the sum — our "proportional" split.

    BN-free net (captum applies rules to BN separately; BN folding is covered by the loop reference);
    non-negative input and biases ignored for z⁺ (captum's z⁺ uses x·W⁺ and the raw bias).
    """
    from captum.attr import LRP
    from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule, EpsilonRule

    net, x = captum_resnet_and_input()
    eps = 1e-9
    if rule == "zplus":
        chain = chainlab.extract(net, x, "zplus", stabilizer=eps)
    else:
        chain = chainlab.extract(net, x, "lrp-epsilon", epsilon=eps, stabilizer=eps)
    k = chain.predicted
    assert [op.kind for op in chain].count("residual") == 2
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.rule = Alpha1_Beta0_Rule() if rule == "zplus" else EpsilonRule(epsilon=eps)
        elif isinstance(m, (Add, nn.AdaptiveAvgPool2d)):
            m.rule = EpsilonRule(epsilon=eps)
    theirs = LRP(net).attribute(x.clone(), target=k).detach().numpy()
    assert rel_err(chain.explain(k), theirs) < 1e-7


def test_unsupported_graphs_name_the_operation():
    class Concat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(2, 2, 1)
            self.b = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return torch.cat([self.a(x), self.b(x)], 1)

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return torch.add(self.a(x), x, alpha=2.0)

    class Three(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(2, 2, 1)
            self.b = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return self.a(x) + self.b(x) + x

    x = torch.rand(1, 2, 3, 3)
    with pytest.raises(UnsupportedLayerError, match="'cat'.*combines 2 values"):
        chainlab.extract(Concat().eval(), x, "gradient")
    with pytest.raises(UnsupportedLayerError, match="alpha"):
        chainlab.extract(Scaled().eval(), x, "gradient")
    with pytest.raises(UnsupportedLayerError, match="feeds 3 operations"):
        chainlab.extract(Three().eval(), x, "gradient")
    with pytest.raises(ValueError, match="option residual of rule 'zplus' must be one of"):
        chainlab.extract(tiny("basic"), tiny_input(tiny("basic")), "zplus", residual="half")


def test_residual_operator_shapes_checked():
    from chainlab.linalg import DenseOperator, Diagonal, Product
    with pytest.raises(ValueError, match=r"cannot add operators of shapes \(3, 2\), \(3, 3\)"):
        ResidualOperator([Product([DenseOperator(np.ones((3, 2)))]), Product([Diagonal(np.ones(3))])])


class FunctionalNet(nn.Module):
    """Other spellings of residual code: shortcut first in the sum, torch.add, F.relu, a nested block,
    a residual MLP block after flatten, and a block whose branch starts with a max-pool."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.pre = nn.Conv2d(3, 3, 1)
        self.inner = nn.Conv2d(3, 3, 3, padding=1)
        self.outer = nn.Conv2d(3, 3, 1)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.fc1 = nn.Linear(48, 48)
        self.fc2 = nn.Linear(48, 4)

    def forward(self, x):
        h = F.relu(self.conv(x))
        # outer block: h + outer(relu(a + inner(a))), a = relu(pre(h))   (a nested block inside the branch)
        a = F.relu(self.pre(h))
        u = F.relu(torch.add(a, self.inner(a)))
        h = F.relu(h + self.outer(u))
        h = self.pool(h) + h
        v = torch.flatten(h, 1)
        v = v + F.relu(self.fc1(v))
        return self.fc2(v)


@pytest.mark.parametrize("rule", ["gradient", "lrp-0"])
def test_other_spellings_and_nested_blocks(rule):
    torch.manual_seed(0)
    net = FunctionalNet().double().eval()
    x = torch.rand(1, 2, 4, 4, dtype=torch.float64)
    chain = chainlab.extract(net, x, rule, bias="full", stabilizer=1e-13)
    assert [op.kind for op in chain] == ["sparse", "residual", "residual", "residual", "dense"]
    nested = chain[1]
    assert [A.kind for A in nested.branches[1]] == ["sparse", "residual", "sparse"] and nested.branches[0] == []
    J = jacobian(net, x)
    if rule == "gradient":
        assert rel_err(chain.to_dense(), J) < 1e-10
    else:   # LRP-0 = gradient × input up to the stabilizer, also through proportional splits
        # (column k of the product is the input relevance for r_L = e_k, i.e. x ⊙ ∇f_k / f_k)
        assert rel_err(chain.to_dense() * chain.logits[None, :], x.reshape(-1, 1).numpy() * J) < 1e-8


def test_whole_chain_methods_must_declare_residual_support(monkeypatch):
    from chainlab.extraction import METHODS, Method
    from chainlab.extraction import api

    class Built(Exception):
        """Raised by the test method's builder: proves extract reached it."""

    def builder(model, net, xt, records, opts, own):
        raise Built

    net = tiny("basic")
    monkeypatch.setitem(api.METHODS, "_test-method", Method("_test-method", builder))
    with pytest.raises(UnsupportedLayerError, match="does not support residual blocks .*layer1.0"):
        chainlab.extract(net, tiny_input(net), "_test-method")
    monkeypatch.setitem(api.METHODS, "_test-method", Method("_test-method", builder, residual=True))
    with pytest.raises(Built):
        chainlab.extract(net, tiny_input(net), "_test-method")
    for name, m in METHODS.items():          # every shipped method without residual support says so
        if not m.residual:
            with pytest.raises(UnsupportedLayerError, match=f"rule '{name}' does not support residual blocks"):
                chainlab.extract(net, tiny_input(net), name)


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_zplus_block_abs_column_sums_equal_the_blocks_columns(kind):
    """Every stage of a z⁺ block is ≥ 0, so ``ResidualOperator.abs_column_sums`` sums the columns by transposed passes
    and multiplies out only the columns whose residual shares z_t/s(z) have both signs (there are some here: signed
    weights); it equals Σ_i |M_ij| of the block's columns M e_j, applied one by one through the torch backward (the
    oracle).  Mixed columns occur beside identity shortcuts (the diagonal route) and beside 1×1-conv shortcuts (the
    columns multiplied out).  α-β's stages are signed: the multiplied-out route, checked the same way."""
    net = tiny(kind)
    x = tiny_input(net)
    mixed = {True: 0, False: 0}             # identity shortcut: mixed columns
    for rule, kw in (("zplus", {}), ("alpha-beta", {"alpha": 2.0, "beta": 1.0})):
        chain = chainlab.extract(net, x, rule, materialize=False, **kw)
        blocks = [op for op in chain if op.kind == "residual"]
        assert len(blocks) == 3
        for op in blocks:
            nonneg = all(s.nonnegative() for b in op.branches for s in b)
            assert nonneg == (rule == "zplus")
            if nonneg:
                cols = np.stack([op._column(t) for t in range(len(op.branches))])
                mixed[any(not b for b in op.branches)] += int(((cols > 0).any(axis=0) & (cols < 0).any(axis=0)).sum())
            want = np.abs(op.matmat(np.eye(op.shape[1]))).sum(axis=0)
            assert np.allclose(op.abs_column_sums(), want, rtol=1e-12, atol=1e-13 * want.max())
    assert mixed[True] > 0 and mixed[False] > 0
