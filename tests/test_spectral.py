"""The spectral measure (Mehrpanah et al. 2025): radial spectra, EF and its variants, ΔEF, per-layer spectra.

Oracles: the authors' own ``spectral_density`` and EF lines, copied verbatim below from their public code
(Amir-Mehrpanah/On-the-Complexity-Faithfulness-Trade-off-of-Gradient-Based-Explanations-ICCV25,
src/quant_measures_grads.py and interactive/plots.py); maps with a known spectrum (a cosine, a checkerboard);
hand-built records; the chain's own operators for the trajectory.
"""
import sys

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from scipy.stats import rankdata

import chainlab
import chainlab.measures.spectral  # noqa: F401  (the module; chainlab.measures.spectral is the function)
from chainlab.errors import InputError, OptionError
from conftest import conv_net

S = sys.modules["chainlab.measures.spectral"]


# -- the authors' code, verbatim (the oracle) ------------------------------------------------------------
def spectral_density(image):
    if image.ndim == 3:
        image = image.squeeze(0)
    ft_image = np.fft.fft2(image)
    ft_magnitude = np.abs(ft_image) ** 2
    ft_magnitude_shifted = np.fft.fftshift(ft_magnitude)
    center = np.array(ft_magnitude_shifted.shape) // 2
    y, x = np.indices(ft_magnitude_shifted.shape)
    r = np.sqrt((x - center[1]) ** 2 + (y - center[0]) ** 2)
    r = r.astype(np.int32)
    radial_sum = np.bincount(r.ravel(), ft_magnitude_shifted.ravel())
    radial_count = np.bincount(r.ravel())
    return radial_sum / radial_count


def rank_normalize_authors(g):
    return rankdata(g.flatten()).reshape(g.shape) / np.prod(g.shape)


def ef_code_authors(P):
    freq = np.linspace(0, 1, len(P))
    return (freq * P / P.sum()).mean()


def ef_plot_authors(x):
    return np.mean((x / x.sum()) * np.arange(len(x)))


# -- maps --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(32, 32), (28, 28), (17, 17), (12, 20)])
def test_radial_spectrum_and_ef_code_equal_the_authors_code(shape):
    rng = np.random.default_rng(0)
    maps = rng.standard_normal((3,) + shape)
    maps[1] = gaussian_filter(maps[1], 2)
    maps[2] = np.round(maps[2])                        # ties
    P = S.radial_spectrum(maps, dc="include")
    for i, m in enumerate(maps):
        ref = spectral_density(rank_normalize_authors(m))
        np.testing.assert_allclose(P[i], ref, rtol=1e-12, atol=1e-9)
        assert S.ef_code(P[i]) == pytest.approx(ef_code_authors(ref), rel=1e-12)
    assert S.ef_figure(P) == pytest.approx(ef_plot_authors(P.mean(axis=0)), rel=1e-12)


def test_number_of_bins_runs_to_the_corners():
    for N in (28, 32, 64, 112, 224):
        _, L, _ = S.radial_bins(N, N)
        assert L == int(np.floor(np.sqrt(2) * N / 2)) + 1


def test_rank_normalization_average_ties_and_its_mean():
    m = np.array([[3.0, -1.0, 3.0], [0.0, 3.0, -1.0]])
    r = S.rank_normalize(m)
    np.testing.assert_allclose(r * 6, [[5, 1.5, 5], [3, 5, 1.5]])
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 9, 7))
    r = S.rank_normalize(x)
    np.testing.assert_allclose(r.mean(axis=(1, 2)), (63 + 1) / (2 * 63))
    assert np.array_equal(np.argsort(r[2].ravel()), np.argsort(x[2].ravel()))     # ascending on signed values


@pytest.mark.parametrize("k", [1, 3, 7, 15])
def test_a_cosine_has_ef_k_over_L_minus_1(k):
    """cos(2πkx/N) has power only at (±k, 0): P(r) is zero off bin k, so EF = k/(L−1) exactly (values as they are)."""
    N = 32
    x = np.arange(N)
    m = np.cos(2 * np.pi * k * x / N)[None, :].repeat(N, 0)
    P = S.radial_spectrum(m, rank=False)
    assert np.count_nonzero(P > 1e-9 * P.max()) == 1 and np.argmax(P) == k
    assert S.expected_frequency(P) == pytest.approx(k / (23 - 1), rel=1e-12)


