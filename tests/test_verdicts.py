"""The decision code every claim shares: three-valued comparisons of intervals with thresholds, their Kleene
combination, agreement over seeds, specs with provenance, and the statistics the intervals come from.

Every expectation is derived here independently (truth tables written out, binomial sums with math.comb,
Student-t quantiles from tables, Monte Carlo coverage), never copied from the code's output.
"""
import math

import numpy as np
import pytest

from chainlab.papers import spec as S
from chainlab.papers import stats
from chainlab.papers.verdict import (Decision, Estimate, Outcome, Verdict, above, agree, all_of, any_of, at_least,
                                     at_most, below, decision, not_checked, part, within)

R, N, U, X = Outcome.REPRODUCED, Outcome.NOT_REPRODUCED, Outcome.INCONCLUSIVE, Outcome.NOT_CHECKED


def est(lo, hi, value=None):
    return Estimate((lo + hi) / 2 if value is None else value, lo, hi, 0.95, 10, "images", "test")


# -- comparisons: every relation at and around its threshold ----------------------------------------------
# (lo, hi) → outcome, for t = 1; written out from the definitions, edges included
GE = {(1.0, 2.0): R, (1.5, 2.0): R, (0.5, 2.0): U, (0.5, 1.0): U, (0.0, 0.999): N, (1.0, 1.0): R, (0.999, 0.999): N}
GT = {(1.0, 2.0): U, (1.001, 2.0): R, (0.5, 1.0): N, (0.5, 1.001): U, (1.0, 1.0): N, (0.0, 0.5): N, (1.5, 1.5): R}
LE = {(0.0, 1.0): R, (0.0, 0.5): R, (0.5, 1.5): U, (1.0, 1.5): U, (1.001, 2.0): N, (1.0, 1.0): R, (1.2, 1.2): N}
LT = {(0.0, 1.0): U, (0.0, 0.999): R, (1.0, 2.0): N, (0.999, 2.0): U, (1.0, 1.0): N, (2.0, 3.0): N, (0.5, 0.5): R}


@pytest.mark.parametrize("fn,table,rel", [(at_least, GE, "≥ 1"), (above, GT, "> 1"), (at_most, LE, "≤ 1"),
                                          (below, LT, "< 1")])
def test_each_relation_at_and_around_the_threshold(fn, table, rel):
    for (lo, hi), want in table.items():
        p = fn("x", est(lo, hi), 1.0, "t")
        assert p.outcome is want, (fn.__name__, lo, hi, p.outcome)
        assert p.relation == rel and p.threshold == "t" and p.name == "x"


def test_exact_values_are_never_inconclusive():
    for v in (0.5, 1.0, 1.5):
        for fn in (at_least, above, at_most, below):
            assert fn("x", Estimate.exact(v), 1.0).outcome in (R, N)
    assert at_least("x", Estimate.exact(1.0), 1.0).outcome is R
    assert above("x", Estimate.exact(1.0), 1.0).outcome is N


@pytest.mark.parametrize("bad", [Estimate(None), Estimate(float("nan"), 0.0, 1.0), Estimate(0.5, None, 1.0),
                                 Estimate(0.5, 0.0, None), Estimate(0.5, float("nan"), 1.0),
                                 Estimate(0.5, 0.0, float("nan")), None])
def test_missing_or_nan_values_are_inconclusive_never_a_pass(bad):
    for fn in (at_least, above, at_most, below):
        assert fn("x", bad, 1.0).outcome is U
        assert fn("x", bad, -10.0).outcome is U
    assert within("x", bad, -1.0, 1.0).outcome is U


def test_infinite_interval_ends_mean_no_coverage_on_that_side():
    e = Estimate(2.0, -math.inf, 3.0)
    assert at_least("x", e, 1.0).outcome is U          # the open lower side cannot confirm ≥ 1
    assert at_least("x", e, 4.0).outcome is N          # but the upper end refutes ≥ 4
    assert at_most("x", Estimate(2.0, 1.5, math.inf), 1.0).outcome is N
    assert at_most("x", Estimate(2.0, 1.5, math.inf), 5.0).outcome is U


