"""The decisions of Sixt et al.'s claims (chainlab.papers.sixt.decide), unit by unit: boundaries of every rule,
the statistic (median over images, not the mean or the maximum; the lowest eligible boundary, not the highest),
the scope (an out-of-scope method cannot change a verdict, an in-scope one can), the groups, the seeds.

Expected numbers are derived here: order-statistic ranks from binomial sums written out with math.comb, least-
squares slopes from numpy.polyfit, shares and ratios by hand — never copied from the code's output.
"""
import math

import numpy as np
import pytest

from chainlab.papers.sixt import decide as D
from chainlab.papers.sixt.spec import SPECS, decided
from chainlab.papers.verdict import Decision, Estimate, Outcome, decision, part

R, N, U, X = Outcome.REPRODUCED, Outcome.NOT_REPRODUCED, Outcome.INCONCLUSIVE, Outcome.NOT_CHECKED


def ranks(n, level=0.95):
    """1-based ranks (l, u) of the exact order-statistic interval of the median (B ~ Bin(n, ½))."""
    cdf = lambda k: sum(math.comb(n, i) for i in range(0, k + 1)) / 2 ** n  # noqa: E731  P(B ≤ k)
    a = (1 - level) / 2
    lo = max([k for k in range(0, n + 2) if (cdf(k - 1) if k >= 1 else 0.0) <= a])
    hi = min([k for k in range(0, n + 2) if 1 - (cdf(k - 1) if k >= 1 else 0.0) <= a])
    return lo, hi


def test_estimate_is_the_median_with_its_order_statistic_interval():
    v = np.arange(1.0, 21.0)[::-1]                      # 20 values, unsorted
    lo, hi = ranks(20)
    assert (lo, hi) == (6, 15)                          # P(B ≤ 5) = 0.0207 ≤ 0.025 < P(B ≤ 6) = 0.0577
    e = D.estimate(v)
    assert (e.value, e.lo, e.hi, e.n, e.unit, e.level) == (10.5, 6.0, 15.0, 20, "images", 0.95)
    e = D.estimate([1.0, np.nan, 3.0, None, 2.0, 5.0, 4.0, 6.0], "draws")   # non-finite values left out
    assert e.n == 6 and e.value == 3.5 and e.unit == "draws"


BOUNDS = {0: {"d": 3, "below_pool": False, "name": "input"},
          1: {"d": 32, "below_pool": False, "name": "conv1"},
          2: {"d": 32, "below_pool": True, "name": "conv2"},
          3: {"d": 8, "below_pool": False, "name": "pool1"},
          4: {"d": 7, "below_pool": False, "name": "fc1"}}


def test_eligible_boundaries_have_eight_channels_and_are_not_below_a_pool():
    assert D.eligible(BOUNDS) == [1, 3]                 # d = 8 is enough, d = 7 and 3 are not; 2 is below a pool
    assert D.decided_boundary(BOUNDS) == 1
    assert D.decided_boundary({3: BOUNDS[3], 1: BOUNDS[1]}) == 1     # the lowest, whatever the dict order
    assert D.decided_boundary({0: BOUNDS[0], 2: BOUNDS[2]}) is None
    assert D.eligible({5: {"d": 8, "below_pool": False, "name": "x"}, 4: {"d": 9, "below_pool": False, "name": "y"}}) \
        == [4, 5]
    flat = {0: {"d": 64, "below_pool": False, "name": "input"}, 1: {"d": 32, "below_pool": False, "name": "fc1"}}
    assert D.eligible(flat) == [1] and D.decided_boundary(flat) == 1      # the input is never a layer's boundary


def test_maximum_is_over_eligible_boundaries_and_keeps_the_first_of_ties():
    curve = {0: [1.0] * 7, 1: [0.5] * 7, 2: [0.99] * 7, 3: [0.7] * 7}
    j, e = D.maximum(curve, BOUNDS)
    assert j == 3 and e.value == 0.7                   # j = 2 (below a pool) and j = 0 (3 channels) are not eligible
    j, e = D.maximum({1: [0.7] * 7, 3: [0.7] * 7}, BOUNDS)
    assert j == 1
    assert D.maximum({2: [0.9] * 7}, BOUNDS) is None
    assert D.maximum({1: [np.nan] * 3}, BOUNDS) is None


def curves_s1(at1, at3=None, method="lrp-a1b0", role="vgg-cifar"):
    return {(role, method): {1: np.asarray(at1, float), 3: np.asarray(at3 if at3 is not None else at1, float)}}


