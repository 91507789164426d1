"""Controls of Sixt et al.'s claims: for every claim and every group of it, a net where the claim must hold (positive
control) and one where it must fail (negative control), measured and decided by the same code as the real run
(chainlab.papers.sixt: shared_pass / measure.* and decide.*), on small constructed nets registered in the Context.

Why each net gives its answer, independently of chainlab:
* ``positive_mlp``: every weight ≥ 0 and every input > 0, so every z⁺ (LRP-α1β0) matrix is a dense positive matrix
  and their product converges to rank 1 (Theorem 1; Birkhoff: each strictly positive factor contracts the Hilbert
  metric); DeepLIFT has no negative weights to couple its ± chains, so Rescale converges too; every logit's
  gradient is a positive combination of the same positive paths, so the maps of two logits coincide.
* ``diagonal_mlp``: diagonal positive layers without bias: with inputs > 0 every z⁺ (and DeepLIFT) matrix of a
  diagonal layer is the identity — nothing mixes, nothing converges; a dense signed head makes the maps depend on
  the logit; with a diagonal head σ2/σ1 of every prefix product is exactly 1 (decay factor 1).
* ``signed_mlp``: Gaussian weights: the gradient and DeepLIFT's coupled chains are signed products (no cone to
  shrink), the maps of two logits differ.
* conv nets (8×8 inputs, no biases): ``conv_net("pos")`` four positive 3×3 convs under the randomized layers keep
  α1β0's map; ``conv_net("diag")`` has one 3×3 conv under an identity 1×1 conv, so α1β0's map is the randomized
  dense layer's positive pattern; a "re-initialization" that multiplies the layers by 2 leaves every map of a
  bias-free ReLU net unchanged up to scale (positive homogeneity), so even the gradient keeps SSIM 1.
* two-object scenes: ``rgb_net(split=True)``'s dense rows share one positive part (on half the pixels) and differ
  only in their negative parts, which z⁺ never propagates: α1β0's maps of any two labels are identical while the
  gradient's differ; with Gaussian rows both differ.
* patterns fitted on rank-1 data point along the one data direction (σ1/σ2(A) large); on isotropic data a_j =
  w_j/‖w_j‖² (A ∝ W row-wise, σ1/σ2 like W's, and W⊙A ∝ W⊙W ≥ 0 with a Perron direction); A = 1 gives W⊙A = W.
"""
import copy
import dataclasses
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as nn

import chainlab
from chainlab.papers import sixt as S
from chainlab.papers.context import Context, NetEntry, Settings
from chainlab.papers.sixt import decide as D
from chainlab.papers.sixt import measure as M
from chainlab.papers.sixt.protocol import first_conv_step, net_protocol, seed_nets
from chainlab.papers.sixt.spec import SPECS
from chainlab.papers.spec import Scope
from chainlab.papers.verdict import Outcome
from chainlab.rules.patterns import Patterns

R, N, U, X = Outcome.REPRODUCED, Outcome.NOT_REPRODUCED, Outcome.INCONCLUSIVE, Outcome.NOT_CHECKED


# -- nets -------------------------------------------------------------------------------------------------------
def _mlp(sizes, weight, name):
    layers = OrderedDict()
    g = torch.Generator().manual_seed(0)
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b, bias=False)
        with torch.no_grad():
            lin.weight.copy_(weight(i, a, b, g))
        layers[f"fc{i + 1}"] = lin
        if i < len(sizes) - 2:
            layers[f"relu{i + 1}"] = nn.ReLU()
    net = nn.Sequential(layers).double().eval()
    net.input_shape, net.name = (1, sizes[0]), name
    return net


def positive_mlp():
    return _mlp([64] + [32] * 8 + [10], lambda i, a, b, g: torch.rand((b, a), generator=g, dtype=torch.float64) / a,
                "ctrl-positive")


def signed_mlp():
    gauss = lambda i, a, b, g: torch.randn((b, a), generator=g, dtype=torch.float64) * (2 / a) ** 0.5  # noqa: E731
    return _mlp([64] + [32] * 8 + [10], gauss, "ctrl-signed")


def diagonal_mlp(head="dense"):
    sizes = [64] * 5 + ([10] if head == "dense" else [64])

    def w(i, a, b, g):
        if a == b:
            return torch.diag(0.5 + torch.rand(a, generator=g, dtype=torch.float64))
        return torch.randn((b, a), generator=g, dtype=torch.float64) / a ** 0.5
    return _mlp(sizes, w, "ctrl-diagonal")