def test_within_needs_both_ends():
    assert within("x", est(0.2, 0.3), 0.0, 1.0).outcome is R
    assert within("x", est(0.0, 1.0), 0.0, 1.0).outcome is R
    assert within("x", est(-0.1, 0.3), 0.0, 1.0).outcome is U
    assert within("x", est(0.9, 1.1), 0.0, 1.0).outcome is U
    assert within("x", est(1.1, 1.3), 0.0, 1.0).outcome is N
    assert within("x", est(-0.5, -0.1), 0.0, 1.0).outcome is N
    assert within("x", est(-0.5, 1.5), 0.0, 1.0).outcome is U
    assert within("x", est(0.1, 0.2), 0.0, 1.0).relation == "in [0, 1]"


# -- Kleene logic, agreement ---------------------------------------------------------------------------------
AND = {(R, R): R, (R, N): N, (R, U): U, (N, N): N, (N, U): N, (U, U): U}
OR = {(R, R): R, (R, N): R, (R, U): R, (N, N): N, (N, U): U, (U, U): U}


def test_kleene_tables():
    for (a, b), want in AND.items():
        assert all_of([a, b]) is want and all_of([b, a]) is want
    for (a, b), want in OR.items():
        assert any_of([a, b]) is want and any_of([b, a]) is want


def test_not_checked_is_left_out_and_nothing_left_is_not_checked():
    assert all_of([]) is X and any_of([]) is X and agree([]) is X
    assert all_of([X, X]) is X and any_of([X]) is X and agree([X]) is X
    for o in (R, N, U):
        assert all_of([X, o]) is o and any_of([o, X]) is o and agree([X, o, X]) is o


def test_combinations_take_parts_and_decisions():
    parts = [part("a", R), part("b", U)]
    assert all_of(parts) is U and any_of(parts) is R
    d = decision(parts)
    assert d.outcome is U and d.open() == (parts[1],) and d.failing() == ()
    d2 = decision([part("a", N), part("b", R)], notes=["n"])
    assert d2.outcome is N and d2.failing()[0].name == "a" and d2.notes == ("n",)
    assert all_of([d, d2]) is N
    assert decision(parts, combine=any_of).outcome is R
    assert decision([]).outcome is X


def test_agreement_over_seeds():
    assert agree([R, R, R]) is R and agree([N, N]) is N and agree([U]) is U
    assert agree([R, N]) is U and agree([R, R, U]) is U and agree([N, R, N]) is U


def test_verdict_properties_and_not_checked():
    spec = S.ClaimSpec("Z1", "P", "s", S.paper("q"), "", "", "", "", "")
    v = Verdict(spec, Decision(R), "obs")
    assert v.claim == "Z1" and v.outcome is R and v.label == "reproduced"
    nc = not_checked(spec, "no weights")
    assert nc.outcome is X and nc.reason == "no weights" and "no weights" in nc.observed and nc.label == "not checked"
    assert nc.seconds == 0.0 and nc.decision.notes == ("no weights",) and not_checked(spec, "r", 2.5).seconds == 2.5


def test_estimate_text():
    assert Estimate.exact(2.0).text() == "2"
    assert "95 %" in est(0.1, 0.3, 0.2).text() and "0.1" in est(0.1, 0.3, 0.2).text()
    assert Estimate(None).text() == "n/a"
    assert part("a", R, Estimate.exact(1.0), "≥ 1").text() == "a: 1 ≥ 1 → reproduced"


# -- specs and provenance ------------------------------------------------------------------------------------
def test_sources_need_a_kind_and_a_text():
    with pytest.raises(ValueError):
        S.Source("blog", "x")
    with pytest.raises(ValueError):
        S.ours("  ")
    assert S.paper("q", "§4").cite() == "paper (§4): “q”"
    assert S.code("c", "f.py:1").cite() == "authors' code (f.py:1): c"
    assert S.ours("why").cite() == "ours: why"


