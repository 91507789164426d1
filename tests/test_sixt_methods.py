"""The methods of Sixt et al. 2020 that chainlab names on their own: excitation BP, contrastive excitation BP
(eq. 16), contrastive LRP (eq. 15, with and without the max), LRP-CMP as Sixt ran it (innvestigate's
LRPSequentialPresetA/B with ε = 1e-10) and LRP-α5β4.

Oracles: the loop-built float64 layer matrices of tests/reference.py on a net with conv, stride, padding,
dilation, BatchNorm (folded by hand here), no-bias layers, max/avg/adaptive pools (conftest.conv_net) —
layer inputs recorded by forward hooks on the torch model; captum's LRP (Alpha1_Beta0_Rule, which computes
x·W⁺ for every input: Zhang et al.'s excitation formula) per target, from which the test forms the
contrastive maps itself; values computed by hand on two-layer nets.
"""
import numpy as np
import pytest
import torch
import torch.nn as nn

import chainlab
from chainlab.chain import ContrastiveChain
from chainlab.errors import InputError
from conftest import conv_net, rel_err
from reference import conv_unrolled, rule_matrix


# ---------------------------------------------------------------------------------------------
# the loop reference of every Linear/Conv2d layer of a torch net


def hand_folded_layers(net, x):
    """{module path: (W unrolled n_out × n_in, b per unit or None, layer input flat)}, BN folded by hand."""
    inputs = {}
    leaves = [(n, m) for n, m in net.named_modules() if not list(m.children())]
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: inputs.__setitem__(n, i[0].detach().clone()))
             for n, m in leaves if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    out = {}
    for idx, (name, m) in enumerate(leaves):
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        W = m.weight.detach().numpy()
        b = m.bias.detach().numpy() if m.bias is not None else np.zeros(W.shape[0])
        nxt = leaves[idx + 1][1] if idx + 1 < len(leaves) else None
        if isinstance(nxt, (nn.BatchNorm1d, nn.BatchNorm2d)):
            s = (nxt.weight / torch.sqrt(nxt.running_var + nxt.eps)).detach().numpy()
            W = W * s.reshape((-1,) + (1,) * (W.ndim - 1))
            b = (b - nxt.running_mean.numpy()) * s + nxt.bias.detach().numpy()
        a = inputs[name]
        if isinstance(m, nn.Conv2d):
            Wd, oshape = conv_unrolled(W, tuple(a.shape[1:]), m.stride, m.padding, m.dilation, m.groups)
            b = np.repeat(b, oshape[1] * oshape[2])
        else:
            Wd = W
        has_bias = m.bias is not None or isinstance(nxt, (nn.BatchNorm1d, nn.BatchNorm2d))
        out[name] = (Wd, b if has_bias else None, a.reshape(-1).numpy())
    return out


def check_against_loop_reference(net, x, chain, rule_of, bias="zennit", stab=1e-6):
    """Every Linear/Conv2d operator of ``chain`` equals rule_matrix(*rule_of(path)) built by loops."""
    layers = hand_folded_layers(net, x)
    checked = 0
    for i, name in enumerate(chain.names):
        if name not in layers:
            continue
        W, b, a = layers[name]
        rule, opts = rule_of(name)
        M_ref, _ = rule_matrix(rule, W, a, b, bias=bias, eps=stab, b_true=b, **opts)
        M = chain[i].to_dense()
        assert M.shape == M_ref.shape, name
        assert np.abs(M - M_ref).max() <= 1e-10 * max(np.abs(M_ref).max(), 1.0), (name, rule)
        assert chain.layer_rules[i] == rule, (name, chain.layer_rules[i], rule)
        checked += 1
    assert checked == len(layers)


CONV_NET_LAYERS = ("conv1", "block.conv2", "conv3", "fc1", "fc2")


