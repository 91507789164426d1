"""Explanations of the spectral study against autograd and captum: log p_k, Softplus chains, GradCAM, SmoothGrad.

* of="logprob": the gradient chain with start e_k − softmax(f(x)) = autograd of log_softmax(f(x))_k;
* Softplus (and SiLU) nets like scenes-cnn (conv, max-pool, BatchNorm variant): gradient chain = autograd
  Jacobian (the activation's derivative as the diagonal);
* studies: batched autograd backend = chain backend; GradCAM = captum LayerGradCam (+ interpolate),
  Guided GradCAM (the authors' "GradCAM") = captum GuidedGradCam; SmoothGrad = the mean of the chains of the
  same noisy copies; σ = 0 is VG.
"""
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as nn
from captum.attr import GuidedGradCam, LayerAttribution, LayerGradCam

import chainlab
from chainlab.studies import AUTHORS_GRADCAM, explanation_spectra, gradcam, smoothgrad, vanilla
from conftest import conv_net, jacobian, randomize_bn, rel_err

S = sys.modules["chainlab.measures.spectral"]


def scenes_like(act="softplus", beta=3.0, batchnorm=False, seed=0):
    """scenes-cnn in miniature: conv [bn] act conv [bn] act pool conv [bn] act pool flatten fc act fc (16×16 input)."""
    torch.manual_seed(seed)

    def a():
        return nn.Softplus(beta=beta) if act == "softplus" else nn.SiLU() if act == "silu" else nn.ReLU()
    layers = []
    for k, spec in enumerate([(3, 4), (4, 4), "M", (4, 6), "M"]):
        if spec == "M":
            layers.append((f"pool{k}", nn.MaxPool2d(2)))
            continue
        cin, cout = spec
        layers.append((f"conv{k}", nn.Conv2d(cin, cout, 3, padding=1)))
        if batchnorm:
            layers.append((f"bn{k}", nn.BatchNorm2d(cout)))
        layers.append((f"act{k}", a()))
    layers += [("flatten", nn.Flatten()), ("fc1", nn.Linear(6 * 4 * 4, 12)), ("actf", a()), ("fc2", nn.Linear(12, 5))]
    net = nn.Sequential(OrderedDict(layers))
    return randomize_bn(net, seed).double().eval()


@pytest.mark.parametrize("act, bn", [("softplus", False), ("softplus", True), ("silu", True)])
def test_smooth_activation_gradient_chain_equals_the_autograd_jacobian(act, bn):
    net = scenes_like(act, 3.0, bn, seed=1)
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    ch = chainlab.extract(net, x, "gradient")
    assert rel_err(ch.to_dense(), jacobian(net, x)) < 1e-10
    kind = "softplus" if act == "softplus" else "silu"
    assert any(r == "winner-take-all" for r in ch.layer_rules)
    masks = [m for m in ch.masks if m is not None]
    assert len(masks) == 4 and all((m > 0).all() for m in masks), kind      # a smooth derivative, never 0


@pytest.mark.parametrize("make", [lambda: conv_net(2), lambda: scenes_like("softplus", 1.0, True, 2)])
def test_logprob_explanation_is_the_autograd_gradient_of_log_softmax(make):
    net = make()
    x = torch.randn(1, 2, 9, 9, dtype=torch.float64) if net[0].in_channels == 2 else torch.rand(1, 3, 16, 16,
                                                                                                dtype=torch.float64)
    ch = chainlab.extract(net, x, "gradient")
    for k in (ch.predicted, (ch.predicted + 1) % ch.n_output):
        xg = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(torch.log_softmax(net(xg), dim=1)[0, k], xg)
        np.testing.assert_allclose(ch.explain(k, of="logprob"), g.numpy(), rtol=1e-10, atol=1e-13)
        p = torch.softmax(net(x), 1)[0].detach().numpy()
        np.testing.assert_allclose(ch.start_vector(k, of="logprob"), np.eye(ch.n_output)[k] - p, atol=1e-14)
    with pytest.raises(chainlab.errors.InputError, match="of='logprob' starts a gradient"):
        chainlab.extract(net, x, "lrp-epsilon").explain(of="logprob")


@pytest.fixture(scope="module")
def relu_net_and_images():
    net = scenes_like("relu", seed=3)
    X = torch.rand(3, 3, 16, 16, dtype=torch.float64).numpy()
    return net, X


def test_batched_autograd_backend_equals_the_chains(relu_net_and_images):
    net, X = relu_net_and_images
    X = X[:1]
    for of in ("logprob", "logit"):
        assert rel_err(vanilla(net, X, of=of), vanilla(net, X, of=of, backend="chain")) < 1e-10
    for kw in ({}, AUTHORS_GRADCAM):        # logprob / logit (the authors' variant)
        assert rel_err(gradcam(net, X, **kw), gradcam(net, X, backend="chain", **kw)) < 1e-10, kw


def test_gradcam_equals_captum(relu_net_and_images):
    net, X = relu_net_and_images
    xt = torch.as_tensor(X)
    t = net(xt).argmax(1)
    # plain GradCAM at the last conv block's output (after its ReLU), bilinear upsampling
    cam = LayerGradCam(net, net.act3).attribute(xt, target=t, relu_attributions=True)
    ref = torch.nn.functional.interpolate(cam, size=(16, 16), mode="bilinear", align_corners=False)
    assert rel_err(gradcam(net, X, of="logit"), ref.detach().numpy()) < 1e-10
    # the authors' "GradCAM": captum GuidedGradCam at model.features[-1] (the last max-pool), nearest
    ggc = GuidedGradCam(net, net.pool4).attribute(xt, target=t)
    assert rel_err(gradcam(net, X, **AUTHORS_GRADCAM), ggc.detach().numpy()) < 1e-10
    assert gradcam(net, X, **AUTHORS_GRADCAM).shape == (3, 3, 16, 16)
    near = LayerAttribution.interpolate(LayerGradCam(net, net.pool4).attribute(xt, target=t, relu_attributions=True),
                                        (16, 16), "nearest")
    assert rel_err(gradcam(net, X, layer="pool4", upsample="nearest", of="logit"), near.detach().numpy()) < 1e-10