def test_spec_thresholds_and_kinds():
    t1, t2 = S.Threshold("a", 0.99, S.paper("q")), S.Threshold("b", 0.5, S.ours("r"))
    spec = S.ClaimSpec("Z1", "P", "s", S.paper("q"), "", "", "", "", "", thresholds=(t1, t2))
    assert spec.threshold("a") == 0.99 and spec.threshold("b") == 0.5
    assert spec.ours == (t2,) and spec.label == "claim"
    with pytest.raises(KeyError, match="Z1"):
        spec.threshold("c")
    with pytest.raises(ValueError):
        S.ClaimSpec("Z1", "P", "s", S.paper("q"), "", "", "", "", "", thresholds=(t1, t1))
    with pytest.raises(ValueError):
        S.ClaimSpec("Z1", "P", "s", S.paper("q"), "", "", "", "", "", kind="guess")
    h = S.ClaimSpec("H1", "P", "s", S.ours("r"), "", "", "", "", "", kind="hypothesis")
    assert h.label == "hypothesis (ours)" and h.ours == ()
    assert "= 0.99 — paper" in t1.cite()
    sc = S.Scope({"n": ("a", "b")}, {"n": {"c": S.paper("except c")}})
    assert sc.decided("n") == ("a", "b") and sc.decided("m") == () and list(sc.excluded("n")) == ["c"]


# -- statistics ----------------------------------------------------------------------------------------------
def _binom_cdf(k, n, p=0.5):
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(0, k + 1)) if k >= 0 else 0.0


def _ranks_by_hand(n, q, level):
    """1-based ranks (l, u) of the order-statistic interval, from binomial sums written here (0 / n+1: open)."""
    a = (1 - level) / 2
    l = max(k for k in range(0, n + 2) if _binom_cdf(k - 1, n, q) <= a)
    u = min(k for k in range(0, n + 2) if 1 - _binom_cdf(k - 1, n, q) <= a + 1e-15)
    return l, u


@pytest.mark.parametrize("n", [1, 5, 6, 10, 11, 25, 200])
def test_median_interval_is_the_order_statistics_of_the_binomial(n):
    x = np.arange(1.0, n + 1)          # x_(k) = k
    e = stats.median_ci(x[::-1], unit="images")
    l, u = _ranks_by_hand(n, 0.5, 0.95)
    assert e.lo == (-math.inf if l == 0 else l) and e.hi == (math.inf if u == n + 1 else u)
    assert e.value == pytest.approx(np.median(x)) and e.n == n and e.unit == "images" and e.level == 0.95
    if n == 10:                         # the textbook value: [x_(2), x_(9)] (coverage 97.9 %)
        assert (e.lo, e.hi) == (2.0, 9.0)
    if n <= 5:                          # no 95 % interval exists with 5 values: open both sides
        assert e.lo == -math.inf and e.hi == math.inf


def test_quantile_interval_other_quantiles_and_bad_q():
    x = np.arange(1.0, 101)
    e = stats.quantile_ci(x, 0.9)
    l, u = _ranks_by_hand(100, 0.9, 0.95)
    assert (e.lo, e.hi) == (float(l), float(u)) and e.lo < 90.5 < e.hi
    with pytest.raises(ValueError):
        stats.quantile_ci(x, 1.0)
    with pytest.raises(ValueError):
        stats.quantile_ci(x, 0.0)


def test_median_interval_covers_at_its_level():
    rng = np.random.default_rng(0)
    hits = sum(e.lo <= 0.0 <= e.hi for e in (stats.median_ci(rng.standard_cauchy(40)) for _ in range(2000)))
    assert 0.95 <= hits / 2000 <= 0.985            # exact coverage of n = 40 is 0.9615


def test_median_interval_ignores_missing_values_and_handles_none():
    e = stats.median_ci([1.0, None, float("nan"), 2.0, 3.0, float("inf")])
    assert e.n == 3 and e.value == 2.0
    assert stats.median_ci([]).value is None and stats.median_ci([]).n == 0


def test_mean_interval_is_students_t():
    x = [1.0, 2.0, 4.0]
    e = stats.mean_ci(x)
    half = 4.302652729911275 * np.std(x, ddof=1) / math.sqrt(3)     # t(0.975, 2) from the table
    assert e.value == pytest.approx(7 / 3) and e.lo == pytest.approx(7 / 3 - half) and e.hi == pytest.approx(7 / 3 + half)
    assert e.unit == "seeds" and e.n == 3
    one = stats.mean_ci([5.0])
    assert one.value == 5.0 and one.lo == -math.inf and one.hi == math.inf
    assert stats.mean_ci([]).value is None
    e90 = stats.mean_ci([1.0, 2.0, 4.0, 8.0], level=0.9)
    half90 = 2.3533634348018264 * np.std([1, 2, 4, 8], ddof=1) / 2
    assert e90.hi - e90.value == pytest.approx(half90)


