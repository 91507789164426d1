"""Claims M1–M3 (Mehrpanah et al.): the verdict code on cases whose answer is known by construction.

Each claim has a negative control — the same verdict code must say "not reproduced" — and, where a case
with a known positive answer can be built without the trained nets, a positive control.  The fake
context serves synthetic nets under the shipped names, so the whole claim function runs.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy.ndimage import gaussian_filter

from chainlab.app.verify import CLAIMS, ORDER, spectral
from chainlab.app.verify.core import Context, Settings
from chainlab.errors import MissingFileError


class FakeContext(Context):
    """A quick-run context whose models are the given nets (by name); every other name has no weights."""

    def __init__(self, nets):
        super().__init__(Settings(quick=True, progress=False))
        self._models.update(nets)

    def model(self, net):
        if net not in self._models:
            raise MissingFileError(f"no weights for {net} in this test")
        return self._models[net]


def blur_net(s, seed=0):
    """x ↦ W x with 2 logits whose weight maps are white noise blurred by a Gaussian of s pixels: ∇ log p_k ∝ w_0 − w_1,
    so the gradient map's EF falls as s grows (a net family whose EF order is known)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((2, 3, 32, 32))
    if s:
        w = gaussian_filter(w, (0, 0, s, s))
    lin = nn.Linear(3 * 32 * 32, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(w.reshape(2, -1) / np.abs(w).max()))
        lin.bias.zero_()
    return nn.Sequential(nn.Flatten(), lin).eval()


BLURS = (4.0, 2.0, 1.0, 0.5, 0.0)        # for β = 1, 3, 10, 30, ∞: smaller β, smoother gradient


def test_m1_reproduced_when_smaller_beta_is_smoother():
    """Positive control: the synthetic family ordered as the claim says."""
    nets = {name: blur_net(s) for name, s in zip(spectral.M1_NETS, BLURS)}
    (v,) = spectral.claim_m1(FakeContext(nets))
    assert v.reproduced is True, v.observed
    assert "Spearman ρ = 1.00" in v.observed and "test acc n/a" in v.observed


def test_m1_negative_control_nets_ordered_the_wrong_way():
    """Negative control: the same nets with the β labels reversed (smaller β = sharper): not reproduced."""
    nets = {name: blur_net(s) for name, s in zip(spectral.M1_NETS, BLURS[::-1])}
    (v,) = spectral.claim_m1(FakeContext(nets))
    assert v.reproduced is False and v.label == "not reproduced", v.observed
    assert "Spearman ρ = -1.00" in v.observed


def test_m1_negative_control_shuffled_beta():
    """Negative control: β assigned to the measured EFs in an order unrelated to the smoothness (ρ ≤ 0)."""
    nets = {name: (b, blur_net(s)) for (name, b), s in zip(spectral.M1_NETS.items(), BLURS)}
    X = np.random.default_rng(0).random((6, 3, 32, 32))
    _, ef, _ = spectral.m1_measure(nets, X, dtype="float64")
    shuffled = dict(zip(ef, [3.0, 30.0, math.inf, 1.0, 10.0]))
    ok, rho, lo, hi = spectral.m1_decide(ef, shuffled)
    assert not ok and rho <= 0


def test_m1_not_checked_without_weights(monkeypatch, tmp_path):
    names = list(spectral.M1_NETS)
    two = FakeContext({n: blur_net(s) for n, s in zip(names, BLURS) if n in (names[0], spectral.RELU_NET)})
    (v,) = spectral.claim_m1(two)                                # the ReLU net and one Softplus net: too few
    assert v.reproduced is None
    ctx = Context(Settings(quick=True, progress=False))
    monkeypatch.setenv("CHAINLAB_DATA", str(tmp_path))          # no weights there
    (v,) = spectral.claim_m1(ctx)
    assert v.reproduced is None and "no weights for" in v.observed


def test_m1_on_the_nets_that_have_weights():
    """Three of five nets (ReLU and two Softplus) are enough; the verdict names the missing ones."""
    names = list(spectral.M1_NETS)
    three = {n: blur_net(s) for n, s in zip(names, BLURS) if n in (names[1], names[3], spectral.RELU_NET)}
    (v,) = spectral.claim_m1(FakeContext(three))
    assert v.reproduced is True and f"missing: {names[0]}, {names[2]}" in v.observed