def flat_images(n=10):
    return torch.as_tensor(np.random.default_rng(0).uniform(0.05, 1, size=(n, 64)))


def conv_net(kind):
    g = torch.Generator().manual_seed(0)
    L = OrderedDict()

    def conv(cin, cout, k, positive=True):
        c = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
        draw = torch.rand if positive else torch.randn
        with torch.no_grad():
            c.weight.copy_(draw(c.weight.shape, generator=g, dtype=torch.float64) / (cin * k * k) ** 0.5)
        return c

    def dense(a, b, positive):
        fc = nn.Linear(a, b, bias=False)
        with torch.no_grad():
            fc.weight.copy_(torch.rand((b, a), generator=g, dtype=torch.float64) / a if positive
                            else torch.randn((b, a), generator=g, dtype=torch.float64) / a ** 0.5)
        return fc
    if kind == "pos":
        L["conv1"], L["relu1"] = conv(1, 8, 3), nn.ReLU()
        for i in (2, 3, 4):
            L[f"conv{i}"], L[f"relu{i}"] = conv(8, 8, 3), nn.ReLU()
        L["flatten"], L["fc1"] = nn.Flatten(), dense(512, 16, True)
        L["relu5"], L["fc2"] = nn.ReLU(), dense(16, 10, True)
    elif kind == "diag":
        L["conv1"], L["relu1"] = conv(1, 4, 3), nn.ReLU()
        L["conv2"] = nn.Conv2d(4, 4, 1, bias=False)
        with torch.no_grad():
            L["conv2"].weight.copy_(torch.eye(4, dtype=torch.float64)[:, :, None, None])
        L["relu2"], L["flatten"], L["fc1"] = nn.ReLU(), nn.Flatten(), dense(256, 10, False)
    else:
        L["conv1"], L["relu1"] = conv(1, 8, 3, False), nn.ReLU()
        for i in (2, 3):
            L[f"conv{i}"], L[f"relu{i}"] = conv(8, 8, 3, False), nn.ReLU()
        L["flatten"], L["fc1"] = nn.Flatten(), dense(512, 10, False)
    net = nn.Sequential(L).double().eval()
    net.input_shape, net.name = (1, 1, 8, 8), f"ctrl-conv-{kind}"
    return net


def rgb_net(split):
    g = torch.Generator().manual_seed(0)
    c, fc = nn.Conv2d(3, 3, 1, bias=False), nn.Linear(3072, 10, bias=False)
    with torch.no_grad():
        c.weight.copy_(torch.eye(3, dtype=torch.float64)[:, :, None, None])
        if split:
            u = torch.rand(1536, generator=g, dtype=torch.float64) / 40
            negative = -torch.rand((10, 1536), generator=g, dtype=torch.float64) / 40
            fc.weight.copy_(torch.cat([u.expand(10, -1), negative], dim=1))
        else:
            fc.weight.copy_(torch.randn((10, 3072), generator=g, dtype=torch.float64) / 3072 ** 0.5)
    net = nn.Sequential(OrderedDict([("conv1", c), ("relu1", nn.ReLU()), ("flatten", nn.Flatten()),
                                     ("fc1", fc)])).double().eval()
    net.input_shape, net.name = (1, 3, 32, 32), "ctrl-rgb"
    return net


# -- contexts and the measurements of the real run -----------------------------------------------------------------
def ctx_with(**nets):
    ctx = Context(Settings(quick=True, progress=False))
    for name, (model, x) in nets.items():
        ctx.add_net(name, NetEntry(model, x))
    return ctx


@pytest.fixture(scope="module")
def mlps():
    return ctx_with(pos=(positive_mlp(), flat_images()), signed=(signed_mlp(), flat_images()),
                    diag=(diagonal_mlp(), flat_images()), ident=(diagonal_mlp("diagonal"), flat_images()))


METHODS = [M.METHOD[i] for i in ("lrp-a1b0", "deeplift-rescale", "deeplift-revealcancel", "deeplift-ablation",
                                 "gradient")]


def csc_data(ctx, net, role=None):
    """What claim S1/S3/S5 take from the shared pass of the real run, for one net in ``role``."""
    sh = S.shared_pass(ctx, net, net, methods=METHODS)
    role = role or net
    curves = {(role, mid): c[(sh["inject"][0], "tied")] for mid, c in sh["curves"].items()}
    return curves, {role: sh["bounds"]}, {(role, mid): v for mid, v in sh["ssim"].items()}