def test_s1_is_decided_at_the_lowest_eligible_boundary_not_the_highest():
    bounds = {"vgg-cifar": BOUNDS}
    d = D.decide_s1(curves_s1([0.9] * 20, [0.999] * 20), bounds)
    assert d.outcome is N and d.failing()[0].name == "vgg-cifar / LRP α1β0 @ conv1"
    assert "maximum 0.999 at pool1" in d.notes[0]
    d = D.decide_s1(curves_s1([0.999] * 20, [0.9] * 20), bounds)
    assert d.outcome is R


def test_s1_threshold_boundary_and_interval():
    bounds = {"vgg-cifar": BOUNDS}
    assert D.decide_s1(curves_s1([0.99] * 20), bounds).outcome is R           # value = threshold, interval [.99, .99]
    assert D.decide_s1(curves_s1([0.989] * 20), bounds).outcome is N
    straddle = np.linspace(0.98, 1.0, 20)             # median 0.99, interval [x(6), x(15)] straddles 0.99
    assert D.decide_s1(curves_s1(straddle), bounds).outcome is U
    (p,) = [p for p in D.decide_s1(curves_s1([0.995] * 20), bounds).parts if "α1β0" in p.name]
    assert p.threshold == "converges" and p.relation == "≥ 0.99" and p.outcome is R


def test_s1_statistic_is_the_median_not_the_mean():
    v = [0.995] * 19 + [0.0]                           # mean 0.945, median 0.995, interval [x(6), x(15)] = 0.995
    assert np.mean(v) < 0.99
    assert D.decide_s1(curves_s1(v), {"vgg-cifar": BOUNDS}).outcome is R


def test_s1_scope_out_of_scope_methods_cannot_change_the_verdict():
    bounds = {"vgg-cifar": BOUNDS, "sixt-cifar": BOUNDS, "resnet-cifar": BOUNDS}
    good = curves_s1([0.999] * 20)
    for role, mid in (("vgg-cifar", "lrp-a5b4"), ("sixt-cifar", "patternnet"), ("resnet-cifar", "dtd"),
                      ("vgg-cifar", "gradient"), ("vgg-cifar", "lrp-z"), ("vgg-cifar", "lrp-cmp-a1b0")):
        bad = {**good, **curves_s1([0.1] * 20, method=mid, role=role)}
        assert D.decide_s1(bad, bounds).outcome is R, (role, mid)
    for role, mid in (("sixt-cifar", "lrp-a5b4"), ("vgg-cifar", "patternnet"), ("vgg-cifar", "deconv"),
                      ("resnet-cifar", "guided-bp"), ("digits-cnn", "patternnet")):
        bad = {**good, **curves_s1([0.1] * 20, method=mid, role=role)}
        assert D.decide_s1(bad, {**bounds, "digits-cnn": BOUNDS}).outcome is N, (role, mid)


def test_s1_notes_name_the_maxima_of_the_decided_converging_methods_only():
    bounds = {"vgg-cifar": BOUNDS}
    curves = {**curves_s1([0.999] * 20), **curves_s1([0.5] * 20, method="lrp-a5b4"),
              **curves_s1([0.6] * 20, method="gradient")}
    (note,) = D.decide_s1(curves, bounds).notes
    assert "LRP α1β0" in note and "α5β4" not in note and "Gradient" not in note


def test_a_curve_without_the_decided_boundary_is_not_measured_there():
    d = D.decide_s1({("vgg-cifar", "lrp-a1b0"): {3: np.full(20, 0.999)}}, {"vgg-cifar": BOUNDS})
    (p,) = [p for p in d.parts if "α1β0" in p.name]
    assert p.outcome is X and d.outcome is X


def test_s1_decided_methods_without_numbers_are_not_checked_parts():
    d = D.decide_s1(curves_s1([0.999] * 20), {"vgg-cifar": BOUNDS})
    missing = [p for p in d.parts if p.outcome is X]
    assert {p.name.split(" / ")[1].split(" @")[0] for p in missing} >= {"PatternNet", "Deconv"}
    assert all(p.relation == "not measured" for p in missing) and d.outcome is R
    # a net without an eligible boundary contributes nothing
    assert D.decide_s1(curves_s1([0.1] * 20), {"vgg-cifar": {0: BOUNDS[0]}}).outcome is X


