"""Controls of B1–B3 on both sides, every group separately, through the claims' own measure and decide code.

The nets are registered in a Context under the study's names (``<net>`` = seed 0, ``<net>-seed<k>``): three
"study nets" per family, each from three seeds (different initializations — constructed seeds), so the claim code
runs exactly as on the shipped nets, with the seed as the unit.

* positive family: a small conv net scaled with every layer's bias and weight along (W_l → c·W_l, b_l → C_l·b_l:
  the same decisions, Π‖W_l‖_∞ × c³; c = 0.2, 1, 5): the LRP-β constants cannot move (0-homogeneous), the gradient's moves as
  Π‖W_l‖_∞ exactly, LRP-ε's grows with the weights (ε does not scale) — every group of every claim must say
  "reproduced";
* negative family: the weights alone scaled by c ∈ [0.01, 1] with every bias +1: the biases dominate the z⁺
  denominators for small weights, so the z⁺ constant grows with the weights — B1 must fail in both groups;
* role swaps (B2, B3): the same measured tables decided with the LRP-β rules in the dependent role and the
  gradient in the independent one must fail.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from chainlab.papers import binder
from chainlab.papers.binder import decide as D
from chainlab.papers.binder import protocol as P
from chainlab.papers.context import Context, NetEntry, Settings
from chainlab.papers.seeds import family
from chainlab.papers.verdict import Outcome
from chainlab.studies import scale_weights

R, N, U = Outcome.REPRODUCED, Outcome.NOT_REPRODUCED, Outcome.INCONCLUSIVE
BASES = P.STUDY[:3]                                # three study nets; the controlled net is one of them
X = torch.rand((8, 3, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def tiny(seed, bias=None, w=1.0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1),
                        nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).double().eval()
    with torch.no_grad():
        for m in net:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(w)
                if bias is not None:
                    m.bias.fill_(bias)
    return net


def build(scales, seeds=(0, 1, 2), equivariant=True, **kw):
    ctx = Context(Settings(progress=False))
    for base, c in zip(BASES, scales):
        for s in seeds:
            ctx.add_net(base if s == 0 else f"{base}-seed{s}",
                        NetEntry(scale_weights(tiny(s, **kw), c, equivariant=equivariant)[0], X))
    return ctx


@pytest.fixture(scope="module")
def positive():
    ctx = build((0.2, 1.0, 5.0), w=0.3)
    return ctx, {cid: binder.CLAIMS[cid](ctx)[0] for cid in binder.ORDER}


@pytest.fixture(scope="module")
def negative():
    ctx = build((0.01, 0.1, 1.0), equivariant=False, bias=1.0)
    return ctx, {cid: binder.CLAIMS[cid](ctx)[0] for cid in ("B1",)}


def group(v, name):
    """The outcomes of the decided parts of one group (checks left out)."""
    return [p.outcome for p in v.decision.parts if name in p.name and "(check)" not in p.name]


def test_the_family_is_found_by_its_seed_names(positive):
    ctx, _ = positive
    have, missing = family(ctx, P.STUDY[0])
    assert have == {0: P.STUDY[0], 1: f"{P.STUDY[0]}-seed1", 2: f"{P.STUDY[0]}-seed2"} and missing == []
    nets, _ = P.study(ctx)
    assert sorted(nets) == sorted(BASES) and all(len(v) == 3 for v in nets.values())
    assert P.controlled_net(ctx) == P.CONTROLLED


@pytest.mark.parametrize("cid", ["B1", "B2", "B3"])
def test_positive_control_every_group(positive, cid):
    _, v = positive
    v = v[cid]
    trained, controlled = group(v, "trained nets"), group(v, "controlled")
    assert trained and controlled
    assert all(o is R for o in trained), v.decision.parts
    assert all(o is R for o in controlled), v.decision.parts
    assert v.outcome is R and set(v.per_seed) == {0, 1, 2} and all(o is R for o in v.per_seed.values())


def test_negative_control_b1_both_groups(negative):
    _, v = negative
    v = v["B1"]
    for g in ("trained nets", "controlled"):
        zplus = [p for p in v.decision.parts if g in p.name and p.name.endswith("zplus: slope") or
                 (g in p.name and "zplus: per-image slope" in p.name)]
        assert zplus and all(p.outcome is N for p in zplus), v.decision.parts
        assert zplus[0].estimate.lo > 0.5
    assert v.outcome is N


def test_negative_control_b2_roles_swapped(positive):
    """The same measured constants, the LRP-β rule in the dependent role against the gradient: it must fail."""
    ctx, _ = positive
    d = binder.measure_all(ctx)
    parts, _, seeds = D.distinction(d["trained"]["c_norm1"], d["xs"], ("zplus",), ("gradient",), 0.0)
    assert parts[0].outcome is N and all(o is N for o in seeds.values())
    (p,) = D.distinction_controlled(d["controlled"]["c_norm1"], d["cxs"], ("zplus",), ("gradient",), 0.0)
    assert p.outcome is N


@pytest.mark.parametrize("pert", [p for p, _ in P.PERTURBATIONS])
def test_negative_control_b3_roles_swapped(positive, pert):
    ctx, _ = positive
    d = binder.measure_all(ctx)
    q = f"support_constant:{pert}"
    parts, _, _ = D.independence(d["trained"][q], d["xs"], ("gradient",), 0.5)
    assert parts[0].outcome is N
    parts, _, _ = D.distinction(d["trained"][q], d["xs"], ("alpha2-beta1",), ("gradient",), 0.0)
    assert parts[0].outcome is N
    (p,) = D.independence_controlled(d["controlled"][q], d["cxs"], ("gradient",), 0.5)
    assert p.outcome is N


def test_only_seed_zero_is_inconclusive_and_says_why():
    ctx = build((0.2, 1.0, 5.0), seeds=(0,), w=0.3)
    (v,) = binder.CLAIMS["B1"](ctx)
    assert all(o is U for o in group(v, "trained nets"))
    assert any("seeds [0] only" in n for n in v.decision.notes) and v.outcome is U
    assert v.per_seed == {0: R}


def test_records_carry_study_seed_and_role(positive):
    ctx, _ = positive
    rows = [r for r in ctx.records if r["measure"] == "constants"]
    roles = {r["role"] for r in rows}
    assert roles == {"study", "controlled", "rescaled"}
    study = [r for r in rows if r["role"] == "study" and r["quantity"] == "c_norm1"]
    assert {(r["study"], r["seed"]) for r in study} == {(b, s) for b in BASES for s in (0, 1, 2)}
    assert {r["image"] for r in study} == set(range(P.sizes(ctx.s).images))
    assert all(math.isfinite(r["value"]) and r["value"] > 0 for r in study)
    sc = {r["scale"] for r in rows if r["role"] == "controlled"}
    assert sc == set(P.SCALES)
    assert np.isfinite([r["value"] for r in rows if r["quantity"] == "support_constant"]).all()