def test_guided_gradcam_on_a_softplus_net_uses_the_plain_gradient_as_captum():
    net = scenes_like("softplus", 3.0, seed=4)
    X = torch.rand(2, 3, 16, 16, dtype=torch.float64).numpy()
    xt = torch.as_tensor(X)
    t = net(xt).argmax(1)
    ggc = GuidedGradCam(net, net.pool4).attribute(xt, target=t)
    assert rel_err(gradcam(net, X, **AUTHORS_GRADCAM), ggc.detach().numpy()) < 1e-10
    assert rel_err(gradcam(net, X, backend="chain", **AUTHORS_GRADCAM), ggc.detach().numpy()) < 1e-10


def test_smoothgrad_is_the_mean_of_the_chains_of_its_noisy_copies(relu_net_and_images):
    net, X = relu_net_and_images
    sigma, n, seed = 0.2, 4, 11
    sg = smoothgrad(net, X[:1], sigma=sigma, n=n, seed=seed, dtype="float64")
    rng = np.random.default_rng(seed)                 # the same draws: (images, n, *shape) in one call
    noise = rng.normal(0.0, sigma, size=(1, n) + X.shape[1:])
    for i in range(1):
        k = chainlab.extract(net, X[i:i + 1], "gradient").predicted
        ref = np.mean([chainlab.extract(net, X[i:i + 1] + noise[i, j:j + 1], "gradient").explain(k, of="logprob")[0]
                       for j in range(n)], axis=0)
        assert rel_err(sg[i], ref) < 1e-10, i
    assert np.array_equal(smoothgrad(net, X, sigma=0.0, dtype="float64"), vanilla(net, X))


def test_explanation_spectra_pairs_each_method_with_the_vanilla_gradient(relu_net_and_images):
    net, X = relu_net_and_images
    methods = {"vanilla": {"kind": "vanilla"}, "gradcam": {"kind": "gradcam"},
               "sg": {"kind": "smoothgrad", "sigma": 0.1, "n": 4},
               "soft": {"kind": "rule", "rule": "smooth-gradient", "beta": 2.0}}
    rows, E = explanation_spectra(net, X, methods, net="tiny", keep=True)
    ef = {lab: S.expected_frequency(S.radial_spectrum(e.sum(axis=1))) for lab, e in E.items()}
    for r in rows:
        if r["quantity"] == "delta_EF":
            assert r["value"] == pytest.approx(ef["vanilla"][r["image"]] - ef[r["rule"]][r["image"]])
    assert {r["rule"] for r in rows if r["quantity"] == "delta_EF"} == {"gradcam", "sg", "soft"}
    soft = chainlab.extract(net, X[:1], "smooth-gradient", beta=2.0).explain(of="logprob")[0]
    assert rel_err(E["soft"][0], soft) < 1e-12
    with pytest.raises(chainlab.errors.OptionError, match="option kind of the spectral study must be one of"):
        explanation_spectra(net, X, {"vanilla": {"kind": "vanilla"}, "x": {"kind": "lime"}})


def test_autograd_batches_hold_at_most_the_byte_limit_and_give_the_same_explanations(relu_net_and_images,
                                                                                      monkeypatch):
    """One input of the 16×16 relu net: stage outputs 4·16·16 + 4·16·16 + 4·8·8 + 6·8·8 + 6·4·4 + 12 + 5 = 2801
    float64 values, so an autograd pass holds 2 × 2801 × 8 = 44816 bytes per input (AUTOGRAD_BYTES_PER_OUTPUT = 2).
    A limit of 2.5 inputs' bytes: every batch of VG, GradCAM and SmoothGrad (5 noisy copies of one image split
    2 + 2 + 1) holds at most 2 inputs, some exactly 2, and the explanations equal the unlimited ones."""
    from chainlab.studies import explanations as E

    net, X = relu_net_and_images
    free = {"vg": vanilla(net, X), "cam": gradcam(net, X, **AUTHORS_GRADCAM),
            "sg": smoothgrad(net, X, sigma=0.2, n=5, seed=3, dtype="float64")}
    assert E.AUTOGRAD_BYTES_PER_OUTPUT == 2
    monkeypatch.setattr(E, "AUTOGRAD_BATCH_BYTES", int(2.5 * 2 * 2801 * 8))
    sizes = []
    backward = E.Traced.backward

    def counting(self, X, *a, **k):
        sizes.append(len(X))
        return backward(self, X, *a, **k)

    monkeypatch.setattr(E.Traced, "backward", counting)
    capped = {"vg": vanilla(net, X), "cam": gradcam(net, X, **AUTHORS_GRADCAM),
              "sg": smoothgrad(net, X, sigma=0.2, n=5, seed=3, dtype="float64")}
    assert max(sizes) == 2 and sum(sizes) == 3 + 3 + 3 + 3 * 5, sizes   # VG, GradCAM + its guided BP, SG
    for k in free:
        assert rel_err(capped[k], free[k]) < 1e-12, k
    monkeypatch.setattr(E, "AUTOGRAD_BATCH_BYTES", 1)          # below one input: one input per batch
    sizes.clear()
    assert rel_err(smoothgrad(net, X[:1], sigma=0.2, n=5, seed=3, dtype="float64"), free["sg"][:1]) < 1e-12
    assert sizes == [1] * 5
