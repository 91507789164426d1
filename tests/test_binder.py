"""Binder et al. as measurements: empirical constants, a-priori ranges, averages — and the IDENTITIES beside the
claims (regression tests, not claims: they hold by algebra for any correct implementation).

Oracles: autograd Jacobians (the gradient, and gradient × input = LRP-0 on bias-free ReLU nets), sampled copies
for the interval and range bounds, loop references for the group errors.  The claims' decisions and controls are
tests/test_decide_binder.py and tests/test_controls_binder.py.
"""
import importlib
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import chainlab
from chainlab import measures as ms
from chainlab import studies
from chainlab.papers import binder
from chainlab.papers.binder import report as figs
from chainlab.papers.context import one_thread
from conftest import conv_net, mlp
from test_controls_binder import build


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Batch-1 work on small nets: one thread (on a shared machine more threads only spin)."""
    with one_thread():
        yield


def _rand(shape, seed):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# -- empirical constants -----------------------------------------------------------------------------------
def test_gradient_constant_is_the_largest_partial_derivative():
    """C(x) of the gradient = max_i |∂f_k/∂x_i| (autograd), on a net with conv, stride, padding, BN, pools."""
    net = conv_net(3)
    x = _rand((1, 2, 7, 7), 3)
    ch = chainlab.extract(net, x, "gradient", avgpool="gradient")
    rows = ms.constants(ch, norms=True)
    v = {r["quantity"]: r["value"] for r in rows if r["layer"] is None}
    J = torch.autograd.functional.jacobian(lambda z: net(z).reshape(-1), x).reshape(ch.n_output, -1).numpy()
    k = int(np.argmax(net(x).detach().numpy()))
    assert math.isclose(v["c_emp"], np.abs(J[k]).max(), rel_tol=1e-10)
    assert v["c_emp"] <= v["c_norm1"] * (1 + 1e-12) <= v["c_apriori"] * (1 + 1e-9)
    W = [m.weight.detach() for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert v["weight_norm_product"] > 0 and len([r for r in rows if r["quantity"] == "norm1"]) == len(ch)
    # the product of the recorded ‖W_l‖_∞ is the a-priori gradient constant (ReLU: ρ' ≤ 1)
    assert math.isclose(v["weight_norm_product"], v["c_apriori"], rel_tol=1e-12) and len(W) == 5


def test_lrp0_constant_is_gradient_times_input_on_bias_free_nets():
    """LRP-0 = gradient × input without biases, so C(x) = max_i |x_i ∂f_k/∂x_i| / |f_k(x)| (autograd oracle)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8, bias=False), nn.ReLU(), nn.Linear(8, 5, bias=False), nn.ReLU(),
                        nn.Linear(5, 3, bias=False)).double().eval()
    x = _rand((1, 6), 1)
    ch = chainlab.extract(net, x, "lrp-epsilon", epsilon=1e-12, stabilizer=1e-12)
    c = next(r["value"] for r in ms.constants(ch) if r["quantity"] == "c_emp")
    f = net(x).detach().numpy().ravel()
    k = int(np.argmax(f))
    J = torch.autograd.functional.jacobian(lambda z: net(z).reshape(-1), x).reshape(3, -1).numpy()
    assert math.isclose(c, np.abs(x.numpy().ravel() * J[k]).max() / abs(f[k]), rel_tol=1e-8)


def test_constants_refuse_a_tampered_chain():
    ch = chainlab.extract(mlp(0), _rand((1, 7), 0), "zplus")
    ms.constants(ch)
    ch.operators[0] = chainlab.DenseOperator(50.0 * ch.operators[0].to_dense())
    with pytest.raises(chainlab.errors.BoundViolationError, match="a-priori constant"):
        ms.constants(ch, norms=True)


def test_product_sigma_bounds_hold():
    ch = chainlab.extract(conv_net(1), _rand((1, 2, 7, 7), 1), "alpha-beta", avgpool="gradient")
    v = {r["quantity"]: r for r in ms.bounds(ch) if r["layer"] is None}
    s1 = v["sigma1_product"]["value"]
    P = ch.to_dense()
    assert math.isclose(s1, np.linalg.svd(P, compute_uv=False)[0], rel_tol=1e-9)
    for q in ("sigma1_product_bound", "sigma1_layers_product", "sigma1_product_schur"):
        assert 0 < v[q]["tightness"] <= 1 + 1e-9 and math.isclose(v[q]["tightness"], s1 / v[q]["value"])
    assert math.isclose(v["sigma1_product_schur"]["value"],
                        math.sqrt(np.abs(P).sum(0).max() * np.abs(P).sum(1).max()), rel_tol=1e-12)


