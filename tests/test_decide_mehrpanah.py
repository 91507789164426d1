"""Unit tests of chainlab.papers.mehrpanah.decide with expectations derived here (np.polyfit, scipy's Student t,
order statistics by hand) — the tests scripts/mutation.py runs against every mutant of decide.py."""
import math

import numpy as np
import pytest
from scipy.stats import t as student_t

from chainlab.papers.mehrpanah import decide as D
from chainlab.papers.verdict import Decision, Outcome, part

R, N, U, X = Outcome.REPRODUCED, Outcome.NOT_REPRODUCED, Outcome.INCONCLUSIVE, Outcome.NOT_CHECKED
BETAS = (0.5, 1.0, 3.0, math.inf)


def t_interval(v):
    v = np.asarray(v, dtype=float)
    half = student_t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return v.mean() - half, v.mean() + half


def study(slopes, images=4):
    """{seed: {β: per-image EF}} with mean EF = 0.3 + b_seed·x_β, x = log β (ReLU at log 6 = log(2 · 3))."""
    x = {0.5: math.log(0.5), 1.0: 0.0, 3.0: math.log(3.0), math.inf: math.log(6.0)}
    return {s: {beta: [0.3 + b * x[beta] + d for d in np.linspace(-0.01, 0.01, images)] for beta in BETAS}
            for s, b in enumerate(slopes)}


def test_net_mean_is_the_mean_of_the_finite_values():
    assert D.net_mean([1.0, 2.0, 9.0]) == 4.0                     # median 2
    assert D.net_mean([1.0, float("nan"), 3.0]) == 2.0
    assert D.net_mean([]) is None and D.net_mean([float("nan")]) is None


def test_beta_positions_put_relu_at_twice_the_largest_finite_beta():
    pos = D.beta_positions([0.1, 1.0, 30.0, math.inf])
    assert pos == pytest.approx({0.1: math.log(0.1), 1.0: 0.0, 30.0: math.log(30.0), math.inf: math.log(60.0)})
    assert D.beta_positions([math.inf]) == pytest.approx({math.inf: math.log(2.0)})


def test_linear_slope():
    assert D.linear_slope([0.0, 1.0, 2.0], [1.0, 3.0, 5.0]) == pytest.approx(2.0)
    assert D.linear_slope([1.0, 2.0, 4.0], [1.0, 0.0, 5.0]) == pytest.approx(np.polyfit([1, 2, 4], [1, 0, 5], 1)[0])
    assert D.linear_slope([0.0, 1.0], [1.0, 3.0]) == pytest.approx(2.0)            # two points suffice
    assert D.linear_slope([1.0], [1.0]) is None
    assert D.linear_slope([1.0, 1.0], [1.0, 2.0]) is None
    assert D.linear_slope([1.0, 2.0], [1.0, float("nan")]) is None
    assert D.linear_slope([1.0, 2.0, 3.0], [1.0, 2.0]) is None


def test_beta_trend_is_the_per_seed_slope_on_log_beta_with_a_t_interval():
    est, per = D.beta_trend(study([0.01, 0.02, 0.03]))
    assert per == pytest.approx({0: 0.01, 1: 0.02, 2: 0.03})
    lo, hi = t_interval([0.01, 0.02, 0.03])
    assert (est.value, est.lo, est.hi) == pytest.approx((0.02, lo, hi)) and est.unit == "seeds" and est.n == 3


def test_beta_trend_uses_the_mean_over_images():
    ef = study([0.01])
    ef[0][math.inf] = [0.3 + 0.01 * math.log(6.0) - 1.0, 0.3 + 0.01 * math.log(6.0) + 1.0, 0.3 + 0.01 * math.log(6.0)
                       + 5.0, 0.3 + 0.01 * math.log(6.0) - 5.0]          # same mean, different median
    _, per = D.beta_trend(ef)
    assert per[0] == pytest.approx(0.01)