def test_s2_below_one_in_a_million():
    v = {("sixt-cifar", "lrp-a1b0"): np.full(20, 5e-7)}
    assert D.decide_s2(v).outcome is R
    assert D.decide_s2({("sixt-cifar", "lrp-a1b0"): np.full(20, 1e-6)}).outcome is N     # strict: < 1e-6
    assert D.decide_s2({("sixt-cifar", "lrp-a1b0"): np.linspace(0, 2e-6, 20)}).outcome is U
    assert D.decide_s2({("vgg-cifar", "lrp-a1b0"): np.full(20, 1.0)}).outcome is X       # not S2's net
    assert D.decide_s2({("sixt-cifar", "gradient"): np.full(20, 1.0)}).outcome is X
    assert D.decide_s2(v).parts[0].name.endswith("@ input")


def test_s3_groups():
    b = {"vgg-cifar": BOUNDS}
    dl = lambda m, v: curves_s1([v] * 20, method=m)  # noqa: E731
    ok = {**dl("deeplift-rescale", 0.8), **dl("deeplift-revealcancel", 0.9), **dl("deeplift-ablation", 0.995)}
    d = D.decide_s3(ok, b)
    assert d.outcome is R
    assert D.group_outcome(d, "deeplift_below") is R and D.group_outcome(d, "ablation_converges") is R
    d = D.decide_s3({**ok, **dl("deeplift-revealcancel", 0.99)}, b)          # RevealCancel at 0.99 converges
    assert d.outcome is N
    assert D.group_outcome(d, "deeplift_below") is N and D.group_outcome(d, "ablation_converges") is R
    d = D.decide_s3({**ok, **dl("deeplift-ablation", 0.98)}, b)
    assert d.outcome is N
    assert D.group_outcome(d, "deeplift_below") is R and D.group_outcome(d, "ablation_converges") is N
    d = D.decide_s3({**ok, **dl("deeplift-ablation", 0.99)}, b)
    assert D.group_outcome(d, "ablation_converges") is R
    d = D.decide_s3({**ok, **curves_s1([0.1] * 20, [0.999] * 20, method="deeplift-ablation")}, b)
    assert D.group_outcome(d, "ablation_converges") is N                        # the lowest eligible boundary
    assert D.decide_s3({**ok, **dl("lrp-z", 0.9999)}, b).outcome is R          # not a DeepLIFT method


def ratios(A, W, WA, TW, TWA):
    return {"vgg-cifar": {"A": A, "W": W, "W*A": WA, "T(W)": TW, "T(W*A)": TWA}}


def test_s4_parts_and_their_boundaries():
    W, WA = [1.0, 1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 0.5, 0.5]          # W⊙A > W at 3 of 5 layers: 0.6 > 0.5
    base = dict(A=[7.0, 7.0, 7.0, 7.0, 5.0], W=W, WA=WA, TW=[1.0, 2.0, 3.0], TWA=[1.5, 2.5, 3.5])
    d = D.decide_s4(ratios(**base))
    assert d.outcome is R and [p.estimate.value for p in d.parts] == [0.8, 0.6, 2.5 / 2.0]
    assert [p.threshold for p in d.parts] == ["almost_all", "wa_layers", "t_ratio"]
    assert D.decide_s4(ratios(**{**base, "A": [7.0, 7.0, 7.0, 5.0, 5.0]})).outcome is N          # 0.6 < 0.8
    six = ratios(**{**base, "A": [7.0, 7.0, 7.0, 7.0, 6.0]})
    assert D.decide_s4(six).parts[0].estimate.value == 0.8                  # 6 is not > 6
    assert D.decide_s4(ratios(**{**base, "A": [7.0, 7.0, 7.0, 6.0, 6.0]})).parts[0].outcome is N
    assert D.decide_s4(ratios(**{**base, "A": [math.inf, 7.0, 7.0, 7.0, None]})).parts[0].estimate.value == 0.8
    half = dict(base, W=[1.0, 1.0, 1.0, 1.0], WA=[2.0, 2.0, 1.0, 0.5])    # larger at exactly half: not > 0.5
    assert D.decide_s4(ratios(**half)).parts[1].outcome is N
    eq = dict(base, WA=[1.0, 1.0, 1.0, 1.0, 2.0])                            # equal is not larger
    assert D.decide_s4(ratios(**eq)).parts[1].estimate.value == 0.2
    same_t = dict(base, TWA=[1.0, 2.0, 3.0])
    assert D.decide_s4(ratios(**same_t)).parts[2].outcome is N              # ratio 1 is not > 1
    assert D.decide_s4(ratios(**dict(base, TWA=[0.5, 1.0, 1.5]))).parts[2].estimate.value == 0.5
    assert D.decide_s4(ratios(**dict(base, TW=[], TWA=[1.0]))).parts[2].outcome is U       # no T_l: no number
    assert D.decide_s4(ratios(**dict(base, TW=[0.0, 0.0, 1.0]))).parts[2].outcome is U     # median 0: no ratio
    assert D.decide_s4(ratios(**dict(base, A=[]))).parts[0].outcome is U


