"""Sixt et al.'s protocol: the measures against independent references.

References: numpy loops (cosines), scikit-image (SSIM), the authors' own formulas written out as loops
(normalize_sanity, normalize_visual, measure_convergence), brute-force Hilbert diameters, the SVD identity behind
T_l.  The claims' controls (a positive and a negative one per claim and group, through the real measure and
decision code) are in tests/test_controls_sixt.py, the decisions' unit tests in tests/test_decide_sixt.py.
"""
import itertools
import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

import chainlab
from chainlab.measures import convergence as conv
from chainlab.measures.csc import cosine_gaps, csc_summary, pair_list, random_baseline
from chainlab.measures.maps import (bootstrap_median, class_difference, normalize_abs, normalize_sanity,
                                    ssim_flipped, ssim_uniform)
from chainlab.measures.weight_spectra import centre_tap, full_kernel, interlayer_members_full
from chainlab.studies.sixt import SIXT_METHODS



# ---------------------------------------------------------------------------------------------
# measures against references


def test_cosine_gaps_equal_a_loop_over_pairs_and_locations():
    rng = np.random.default_rng(0)
    S = rng.normal(size=(2, 4, 3, 5, 5))
    S[1, 2, :, 1, 3] = 0.0
    g = cosine_gaps(S, (3, 5, 5), pair_list(4, 5))
    for b in range(2):
        for p, (u, v) in enumerate(list(itertools.combinations(range(4), 2))[:5]):
            for loc in range(25):
                a, c = S[b, u].reshape(3, 25)[:, loc], S[b, v].reshape(3, 25)[:, loc]
                if not (a.any() and c.any()):
                    assert np.isnan(g[b, p, loc])
                    continue
                ref = 1 - abs(a @ c) / (np.linalg.norm(a) * np.linalg.norm(c))
                assert abs(g[b, p, loc] - ref) < 1e-14
    s = csc_summary([g], 3)
    assert s["n_dropped"] == int(np.isnan(g).sum()) > 0 and s["baseline"] == random_baseline(3)["median"]
    assert abs(sum(s["hist"]) - 1) < 1e-12


def test_ssim_is_skimage_and_a_sign_flip_is_the_same_explanation():
    rng = np.random.default_rng(1)
    A, B = rng.random((4, 12, 12)), rng.random((4, 12, 12))
    ref = [structural_similarity(a, b, win_size=5, data_range=2.0) for a, b in zip(A, B)]
    np.testing.assert_allclose(ssim_uniform(A, B), ref, atol=1e-12)
    X = rng.normal(size=(3, 12, 12))
    np.testing.assert_allclose(ssim_flipped(X, -X), 1.0, atol=1e-12)
    assert (ssim_flipped(X, rng.normal(size=(3, 12, 12))) < 0.5).all()


def test_normalizations_are_the_authors_formulas():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(3, 8, 8))
    X[2] = np.abs(X[2]) + 0.1                                          # one-signed map: the special case
    for x, n in zip(X, normalize_sanity(X, 99.5)):
        lo, hi = np.percentile(x, 99.5), np.percentile(x, 0.5)
        np.testing.assert_allclose(n, np.clip((x - lo) / (hi - lo), 0, 1), atol=1e-15)
    for x, n in zip(X, normalize_abs(X, 99.5)):
        if (x > 0).all():
            ref = np.abs(x) / np.percentile(np.abs(x), 99.5)
        else:
            vmax, vmin = np.percentile(x, 99.5), np.percentile(x, 0.5)
            ref = np.abs(np.clip(np.where(x >= 0, x / vmax, -x / vmin), -1, 1))
        np.testing.assert_allclose(n, ref, atol=1e-15)
    mean, tot = class_difference(X, X[::-1])
    D = np.abs(normalize_abs(X) - normalize_abs(X[::-1]))
    np.testing.assert_allclose(mean, D.reshape(3, -1).mean(1))
    np.testing.assert_allclose(tot, D.reshape(3, -1).sum(1))


def _authors_normalize_sanity(x, percentile):
    """when_explanations_lie.py:84-97 as written (numpy 0/0 → NaN, np.clip keeps NaN)."""
    vmin = np.percentile(x, percentile)
    vmax = np.percentile(x, 100 - percentile)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.clip((x - vmin) / (vmax - vmin), 0, 1)