def test_beta_trend_places_relu_by_the_study_grid_and_skips_seeds_with_one_net():
    ef = {0: {1.0: [0.0], 10.0: [1.0], math.inf: [2.0]}, 1: {1.0: [0.5]}}
    _, per = D.beta_trend(ef)
    x = [0.0, math.log(10.0), math.log(20.0)]
    assert per == pytest.approx({0: np.polyfit(x, [0.0, 1.0, 2.0], 1)[0]})


@pytest.mark.parametrize("slopes,want", [([0.02, 0.025, 0.03], R), ([-0.03, -0.025, -0.02], N), ([-0.01, 0.0, 0.02], U),
                                         ([0.0, 0.0, 0.0], N)])
def test_decide_trend_boundaries(slopes, want):
    p, seeds = D.decide_trend("M1", study(slopes), 0.0)
    assert p.outcome is want and p.relation == "> 0" and p.threshold == "trend"


def test_decide_trend_threshold_and_seed_agreement():
    ef = study([0.01, 0.02, 0.03])
    est = D.decide_trend("M1", ef, 0.0)[0].estimate
    assert (est.lo, est.hi) == pytest.approx(t_interval([0.01, 0.02, 0.03]))
    assert D.decide_trend("M1", ef, est.lo)[0].outcome is U                 # strictly above
    assert D.decide_trend("M1", ef, est.lo - 1e-9)[0].outcome is R
    assert D.decide_trend("M1", ef, est.hi)[0].outcome is N
    slopes = [0.02] * 12 + [-0.01]                    # the interval lies above 0, one seed's own slope does not
    assert t_interval(slopes)[0] > 0
    p, seeds = D.decide_trend("M1", study(slopes), 0.0)
    assert p.outcome is U and seeds[12] is N and seeds[0] is R
    p, seeds = D.decide_trend("M1", study([0.02]), 0.0)
    assert p.outcome is U and seeds == {0: R}           # one seed: no interval


def test_gaps_pair_by_image_prefix():
    ef = {"vanilla": [0.5, 0.6, 0.7], "m": [0.4, 0.4, 0.4], "sg": [0.1]}
    g = D.gaps(ef)
    assert g["m"] == pytest.approx([0.1, 0.2, 0.3]) and g["sg"] == pytest.approx([0.4]) and "vanilla" not in g


def test_gap_parts_decide_on_the_median_with_exact_order_statistics():
    n = 20
    ref = np.ones(n)
    m = np.ones(n)
    m[:3] = 0.0                                       # 3 images with gap 1, 17 with gap 0: mean 0.15, median 0
    (p,) = D.gap_parts({"vanilla": ref, "m": m}, ("m",), 0.0)
    assert p.estimate.value == 0.0 and p.outcome is N and p.estimate.unit == "images"
    m2 = np.ones(n) - np.linspace(0.01, 0.2, n)
    (p,) = D.gap_parts({"vanilla": ref, "m": m2}, ("m",), 0.0)
    d = np.sort(1 - m2)
    assert p.outcome is R and p.estimate.lo == pytest.approx(d[5]) and p.estimate.hi == pytest.approx(d[14])
    (p,) = D.gap_parts({"vanilla": ref, "m": m2}, ("m",), float(d[5]))
    assert p.outcome is U and p.name == "m: median ΔEF" and p.threshold == "gap"