def test_silu_gradient_bound_uses_the_derivative_bound():
    """|SiLU'| reaches 1.0998 > 1: the a-priori gradient constant carries the factor 1.1 (else it could fail)."""
    z = torch.linspace(-10, 10, 200001, dtype=torch.float64)
    d = chainlab.trace.Activation("silu").derivative(z).abs().max()
    assert 1.09 < float(d) <= 1.1
    net = nn.Sequential(nn.Linear(4, 4), nn.SiLU(), nn.Linear(4, 2)).double().eval()
    ch = chainlab.extract(net, _rand((1, 4), 0), "gradient")
    assert ch.layer_stats[0]["derivative_bound"] == 1.1 and ch.layer_stats[1]["derivative_bound"] == 1.0


# -- a-priori ranges -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,level", [("smoothgrad", 0.3), ("noise", 0.2), ("brightness", 0.3), ("contrast", 0.5)])
def test_interval_bounds_contain_every_sampled_copy(kind, level):
    """IBP over the support box contains the logits of every sampled copy and of the box's corners."""
    net = conv_net(2)
    x = _rand((1, 2, 7, 7), 2).numpy()
    lo, hi = studies.support_box(x, kind, level)
    rng = np.random.default_rng(0)
    copies = [studies.perturb(x, kind, level, rng) for _ in range(20)]
    assert all((c >= lo - 1e-12).all() and (c <= hi + 1e-12).all() for c in copies)
    ib = studies.interval_bounds(net, lo, hi)
    f_lo, f_hi = ib[-1][1].numpy(), ib[-1][2].numpy()
    with torch.no_grad():
        f = np.stack([net(torch.as_tensor(c)).numpy().ravel() for c in copies + [lo, hi]])
    assert (f >= f_lo - 1e-9).all() and (f <= f_hi + 1e-9).all()


@pytest.mark.parametrize("kind,level", [("smoothgrad", 0.3), ("contrast", 0.5)])
def test_apriori_range_bounds_every_attribution(kind, level):
    """B = Π c_l · F bounds every component of every copy's attribution, for each rule with a constant."""
    net = conv_net(2)
    x = _rand((1, 2, 7, 7), 2).numpy()
    rng = np.random.default_rng(1)
    copies = [studies.perturb(x, kind, level, rng) for _ in range(4)]
    for rule, kw in (("gradient", {}), ("zplus", {}), ("alpha-beta", {"alpha": 2.0, "beta": 1.0}),
                     ("lrp-epsilon", {"epsilon": 0.1})):
        base = chainlab.extract(net, x, rule, avgpool="gradient", materialize=False, **kw)
        B = studies.apriori_range(net, base, kind, level)["B"]
        for c in copies:
            ch = chainlab.extract(net, c, rule, avgpool="gradient", materialize=False, **kw)
            assert np.abs(ch.apply(ch.start_vector(base.predicted))).max() <= B * (1 + 1e-9)


def test_interval_bounds_of_a_point_are_the_forward_pass():
    net = conv_net(4)
    x = _rand((1, 2, 7, 7), 4).numpy()
    ib = studies.interval_bounds(net, x, x)
    with torch.no_grad():
        f = net(torch.as_tensor(x)).numpy().ravel()
    assert np.allclose(ib[-1][1].numpy(), f, atol=1e-12) and np.allclose(ib[-1][2].numpy(), f, atol=1e-12)