def test_a_constant_map_has_no_ssim_as_in_the_authors_code():
    """An all-zero map (the authors' ResNet rule clips the negative relevance of a negative random logit to 0 at
    every residual sum) normalizes to 0/0 in the authors' code: its SSIM is undefined, never a small number that a
    median could decide on."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(3, 12, 12))
    X[1] = 0.0
    X[2] = 2.5                                                          # constant, not zero: also 0/0
    for x, n in zip(X, normalize_sanity(X, 99.5)):
        np.testing.assert_array_equal(np.isnan(n), np.isnan(_authors_normalize_sanity(x, 99.5)))
        np.testing.assert_allclose(n[~np.isnan(n)], _authors_normalize_sanity(x, 99.5)[~np.isnan(n)], atol=1e-15)
    Y = rng.normal(size=(3, 12, 12))
    s = ssim_flipped(Y, X)
    assert np.isfinite(s[0]) and np.isnan(s[1:]).all()
    assert np.isnan(ssim_flipped(X, Y)[1:]).all()
    from chainlab.measures.maps import undefined
    assert undefined(s) == 2 and undefined(s[:1]) == 0


def test_bootstrap_interval_of_the_median_has_the_asymptotic_width():
    v = np.random.default_rng(3).normal(size=2000)
    med, lo, hi = bootstrap_median(v, resamples=4000, level=0.99, seed=0)
    width = 2 * 2.5758 * math.sqrt(math.pi / 2) / math.sqrt(2000)     # 99 % normal interval of the median
    assert lo < 0 < hi and lo < med < hi and abs((hi - lo) / width - 1) < 0.25


def test_decay_fit_recovers_an_exponential_rate():
    k = np.arange(1, 9)
    y = 3 * 0.3 ** k * np.exp(np.random.default_rng(4).normal(scale=0.05, size=k.size))
    f = conv.decay_fit(k, y)
    assert abs(f["rate"] - 0.3) < 0.02 and f["rate_lo"] < 0.3 < f["rate_hi"] and f["r2"] > 0.99


def test_birkhoff_tau_brute_force_and_supports():
    A = np.random.default_rng(5).uniform(0.1, 1, size=(5, 4))
    d = max(math.log(max(A[:, i] / A[:, j]) * max(A[:, j] / A[:, i])) for i in range(4) for j in range(4))
    t = conv.birkhoff_tau(A)
    assert abs(t["delta"] - d) < 1e-12 and abs(t["tau"] - math.tanh(d / 4)) < 1e-12
    B = np.eye(4) + 0.5 * np.eye(4, k=1)                              # local supports, as a conv
    assert conv.birkhoff_tau(chainlab.as_operator(B)) == {"tau": 1.0, "delta": math.inf, "why": "supports differ"}
    z = conv.zero_lines(chainlab.as_operator(np.array([[1.0, 0, 0], [0, 0, 0], [2, 0, 1]])))
    assert (z["zero_rows"], z["zero_columns"]) == (1, 1)


def test_centre_taps_and_interlayer_members():
    rng = np.random.default_rng(6)
    K = rng.normal(size=(5, 4, 3, 3))
    np.testing.assert_array_equal(centre_tap(K), K[:, :, 1, 1].T)
    assert full_kernel(K).shape == (36, 5) and full_kernel(K)[4 * 4 + 2, 3] == K[3, 2, 1, 1]
    D = rng.normal(size=(7, 4 * 6 * 6))
    np.testing.assert_array_equal(centre_tap(D, (4, 6, 6)), D.reshape(7, 4, 6, 6)[:, :, 3, 3].T)
    mats = [rng.normal(size=(3, 5)), rng.normal(size=(5, 4))]
    (T,) = interlayer_members_full(mats)
    U1, s1, _ = np.linalg.svd(mats[0], full_matrices=True)
    _, s2, V2 = np.linalg.svd(mats[1], full_matrices=True)
    pad = lambda s, n: np.diag(np.concatenate([np.sqrt(s), np.zeros(n - s.size)]))  # noqa: E731
    left = U1 @ np.hstack([np.eye(3), np.zeros((3, 2))])              # U_1 √Σ_1 T √Σ_2 V_2 = M_1 M_2
    np.testing.assert_allclose(left @ pad(s1, 5) @ T @ pad(s2, 5) @ np.vstack([V2, np.zeros((1, 4))]),
                               mats[0] @ mats[1], atol=1e-12)


def test_simulation_nonnegative_products_converge_and_gaussian_ones_do_not():
    shapes = ((40, 60), (60, 60), (60, 60), (60, 60), (60, 30), (30, 30))
    sim = conv.convergence_simulation(("vanilla", "non-negative", "positive"), shapes=shapes, draws=3, vectors=8)
    med = {k: np.median(v, 0) for k, v in sim.items()}
    assert med["positive"][-1] < 1e-8 and med["non-negative"][-1] < 1e-5
    assert med["vanilla"][-1] > 0.1


# ---------------------------------------------------------------------------------------------
# the measures of the claims against their definitions (the claims' controls: tests/test_controls_sixt.py)


def test_simulation_relu_clips_after_every_product_and_learned_matrices_are_fixed():
    """The authors' measure_convergence clips after each product with a weight matrix (the first product is the
    identity with the input, convergence_simulation.ipynb:57): our relu variant equals a loop written out here."""
    shapes = ((6, 8), (8, 8), (8, 5))
    sim = conv.convergence_simulation(("vanilla", "relu"), shapes=shapes, draws=1, vectors=4, seed=3)
    g = torch.Generator().manual_seed(3)
    w = torch.randn((4, 6), generator=g, dtype=torch.float32)
    ref = []
    for shp in shapes:
        w = (w @ torch.randn(shp, generator=g, dtype=torch.float32)).clamp(min=0.0)
        U_ = w.double() / w.double().norm(dim=1, keepdim=True)
        C = (U_ @ U_.T).abs()
        i, j = torch.tril_indices(4, 4)
        ref.append(1.0 - float(torch.nanmean(C[i, j])))
    np.testing.assert_allclose(sim["relu"][0, 1:], ref, rtol=1e-5, atol=1e-7)
    eye = [np.eye(a, b) for a, b in shapes]
    fixed = conv.convergence_simulation((), shapes=shapes, draws=3, vectors=4, learned={"eye": (eye, False)})
    assert fixed["eye"].shape == (3, 4)
    with pytest.raises(chainlab.errors.InputError, match="shapes"):
        conv.convergence_simulation((), shapes=shapes, learned={"bad": ([np.eye(3)], False)})


def test_random_logits_are_other_classes_seeded_per_image():
    from chainlab.papers.sixt.measure import random_logits

    y = np.array([0, 3, 9, 3, 5])
    a = random_logits(y, 10, seed=0, ids=np.arange(5))
    assert (a != y).all() and ((0 <= a) & (a < 10)).all()
    b = random_logits(y[2:], 10, seed=0, ids=np.arange(2, 5))          # a chunk of the same images: the same logits
    np.testing.assert_array_equal(a[2:], b)
    draws = random_logits(np.zeros(2000, dtype=int), 10, seed=1, ids=np.arange(2000))
    counts = np.bincount(draws, minlength=10)
    assert counts[0] == 0 and counts[1:].min() > 150                   # uniform over the 9 others


def test_method_table_names_extract_knows():
    names = set(chainlab.extraction.method_names())
    assert {m.rule for m in SIXT_METHODS} <= names
    assert {m.reduce for m in SIXT_METHODS} <= {"absmax", "sum"}


def test_theorem1_and_appendix_figures_leave_out_missing_values(tmp_path):
    """A simulation or prefix record without a value (NaN in records.csv) is not drawn — it once crashed the
    report after a full verify run."""
    from chainlab.papers.sixt import report as report_sixt

    recs = [{"measure": "simulation", "net": "s", "rule": "positive", "quantity": "1-csc", "k": k, "value": v}
            for k, v in ((1, 0.5), (2, None), (2, 0.1))]
    recs += [{"measure": "theorem1", "net": "n", "rule": "lrp-a1b0", "quantity": "sigma2/sigma1", "k": k, "value": v,
              "image": None} for k, v in ((1, 0.5), (1, None), (2, float("nan")), (3, 0.01))]
    png, caption = report_sixt.plot_theorem1(recs, tmp_path)
    assert (tmp_path / "sixt_theorem1.png").exists() and "Thm. 1" in caption
    png, caption = report_sixt.plot_appB(recs, tmp_path)
    assert (tmp_path / "sixt_appB.png").exists() and "App. B" in caption


def test_heatmaps_round_trip_through_the_records():
    from chainlab.papers.sixt.report import decode_map, encode_map

    m = np.random.default_rng(0).normal(size=(6, 5))
    d = decode_map(encode_map(m))
    s = np.percentile(np.abs(m), 99.5)
    np.testing.assert_allclose(d, np.clip(m / s, -1, 1), atol=0.005)


def test_per_image_csc_statistics_by_hand():
    """Median |cos| per image over the non-zero vectors and the counts in Fig. 5e–g's bins, on values worked out by
    hand: odd and even counts, an image whose vectors are all zero."""
    from chainlab.papers.sixt.measure import _per_image_stats

    nan = np.nan
    gaps = np.array([[[0.05, 0.005, nan, 0.5]],          # |cos| 0.95, 0.995, —, 0.5 → median gap 0.05
                     [[0.05, 0.3, nan, nan]],            # |cos| 0.95, 0.7: an even count
                     [[nan, nan, nan, nan]]], dtype=np.float32)
    st = _per_image_stats(gaps)
    np.testing.assert_allclose(st["csc"][:2], [1 - np.float32(0.05), 1 - (np.float32(0.05) + np.float32(0.3)) / 2])
    assert np.isnan(st["csc"][2])
    assert st["n_values"].tolist() == [3, 2, 0] and st["n_dropped"].tolist() == [1, 2, 4]
    assert st["hist"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]]
    # no NaN anywhere (the order statistics by partition): odd and even counts, rows in any order
    odd = _per_image_stats(np.array([[[0.4, 0.1, 0.2]], [[0.3, 0.9, 0.6]]]))
    np.testing.assert_allclose(odd["csc"], [1 - 0.2, 1 - 0.6])
    even = _per_image_stats(np.array([[[0.4, 0.1, 0.2, 0.3]], [[0.0, 0.8, 0.8, 0.1]]]))
    np.testing.assert_allclose(even["csc"], [1 - 0.25, 1 - 0.45])
    assert even["n_values"].tolist() == [4, 4] and even["n_dropped"].tolist() == [0, 0]
    rng = np.random.default_rng(3)
    for width in (1, 2, 7, 10):
        g = rng.random((5, 2, width))
        np.testing.assert_array_equal(_per_image_stats(g)["csc"], 1 - np.median(g.reshape(5, -1), axis=1))


def test_birkhoff_tau_of_a_signed_matrix_is_undefined_even_outside_the_probed_columns():
    """τ is defined for non-negative matrices only: a negative entry in a probed column or (dense path) anywhere
    else raises by default and gives τ = None, why "negative entries" with negative="none"."""
    A = np.random.default_rng(6).uniform(0.1, 1, size=(6, 40))       # one support: the dense path decides
    probed = set(np.unique(np.linspace(0, 39, 16).astype(np.int64)).tolist())
    hidden = min(set(range(40)) - probed)
    for col in (0, hidden):
        B = A.copy()
        B[3, col] = -0.2
        with pytest.raises(chainlab.errors.InputError, match="non-negative"):
            conv.birkhoff_tau(B)
        assert conv.birkhoff_tau(B, negative="none") == {"tau": None, "delta": None, "why": "negative entries"}
    assert conv.birkhoff_tau(A, negative="none")["tau"] == conv.birkhoff_tau(A)["tau"] > 0
    with pytest.raises(chainlab.errors.InputError, match="negative"):
        conv.birkhoff_tau(A, negative="ignore")


def test_s6_hypotheses_of_a_residual_net_leave_tau_undefined_at_its_signed_blocks():
    """LRP-z⁺ splits a residual sum's relevance by z_t / Σ_u z_u, which can be negative: the block's matrix is
    signed (checked on the dense matrix), S6's hypotheses give its τ as None instead of failing the run (a
    torchvision ResNet-50's default run did), and the non-negative layers keep their τ."""
    from chainlab.papers.context import Context, NetEntry, Settings
    from chainlab.papers.sixt import measure as M

    net = chainlab.models.load("resnet-tiny", seed=0).double().eval()
    X = torch.rand((2,) + tuple(net.input_shape[1:]), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ctx = Context(Settings(progress=False))
    ctx.add_net("resnet-tiny", NetEntry(net, X))
    hyp = M.layer_hypotheses(ctx, "resnet-tiny")
    ch = chainlab.extract(net, X[:1], "zplus")
    assert [h["layer"] for h in hyp] == list(ch.names)
    signed = [bool((np.asarray(op.to_dense()) < 0).any()) for op in ch]
    assert any(signed) and not all(signed)
    for h, s in zip(hyp, signed):
        assert (h["tau"] is None and h["tau_why"] == "negative entries") == s, h