def signed_input(seed=5):
    return torch.randn(1, 2, 7, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


CASES = {
    "excitation-bp": ({}, lambda n: ("excitation-bp", {})),
    "contrastive-ebp": ({}, lambda n: ("contrastive-excitation", {}) if n == "fc2" else ("excitation-bp", {})),
    "lrp-cmp-sixt-a": ({}, lambda n: ("alpha-beta", {"alpha": 1.0, "beta": 0.0}) if "conv" in n
                       else ("lrp-epsilon", {"epsilon": 1e-10})),
    "lrp-cmp-sixt-b": ({}, lambda n: ("alpha-beta", {"alpha": 2.0, "beta": 1.0}) if "conv" in n
                       else ("lrp-epsilon", {"epsilon": 1e-10})),
    "alpha-beta": ({"alpha": 5, "beta": 4}, lambda n: ("alpha-beta", {"alpha": 5.0, "beta": 4.0})),
}


@pytest.mark.parametrize("name,bias", [(n, "zennit") for n in sorted(CASES)] + [("lrp-cmp-sixt-b", "none")])
def test_layer_matrices_equal_loop_reference(name, bias):
    """conv_net: conv + BN, conv stride 2 padding 1 without bias, max-pool, dilated conv, avg and adaptive
    pools, Linear + BN, Linear without bias; a signed input (negative inputs at the first layer)."""
    net = conv_net(2)
    x = signed_input()
    opts, rule_of = CASES[name]
    chain = chainlab.extract(net, x, name, bias=bias, **opts)
    assert [n for n in chain.names if n in CONV_NET_LAYERS] == list(CONV_NET_LAYERS)
    check_against_loop_reference(net, x, chain, rule_of, bias=bias)


# ---------------------------------------------------------------------------------------------
# excitation BP


def test_excitation_bp_is_zplus_without_bias_on_nonnegative_inputs():
    """Zhang's x·W⁺/Σ x·W⁺ = z⁺ (bias "none") wherever the layer inputs are ≥ 0: on an input ≥ 0 every layer of
    conv_net (after ReLUs and pools).  On a signed input only the first layer differs (z⁺ pairs x⁻ with W⁻);
    with biases in z⁺'s denominators (b⁺, bias "zennit") the two differ where some b⁺ > 0."""
    net = conv_net(3)
    x_pos = torch.rand(1, 2, 7, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ebp = chainlab.extract(net, x_pos, "excitation-bp")
    zp = chainlab.extract(net, x_pos, "zplus", bias="none")
    assert rel_err(ebp.to_dense(), zp.to_dense()) < 1e-12
    assert rel_err(zp.explain(2), ebp.explain(2)) < 1e-12
    zb = chainlab.extract(net, x_pos, "zplus")                     # bias "zennit": b⁺ in the denominators
    assert rel_err(zb.to_dense(), ebp.to_dense()) > 1e-3
    x = signed_input(4)
    ebp, zp = chainlab.extract(net, x, "excitation-bp"), chainlab.extract(net, x, "zplus", bias="none")
    assert rel_err(ebp[0].to_dense(), zp[0].to_dense()) > 1e-2
    assert ebp[0].to_dense().min() < 0 <= zp[0].to_dense().min()   # x·W⁺ with x < 0 is negative
    for a, b in zip(ebp.operators[1:], zp.operators[1:]):
        assert rel_err(a.to_dense(), b.to_dense()) < 1e-12


def test_excitation_bp_equals_captum_alpha1_beta0_on_signed_inputs():
    """captum's Alpha1_Beta0_Rule(set_bias_to_zero=True) computes x·W⁺ / Σ x·W⁺ for every input, negative ones
    included: Zhang's formula.  digits-cnn (conv + BN, no-bias conv, max-pool, stride 2, adaptive average pool),
    BN folded by hand for captum (tests/test_captum.py's CaptumNet)."""
    from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule
    from test_captum import CaptumNet, captum_lrp
    net = chainlab.models.load("digits-cnn").double()
    x = 0.5 + torch.randn(1, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    chain = chainlab.extract(net, x, "excitation-bp", stabilizer=1e-9)
    assert chain.explain().min() < 0
    for k in (chain.predicted, (chain.predicted + 3) % 10):
        theirs = captum_lrp(CaptumNet(net).double().eval(), x, k, lambda: Alpha1_Beta0_Rule(set_bias_to_zero=True))
        assert rel_err(chain.explain(k), theirs) < 1e-6, k


def _two_linear(W1, W2, b1=None, b2=None):
    net = nn.Sequential(nn.Linear(W1.shape[1], W1.shape[0], bias=b1 is not None), nn.ReLU(),
                        nn.Linear(W2.shape[1], W2.shape[0], bias=b2 is not None)).double().eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(W1, dtype=torch.float64))
        net[2].weight.copy_(torch.tensor(W2, dtype=torch.float64))
        if b1 is not None:
            net[0].bias.copy_(torch.tensor(b1, dtype=torch.float64))
        if b2 is not None:
            net[2].bias.copy_(torch.tensor(b2, dtype=torch.float64))
    return net


def test_contrastive_ebp_by_hand():
    """Layer 1 = identity (h = x = (1, 2)); final W = [[1, −1], [2, 1]], bias 3 (ignored by excitation BP).
    Output 0: Z⁺ = x·(1, 0)/1 = (1, 0); N⁺ with −W: x·(0, 1)/2 = (0, 1); column (1, −1).
    Output 1: Z⁺ = x·(2, 1)/4 = (1/2, 1/2); (−W)⁺ = 0, so N⁺'s column is 0 (0/s(0)); column (1/2, 1/2).
    The first layer keeps excitation BP: I (x ≥ 0, W⁺ = I)."""
    net = _two_linear(np.eye(2), np.array([[1.0, -1.0], [2.0, 1.0]]), b2=np.array([3.0, 3.0]))
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    ch = chainlab.extract(net, x, "contrastive-ebp", stabilizer=1e-12)
    assert ch.layer_rules == ["excitation-bp", "contrastive-excitation"]
    assert np.allclose(ch[1].to_dense(), [[1.0, 0.5], [-1.0, 0.5]], rtol=0, atol=1e-11)
    assert np.allclose(ch[0].to_dense(), np.eye(2), rtol=0, atol=1e-11)
    # explain starts at y_k e_k as every relevance rule: Sixt's m_k start is apply(e_k) = explain(k) / y_k
    y = ch.logits
    assert np.allclose(ch.explain(0).reshape(-1), y[0] * np.array([1.0, -1.0]), rtol=0, atol=1e-10)
    assert np.allclose(ch.apply(np.eye(2)[1]), [0.5, 0.5], rtol=0, atol=1e-11)


def test_contrastive_final_layer_is_alpha1_beta1_and_conserves_zero():
    """(−W)⁺ = −W⁻: on inputs ≥ 0 and without bias Z⁺ − N⁺ is the loop reference of LRP-αβ with α = β = 1 (which
    the alpha-beta rule itself refuses, α − β ≠ 1); every live column sums to 0."""
    net = conv_net(4)
    x = torch.rand(1, 2, 7, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    ch = chainlab.extract(net, x, "contrastive-ebp", stabilizer=1e-12)
    W, b, a = hand_folded_layers(net, x)["fc2"]
    M_ref, _ = rule_matrix("alpha-beta", W, a, None, bias="none", eps=1e-12, alpha=1.0, beta=1.0)
    M = ch[-1].to_dense()
    assert rel_err(M, M_ref) < 1e-10
    assert np.abs(M.sum(axis=0)).max() < 1e-9 * np.abs(M).max() and np.abs(M).max() > 0
    # the composite's "last" key picks the last Linear/Conv2d stage also when a pool ends the net
    tail = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten()).double().eval()
    c2 = chainlab.extract(tail, x, "contrastive-ebp")
    assert c2.layer_rules == ["excitation-bp", "contrastive-excitation", "avgpool-proportional"]


# ---------------------------------------------------------------------------------------------
# contrastive LRP


def contrast(r_k, r_rest, clip):
    c = r_k / r_k.sum() - r_rest / r_rest.sum()
    return np.maximum(c, 0.0) if clip else c


def test_contrastive_lrp_by_hand():
    """One Linear layer (no bias) W = [[1, 1], [3, 0]], x = (1, 2): y = (3, 3).  z⁺ columns: output 0 x·W₀/3 =
    (1/3, 2/3), output 1 (3, 0)/3 = (1, 0).  k = 0: r_k = 3·(1/3, 2/3) = (1, 2), n = (1/3, 2/3); r_¬k = 3·(1, 0),
    n = (1, 0); n(r_k) − n(r_¬k) = (−2/3, 2/3); with the max (0, 2/3)."""
    net = nn.Sequential(nn.Linear(2, 2, bias=False)).double().eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 1.0], [3.0, 0.0]], dtype=torch.float64))
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    ch = chainlab.extract(net, x, "contrastive-lrp", stabilizer=1e-13)
    assert isinstance(ch, ContrastiveChain) and ch.linear
    r_k, r_rest = ch.maps(0)
    assert np.allclose(r_k, [1.0, 2.0], atol=1e-11) and np.allclose(r_rest, [3.0, 0.0], atol=1e-11)
    assert np.allclose(ch.explain(0).reshape(-1), [0.0, 2 / 3], atol=1e-11)
    nomax = chainlab.extract(net, x, "contrastive-lrp-nomax", stabilizer=1e-13)
    assert np.allclose(nomax.explain(0).reshape(-1), [-2 / 3, 2 / 3], atol=1e-11)
    # its matrices are the z⁺ chain's
    assert np.array_equal(ch.to_dense(), chainlab.extract(net, x, "zplus", stabilizer=1e-13).to_dense())
    with pytest.raises(InputError, match="normalizes each map by its sum.*sums to 0.0"):
        chainlab.extract(net, torch.zeros(1, 2, dtype=torch.float64), "contrastive-lrp").explain(0)
    with pytest.raises(InputError, match="of='logit'"):
        ch.explain(0, of="logprob")


