"""Controls of M1–M5 on both sides, every group separately, through the claims' own measure and decide code.

Nets are registered in a Context under the protocol's names (``<net>`` = seed 0, ``<net>-seed<k>``):

* blur nets — x ↦ W x with two logits whose weight maps are white noise blurred by a Gaussian of s pixels: the
  gradient of log p_k is ∝ w_k − w_j, so its EF falls as s grows (an order known by construction).  Assigned to
  the β grid in the claim's order (smaller β, more blur) they must reproduce M1, M4 and M5; in the reversed
  order they must not.  Seeds: independent noise draws.
* M2, per group: SmoothGrad with σ > 0 on a small ReLU net opens a gap, σ = 0 (= the vanilla gradient) opens
  none; the σ sweep in its order grows, with the labels reversed it falls; for the trade-off, on a linear
  model at x = baseline + δ the map of its own weights is the most faithful order (tests/test_faithfulness.py),
  so a blurred copy of it costs faithfulness, an identical copy costs nothing.
* M3: a net whose ReLU mask is a checkerboard under a smooth backward signal (EF must rise at the mask), and the
  same net with every pre-activation positive (mask all ones: no rise).
"""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy.ndimage import gaussian_filter

from chainlab.papers import mehrpanah
from chainlab.papers.context import Context, NetEntry, Settings
from chainlab.papers.mehrpanah import decide as D
from chainlab.papers.mehrpanah import measure as M
from chainlab.papers.mehrpanah import protocol as P
from chainlab.papers.verdict import Outcome

