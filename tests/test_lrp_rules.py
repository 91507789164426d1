"""Oracle 3 (matrices) and 4 (conservation): every rule's layer matrices against loop-built references."""
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as nn

import chainlab
from chainlab.rules import Epsilon, ZBox
from reference import conv_unrolled, rule_matrix

RULES = [
    ("gradient", {}),
    ("lrp-0", {}),
    ("lrp-epsilon", {"epsilon": 0.3}),
    ("zplus", {}),
    ("alpha-beta", {"alpha": 2.0, "beta": 1.0}),
    ("alpha-beta", {"alpha": 1.0, "beta": 0.0}),
    ("gamma", {"gamma": 0.25}),
    ("zbox", {"low": -1.5, "high": 2.0}),
    ("wsquare", {}),
    ("flat", {}),
]
POLICIES = ["zennit", "none", "full"]

CONFIGS = {
    # conv with stride 2 and padding, bias, negative inputs; then a ReLU, flatten and a Linear
    "stride2-pad1-bias": dict(conv=dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=1, bias=True),
                              in_shape=(2, 6, 5)),
    # conv without bias, rectangular kernel, dilation, asymmetric padding
    "nobias-dilated": dict(conv=dict(in_channels=2, out_channels=3, kernel_size=(2, 3), stride=(1, 2),
                                     padding=(1, 0), dilation=(2, 1), bias=False), in_shape=(2, 5, 6)),
}


def two_layer_net(cfg, seed):
    torch.manual_seed(seed)
    conv = nn.Conv2d(**cfg["conv"])
    with torch.no_grad():
        h = conv(torch.zeros((1,) + cfg["in_shape"]))
    fc = nn.Linear(h.numel(), 4)
    with torch.no_grad():
        fc.weight.mul_(3.0)
        if conv.bias is not None:
            conv.bias.normal_(0, 0.3)
        fc.bias.normal_(0, 0.3)
    return nn.Sequential(OrderedDict([("conv", conv), ("relu", nn.ReLU()), ("flatten", nn.Flatten()),
                                      ("fc", fc)])).double().eval()


def references(net, x, cfg, rule, opts, policy, stab):
    """Reference matrices of both layers, built by loops from the unrolled weights."""
    conv, fc = net.conv, net.fc
    c = cfg["conv"]
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    Wc, out_shape = conv_unrolled(conv.weight.detach().numpy(), cfg["in_shape"], pair(c.get("stride", 1)),
                                  pair(c.get("padding", 0)), pair(c.get("dilation", 1)))
    conn, _ = conv_unrolled(np.ones_like(conv.weight.detach().numpy()), cfg["in_shape"], pair(c.get("stride", 1)),
                            pair(c.get("padding", 0)), pair(c.get("dilation", 1)))
    per_unit = int(np.prod(out_shape[1:]))
    bc = np.repeat(conv.bias.detach().numpy(), per_unit) if conv.bias is not None else np.zeros(Wc.shape[0])
    x0 = x.reshape(-1).numpy()
    z1 = Wc @ x0 + bc
    h1 = np.maximum(z1, 0)
    Wf, bf = fc.weight.detach().numpy(), fc.bias.detach().numpy()
    z2 = Wf @ h1 + bf
    ref_opts = dict(opts)
    out = []
    for (W, xin, b, z, relu, cn) in [(Wc, x0, bc, z1, True, conn), (Wf, h1, bf, z2, False, np.ones_like(Wf))]:
        o = dict(ref_opts)
        if rule == "zbox":
            o["low"] = np.full(W.shape[1], opts["low"])
            o["high"] = np.full(W.shape[1], opts["high"])
        M, share = rule_matrix(rule, W, xin, b, relu=relu, bias=policy, eps=stab, conn=cn, b_true=b, **o)
        out.append((M, share))
    return out


