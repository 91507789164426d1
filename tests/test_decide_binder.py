"""Unit tests of chainlab.papers.binder.decide: every statistic, boundary, robustness check and combination, with
expectations derived here (np.polyfit slopes, Student t from scipy, order statistics by hand) — the tests that
scripts/mutation.py runs against every mutant of decide.py."""
import math

import numpy as np
import pytest
from scipy.stats import t as student_t

from chainlab.papers.binder import decide as D
from chainlab.papers.verdict import Estimate, Outcome, part

R, N, U, X = Outcome.REPRODUCED, Outcome.NOT_REPRODUCED, Outcome.INCONCLUSIVE, Outcome.NOT_CHECKED
NETS = ("a", "b", "c", "d", "e")
XS = dict(zip(NETS, (1.0, 10.0, 100.0, 1e3, 1e4)))


def power(slopes, images=3, outlier=None):
    """ys {seed: {net: per-image values}} with y_net = x_net ** b_seed exactly (every image), xs {seed: {net: x}};
    ``outlier`` {net: factor}: that net's values multiplied (breaks the power law)."""
    ys, xs = {}, {}
    for s, b in enumerate(slopes):
        xs[s] = dict(XS)
        ys[s] = {n: [x ** b * (outlier or {}).get(n, 1.0)] * images for n, x in XS.items()}
    return ys, xs


def t_interval(v):
    v = np.asarray(v, dtype=float)
    half = student_t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return v.mean() - half, v.mean() + half


# -- statistics -------------------------------------------------------------------------------------------
def test_net_value_is_the_median_of_the_finite_values():
    assert D.net_value([1.0, 2.0, 10.0]) == 2.0                     # mean 4.33, max 10
    assert D.net_value([1.0, 3.0, float("nan"), None]) == 2.0
    assert D.net_value([5.0, 1.0, 3.0, 100.0]) == 4.0                # even count: mean of the middle two
    assert D.net_value([]) is None and D.net_value([float("nan")]) is None


def test_trend_is_the_per_seed_loglog_slope_with_a_t_interval_over_seeds():
    ys, xs = power([0.1, 0.2, 0.3])
    est, per = D.trend(ys, xs)
    assert per == pytest.approx({0: 0.1, 1: 0.2, 2: 0.3})
    lo, hi = t_interval([0.1, 0.2, 0.3])
    assert (est.value, est.lo, est.hi) == pytest.approx((0.2, lo, hi)) and est.n == 3 and est.unit == "seeds"


def test_trend_uses_each_nets_median_image():
    ys, xs = power([0.5])
    for n in NETS:                                   # one wild image per net: the median ignores it, a mean would not
        ys[0][n] = ys[0][n][:2] + [1e9 * ys[0][n][0]]
    _, per = D.trend(ys, xs)
    assert per[0] == pytest.approx(0.5)


def test_trend_leaves_out_dropped_nets_and_missing_values():
    ys, xs = power([1.0, 1.0], outlier={"e": 1e6})
    with_e = np.polyfit(np.log(list(XS.values())), np.log([x * (1e6 if n == "e" else 1) for n, x in XS.items()]), 1)[0]
    est, per = D.trend(ys, xs)
    assert per[0] == pytest.approx(with_e)
    est, per = D.trend(ys, xs, drop=("e",))
    assert per == pytest.approx({0: 1.0, 1: 1.0})
    ys[1]["a"] = [float("nan")] * 3                   # a net without values is left out, not a zero
    xs[1]["b"] = None
    _, per = D.trend(ys, xs, drop=("e",))
    assert per[1] == pytest.approx(1.0)


def test_one_seed_gives_an_interval_without_coverage():
    ys, xs = power([0.0])
    est, per = D.trend(ys, xs)
    assert est.value == pytest.approx(0.0) and est.lo == -math.inf and est.hi == math.inf and per == {0: 0.0}


def test_difference_is_paired_by_seed_against_the_mean_of_the_references():
    rule, xs = power([1.0, 1.2, 0.8])
    r1, _ = power([0.0, 0.1, -0.1])
    r2, _ = power([0.2, 0.3, 0.1])
    est, ds = D.difference(rule, [r1, r2], xs)
    want = [1.0 - 0.1, 1.2 - 0.2, 0.8 - 0.0]
    assert [ds[s] for s in range(3)] == pytest.approx(want)
    lo, hi = t_interval(want)
    assert (est.value, est.lo, est.hi) == pytest.approx((np.mean(want), lo, hi)) and est.unit == "seeds"
    del r2[2]                                         # a seed without every reference slope is left out
    _, ds = D.difference(rule, [r1, r2], xs)
    assert sorted(ds) == [0, 1]