def small_relu_net(seed=0, positive=False):
    """conv relu conv relu pool conv relu pool fc on (3, 32, 32); ``positive``: |W| and b = 0.5, so every
    pre-activation is > 0 and every ReLU mask is all ones."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    if positive:
        with torch.no_grad():
            for m in net:
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    m.weight.abs_()
                    m.bias.fill_(0.5)
    return net


def test_m2_negative_control_smoothgrad_with_sigma_zero_does_not_smooth():
    """Negative control: SmoothGrad with σ = 0 is the vanilla gradient, ΔEF = 0 exactly: not reproduced."""
    net = small_relu_net(1)
    X = np.random.default_rng(1).random((6, 3, 32, 32))
    rows, delta = spectral.m2_measure(net, X, (0.0,), n_samples=4, net="tiny", authors=False, dtype="float64")
    assert np.array_equal(delta["smoothgrad σ=0"], np.zeros(6))
    ok, d = spectral.m2_decide(delta, (0.0,))
    assert not ok
    assert d["smoothgrad"] == (0.0, 0.0, 0.0) and d["rho"] == (0.0, 0.0, 0.0)


def test_m3_negative_control_masks_that_are_all_ones():
    """Negative control: a ReLU net whose pre-activations are all > 0 (masks = 1): EF cannot rise at a mask."""
    net = small_relu_net(2, positive=True)
    (v,) = spectral.claim_m3(FakeContext({spectral.RELU_NET: net}))
    assert v.reproduced is False, v.observed
    assert "+0.0000" in v.observed and "p = 1" in v.observed


def test_m3_negative_control_a_chain_without_masks():
    """Negative control: without activations the chain has no masks, so no mask step to rise at."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Flatten(),
                        nn.Linear(4 * 32 * 32, 3)).eval()
    rows = spectral.m3_measure(net, np.random.default_rng(2).random((3, 3, 32, 32)), "linear")
    assert rows and not any(r["quantity"] == "EF_mask_rise" for r in rows)
    assert spectral.m3_decide(rows) == (False, {}, 1.0)


def test_statistics():
    assert spectral.sign_test([1.0] * 5) == pytest.approx(1 / 32)
    assert spectral.sign_test([0.0, 0.0]) == 1.0
    assert spectral.sign_test([1.0, -1.0, 2.0, 0.0]) == pytest.approx(0.5)     # 2 of 3 non-zero: P(X ≥ 2) = 4/8
    d = np.random.default_rng(0).normal(1.0, 1.0, 400)
    med, lo, hi = spectral.median_ci(d)
    assert lo < med < hi and lo > 0.7 and hi < 1.3
    rho, lo, hi = spectral.spearman_ci([1, 2, 3], [d, d + 1, d + 2])
    assert rho == lo == hi == 1.0


def test_registered():
    assert [c for c in ORDER if c.startswith("M")] == ["M1", "M2", "M3"]
    assert CLAIMS["M2"].__wrapped__ is spectral.claim_m2      # run on one thread (verdicts independent of threads)
    from chainlab.app import report
    from chainlab.app.report import spectral as figures
    assert figures in report.FIGURE_MODULES and len(figures.FIGURES) == 3


def test_figures_draw_from_the_claims_records(tmp_path):
    import matplotlib.image as mpimg

    from chainlab.app.report import spectral as figures
    X = np.random.default_rng(4).random((3, 3, 32, 32))
    nets = {name: (b, blur_net(s)) for (name, b), s in zip(spectral.M1_NETS.items(), BLURS)}
    rows = spectral.m1_measure(nets, X, dtype="float64")[0]
    rows += spectral.m2_measure(small_relu_net(5), X, (0.1,), n_samples=2, net=spectral.RELU_NET, dtype="float64")[0]
    rows += spectral.m3_measure(small_relu_net(5), X[:1], spectral.RELU_NET)
    for fn in figures.FIGURES:
        png, caption = fn(rows, tmp_path)
        assert mpimg.imread(tmp_path / png).std() > 0.01 and caption