R, N, U, X_ = Outcome.REPRODUCED, Outcome.NOT_REPRODUCED, Outcome.INCONCLUSIVE, Outcome.NOT_CHECKED
IMAGES = torch.rand((12, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
BLURS = (4.0, 2.0, 1.0, 0.0)                      # for β = 1, 3, 10, ∞: smaller β, smoother gradient
GRID = {"scenes-cnn-softplus1": 1.0, "scenes-cnn-softplus3": 3.0, "scenes-cnn-softplus10": 10.0,
        P.ACTIVATION_RELU: math.inf}


def blur_net(s, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((2, 3, 32, 32))
    if s:
        w = gaussian_filter(w, (0, 0, s, s))
    lin = nn.Linear(3 * 32 * 32, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(w.reshape(2, -1) / np.abs(w).max()))
        lin.bias.zero_()
    return nn.Sequential(nn.Flatten(), lin).eval()


def register(ctx, names_blurs, seeds=(0, 1, 2)):
    for name, s in names_blurs:
        for k in seeds:
            ctx.add_net(name if k == 0 else f"{name}-seed{k}", NetEntry(blur_net(s, seed=10 * k + int(4 * s)), IMAGES))
    return ctx


def ctx_of(**kw):
    return Context(Settings(progress=False, **kw))


# -- M1 ---------------------------------------------------------------------------------------------------------
def test_m1_positive_control():
    (v,) = mehrpanah.CLAIMS["M1"](register(ctx_of(), zip(GRID, BLURS)))
    assert v.outcome is R, v.decision.parts
    assert set(v.per_seed) == {0, 1, 2} and all(o is R for o in v.per_seed.values())
    beside = [p for p in v.decision.parts if "beside" in p.name]
    assert beside and beside[0].outcome is R                      # our DC-free EF agrees: no metric caveat
    assert not any("depends on the EF metric" in c for c in v.caveats)


def test_m1_negative_control_reversed_order():
    (v,) = mehrpanah.CLAIMS["M1"](register(ctx_of(), zip(GRID, BLURS[::-1])))
    assert v.outcome is N and all(o is N for o in v.per_seed.values())


def test_m1_with_seed_zero_only_is_inconclusive():
    (v,) = mehrpanah.CLAIMS["M1"](register(ctx_of(), zip(GRID, BLURS), seeds=(0,)))
    assert v.outcome is U and v.per_seed == {0: R} and any("seeds [0] only" in n for n in v.decision.notes)


def test_m1_not_checked_without_the_relu_net():
    ctx = register(ctx_of(), [("scenes-cnn-softplus1", 4.0), ("scenes-cnn-softplus3", 2.0)])
    (v,) = mehrpanah.CLAIMS["M1"](ctx)
    assert v.outcome is X_ and "ReLU" in v.reason


# -- M2, group by group -------------------------------------------------------------------------------------------
def small_relu_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()


@pytest.fixture(scope="module")
def relu_ctx():
    ctx = ctx_of()
    ctx.add_net(P.RELU_NET, NetEntry(small_relu_net(1), IMAGES))
    return ctx


def smooth_readout(seed=0):
    """conv 1×1 (3→8, centred: z = W·(x − ½)) → ReLU → a linear read-out whose weight maps are blurred noise (s = 4).
    On noise images the ReLU masks are white noise per pixel, so VG = Wᵀ(mask ⊙ smooth) is rough; SmoothGrad
    replaces each mask by P(z + noise > 0), and for σ well above the pixel's z the smooth read-out decides the
    map's ranks: its EF falls, and falls further with σ (64 samples keep the Monte-Carlo noise below it)."""
    torch.manual_seed(seed)
    conv = nn.Conv2d(3, 8, 1)
    w = gaussian_filter(np.random.default_rng(seed).standard_normal((2, 8, 32, 32)), (0, 0, 4, 4))
    lin = nn.Linear(8 * 32 * 32, 2)
    with torch.no_grad():
        conv.bias.copy_(-0.5 * conv.weight.sum(dim=(1, 2, 3)))
        lin.weight.copy_(torch.as_tensor(w.reshape(2, -1) / np.abs(w).max()))
        lin.bias.zero_()
    return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), lin).eval()


@pytest.fixture(scope="module")
def readout_ctx():
    ctx = ctx_of()
    ctx.add_net(P.RELU_NET, NetEntry(smooth_readout(0), torch.rand((24, 3, 32, 32), dtype=torch.float64,
                                                                    generator=torch.Generator().manual_seed(3))))
    return ctx


def sg(sigma):
    return {"kind": "smoothgrad", "sigma": sigma, "n": 64, "seed": 0}


def test_m2_gap_positive_and_negative(readout_ctx):
    sp = M.spectra(readout_ctx, P.RELU_NET, range(24), {"vanilla": {"kind": "vanilla"}, "sg": sg(0.1),
                                                         "sg0": sg(0.0)})
    pos, neg = D.gap_parts(sp["EF_code"], ("sg", "sg0"), 0.0)
    assert pos.outcome is R and neg.outcome is N
    assert np.array_equal(D.gaps(sp["EF_code"])["sg0"], np.zeros(24))      # σ = 0 is the vanilla gradient


def test_m2_growth_positive_and_negative(readout_ctx):
    labels = {"a": 0.02, "b": 0.1, "c": 0.3}
    sp = M.spectra(readout_ctx, P.RELU_NET, range(24), {"vanilla": {"kind": "vanilla"},
                                                         **{lab: sg(s) for lab, s in labels.items()}})
    assert D.growth_part(sp["EF_code"], labels, 0.0).outcome is R
    assert D.growth_part(sp["EF_code"], dict(zip(labels, [0.3, 0.1, 0.02])), 0.0).outcome is N


def test_m2_tradeoff_positive_and_negative():
    rng = np.random.default_rng(5)
    w = rng.normal(size=(2, 3, 32, 32))
    net = nn.Sequential(nn.Flatten(), nn.Linear(3072, 2, bias=False)).eval()
    with torch.no_grad():
        net[1].weight.copy_(torch.as_tensor(w.reshape(2, -1)))
    base_img = torch.full((12, 3, 32, 32), 0.4, dtype=torch.float64)
    ctx = ctx_of()
    ctx.add_net("linear", NetEntry(net, base_img + 0.05))            # baseline = the images' mean = 0.45 …
    k = M.predictions(ctx, "linear", range(12))
    g = np.where(k[:, None, None] == 0, 1.0, -1.0) * (w[0] - w[1]).sum(0)[None]   # the class's own weight map
    # … so every image is baseline + 0: use an explicit baseline below the images instead
    ctx.cache[("mehrpanah-baseline", "linear")] = np.full((3, 32, 32), 0.2)
    maps = {"vanilla": g, "blurred": gaussian_filter(g, (0, 3, 3)), "same": g.copy()}
    aucs = M.faithfulness(ctx, "linear", range(12), maps, k, steps=8)
    pos, neg = D.tradeoff_parts(aucs, ("blurred", "same"), 0.0)
    assert pos.outcome is R and neg.outcome is N
    rows = [r for r in ctx.records if r["measure"] == "faithfulness"]
    assert {r["quantity"] for r in rows} == {"deletion_auc", "insertion_auc"} and len(rows) == 2 * 3 * 12


def test_m2_claim_runs_its_three_groups_on_a_registered_net(relu_ctx):
    (v,) = mehrpanah.CLAIMS["M2"](relu_ctx)
    groups = {p.name.split(" · ")[0] for p in v.decision.parts}
    assert {"gap", "growth with σ", "trade-off", "gap (DC-free EF)", "beside"} <= groups
    decided = [p for p in v.decision.parts if "beside" not in p.name]
    assert {p.name.split(" · ")[1].split(":")[0] for p in decided} >= set(P.DECIDED)
    assert v.outcome in (R, N, U)


# -- M3 -------------------------------------------------------------------------------------------------------
def checker_net(bias):
    """conv 1×1 (mean of the channels) + bias → ReLU → linear whose class-0 weights are a smooth ramp over the map
    (the backward signal before the mask: a ramp, low EF); the images are checkerboards 0.25/0.75, so the mask is
    a checkerboard (bias −0.5: the masked signal alternates, EF rises) or all ones (bias +1: nothing changes)."""
    conv = nn.Conv2d(3, 1, 1)
    lin = nn.Linear(32 * 32, 2)
    yy, xx = np.indices((32, 32))
    with torch.no_grad():
        conv.weight.fill_(1 / 3)
        conv.bias.fill_(bias)
        lin.weight.zero_()
        lin.weight[0] = torch.as_tensor(0.01 * (1.0 + (xx + yy).reshape(-1) / 64.0))     # logits O(1): p_k < 1
        lin.bias.zero_()
    return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), lin).double().eval()