def test_bca_covers_the_mean_and_is_skewed_for_skewed_data():
    rng = np.random.default_rng(1)
    hits = 0
    for i in range(150):
        e = stats.bca_ci(rng.normal(size=30), np.mean, B=400, seed=i)
        hits += e.lo <= 0.0 <= e.hi
        assert e.lo <= e.value <= e.hi
    assert 0.88 <= hits / 150 <= 1.0
    x = rng.exponential(size=40)
    e = stats.bca_ci(x, np.mean, B=2000)
    assert e.hi - e.value > e.value - e.lo           # the mean of an exponential: longer to the right
    assert e.value == pytest.approx(x.mean())
    t = stats.mean_ci(x, unit="images")
    assert abs(e.lo - t.lo) < 0.15 and abs(e.hi - t.hi) < 0.2


def _bca_by_hand(x, statistic, B, seed, level=0.95):
    """Efron & Tibshirani (1993), §14.3, on the same B resamples (numpy's default_rng(seed), one integers(0, n, n)
    draw per replicate): z0 = Φ⁻¹(p0) with p0 = (#{θ* < θ̂} + ½·#{θ* = θ̂}) / B (ties count half, as scipy.stats.
    bootstrap counts them), clamped to [½/B, 1 − ½/B] (module docstring: z0 stays finite); the acceleration
    a = Σ(θ̄₋ − θ₋ᵢ)³ / (6 [Σ(θ̄₋ − θ₋ᵢ)²]^{3/2}) from the jackknife (0 when every θ₋ᵢ is equal);
    ends α_{1,2} = Φ(z0 + (z0 + z_α)/(1 − a(z0 + z_α)))."""
    from scipy.stats import norm
    n = len(x)
    rng = np.random.default_rng(seed)
    reps = np.array([statistic(x[rng.integers(0, n, n)]) for _ in range(B)])
    theta = statistic(x)
    p0 = (np.sum(reps < theta) + 0.5 * np.sum(reps == theta)) / B
    z0 = norm.ppf(min(max(p0, 0.5 / B), 1 - 0.5 / B))
    jack = np.array([statistic(np.delete(x, i)) for i in range(n)])
    d = jack.mean() - jack
    ss = np.sum(d ** 2)
    a = np.sum(d ** 3) / (6 * ss ** 1.5) if ss > 0 else 0.0
    ends = [norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z))) for z in (norm.ppf((1 - level) / 2), norm.ppf((1 + level) / 2))]
    return theta, min(np.quantile(reps, ends[0]), theta), max(np.quantile(reps, ends[1]), theta), a


def test_bca_equals_the_textbook_formula_on_skewed_data():
    """An independent implementation of BCa on the same resamples: equal ends (so the acceleration, which is far
    from 0 for the variance of exponential data, enters with the right sign and scale)."""
    x = np.random.default_rng(7).exponential(size=25)
    theta, lo, hi, a = _bca_by_hand(x, np.var, 1500, 3)
    assert abs(a) > 0.02                                     # the acceleration matters here
    e = stats.bca_ci(x, np.var, B=1500, seed=3)
    assert e.value == pytest.approx(theta) and e.lo == pytest.approx(lo, rel=1e-12) and e.hi == pytest.approx(hi, rel=1e-12)


def test_bca_defaults_are_the_documented_ones():
    x = np.random.default_rng(8).exponential(size=20)
    d, explicit = stats.bca_ci(x, np.mean), stats.bca_ci(x, np.mean, B=2000, seed=0, level=0.95)
    assert (d.value, d.lo, d.hi, d.level) == (explicit.value, explicit.lo, explicit.hi, 0.95)
    assert d.method == "BCa bootstrap (B = 2000)"


def test_bca_of_a_non_finite_statistic_has_no_interval():
    e = stats.bca_ci(np.arange(5.0), lambda d: float("nan"))
    assert e is not None and math.isnan(e.value) and e.lo is None and e.hi is None and e.n == 5