def test_checkerboard_is_the_highest_frequency_and_a_constant_the_lowest():
    N = 16
    y, x = np.indices((N, N))
    assert S.expected_frequency(S.radial_spectrum((-1.0) ** (x + y))) == pytest.approx(1.0)
    assert S.expected_frequency(S.radial_spectrum(np.full((N, N), 0.3))) == 0.0
    assert np.isnan(S.expected_frequency(S.radial_spectrum(np.zeros((N, N))), empty=np.nan))


def test_blurring_lowers_ef_and_dc_inclusion_only_rescales():
    rng = np.random.default_rng(2)
    noise = rng.standard_normal((32, 32))
    efs = [float(S.expected_frequency(S.radial_spectrum(gaussian_filter(noise, s) if s else noise)))
           for s in (0, 0.7, 1.5, 3)]
    assert all(a > b for a, b in zip(efs, efs[1:])), efs
    Pi = S.radial_spectrum(noise, dc="include")
    Pe = S.radial_spectrum(noise, dc="exclude")
    assert np.array_equal(Pi[1:], Pe[1:]) and Pe[0] == 0
    assert S.expected_frequency(Pi) == pytest.approx(S.expected_frequency(Pe) * Pe.sum() / Pi.sum(), rel=1e-12)
    assert Pi[0] == pytest.approx(((32 * 32 + 1) / 2) ** 2)       # (Σ rank/HW)² with HW = 1024


def test_channel_reductions_and_bad_options():
    e = np.arange(24, dtype=float).reshape(2, 3, 2, 2) - 10
    np.testing.assert_allclose(S.channel_maps(e), e.sum(axis=1))
    np.testing.assert_allclose(S.channel_maps(e, "abs-sum"), np.abs(e).sum(axis=1))
    np.testing.assert_allclose(S.channel_maps(e, "l2"), np.sqrt((e ** 2).sum(axis=1)))
    with pytest.raises(OptionError, match="option reduce of the spectral measure must be one of"):
        S.channel_maps(e, "max")
    with pytest.raises(OptionError, match="option dc of the spectral measure"):
        S.radial_spectrum(e[0, 0], dc="drop")
    with pytest.raises(InputError, match="at least 2×2"):
        S.radial_spectrum(np.zeros((1, 5)))
    with pytest.raises(InputError, match="NaN or infinite"):
        S.rank_normalize(np.array([[np.nan, 1.0], [0.0, 1.0]]))


def test_records_and_the_gap_per_image():
    rng = np.random.default_rng(3)
    sharp = rng.standard_normal((4, 3, 16, 16))
    smooth = np.stack([gaussian_filter(e, (0, 1.5, 1.5)) for e in sharp])
    rows = S.spectral(sharp, net="n", rule="vg", images=[10, 11, 12, 13])
    rows += S.spectral(smooth, net="n", rule="blur", images=[10, 11, 12, 13])
    ef = {(r["rule"], r["image"]): r["value"] for r in rows if r["quantity"] == "EF"}
    for img, e in zip([10, 11, 12, 13], sharp):
        assert ef[("vg", img)] == pytest.approx(float(S.expected_frequency(S.radial_spectrum(e.sum(0)))))
    gap = S.explanation_gap(rows, "vg")
    d = {r["image"]: r["value"] for r in gap if r["quantity"] == "delta_EF"}
    assert set(d) == {10, 11, 12, 13}
    for img in d:
        assert d[img] == pytest.approx(ef[("vg", img)] - ef[("blur", img)]) and d[img] > 0
    summ = {r["quantity"]: r for r in gap if r["image"] is None}
    assert summ["delta_EF_median"]["value"] == pytest.approx(np.median(list(d.values())))
    assert summ["delta_EF_positive"]["value"] == 1.0 and summ["delta_EF_median"]["n_images"] == 4
    assert all(r["measure"] == "spectral" for r in rows + gap)
    table = S.code_gap(rows, "n", "vg")
    code = {(r["rule"], r["image"]): r["value"] for r in rows if r["quantity"] == "EF_code"}
    want = (np.mean([code[("blur", i)] for i in d]) - np.mean([code[("vg", i)] for i in d])) * 1e5
    assert {r["rule"]: r["value"] for r in table}["blur"] == pytest.approx(want) and want < 0