def test_contrastive_lrp_equals_contrast_of_captum_zplus_maps():
    """captum z⁺ maps per target (started at y_j, as eq. 15's y ⊙ m): r_k = captum(k), r_¬k = Σ_{j≠k} captum(j).
    digits-cnn (conv + BN, no-bias conv, max-pool, stride 2, adaptive avg-pool), inputs in [0, 1], biases
    ignored on both sides (captum's z⁺ keeps the raw bias, see tests/test_captum.py)."""
    from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule
    from test_captum import CaptumNet, captum_lrp
    net = chainlab.models.load("digits-cnn").double()
    x = chainlab.data.model_input("digits-cnn", chainlab.data.load_digits().x_test[9:10]).double()
    maps = [captum_lrp(CaptumNet(net).double().eval(), x, j, lambda: Alpha1_Beta0_Rule(set_bias_to_zero=True))
            .reshape(-1) for j in range(10)]
    for rule, clip in (("contrastive-lrp", True), ("contrastive-lrp-nomax", False)):
        ch = chainlab.extract(net, x, rule, bias="none", stabilizer=1e-9)
        for k in (ch.predicted, (ch.predicted + 5) % 10):
            ref = contrast(maps[k], sum(m for j, m in enumerate(maps) if j != k), clip)
            ours = ch.explain(k).reshape(-1)
            assert rel_err(ours, ref) < 1e-6, (rule, k)
            assert (ours.min() >= 0) if clip else (ours.min() < 0 < ours.max())