def test_growth_part_is_the_median_per_image_slope_on_log_sigma():
    n = 12
    sig = {"s1": 1e-3, "s2": 1e-2, "s3": 1e-1}
    ef = {"vanilla": np.ones(n)}
    for lab, s in sig.items():                        # ΔEF = 0.05 · log10(σ/1e-3) per image: slope 0.05/ln 10
        ef[lab] = np.ones(n) - 0.05 * math.log10(s / 1e-3)
    p = D.growth_part(ef, sig, 0.0)
    assert p.outcome is R and p.estimate.value == pytest.approx(0.05 / math.log(10))
    flipped = dict(zip(sig, [1e-1, 1e-2, 1e-3]))      # the same maps, σ labels reversed: negative slope
    assert D.growth_part(ef, flipped, 0.0).outcome is N
    assert D.growth_part(ef, {"s1": 1e-3}, 0.0).outcome is U          # one σ: no slope
    assert D.growth_part(ef, {"s1": 1e-3, "s3": 1e-1}, 0.0).outcome is R   # two σ suffice
    ef["s2"] = ef["s2"][:5]                                           # slopes over the images every σ has
    assert D.growth_part(ef, sig, 0.0).estimate.n == 5


def test_faithfulness_and_its_cost():
    a = {"deletion": [0.1, 0.5], "insertion": [0.9, 0.6]}
    assert D.faithfulness(a) == pytest.approx([0.8, 0.1])
    n = 10
    aucs = {"vanilla": {"deletion": np.full(n, 0.2), "insertion": np.full(n, 0.8)},
            "m": {"deletion": np.full(n, 0.4), "insertion": np.full(n, 0.7)},
            "better": {"deletion": np.full(n, 0.1), "insertion": np.full(n, 0.9)}}
    p, q = D.tradeoff_parts(aucs, ("m", "better"), 0.0)
    assert p.outcome is R and p.estimate.value == pytest.approx(0.3) and q.outcome is N
    assert p.name == "m: median faithfulness cost" and p.threshold == "cost"
    aucs["sg"] = {"deletion": np.full(3, 0.2), "insertion": np.full(3, 0.5)}      # on the first 3 images
    (r,) = D.tradeoff_parts(aucs, ("sg",), 0.0)
    assert r.estimate.n == 3 and r.estimate.value == pytest.approx(0.3)


def test_rise_parts_per_mask():
    n = 10
    p, q = D.rise_parts({"conv1": np.linspace(0.01, 0.1, n), "conv2": -np.linspace(0.01, 0.1, n)}, 0.0)
    assert (p.outcome, q.outcome) == (R, N) and p.name == "conv1: median EF rise at the mask" and p.threshold == "rise"
    (z,) = D.rise_parts({"c": np.zeros(n)}, 0.0)
    assert z.outcome is N


def test_grouped_ands_groups_and_shows_beside_parts_uncounted():
    d = D.grouped({"g": [part("a", R)], "h": [part("b", R)], "e": []}, ["note"], beside={"g": [part("c", N)]})
    assert d.outcome is R and d.notes == ("note",)
    assert [p.name for p in d.parts] == ["g · a", "h · b", "g · c (beside, not decided)"]
    assert D.grouped({"g": [part("a", R), part("b", U)]}).outcome is U
    assert D.grouped({"g": [part("a", R)], "h": [part("b", N)]}).outcome is N
    assert D.grouped({}).outcome is X


def test_metric_note():
    assert D.metric_note(Decision(R), Decision(R)) == ""
    note = D.metric_note(Decision(R), Decision(N))
    assert "depends on the EF metric" in note and "reproduced with the authors' EF_code" in note
    assert "not reproduced with our DC-free EF" in note


def test_m1_notes_say_why_the_small_beta_grid_is_missing_and_name_other_missing_nets():
    from chainlab.papers.mehrpanah import protocol as P
    from chainlab.papers.mehrpanah import report as R

    st = {"dropped": [], "ef": {"EF_code": {0: 1, 1: 1}}}
    notes = R.study_notes(st, ["scenes-cnn-softplus0.5", "scenes-cnn-softplus0.1", "scenes-cnn-softplus3-seed2"])
    assert P.SMALL_BETA_PROBE in notes and "chance level" in P.SMALL_BETA_PROBE
    other = [n for n in notes if n.startswith("not shipped")]
    assert other == ["not shipped / no weights: scenes-cnn-softplus3-seed2"]
    assert R.study_notes(st, ["scenes-cnn-softplus3-seed2"]) == other