def group(decision, threshold):
    return D.group_outcome(decision, threshold)


# -- S1, S2, S3 (CSC) --------------------------------------------------------------------------------------------
def test_s1_converging_group(mlps):
    assert D.decide_s1(*csc_data(mlps, "pos")[:2]).outcome is R
    assert D.decide_s1(*csc_data(mlps, "diag")[:2]).outcome is N


def test_s2_in_the_six_layer_role(mlps):
    """S2 is decided on the role sixt-cifar only: the controls play it."""
    for net, want in (("pos", R), ("diag", N)):
        curves, _, _ = csc_data(mlps, net, role="sixt-cifar")
        gaps = {k: 1.0 - c[0] for k, c in curves.items() if k[1] == "lrp-a1b0"}
        assert D.decide_s2(gaps).outcome is want, net


def test_s3_both_groups(mlps):
    d = D.decide_s3(*csc_data(mlps, "signed")[:2])
    assert group(d, "deeplift_below") is R and group(d, "ablation_converges") is R and d.outcome is R
    assert group(D.decide_s3(*csc_data(mlps, "pos")[:2]), "deeplift_below") is N
    assert group(D.decide_s3(*csc_data(mlps, "diag")[:2]), "ablation_converges") is N


# -- S5 (random logit) --------------------------------------------------------------------------------------------
def test_s5_both_groups(mlps):
    ssim = lambda net: csc_data(mlps, net)[2]  # noqa: E731
    assert group(D.decide_s5(ssim("pos")), "ssim_converging") is R
    assert group(D.decide_s5(ssim("diag")), "ssim_converging") is N
    only_gradient = lambda net: {k: v for k, v in ssim(net).items() if k[1] == "gradient"}  # noqa: E731
    assert group(D.decide_s5(only_gradient("signed")), "ssim_rest") is R
    assert group(D.decide_s5(only_gradient("pos")), "ssim_rest") is N


# -- S6 (Theorem 1, App. B) ------------------------------------------------------------------------------------------
def test_s6_chains_group(mlps):
    for net, want in (("pos", R), ("ident", N)):
        pr = M.prefix_ratios(mlps, net, range(0, 8), M.METHOD["lrp-a1b0"], columns=32)
        assert group(D.decide_s6({(net, "lrp-a1b0"): pr["ratio"]}, {}), "factor") is want, net


def test_s6_simulation_group():
    """The simulation's non-negative variants converge (App. B); products of identities never do (every angle is
    kept: 1 − |cos| constant, factor 1) — decided by the same rule (a spec whose simulation scope is the identity)."""
    shapes = ((32, 48), (48, 48), (48, 48), (48, 48), (48, 32), (32, 32))
    eye = [np.eye(a, b) for a, b in shapes]
    sim = M.simulation(("positive", "non-negative", "stochastic"), shapes=shapes, draws=8,
                       learned={"identity": (eye, False)})
    assert group(D.decide_s6({}, sim), "sim_factor") is R
    identity = dataclasses.replace(SPECS["S6"], scope=Scope({"simulation": ("identity",)}))
    assert group(D.decide_s6({}, sim, identity), "sim_factor") is N


# -- S4 (Fig. 3) -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def patterns_ctx():
    net = signed_mlp()
    rng = np.random.default_rng(1)
    u = rng.uniform(0.2, 1, 64)
    low = torch.as_tensor(rng.uniform(0.5, 1.5, (400, 1)) * u + 0.001 * rng.normal(size=(400, 64)))
    iso = torch.as_tensor(rng.normal(size=(400, 64)))
    p_iso = chainlab.patterns.fit(net, iso, kind="relu")
    ones = Patterns({"relu": {k: np.ones_like(v) for k, v in p_iso.of_kind("relu").items()}},
                    net_fingerprint=p_iso.net_fingerprint, layer_shapes=p_iso.layer_shapes)
    ctx = Context(Settings(quick=True, progress=False))
    for name, p in (("low", chainlab.patterns.fit(net, low, kind="relu")), ("iso", p_iso), ("ones", ones)):
        ctx.add_net(name, NetEntry(net, flat_images(), extra={"patterns": p}))
    return ctx