def test_mean_interval_of_two_values_is_finite():
    e = stats.mean_ci([1.0, 3.0])
    half = 12.706204736174698 * math.sqrt(2.0) / math.sqrt(2)           # t(0.975, 1) · s / √n, s = √2
    assert e.lo == pytest.approx(2.0 - half) and e.hi == pytest.approx(2.0 + half)


def test_quantile_interval_default_is_the_median():
    x = np.random.default_rng(9).normal(size=31)
    a, b = stats.quantile_ci(x), stats.median_ci(x)
    assert (a.value, a.lo, a.hi) == (b.value, b.lo, b.hi)


def test_bca_degenerate_cases():
    assert stats.bca_ci(np.ones(10), np.mean).lo == 1.0 and stats.bca_ci(np.ones(10), np.mean).hi == 1.0
    two = stats.bca_ci(np.array([1.0, 2.0]), np.mean)
    assert two.lo == -math.inf and two.hi == math.inf
    assert stats.bca_ci(np.array([]), np.mean).value is None
    rows = np.column_stack([np.arange(20.0), 2 * np.arange(20.0) + 1])     # rows resampled jointly
    e = stats.bca_ci(rows, lambda r: float(np.corrcoef(r[:, 0], r[:, 1])[0, 1]) if np.ptp(r[:, 0]) else np.nan, B=200)
    assert e.value == pytest.approx(1.0) and e.lo == pytest.approx(1.0)


def test_loglog_slope():
    x = np.array([1.0, 10.0, 100.0, 1000.0])
    assert stats.loglog_slope(x, 3 * x ** 0.7) == pytest.approx(0.7)
    assert stats.loglog_slope(x, 5 * np.ones(4)) == pytest.approx(0.0)
    assert stats.loglog_slope(x, 2 / x) == pytest.approx(-1.0)
    assert stats.loglog_slope([1.0, 1.0], [1.0, 2.0]) is None
    assert stats.loglog_slope([1.0], [1.0]) is None
    assert stats.loglog_slope([1.0, 2.0], [1.0, 0.0]) is None
    assert stats.loglog_slope([1.0, -2.0], [1.0, 2.0]) is None
    assert stats.loglog_slope([1.0, 2.0], [1.0, float("nan")]) is None
    assert stats.loglog_slope([1.0, 2.0, 3.0], [1.0, 2.0]) is None


def test_slope_over_seeds_uses_the_seed_as_unit():
    xs = {s: {"a": 1.0, "b": 10.0, "c": 100.0} for s in (0, 1, 2)}
    ys = {0: {"a": 1.0, "b": 10 ** 0.9, "c": 100 ** 0.9}, 1: {"a": 2.0, "b": 2 * 10.0, "c": 2 * 100.0},
          2: {"a": 1.0, "b": 10 ** 1.1, "c": 100 ** 1.1, "d": 5.0}}
    e, per = stats.slope_over_seeds(xs, ys)
    assert per[0] == pytest.approx(0.9) and per[1] == pytest.approx(1.0) and per[2] == pytest.approx(1.1)
    assert e.value == pytest.approx(1.0) and e.n == 3 and e.unit == "seeds"
    half = 4.302652729911275 * 0.1 / math.sqrt(3)
    assert e.lo == pytest.approx(1.0 - half) and e.hi == pytest.approx(1.0 + half)


def test_spearman_against_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(3)
    for _ in range(20):
        a, b = rng.integers(0, 5, 12), rng.normal(size=12)
        assert stats.spearman(a, b) == pytest.approx(spearmanr(a, b)[0])
    assert stats.spearman([1, 1, 1], [1, 2, 3]) == 0.0
    assert stats.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_loglog_slope_of_equal_x_has_no_slope():
    """All x equal: no slope (None), not a division by zero."""
    assert stats.loglog_slope([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]) is None
    assert stats.loglog_slope([1.0, 4.0], [3.0, 48.0]) == pytest.approx(2.0)      # 48/3 = 4² → slope 2


def test_loglog_slope_refuses_zero_values():
    assert stats.loglog_slope([0.0, 1.0, 2.0], [1.0, 2.0, 3.0]) is None
    assert stats.loglog_slope([1.0, 2.0, 3.0], [0.0, 2.0, 3.0]) is None