@pytest.mark.parametrize("cfg_name", list(CONFIGS))
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("rule,opts", RULES, ids=[f"{r}{'-' + '-'.join(map(str, o.values())) if o else ''}" for r, o in RULES])
def test_layer_matrices_equal_loop_reference(cfg_name, policy, rule, opts):
    cfg = CONFIGS[cfg_name]
    net = two_layer_net(cfg, seed=hash((cfg_name, rule)) % 1000)
    x = torch.randn((1,) + cfg["in_shape"], dtype=torch.float64)  # negative inputs in the first layer
    stab = 1e-6
    chain = chainlab.extract(net, x, rule, bias=policy, stabilizer=stab, **opts)
    refs = references(net, x, cfg, rule, opts, policy, stab)
    assert len(chain) == 2
    assert chain[0].kind == "sparse" and chain[1].kind == "dense"
    for k, (M_ref, share_ref) in enumerate(refs):
        M = chain[k].to_dense()
        assert M.shape == M_ref.shape
        scale = max(np.abs(M_ref).max(), 1.0)
        np.testing.assert_allclose(M, M_ref, rtol=0, atol=1e-10 * scale, err_msg=f"layer {k}")
        if policy == "full":
            np.testing.assert_allclose(chain[k].bias_relevance, share_ref, rtol=0, atol=1e-10 * scale)
        else:
            assert chain[k].bias_relevance is None


def test_zbox_with_array_bounds_in_a_composite_matches_reference():
    cfg = CONFIGS["stride2-pad1-bias"]
    net = two_layer_net(cfg, 7)
    x = torch.randn((1,) + cfg["in_shape"], dtype=torch.float64)
    low = x - torch.rand_like(x)
    high = x + torch.rand_like(x)
    chain = chainlab.extract(net, x, {0: ZBox(low, high), "default": "lrp-0"})
    Wc, _ = conv_unrolled(net.conv.weight.detach().numpy(), cfg["in_shape"], (2, 2), (1, 1))
    M_ref, _ = rule_matrix("zbox", Wc, x.reshape(-1).numpy(), None, low=low.reshape(-1).numpy(),
                           high=high.reshape(-1).numpy())
    np.testing.assert_allclose(chain[0].to_dense(), M_ref, atol=1e-10 * np.abs(M_ref).max())
    assert chain.layer_rules == ["zbox", "lrp-0"]


def test_float32_option_stores_float32_and_agrees_with_float64():
    net = two_layer_net(CONFIGS["stride2-pad1-bias"], 3)
    x = torch.rand((1, 2, 6, 5), dtype=torch.float64)
    c64 = chainlab.extract(net, x, "zplus")
    c32 = chainlab.extract(net, x, "zplus", dtype="float32")
    for a, b in zip(c64, c32):
        assert b.dtype == np.float32
        np.testing.assert_allclose(b.to_dense(), a.to_dense(), rtol=1e-6, atol=1e-7)
    assert c32.explain().dtype == np.float32


@pytest.mark.parametrize("stab", [1e-6, 1e-3])
def test_zplus_columns_sum_to_d_over_d_plus_eps_without_bias(stab):
    """Conservation: with bias "none" column j of every z⁺ layer sums to d_j/(d_j + ε), d_j = Σ x⁺W⁺ + x⁻W⁻."""
    cfg = CONFIGS["stride2-pad1-bias"]
    net = two_layer_net(cfg, 11)
    x = torch.randn((1,) + cfg["in_shape"], dtype=torch.float64)
    chain = chainlab.extract(net, x, "zplus", bias="none", stabilizer=stab)
    Wc, _ = conv_unrolled(net.conv.weight.detach().numpy(), cfg["in_shape"], (2, 2), (1, 1))
    x0 = x.reshape(-1).numpy()
    d = np.maximum(Wc, 0) @ np.maximum(x0, 0) + np.minimum(Wc, 0) @ np.minimum(x0, 0)
    np.testing.assert_allclose(chain[0].column_sums(), d / (d + stab), rtol=1e-12, atol=1e-15)
    assert np.all(chain[0].to_dense() >= 0)


def test_zplus_column_sums_at_most_one_with_zennit_bias(shipped):
    name, net, x = shipped
    chain = chainlab.extract(net, x, "zplus")
    for op in chain:
        cs = op.column_sums()
        assert cs.max() <= 1 + 1e-12 and cs.min() >= -1e-15, (name, op)
    nobias = chainlab.extract(net, x, "zplus", bias="none", stabilizer=1e-12)
    for op, st in zip(nobias, nobias.names):
        cs = op.column_sums()
        live = cs > 0  # columns whose d_j > 0; the others are all-zero columns (d_j = 0)
        # exactly d_j/(d_j + 1e-12) (tested on the small net above); here every live d_j is above 1e-6
        assert cs.max() <= 1.0 and cs[live].min() > 1 - 1e-6, st