def test_s4_scope():
    r = ratios(A=[1.0], W=[1.0], WA=[0.5], TW=[1.0], TWA=[0.5])
    assert D.decide_s4({"sixt-cifar": r["vgg-cifar"]}).outcome is X          # beside: Fig. 3 is VGG-16's
    assert D.decide_s4({"digits-cnn": r["vgg-cifar"]}).outcome is N          # a net the paper never saw: decided


def sanity(values):
    return {("vgg-cifar", m): np.full(20, v, dtype=float) for m, v in values.items()}


@pytest.mark.parametrize("fn", [D.decide_s5, D.decide_s7])
def test_sanity_groups_and_boundaries(fn):
    ok = {"lrp-a1b0": 0.95, "deeplift-ablation": 0.9, "gradient": 0.6, "lrp-z": 0.8, "smoothgrad": 0.5}
    d = fn(sanity(ok))
    assert d.outcome is R
    assert D.group_outcome(d, "ssim_converging") is R and D.group_outcome(d, "ssim_rest") is R
    d = fn(sanity({**ok, "lrp-a1b0": 0.89}))
    assert D.group_outcome(d, "ssim_converging") is N and D.group_outcome(d, "ssim_rest") is R and d.outcome is N
    d = fn(sanity({**ok, "deeplift-rescale": 0.81}))
    assert D.group_outcome(d, "ssim_rest") is N and D.group_outcome(d, "ssim_converging") is R
    d = fn({**sanity(ok), ("vgg-cifar", "gradient"): np.linspace(0.7, 0.9, 20)})
    assert D.group_outcome(d, "ssim_rest") is U
    # out of scope on vgg-cifar: α5β4 (the paper's exception), LRP-CMP; sixt-cifar entirely
    assert fn({**sanity(ok), **sanity({"lrp-a5b4": 0.1, "lrp-cmp-a1b0": 0.1})}).outcome is R
    assert fn({**sanity(ok), ("sixt-cifar", "lrp-a1b0"): np.zeros(20), ("sixt-cifar", "gradient"): np.ones(20)}
              ).outcome is R
    assert fn({**sanity(ok), ("resnet-cifar", "lrp-a1b0"): np.zeros(20)}).outcome is N
    assert fn({**sanity(ok), ("resnet-cifar", "dtd"): np.zeros(20)}).outcome is R


def test_s7_names_the_step():
    d = D.decide_s7(sanity({"lrp-a1b0": 0.95}), where={"vgg-cifar": "conv8"})
    assert [p.name for p in d.parts if p.outcome is R] == ["vgg-cifar / LRP α1β0 @ conv8"]
    d = D.decide_s7(sanity({"lrp-a1b0": 0.95}))
    assert [p.name for p in d.parts if p.outcome is R] == ["vgg-cifar / LRP α1β0"]


def test_decay_factor_is_the_least_squares_rate():
    y = 3.0 * 0.5 ** np.arange(8)
    assert abs(D.decay_factor(y) - 0.5) < 1e-12
    rng = np.random.default_rng(0)
    y = 2.0 * 0.7 ** np.arange(10) * np.exp(rng.normal(scale=0.1, size=10))
    b = np.polyfit(np.arange(10), np.log(y), 1)[0]
    assert abs(D.decay_factor(y) - math.exp(b)) < 1e-12
    assert D.decay_factor([1.0, None, np.nan, 0.25]) == pytest.approx(0.5 ** (2 / 3))   # k = 0 and 3: e^(ln ¼ / 3)
    assert D.decay_factor([1.0]) is None and D.decay_factor([1.0, np.nan]) is None and D.decay_factor([]) is None
    assert D.decay_factor([1.0, 0.5]) == pytest.approx(0.5)                  # two points suffice