def test_bca_without_one_finite_replicate_has_no_interval():
    """The statistic is finite on the data but on no resample (20 distinct rows: a resample repeats one with
    probability 1 − 20!/20²⁰ ≈ 1 − 2e-8): no replicate, so no interval — not the zero-width one that an empty
    replicate set would otherwise pass through 'every replicate equals the estimate'."""
    x = np.arange(20.0)
    e = stats.bca_ci(x, lambda d: float(d.mean()) if np.unique(d).size == d.size else np.nan, B=50)
    assert e.value == 9.5 and e.lo == -math.inf and e.hi == math.inf


def test_bca_keeps_finite_ends_when_every_replicate_is_below_the_estimate():
    """θ̂ above every replicate (distinct units counted, plus a small continuous part so that the replicates
    differ): the bias correction is clamped to 1 − ½/B and both ends are finite and the reference's."""
    x = np.arange(12.0)
    stat = lambda d: float(len(np.unique(d))) + 1e-3 * float(np.mean(d))     # noqa: E731
    e = stats.bca_ci(x, stat, B=400, seed=1)
    theta, lo, hi, _ = _bca_by_hand(x, stat, 400, 1)
    assert math.isfinite(e.lo) and math.isfinite(e.hi) and e.lo <= e.hi <= e.value
    assert (e.lo, e.hi) == (pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))


def test_bca_with_ties_and_a_constant_jackknife():
    """Ties between replicates and the estimate count half (the median of small integers ties often); a statistic
    whose jackknife values are all equal has acceleration 0 (no division by zero)."""
    x = np.array([1, 2, 2, 3, 3, 3, 4, 4, 5, 9], dtype=float)
    for stat in (np.median, lambda d: float(len(np.unique(d)))):
        e = stats.bca_ci(x, stat, B=300, seed=2)
        theta, lo, hi, _ = _bca_by_hand(x, stat, 300, 2)
        assert (e.value, e.lo, e.hi) == (pytest.approx(theta), pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))


def test_bca_small_samples():
    """One or two units: no interval (−inf, inf) around the estimate; three units: a finite one; none: no value."""
    one = stats.bca_ci(np.array([4.0]), np.mean)
    assert one.value == 4.0 and (one.lo, one.hi) == (-math.inf, math.inf) and one.n == 1
    two = stats.bca_ci(np.array([1.0, 5.0]), np.mean)
    assert (two.lo, two.hi) == (-math.inf, math.inf)
    three = stats.bca_ci(np.array([1.0, 2.0, 7.0]), np.mean, B=200)
    assert math.isfinite(three.lo) and math.isfinite(three.hi) and three.lo <= 10 / 3 <= three.hi
    empty = stats.bca_ci(np.zeros((0,)), np.mean)
    assert empty.value is None and empty.n == 0


def test_empty_inputs_have_zero_units_and_spearman_of_a_constant_is_zero():
    assert stats.mean_ci([]).n == 0
    assert stats.spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == 0.0
    assert stats.spearman([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert stats.spearman([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0]) == pytest.approx(0.8)   # 1 − 6·2/(4·15)


def test_loglog_slope_of_two_points():
    assert stats.loglog_slope([1.0, 2.0], [5.0, 20.0]) == pytest.approx(2.0)
    assert stats.loglog_slope([2.0, 2.0, 4.0], [1.0, 1.0, 8.0]) == pytest.approx(3.0)


def test_bca_keeps_finite_ends_when_every_replicate_is_above_the_estimate():
    """The mirror case: θ̂ below every replicate → the bias correction is clamped to ½/B (the reference's ends)."""
    x = np.arange(12.0)
    stat = lambda d: -float(len(np.unique(d))) - 1e-3 * float(np.mean(d))    # noqa: E731
    e = stats.bca_ci(x, stat, B=400, seed=1)
    theta, lo, hi, _ = _bca_by_hand(x, stat, 400, 1)
    assert math.isfinite(e.lo) and e.value <= e.lo <= e.hi
    assert (e.lo, e.hi) == (pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))


def test_spearman_of_two_points():
    assert stats.spearman([1.0, 2.0], [3.0, 5.0]) == 1.0
    assert stats.spearman([1.0, 2.0], [5.0, 3.0]) == -1.0