def checkerboards(n=24):
    rng = np.random.default_rng(1)
    yy, xx = np.indices((32, 32))
    out = []
    for i in range(n):
        c = ((yy // (1 + i % 3) + xx) % 2).astype(float)
        out.append(np.broadcast_to(0.25 + 0.5 * c + 0.01 * rng.random((32, 32)), (3, 32, 32)))
    return torch.as_tensor(np.array(out))


@pytest.mark.parametrize("bias,want", [(-0.5, R), (1.0, N)])
def test_m3_controls(bias, want):
    ctx = ctx_of()
    ctx.add_net(P.RELU_NET, NetEntry(checker_net(bias), checkerboards()))
    (v,) = mehrpanah.CLAIMS["M3"](ctx)
    decided = [p for p in v.decision.parts if "beside" not in p.name]
    assert decided and all(p.outcome is want for p in decided), v.decision.parts
    assert v.spec.kind == "hypothesis"


# -- M4, M5 (--extended) -------------------------------------------------------------------------------------
def test_m4_m5_are_extended_only():
    ctx = ctx_of()
    for cid in ("M4", "M5"):
        (v,) = mehrpanah.CLAIMS[cid](ctx)
        assert v.outcome is X_ and "--extended" in v.reason


@pytest.mark.parametrize("order,want", [(1, R), (-1, N)])
def test_m4_controls(order, want):
    ctx = ctx_of(extended=True)
    pairs = []
    for d in (1, 2):
        pairs += [(f"depth-cnn{d}-softplus1", 3.0 if order > 0 else 0.0), (f"depth-cnn{d}-relu", 0.0 if order > 0 else 3.0)]
    (v,) = mehrpanah.CLAIMS["M4"](register(ctx, pairs))
    decided = [p for p in v.decision.parts if "beside" not in p.name]
    assert len(decided) == 2 and all(p.outcome is want for p in decided), v.decision.parts


@pytest.mark.parametrize("order,want", [(1, R), (-1, N)])
def test_m5_controls(order, want):
    ctx = ctx_of(extended=True)
    pairs = [("scenes-cnn-softplus1", 3.0 if order > 0 else 0.0), (P.ACTIVATION_RELU, 0.0 if order > 0 else 3.0)]
    (v,) = mehrpanah.CLAIMS["M5"](register(ctx, pairs, seeds=(0,)))
    assert v.outcome is want and len(v.decision.parts) == 1, v.decision.parts


def test_registered_and_figures_draw_from_the_claims_records(readout_ctx, tmp_path):
    import matplotlib.image as mpimg

    from chainlab.app import report, verify
    from chainlab.papers.mehrpanah import report as figures

    assert figures in report.FIGURE_MODULES and all(c in verify.CLAIMS for c in mehrpanah.ORDER)
    assert verify.CLAIMS["M2"].__wrapped__ is mehrpanah.claim_m2          # on one thread
    ctx = register(ctx_of(), zip(GRID, BLURS), seeds=(0, 1))
    mehrpanah.CLAIMS["M1"](ctx)
    mehrpanah.CLAIMS["M2"](readout_ctx)
    m3 = ctx_of()
    m3.add_net(P.RELU_NET, NetEntry(checker_net(-0.5), checkerboards(8)))
    mehrpanah.CLAIMS["M3"](m3)
    rows = ctx.records + readout_ctx.records + m3.records
    for fn in figures.FIGURES:
        png, caption = fn(rows, tmp_path)
        assert mpimg.imread(tmp_path / png).std() > 0.01 and caption
        assert fn([], tmp_path) is None