# -- independence: boundaries, seeds, leave-one-out -------------------------------------------------------------
def _indep(slopes, band=0.5, **kw):
    ys, xs = power(slopes, **kw)
    return D.independence({"z": ys}, xs, ("z",), band)


@pytest.mark.parametrize("slopes,want", [([0.1, 0.2, 0.3], R), ([-0.3, -0.2, -0.1], R), ([0.3, 0.4, 0.5], U),
                                         ([0.9, 1.0, 1.1], N), ([-1.1, -1.0, -0.9], N), ([-0.6, 0.0, 0.6], U)])
def test_independence_compares_the_interval_with_the_band(slopes, want):
    parts, shown, seeds = _indep(slopes)
    assert parts[0].outcome is want and parts[0].relation == "in [-0.5, 0.5]" and parts[0].threshold == "band"


def test_independence_band_edges_count_as_inside():
    lo, hi = t_interval([0.1, 0.2, 0.3])
    parts, _, _ = _indep([0.1, 0.2, 0.3], band=hi)
    assert parts[0].outcome is R
    parts, _, _ = _indep([0.1, 0.2, 0.3], band=hi * 0.999)
    assert parts[0].outcome is U


def test_a_seed_outside_the_band_makes_it_inconclusive():
    slopes = [0.0] * 20 + [0.6]
    lo, hi = t_interval(slopes)
    assert -0.5 < lo and hi < 0.5                     # the interval alone says independent
    parts, _, seeds = _indep(slopes)
    assert parts[0].outcome is U and seeds[20] is N and seeds[0] is R


def test_leaving_out_a_net_that_carries_the_verdict_makes_it_inconclusive():
    """log10 x = 0 … 4; nets a–d on y = x^(1 ± 0.01), net e at y = 0.1: Σ(u − ū)·log10 y = 0, so every seed's slope
    is ≈ 0 with all nets (inside the band) and ≈ 1 without e (outside)."""
    ys, xs = {}, {}
    for s, jitter in enumerate((0.0, 0.01, -0.01)):
        xs[s] = dict(XS)
        ys[s] = {n: [XS[n] ** (1 + jitter)] * 3 for n in NETS[:4]}
        ys[s]["e"] = [0.1] * 3
    u = np.log(list(XS.values()))
    full = [np.polyfit(u, np.log([ys[s][n][0] for n in NETS]), 1)[0] for s in range(3)]
    without_e = [np.polyfit(u[:4], np.log([ys[s][n][0] for n in NETS[:4]]), 1)[0] for s in range(3)]
    assert max(abs(b) for b in full) < 0.01 and min(without_e) > 0.98
    parts, shown, _ = D.independence({"z": ys}, xs, ("z",), 10.0)   # wide band: every check agrees
    assert parts[0].outcome is R and shown == []
    parts, shown, seeds = D.independence({"z": ys}, xs, ("z",), 0.5)
    by = {p.name: p for p in shown}
    assert by["z: slope, without e"].outcome is N and by["z: slope, without e"].estimate.value == pytest.approx(
        np.mean(without_e))
    assert parts[0].outcome is U and parts[0].estimate.value == pytest.approx(np.mean(full), abs=1e-12)
    assert all(o is R for o in seeds.values())


def test_leave_one_out_runs_from_three_nets():
    """Three nets at log10 x = 0, 1, 2 with y = 1, 10, 1: the slope is 0 with all three, 1 without the last and −1
    without the first — leaving one out must run (and disagree) with three nets."""
    xs = {s: {"a": 1.0, "b": 10.0, "c": 100.0} for s in range(3)}
    ys = {s: {"a": [1.0] * 3, "b": [10.0 * (1 + 0.001 * s)] * 3, "c": [1.0] * 3} for s in range(3)}
    parts, shown, _ = D.independence({"z": ys}, xs, ("z",), 0.5)
    assert parts[0].estimate.value == pytest.approx(0.0, abs=1e-3)
    assert parts[0].outcome is U and {p.name for p in shown} >= {"z: slope, without a", "z: slope, without c"}


def test_leave_one_out_needs_more_than_two_nets():
    ys = {s: {n: [XS[n] ** 0.1] * 3 for n in NETS[:2]} for s in range(3)}
    xs = {s: dict(XS) for s in range(3)}
    parts, shown, _ = D.independence({"z": ys}, xs, ("z",), 0.5)
    assert parts[0].outcome is R and shown == []


def test_seed_outcomes_of_several_rules_combine_by_and():
    a, xs = power([0.0, 0.0, 0.0])
    b, _ = power([0.0, 2.0, 0.0])
    parts, _, seeds = D.independence({"a": a, "b": b}, xs, ("a", "b"), 0.5)
    assert [p.outcome for p in parts] == [R, U] and seeds == {0: R, 1: N, 2: R}