def test_s4_three_groups(patterns_ctx):
    d = {name: D.decide_s4({name: M.fig3_ratios(patterns_ctx, name)[1]}) for name in ("low", "iso", "ones")}
    assert group(d["low"], "almost_all") is R and group(d["iso"], "almost_all") is N
    assert group(d["iso"], "wa_layers") is R and group(d["ones"], "wa_layers") is N
    assert group(d["low"], "t_ratio") is R and group(d["ones"], "t_ratio") is N


# -- S7 (cascading randomization) -----------------------------------------------------------------------------------
def double(model, names, generator):
    """A 're-initialization' that multiplies the layers' weights by 2 (maps of bias-free ReLU nets keep their shape)."""
    with torch.no_grad():
        for n in names:
            for m in model.get_submodule(n).modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    m.weight.mul_(2.0)


def s7(ctx, net, mid, reinit=None):
    P = net_protocol(ctx, net)
    first = first_conv_step(ctx, net, P.cascade)
    c = M.cascade(ctx, net, range(0, 10), M.METHOD[mid], P.cascade[:first + 1], reinit=reinit)
    return D.decide_s7({(net, mid): c["ssim"][first]})


@pytest.fixture(scope="module")
def convs():
    x = torch.as_tensor(np.random.default_rng(0).uniform(0.05, 1, size=(10, 1, 8, 8)))
    return ctx_with(pos=(conv_net("pos"), x), diag=(conv_net("diag"), x), signed=(conv_net("signed"), x))


def test_s7_both_groups(convs):
    assert net_protocol(convs, "pos").cascade[first_conv_step(convs, "pos", net_protocol(convs, "pos").cascade)][0] \
        == "conv4"
    assert group(s7(convs, "pos", "lrp-a1b0"), "ssim_converging") is R
    assert group(s7(convs, "diag", "lrp-a1b0"), "ssim_converging") is N
    assert group(s7(convs, "signed", "gradient"), "ssim_rest") is R
    assert group(s7(convs, "signed", "gradient", reinit=double), "ssim_rest") is N


# -- S8 (class insensitivity) ----------------------------------------------------------------------------------------
def test_s8_both_parts():
    ctx = ctx_with(split=(rgb_net(True), torch.zeros((1, 3, 32, 32), dtype=torch.float64)),
                   dense=(rgb_net(False), torch.zeros((1, 3, 32, 32), dtype=torch.float64)))
    ms = [M.METHOD["lrp-a1b0"], M.METHOD["gradient"]]
    d = {net: D.decide_s8({(net, k): v for k, v in M.class_differences(ctx, net, 10, ms).items()})
         for net in ("split", "dense")}
    assert group(d["split"], "class_diff") is R and group(d["dense"], "class_diff") is N
    assert group(d["split"], "class_ratio") is R and group(d["dense"], "class_ratio") is N