# -- chains: masks, trajectory, per-layer spectra ------------------------------------------------------
def _hooked_pre_activations(net, x):
    """{module path of each ReLU: its input z} by forward hooks (independent of chainlab's tracing)."""
    zs = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: zs.__setitem__(name, inp[0].detach()))
             for name, m in net.named_modules() if isinstance(m, torch.nn.ReLU)]
    net(x)
    for h in hooks:
        h.remove()
    return zs


def test_gradient_chain_masks_are_the_relu_masks_and_the_trajectory_applies_them():
    net = conv_net(1)
    x = torch.randn(1, 2, 9, 9, dtype=torch.float64)
    ch = chainlab.extract(net, x, "gradient")
    zs = _hooked_pre_activations(net, x)
    relu_of = {"conv1": "relu1", "block.conv2": "block.relu2", "conv3": "relu3", "fc1": "relu4"}
    for i, name in enumerate(ch.names):
        if name in relu_of:
            np.testing.assert_array_equal(ch.masks[i], (zs[relu_of[name]].reshape(-1) > 0).numpy().astype(float))
        else:
            assert ch.masks[i] is None
    r = ch.start_vector(of="logprob")
    traj = ch.trajectory(r)
    np.testing.assert_allclose(traj[-1]["signal"], ch.explain(of="logprob").reshape(-1), rtol=1e-12, atol=1e-14)
    outputs = {b["stage"]: b["signal"] for b in traj if b["at"] == "output"}
    for a, b in zip(traj, traj[1:]):
        if b["at"] == "pre-activation":       # the mask step
            np.testing.assert_array_equal(b["signal"], ch.masks[a["stage"]] * a["signal"])
        else:                                 # the linear step: M_s applied to the stage's output signal
            s = a["stage"]
            np.testing.assert_allclose(b["signal"], ch[s] @ outputs[s], rtol=1e-12, atol=1e-14)


def test_masks_survive_the_archive(tmp_path):
    net = conv_net(2)
    x = torch.randn(1, 2, 9, 9, dtype=torch.float64)
    ch = chainlab.extract(net, x, "smooth-gradient", beta=2.0)
    keys = chainlab.archive.write(tmp_path / "a.h5", [ch])
    with chainlab.archive.open(tmp_path / "a.h5") as a:
        back = a.load(keys[0])
    for m0, m1 in zip(ch.masks, back.masks):
        assert (m0 is None and m1 is None) or np.array_equal(m0, m1)


def test_layer_spectra_records_each_boundary_and_the_mask_steps():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Conv2d(4, 5, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(5 * 8 * 8, 6)).double().eval()
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    ch = chainlab.extract(net, x, "gradient")
    ch.meta.update(net="tiny", image=7)
    rows = S.layer_spectra(ch)
    lay = [r for r in rows if r["quantity"] == "EF_layer"]
    assert [(r["layer"], r["at"]) for r in lay] == [
        ("0", "input"), ("0", "pre-activation"), ("0", "output"), ("2", "output"), ("3", "pre-activation"),
        ("3", "output")]
    assert [r["k"] for r in lay] == sorted(r["k"] for r in lay) and all(r["image"] == 7 for r in lay)
    traj = {(b["stage"], b["at"]): b["signal"] for b in ch.trajectory(ch.start_vector(of="logprob"))}
    for r in lay:
        sig = traj[(r["stage"], r["at"])].reshape(tuple(int(v) for v in r["shape"].split("x")))
        ef = S.expected_frequency(S.radial_spectrum(sig), empty=np.nan)
        assert r["value"] == pytest.approx(float(np.nanmean(ef)))
    rises = [r for r in rows if r["quantity"] == "EF_mask_rise"]
    assert [(r["layer"], r["order"]) for r in rises] == [("0", "chain"), ("0", "before-scatter"), ("3", "chain")]
    # before the scatter: the mask at the pool's winners (torch's argmax), applied to the pool's output signal
    z = net[0](x)
    _, idx = torch.nn.functional.max_pool2d(z, 2, return_indices=True)
    at_winners = (z.reshape(1, 4, -1).gather(2, idx.reshape(1, 4, -1)) > 0).double().reshape(-1).numpy()
    sig = at_winners * traj[(1, "output")]
    ef = S.expected_frequency(S.radial_spectrum(sig.reshape(4, 8, 8)), empty=np.nan)
    assert rises[1]["after"] == pytest.approx(float(np.nanmean(ef)))