# -- distinction ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rule,ref,want", [([1.0, 1.1, 0.9], [0.0, 0.0, 0.0], R), ([0.0, 0.0, 0.0], [1.0, 1.1, 0.9], N),
                                          ([0.1, -0.1, 0.05], [0.0, 0.0, 0.0], U), ([0.0] * 3, [0.0] * 3, N)])
def test_distinction_compares_the_paired_difference_with_zero(rule, ref, want):
    r, xs = power(rule)
    b, _ = power(ref)
    parts, shown, seeds = D.distinction({"g": r, "z": b}, xs, ("g",), ("z",), 0.0)
    assert parts[0].outcome is want and parts[0].relation == "> 0" and parts[0].threshold == "distinction"
    assert parts[0].name == "g: slope − LRP-β slope"


def test_distinction_threshold_is_strict_and_uses_t():
    r, xs = power([1.0, 1.1, 0.9])
    b, _ = power([0.0, 0.0, 0.0])
    lo, hi = t_interval([1.0, 1.1, 0.9])
    parts, _, _ = D.distinction({"g": r, "z": b}, xs, ("g",), ("z",), lo)
    assert parts[0].outcome is U                      # lo > t needed
    parts, _, _ = D.distinction({"g": r, "z": b}, xs, ("g",), ("z",), lo - 1e-9)
    assert parts[0].outcome is R
    parts, _, _ = D.distinction({"g": r, "z": b}, xs, ("g",), ("z",), hi)
    assert parts[0].outcome is N


# -- the controlled group -----------------------------------------------------------------------------------------
CS = {0.5: 1.0, 1.0: 8.0, 2.0: 64.0}                  # Π‖W‖ at each scale


def test_controlled_slopes_are_per_image():
    ys = {c: [x ** 0.0, x ** 1.0, x ** 2.0, -1.0 if c == 2.0 else 1.0] for c, x in CS.items()}
    b = D.controlled_slopes(ys, CS)
    assert b[:3] == pytest.approx([0.0, 1.0, 2.0]) and math.isnan(b[3])
    assert D.controlled_slopes({}, CS).size == 0


def test_controlled_parts_decide_on_the_median_image():
    n = 20
    z = {c: [1.0] * (n - 1) + [x ** 10] for c, x in CS.items()}     # one image with slope 10: the mean would be 0.5
    g = {c: [x] * n for c, x in CS.items()}
    (p,) = D.independence_controlled({"z": z}, CS, ("z",), 0.5)
    assert p.outcome is R and p.estimate.value == pytest.approx(0.0) and p.estimate.unit == "images"
    (q,) = D.distinction_controlled({"g": g, "z": z}, CS, ("g",), ("z",), 0.0)
    assert q.outcome is R and q.estimate.value == pytest.approx(1.0)
    (q,) = D.distinction_controlled({"g": z, "z": g}, CS, ("g",), ("z",), 0.0)
    assert q.outcome is N
    (p,) = D.independence_controlled({"z": g}, CS, ("z",), 0.5)
    assert p.outcome is N


def test_controlled_independence_with_few_images_is_inconclusive():
    z = {c: [1.0] * 5 for c in CS}                    # 5 images: no 95 % interval of the median exists
    (p,) = D.independence_controlled({"z": z}, CS, ("z",), 0.5)
    assert p.outcome is U


# -- combination -------------------------------------------------------------------------------------------------
def test_combine_ands_the_groups_and_shows_the_checks_without_counting_them():
    d = D.combine({"g1": [part("a", R)], "g2": [part("b", R)], "empty": []}, {"g1": [part("a, without x", N)]})
    assert d.outcome is R
    assert [p.name for p in d.parts] == ["g1 · a", "g2 · b", "g1 · a, without x (check)"]
    assert D.combine({"g1": [part("a", R)], "g2": [part("b", U)]}).outcome is U
    assert D.combine({"g1": [part("a", R), part("c", N)], "g2": [part("b", U)]}).outcome is N
    assert D.combine({}).outcome is X
    assert D.combine({"g": [part("a", R)]}, notes=["n"]).notes == ("n",)


def test_merge_seeds():
    assert D.merge_seeds({0: R, 1: N}, {0: U, 2: R}) == {0: U, 1: N, 2: R}
    assert D.merge_seeds({}, {}) == {}


def test_within_band():
    assert D.within_band(Estimate(0.1, -0.2, 0.4), 0.5)
    assert D.within_band(Estimate(0.1, -0.5, 0.5), 0.5)
    assert not D.within_band(Estimate(0.1, -0.2, 0.6), 0.5)
    assert not D.within_band(Estimate(-0.1, -0.6, 0.2), 0.5)
    assert not D.within_band(Estimate(None), 0.5) and not D.within_band(None, 0.5)