def test_contrastive_lrp_through_residual_blocks_equals_captum():
    """The CaptumResNet of tests/test_residual.py (blocks with identity and 1×1 conv shortcuts, captum's ε-rule on
    the sum = the proportional split), inputs ≥ 0 and biases ≥ 0 (captum's z⁺ with bias = chainlab's there)."""
    from captum.attr import LRP
    from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule, EpsilonRule
    from test_residual import Add, captum_resnet_and_input
    net, x = captum_resnet_and_input()
    ch = chainlab.extract(net, x, "contrastive-lrp", stabilizer=1e-9)
    assert [op.kind for op in ch].count("residual") == 2

    def captum_map(j):
        for m in net.modules():     # captum drops the rules after each attribution
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.rule = Alpha1_Beta0_Rule()
            elif isinstance(m, (Add, nn.AdaptiveAvgPool2d)):
                m.rule = EpsilonRule(epsilon=1e-9)
        return LRP(net).attribute(x.clone(), target=j).detach().numpy().reshape(-1)

    maps = [captum_map(j) for j in range(5)]
    k = ch.predicted
    ref = contrast(maps[k], sum(m for j, m in enumerate(maps) if j != k), True)
    assert rel_err(ch.explain(k).reshape(-1), ref) < 1e-6


# ---------------------------------------------------------------------------------------------
# LRP-CMP (Sixt) and LRP-α5β4