def test_decay_factor_of_a_constant_curve_is_one_whatever_the_rounding():
    assert D.FLAT == 1e-6
    k = np.arange(6)
    assert D.decay_factor(np.exp(-5e-7 * k)) == 1.0 and D.decay_factor(np.exp(5e-7 * k)) == 1.0
    assert D.decay_factor(np.ones(6) - 1e-16 * k) == 1.0
    noisy = 1.0 - 4e-7 * np.array([0, 1, 0, 1, 3, 2])                  # float32 σ2/σ1 of an identity chain
    assert D.decay_factor(noisy) == 1.0
    assert D.decay_factor(np.exp(-1.2e-6 * k)) == pytest.approx(math.exp(-1.2e-6), abs=1e-15)
    assert D.decay_factor(np.exp(-1.2e-6 * k)) < 1.0 and D.decay_factor(np.exp(1.2e-6 * k)) > 1.0


def test_decay_factor_leaves_out_values_at_the_floor():
    assert D.FLOOR == 1e-12
    y = [1.0, 0.1, 1.2e-12, 1e-12, 0.0]               # 1.2e-12 > floor counts; 1e-12 and 0 are at/below it
    b = np.polyfit([0, 1, 2], np.log([1.0, 0.1, 1.2e-12]), 1)[0]
    assert D.decay_factor(y) == pytest.approx(math.exp(b), rel=1e-12)
    assert D.decay_factor(y, floor=1.5e-12) == pytest.approx(0.1)


def prefix(factor_rows):
    return np.asarray(factor_rows, dtype=float)


def test_s6_chains_median_factor_below_one():
    rows = [0.5 ** np.arange(6)] * 19 + [2.0 ** np.arange(6)]        # one image grows: the median is 0.5
    sim = {v: np.asarray([0.1 ** np.arange(5)] * 20) for v in ("positive", "non-negative", "stochastic")}
    d = D.decide_s6({("vgg-cifar", "lrp-a1b0"): prefix(rows)}, sim)
    assert d.outcome is R and d.parts[0].estimate.value == pytest.approx(0.5)
    assert [p.threshold for p in d.parts] == ["factor", "sim_factor", "sim_factor", "sim_factor"]
    flat = [np.ones(6)] * 20                                        # σ2/σ1 constant: factor exactly 1, not < 1
    assert D.group_outcome(D.decide_s6({("vgg-cifar", "lrp-a1b0"): prefix(flat)}, sim), "factor") is N
    mixed = [0.5 ** np.arange(6)] * 10 + [2.0 ** np.arange(6)] * 10
    assert D.group_outcome(D.decide_s6({("vgg-cifar", "lrp-a1b0"): prefix(mixed)}, sim), "factor") is U
    # the gradient is beside: its factor cannot change the verdict
    assert D.decide_s6({("vgg-cifar", "lrp-a1b0"): prefix(rows), ("vgg-cifar", "gradient"): prefix(flat)},
                       sim).outcome is R


def test_s6_simulation_group_and_its_variants():
    rows = {("vgg-cifar", "lrp-a1b0"): prefix([0.5 ** np.arange(6)] * 20)}
    conv = np.asarray([0.1 ** np.arange(5)] * 20)
    grow = np.asarray([1.1 ** np.arange(5)] * 20)
    sim = {"positive": conv, "non-negative": conv, "stochastic": conv, "vanilla": grow, "relu": grow}
    d = D.decide_s6(rows, sim)
    assert D.group_outcome(d, "sim_factor") is R and d.outcome is R            # vanilla/relu are not decided
    d = D.decide_s6(rows, {**sim, "stochastic": grow})
    assert D.group_outcome(d, "sim_factor") is N and D.group_outcome(d, "factor") is R
    d = D.decide_s6(rows, {"positive": conv})
    assert [p.outcome for p in d.parts if p.threshold == "sim_factor"] == [R, X, X]
    assert D.group_outcome(d, "sim_factor") is R
    d = D.decide_s6(rows, {})
    assert D.group_outcome(d, "sim_factor") is X and d.outcome is R
    assert [p.estimate.unit for p in D.decide_s6(rows, sim).parts if p.threshold == "sim_factor"] == ["draws"] * 3