# -- seeds through a whole claim -------------------------------------------------------------------------------------
def perturbed(model, scale=0.01):
    m = copy.deepcopy(model)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(scale * p.abs().mean() * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return m


def test_a_second_seed_is_decided_separately_and_the_seeds_must_agree():
    """claim S6 on the quick run's nets plus a registered second seed of digits-mlp: one outcome per seed; a second
    'seed' that cannot converge (the identity chain) makes the verdict inconclusive."""
    mlp = chainlab.models.load("digits-mlp")
    x, y = Context(Settings(quick=True)).images("digits-mlp", 10)
    ctx = Context(Settings(quick=True, progress=False))
    ctx.add_net("digits-mlp-seed1", NetEntry(perturbed(mlp), x, y))            # the shipped naming
    assert seed_nets(ctx, "digits-mlp") == {0: "digits-mlp", 1: "digits-mlp-seed1"}
    (v,) = S.CLAIMS["S6"](ctx)
    assert v.per_seed == {0: R, 1: R} and v.outcome is R
    assert any(p.name.startswith("seed 1: digits-mlp / ") for p in v.decision.parts)
    ctx = Context(Settings(quick=True, progress=False))
    ctx.add_net("ident-seed1", NetEntry(diagonal_mlp("diagonal"), flat_images(), extra={"seed_of": "digits-mlp",
                                                                                         "seed": 1}))
    (v,) = S.CLAIMS["S6"](ctx)
    assert v.per_seed[0] is R and v.per_seed[1] is N and v.outcome is U


def test_a_users_net_named_like_a_shipped_one_gets_no_shipped_seeds():
    """verify --model data/sixt-cifar.npz registers the file's net as 'sixt-cifar': its seeds are the user's (none
    here), not the shipped sixt-cifar-seed1 — else the user's run would measure a net it was not given."""
    assert len(chainlab.models.seed_names("sixt-cifar")) > 1                     # the package ships a second seed
    ctx = Context(Settings(progress=False))
    assert seed_nets(ctx, "sixt-cifar") == dict(enumerate(chainlab.models.seed_names("sixt-cifar")))
    x, y = Context(Settings(quick=True)).images("digits-mlp", 4)
    ctx.add_net("sixt-cifar", NetEntry(chainlab.models.load("digits-mlp"), x, y))
    assert seed_nets(ctx, "sixt-cifar") == {0: "sixt-cifar"}


def test_the_default_run_leaves_the_further_seeds_of_the_costly_claims_to_extended():
    """The default run measures the shipped second seeds of sixt-cifar and vgg-cifar for S2, S4 and S8 only; S1,
    S3, S5 (the CSC pass), S6 and S7 are decided on seed 0 there and say so; --extended measures every seed, and a
    user's own registered seed is measured in any run."""
    later = [n for r in ("sixt-cifar", "vgg-cifar") for n in chainlab.models.seed_names(r)[1:]]
    assert later                                                                # the package ships them
    default, extended = Context(Settings(progress=False)), Context(Settings(extended=True, progress=False))
    for claim in ("csc", "theorem", "cascade"):
        nets = {n for _, _, n in S._nets(default, claim)[0]}
        assert not nets & set(later), claim
        assert {n for _, _, n in S._nets(extended, claim)[0]} & set(later), claim
        assert set(S._later_seeds(default, claim)) <= set(later) and S._later_seeds(default, claim)
        assert S._later_seeds(extended, claim) == []
    for claim in ("s2", "patterns", "two_object"):
        assert {n for _, _, n in S._nets(default, claim)[0]} & set(later), claim
    (note,) = S._seed_caveats(default, "csc")
    assert "sixt-cifar-seed1" in note and "--extended" in note
    assert S._seed_caveats(extended, "csc") == () and S._seed_caveats(default, "s2") == ()
    x, y = Context(Settings(quick=True)).images("digits-mlp", 4)
    default.add_net("sixt-cifar-seed1", NetEntry(chainlab.models.load("digits-mlp"), x, y))   # the user's own
    assert "sixt-cifar-seed1" in {n for _, _, n in S._nets(default, "csc")[0]}


# -- S3 beside (--extended): DeepLIFT's ± rule ----------------------------------------------------------------------
def test_s3_beside_the_pm_rule_tied_and_independent():
    """--extended measures DeepLIFT's ± rule (deeplift-*-pm, two multipliers per neuron) beside S3, tied and with
    independent ± injections, through the shared pass of the run.  On the signed net the independent injections
    excite m⁺ − m⁻, which the coupled blocks propagate through the non-negative |W|ᵀS, so they converge where the
    tied ones (the signed chain WᵀS) do not; the report lists both, labelled as the ± rule."""
    ctx = Context(Settings(quick=True, extended=True, progress=False))
    ctx.add_net("signed", NetEntry(signed_mlp(), flat_images()))
    pm = S._pm_pass(ctx, "signed", "signed")
    ids = ("deeplift-rescale-pm", "deeplift-revealcancel-pm", "deeplift-ablation-pm")
    assert sorted(k[1] for k in pm) == sorted(ids)
    bounds = {"signed": S.shared_pass(ctx, "signed", "signed", methods=[M.METHOD[i] for i in ids])["bounds"]}
    inj = next(iter(pm[("signed", ids[0])]))[0]
    tied = {k: c[(inj, "tied")] for k, c in pm.items()}
    indep = {k: c[(inj, "independent")] for k, c in pm.items()}
    t, _ = D._at_boundary(tied, bounds)
    i, _ = D._at_boundary(indep, bounds)
    k = ("signed", "deeplift-rescale-pm")
    assert np.median(i[k]) >= 0.99 > np.median(t[k]), (np.median(i[k]), np.median(t[k]))
    from chainlab.papers.sixt import report as Rp
    text = Rp.beside_s3(ctx, {0: {"pm": tied, "indep": indep, "bounds": bounds}})
    assert "the ± rule" in text and "independent ± injections" in text and "DeepLIFT Resc. ±" in text