def test_lrp_cmp_sixt_rules_per_layer_and_epsilon_option():
    net = conv_net(1)
    x = signed_input(2)
    for name, (alpha, beta) in (("lrp-cmp-sixt-a", (1.0, 0.0)), ("lrp-cmp-sixt-b", (2.0, 1.0))):
        ch = chainlab.extract(net, x, name, epsilon=0.5)
        lo = ch.options["layer_options"]
        assert lo["conv1"] == {"alpha": alpha, "beta": beta}      # the first conv too: no z^B
        assert lo["block.conv2"] == lo["conv3"] == {"alpha": alpha, "beta": beta}
        assert lo["fc1"] == lo["fc2"] == {"epsilon": 0.5}
        default = chainlab.extract(net, x, name)
        assert default.options["layer_options"]["fc2"] == {"epsilon": 1e-10}
    # zennit's lrp-cmp differs at the first layer (z^B) and in the conv rule of preset B
    zen = chainlab.extract(net, x, "lrp-cmp", low=-3.0, high=3.0)
    assert zen.layer_rules[0] == "zbox"


def test_alpha5_beta4_column_absolute_sums_at_most_nine():
    """|α Z⁺ − β Z⁻| column sums ≤ α Σ Z⁺ + β Σ Z⁻ ≤ α + β = 9 (each normalized part sums to ≤ 1); the bound is
    approached (a column well above α − β = 1)."""
    net = conv_net(5)
    x = signed_input(6)
    ch = chainlab.extract(net, x, "alpha-beta", alpha=5, beta=4)
    top = 0.0
    for op, r in zip(ch, ch.layer_rules):
        if r != "alpha-beta":
            continue
        cs = np.abs(op.to_dense()).sum(axis=0)
        assert cs.max() <= 9 + 1e-9, (r, cs.max())
        top = max(top, cs.max())
    assert top > 5


def test_contrastive_lrp_implicit_operators_and_float32():
    net = conv_net(6)
    x = torch.rand(1, 2, 7, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ref = chainlab.extract(net, x, "contrastive-lrp")
    imp = chainlab.extract(net, x, "contrastive-lrp", materialize=False)
    assert isinstance(imp, ContrastiveChain) and any(op.kind == "implicit" for op in imp)
    assert rel_err(imp.explain(1), ref.explain(1)) < 1e-12
    f32 = chainlab.extract(net, x, "contrastive-lrp-nomax", dtype="float32")
    assert f32.dtype == np.float32 and f32.options["dtype"] == "float32"


def test_prefix_columns_are_sampled_columns_of_the_prefix_products_however_the_columns_are_blocked(monkeypatch):
    """S6's Y_k (N, n_input, c) are the seeded sampled columns of P_k = M_1 ⋯ M_k of each image's gradient chain
    (oracle: the explicit per-image operators multiplied out by numpy); pushing the unit signals through in blocks of
    one column (PREFIX_BLOCK_BYTES tiny, as on a VGG-16 at 224×224) gives the same columns."""
    from chainlab.papers.sixt.measure import METHOD
    from chainlab.studies import sixt as S
    net = conv_net(7).double().eval()
    X = torch.rand((2, 2, 8, 8), dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    whole, names = S.prefix_columns(net, X, METHOD["gradient"], columns=5, seed=4)
    assert sorted(whole) == list(range(1, len(names) + 1))
    for b in range(2):
        ch = chainlab.extract(net, X[b:b + 1], "gradient")
        assert list(ch.names) == names
        P = np.eye(ch[0].shape[0])
        for k, op in enumerate(ch, start=1):
            P = P @ op.to_dense()
            c = min(5, P.shape[1])
            idx = np.sort(np.random.default_rng((4, k)).choice(P.shape[1], size=c, replace=False))
            assert rel_err(whole[k][b], P[:, idx]) < 1e-12, (b, k)
    monkeypatch.setattr(S, "PREFIX_BLOCK_BYTES", 1)
    names2, gen = S.iter_prefix_columns(net, X, METHOD["gradient"], columns=5, seed=4)
    assert names2 == names
    for k, Y in gen:
        assert rel_err(Y, whole[k]) < 1e-13, k