# -- averages --------------------------------------------------------------------------------------------------
def test_group_errors_against_a_loop():
    A = np.random.default_rng(0).normal(size=(11, 5))
    for N in (1, 2, 3, 5):
        got = studies.group_errors(A, N)
        ref = []
        for g in range(11 // N):
            idx = list(range(g * N, (g + 1) * N))
            rest = [i for i in range(11) if i not in idx]
            ref.append(np.abs(A[idx].mean(0) - A[rest].mean(0)).max())
        assert np.allclose(got, ref, rtol=1e-12)


def test_averages_records_and_a_range_chosen_too_small():
    net = mlp(0)
    x = _rand((1, 7), 0)
    rows = studies.averages(net, x, "zplus", perturbation="noise", level=0.2, n=4, n_ref=28, n_boot=20)
    v = {r["quantity"]: r["value"] for r in rows if r["k"] is None}
    assert v["range_exceeded"] == 0 and v["B"] >= v["range_max"] and v["exceed_fraction"] == 0
    assert math.isclose(v["K_apriori"], v["B"] * math.sqrt(2 * math.log(2 * 7 / 0.05)))
    tn = {r["k"]: r["value"] for r in rows if r["quantity"] == "hoeffding_t"}
    assert math.isclose(tn[4], studies.hoeffding_t(v["B"], 7, 4, 0.05)) and sorted(tn) == [1, 2, 4]
    small = studies.averages(net, x, "zplus", perturbation="noise", level=0.2, n=4, n_ref=28, n_boot=0,
                             B=0.5 * v["range_max"])
    w = {r["quantity"]: r["value"] for r in small if r["k"] is None}
    assert w["range_exceeded"] > 0


def test_an_apriori_range_below_an_attribution_is_a_bug(monkeypatch):
    module = importlib.import_module("chainlab.studies.averages")     # (the package exports the function)
    monkeypatch.setattr(module, "apriori_range", lambda *a, **k: {"B": 1e-9})
    with pytest.raises(chainlab.errors.BoundViolationError, match="a-priori range"):
        studies.averages(mlp(0), _rand((1, 7), 0), "gradient", perturbation="noise", level=0.2, n=2, n_ref=4)


# -- identities (regression tests, not claims) ---------------------------------------------------------------
def test_identity_function_preserving_rescaling():
    """IDENTITY (algebra): (c, 1/c) on consecutive layers keeps the logits, the gradient and the z⁺ constants and
    Π‖W_l‖_∞; only LRP-ε (ε does not scale) and the per-layer norms change."""
    net = conv_net(5)
    x = _rand((1, 2, 7, 7), 5)
    scaled, cs = studies.rescale_consecutive(net, 4.0)
    assert math.prod(cs) == 1.0 and cs[:2] == [4.0, 0.25]
    assert torch.allclose(scaled(x), net(x), rtol=1e-12, atol=1e-12)
    c = {}
    for m in (net, scaled):
        for rule, kw in (("gradient", {}), ("zplus", {}), ("lrp-epsilon", {"epsilon": 0.5})):
            ch = chainlab.extract(m, x, rule, avgpool="gradient", stabilizer=1e-12, **kw)
            v = {r["quantity"]: r["value"] for r in ms.constants(ch)}
            c[(id(m), rule)] = v
    for rule in ("gradient", "zplus"):
        assert math.isclose(c[(id(net), rule)]["c_emp"], c[(id(scaled), rule)]["c_emp"], rel_tol=1e-9)
    assert math.isclose(c[(id(net), "gradient")]["weight_norm_product"],
                        c[(id(scaled), "gradient")]["weight_norm_product"], rel_tol=1e-12)
    assert not math.isclose(c[(id(net), "lrp-epsilon")]["c_emp"], c[(id(scaled), "lrp-epsilon")]["c_emp"],
                            rel_tol=1e-6)


def test_identity_exact_scaling_of_the_constants():
    """IDENTITY: W_l → c·W_l with biases and BatchNorm along (the same decisions): the gradient's bound constant
    Π‖M_l‖₁ is multiplied by Π c_l exactly, the z⁺ and α-β constants do not move (0-homogeneous up to the
    stabilizer) — on a net with conv, stride, padding, BN, no-bias layers and pools."""
    net = conv_net(6)
    x = _rand((1, 2, 7, 7), 6)
    rows = studies.weight_scaling(net, x, rules=("gradient", "zplus", ("alpha-beta", {"alpha": 2.0, "beta": 1.0})),
                                  c=2.0, avgpool="gradient", stabilizer=1e-12)
    v = {(r["rule"], r["quantity"]): r["value"] for r in rows}
    prod_c = v[("gradient", "prod_c")]
    assert prod_c == 2.0 ** 5
    assert v[("gradient", "constant_ratio")] == pytest.approx(prod_c, rel=1e-9)
    assert v[("zplus", "constant_ratio")] == pytest.approx(1.0, rel=1e-9)
    assert v[("alpha-beta", "constant_ratio")] == pytest.approx(1.0, rel=1e-9)
    assert v[("zplus", "map_change")] == pytest.approx(0.0, abs=1e-9)


def test_weights_only_scaling_touches_only_the_weights():
    """The controlled experiment's scaling: W_l → c·W_l, biases and BatchNorm as they were (not an identity)."""
    net = conv_net(7)
    scaled, cs = studies.scale_weights(net, 3.0, equivariant=False)
    for (name, a), (_, b) in zip(net.named_parameters(), scaled.named_parameters()):
        owner = name.rsplit(".", 1)[0]
        is_weight = name.endswith("weight") and isinstance(net.get_submodule(owner), (nn.Conv2d, nn.Linear))
        assert torch.equal(b, 3.0 * a if is_weight else a), name
    for (_, a), (_, b) in zip(net.named_buffers(), scaled.named_buffers()):
        assert torch.equal(a, b)
    x = _rand((1, 2, 7, 7), 7)
    assert not torch.allclose(scaled(x), 3.0 ** 5 * net(x))       # the function changed, not only its scale


def test_identity_lrp_epsilon_bound_constant_grows_as_epsilon_shrinks():
    """IDENTITY behind B2's 1/ε beside: every column abs sum Σ_i |x_i w_ij| / (|z_j| + ε) grows as ε falls, so the
    bound's constant Π‖M_l‖₁ does — strictly, on any net with a non-zero column."""
    net = conv_net(8)
    x = _rand((1, 2, 7, 7), 8)
    c = []
    for eps in (1.0, 0.1, 0.01, 0.001):
        ch = chainlab.extract(net, x, "lrp-epsilon", epsilon=eps, avgpool="gradient")
        c.append(next(r["value"] for r in ms.constants(ch, norms=True) if r["quantity"] == "c_norm1"))
    assert all(a < b for a, b in zip(c, c[1:])), c


def test_identity_the_averages_premise_and_rate():
    """IDENTITIES (B3's old premise and rate): no perturbed copy leaves the a-priori range B, and the sup-error of
    an i.i.d. mean falls like N^(−½) (the CLT rate of any mean): slope of log e(N) on log N near −½."""
    net = mlp(1)
    x = _rand((1, 7), 1)
    for rule in ("alpha-beta", "lrp-epsilon"):        # (this MLP's gradient is constant near x, its z⁺ map zero)
        rows = studies.averages(net, x, rule, perturbation="noise", level=0.3, n=32, n_ref=512, n_boot=0, seed=3)
        v = {r["quantity"]: r["value"] for r in rows if r["k"] is None}
        assert v["range_exceeded"] == 0 and v["exceed_fraction"] == 0
        assert -0.75 <= v["rate_slope"] <= -0.3, (rule, v["rate_slope"])
    A = np.random.default_rng(0).normal(size=(4096, 3))
    e = [studies.group_errors(A, n).mean() for n in (1, 4, 16, 64)]
    assert np.polyfit(np.log([1, 4, 16, 64]), np.log(e), 1)[0] == pytest.approx(-0.5, abs=0.1)


def test_support_bounds_computed_once_give_the_same_range():
    net = conv_net(9)
    x = _rand((1, 2, 7, 7), 9).numpy()
    ch = chainlab.extract(net, x, "lrp-epsilon", epsilon=0.1, avgpool="gradient", materialize=False)
    ib = studies.support_bounds(net, x, "brightness", 0.2)
    a = studies.apriori_range(net, ch, "brightness", 0.2)
    b = studies.apriori_range(net, ch, "brightness", 0.2, bounds=ib)
    assert a["B"] == b["B"] and a["C"] == b["C"] == math.prod(a["constants"]) and a["B"] == a["C"] * a["F"]


def test_shared_forward_and_batched_bounds_give_the_per_rule_numbers():
    """Binder's per-image pass shares one trace, forward pass and batched interval bounds among the rules
    (forward=, support_bounds_many): every quantity equals the one of a separate extract and support_bounds per
    rule and perturbation (a conv net with stride, padding, BN, no-bias layers, pools; signed and ≥ 0 inputs);
    a forward pass of another input is refused."""
    from chainlab.papers.binder import measure as M
    from chainlab.papers.binder import protocol as P
    net = conv_net(11)
    for x in (_rand((1, 2, 7, 7), 11), torch.randn((1, 2, 7, 7), generator=torch.Generator().manual_seed(3),
                                                   dtype=torch.float64).clamp(0.0, 1.0) * 0.5):
        xb = x.numpy()
        separate = [studies.support_bounds(net, xb, p, lv) for p, lv in P.PERTURBATIONS]
        many = studies.ranges.support_bounds_many(net, xb, P.PERTURBATIONS)
        for one, other in zip(separate, many):
            assert [n for n, _, _ in one] == [n for n, _, _ in other]
            for (_, l1, u1), (_, l2, u2) in zip(one, other):
                assert l1.shape == l2.shape and torch.allclose(l1, l2, rtol=1e-12, atol=1e-12)
                assert torch.allclose(u1, u2, rtol=1e-12, atol=1e-12)
        want = M._image_constants(net, x, P.RULES, P.PERTURBATIONS, separate)
        fw = chainlab.extraction.forward_batch(net, x, "float64")
        got = M._image_constants(net, x, P.RULES, P.PERTURBATIONS, many, forward=fw)
        assert want.keys() == got.keys()
        for rule in want:
            assert want[rule].keys() == got[rule].keys()
            for q, v in want[rule].items():
                assert (got[rule][q] is None) if v is None else got[rule][q] == pytest.approx(v, rel=1e-12, abs=1e-300)
    with pytest.raises(chainlab.errors.InputError, match="another input"):
        chainlab.extract(net, _rand((1, 2, 7, 7), 12), "zplus", forward=fw)


def test_binder_figures(tmp_path):
    """The report's figures draw from the claims' records (a registered family: tests/test_controls_binder.py)."""
    from matplotlib.image import imread

    ctx = build((0.2, 1.0, 5.0), seeds=(0,), w=0.3)
    binder.measure_all(ctx)
    rows = list(ctx.records) + studies.averages(mlp(0), _rand((1, 7), 0), "zplus", perturbation="noise", level=0.2,
                                                n=4, n_ref=12, n_boot=0, net="mlp", image=0)
    for fn in figs.FIGURES:
        name, caption = fn(rows, tmp_path)
        assert np.var(imread(tmp_path / name)[..., :3]) > 0 and caption
    assert figs.plot_constants([], tmp_path) is None and figs.plot_rates([], tmp_path) is None


def test_chunks_of_one_model_share_its_trace_and_a_new_derived_model_drops_it(monkeypatch):
    """The chunks of one (derived) model are measured on one float64 trace — its W⁺, W⁻ and weight norms made once —
    and give the numbers of one chunk over the same images; asking for another derived model drops the trace with
    the model it traced."""
    from chainlab.extraction import api
    from chainlab.papers.binder import measure as M
    from chainlab.papers.context import Context, NetEntry, Settings
    from test_controls_binder import X, tiny

    traced = []
    real = api.trace
    monkeypatch.setattr(api, "trace", lambda *a, **k: traced.append(1) or real(*a, **k))

    def ctx():
        c = Context(Settings(progress=False))
        c.add_net("tiny", NetEntry(tiny(0), X[:3]))
        return c

    a = ctx()
    parts = [M.controlled_chunk(a, "tiny", 2.0, r) for r in (range(0, 1), range(1, 2), range(2, 3))]
    assert len(traced) == 1                                   # one trace for the three chunks of ×2
    whole = M.controlled_chunk(ctx(), "tiny", 2.0, range(0, 3))
    for rule in whole:
        for q in whole[rule]:
            np.testing.assert_array_equal(np.concatenate([p[rule][q] for p in parts]), whole[rule][q], err_msg=q)
    kept = [k for k in a.cache if k[:1] == ("binder-trace",)]
    assert [k[1] for k in kept] == ["tiny ×2"]
    M.controlled_chunk(a, "tiny", 0.5, range(0, 1))
    assert [k[1] for k in a.cache if k[:1] == ("binder-trace",)] == ["tiny ×0.5"]   # ×2's trace went with its model
    assert len(traced) == 3                                   # ×2 whole (its own context), ×0.5
    M.constants(a, "tiny", range(0, 1), rules=("zplus",))                     # another net's trace: one at a time
    assert [k[1] for k in a.cache if k[:1] == ("binder-trace",)] == ["tiny"]
    a.release_transient()
    assert not [k for k in a.cache if k[:1] in (("binder-trace",), ("binder-model",))]