def test_alpha_beta_columns_have_absolute_sums_at_most_alpha_plus_beta(shipped):
    name, net, x = shipped
    chain = chainlab.extract(net, x, "alpha-beta", alpha=2, beta=1)
    for op in chain:
        assert np.abs(op.to_sparse("csc")).sum(axis=0).max() <= 3 + 1e-9


def test_lrp_epsilon_differs_from_lrp0_by_its_epsilon():
    net = two_layer_net(CONFIGS["stride2-pad1-bias"], 5)
    x = torch.rand((1, 2, 6, 5), dtype=torch.float64)
    a = chainlab.extract(net, x, "lrp-epsilon", epsilon=1.0).explain()
    b = chainlab.extract(net, x, "lrp-0").explain()
    assert np.abs(a).sum() < np.abs(b).sum()  # ε absorbs relevance


def test_named_composites_pick_the_documented_rule_per_layer(shipped):
    name, net, x = shipped
    single = {r: chainlab.extract(net, x, r, low=0.0, high=1.0) if r == "zbox" else chainlab.extract(net, x, r)
              for r in ("zplus", "lrp-epsilon", "zbox")}
    for comp in ("epsilon-plus", "lrp-cmp", "dtd"):
        chain = chainlab.extract(net, x, comp, **({} if comp == "epsilon-plus" else {"low": 0.0, "high": 1.0}))
        first = next(i for i, r in enumerate(chain.layer_rules) if r not in ("winner-take-all",) and "avgpool" not in r)
        for i, (op, kind) in enumerate(zip(chain, chain.layer_rules)):
            module = dict(net.named_modules())[chain.names[i]]
            if isinstance(module, nn.Conv2d):
                want = "zbox" if (comp != "epsilon-plus" and i == first) else "zplus"
            elif isinstance(module, nn.Linear):
                want = "zbox" if (comp != "epsilon-plus" and i == first) else ("zplus" if comp == "dtd" else "lrp-epsilon")
            else:
                continue
            assert kind == want, (comp, i, kind, want)
            diff = op.to_sparse("csc") - single[want][i].to_sparse("csc")
            assert diff.nnz == 0 or np.abs(diff.data).max() == 0


def test_user_composite_by_index_path_and_type():
    net = two_layer_net(CONFIGS["stride2-pad1-bias"], 2)
    x = torch.rand((1, 2, 6, 5), dtype=torch.float64)
    by_type = chainlab.extract(net, x, {nn.Conv2d: "zplus", nn.Linear: Epsilon(0.5)})
    by_index = chainlab.extract(net, x, {0: "zplus", -1: Epsilon(0.5)})
    by_path = chainlab.extract(net, x, chainlab.Composite({"conv": "zplus"}, default="lrp-epsilon"), epsilon=0.5)
    for c in (by_type, by_index, by_path):
        assert c.layer_rules == ["zplus", "lrp-epsilon"]
        np.testing.assert_array_equal(c.to_dense(), by_type.to_dense())
    with pytest.raises(ValueError, match="no rule for layer 'fc'"):
        chainlab.extract(net, x, {nn.Conv2d: "zplus"})


def test_alpha_beta_holds_one_copy_of_each_weight_part():
    """α-β's two groups share W⁺ and W⁻ (the same tensors, as the operator's dtype cache keys them): a VGG's first
    Linear (10⁸ weights) held four times in float64 made an α-β chain 3.1 GB instead of 1.6 GB."""
    from chainlab.rules import AlphaBeta, LayerContext
    from chainlab.trace import trace

    net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    x = torch.randn(1, 5, dtype=torch.float64)
    t = trace(net)
    st = t.stages[0]
    rec = t.forward(x)[0]
    g1, g2 = AlphaBeta(2.0, 1.0).groups(LayerContext(st, rec, 0, True))
    assert g1.terms[0].w is g2.terms[1].w and g1.terms[1].w is g2.terms[0].w          # W⁺ and W⁻, once each
    torch.testing.assert_close(g1.terms[0].w, st.weight.clamp(min=0))
    torch.testing.assert_close(g1.terms[1].w, st.weight.clamp(max=0))