def test_s8_difference_and_per_image_ratio():
    z, g = np.full(20, 0.005), np.full(20, 0.1)
    d = D.decide_s8({("vgg-cifar", "lrp-a1b0"): z, ("vgg-cifar", "gradient"): g})
    assert d.outcome is R and [p.estimate.value for p in d.parts] == [0.005, pytest.approx(0.05)]
    assert [p.threshold for p in d.parts] == ["class_diff", "class_ratio"]
    assert D.decide_s8({("vgg-cifar", "lrp-a1b0"): np.full(20, 0.01), ("vgg-cifar", "gradient"): g}).outcome is R
    d = D.decide_s8({("vgg-cifar", "lrp-a1b0"): np.full(20, 0.011), ("vgg-cifar", "gradient"): np.full(20, 1.0)})
    assert D.group_outcome(d, "class_diff") is N and D.group_outcome(d, "class_ratio") is R
    d = D.decide_s8({("vgg-cifar", "lrp-a1b0"): z, ("vgg-cifar", "gradient"): np.full(20, 0.04)})   # ratio 0.125
    assert D.group_outcome(d, "class_ratio") is N and D.group_outcome(d, "class_diff") is R
    # per-image ratio, not the ratio of the medians: halves of the images with opposite ratios
    z2 = np.r_[np.full(10, 0.001), np.full(10, 0.009)]
    g2 = np.r_[np.full(10, 0.002), np.full(10, 0.2)]               # ratios 0.5 and 0.045; medians 0.005 / 0.101
    assert D.decide_s8({("vgg-cifar", "lrp-a1b0"): z2, ("vgg-cifar", "gradient"): g2}).parts[1].outcome is U
    g0 = np.r_[np.zeros(10), np.full(10, 0.1)]                        # zero gradient difference: no ratio
    assert D.decide_s8({("vgg-cifar", "lrp-a1b0"): z, ("vgg-cifar", "gradient"): g0}).parts[1].estimate.n == 10


def test_s8_scope_and_missing_numbers():
    z, g = np.full(20, 0.5), np.full(20, 0.6)
    assert D.decide_s8({("sixt-cifar", "lrp-a1b0"): z, ("sixt-cifar", "gradient"): g}).outcome is X
    assert D.decide_s8({("digits-x", "lrp-a1b0"): z, ("digits-x", "gradient"): g}).outcome is N
    d = D.decide_s8({("vgg-cifar", "lrp-a1b0"): np.full(20, 0.001)})
    assert [p.outcome for p in d.parts] == [R, X] and d.outcome is R
    d = D.decide_s8({("vgg-cifar", "gradient"): g})
    assert [p.outcome for p in d.parts] == [X] and d.outcome is X


def test_seeds_agree_or_are_inconclusive():
    r = decision([part("a", R, Estimate.exact(1.0), "≥ 0", "t")], notes=("n0",))
    n = decision([part("a", N, Estimate.exact(0.0), "≥ 1", "t")])
    d, per = D.over_seeds({1: n, 0: r})
    assert d.outcome is U and per == {0: R, 1: N} and list(per) == [0, 1]
    assert [p.name for p in d.parts] == ["seed 0: a", "seed 1: a"] and d.notes == ("seed 0: n0",)
    assert [p.threshold for p in d.parts] == ["t", "t"] and d.parts[1].estimate.value == 0.0
    d, per = D.over_seeds({0: r, 1: r})
    assert d.outcome is R and per == {0: R, 1: R}
    d, per = D.over_seeds({0: r})
    assert d.outcome is R and d.parts[0].name == "a" and d.notes == ("n0",)
    d, _ = D.over_seeds({0: r, 1: Decision(X)})
    assert d.outcome is R                                        # a seed that could not be checked is left out
    d, _ = D.over_seeds({0: n, 1: n})
    assert d.outcome is N


def test_group_outcome_reads_one_group():
    d = decision([part("a", R, threshold="x"), part("b", N, threshold="y"), part("c", U, threshold="x")])
    assert D.group_outcome(d, "x") is U and D.group_outcome(d, "y") is N and D.group_outcome(d, "z") is X


def test_scope_of_unknown_roles_is_every_method_of_the_group():
    assert "lrp-a5b4" in decided(SPECS["S1"], "digits-cnn") and "lrp-a5b4" not in decided(SPECS["S1"], "vgg-cifar")
    assert decided(SPECS["S5"], "sixt-cifar") == () and "smoothgrad" in decided(SPECS["S5"], "vgg-cifar")
    assert "patternnet" not in decided(SPECS["S1"], "sixt-cifar")
