"""Benchmark: EF of 200 test scenes × 4 explanation methods in one run, against the obvious alternative.

Methods: vanilla gradient (of log p_k), GradCAM (last conv block, bilinear), the authors' "GradCAM"
(Captum GuidedGradCam at the last max-pool, nearest), SmoothGrad (σ = 0.1, n = 64).  For each:

* chainlab: :func:`chainlab.studies.explanation_spectra` — batched autograd through the traced stages
  (float32, batches of 128 images / 256 noisy copies) and the batched spectral measure (all maps ranked,
  transformed and binned at once);
* alternative: what one writes first, as in the authors' code — per image torch autograd on the model
  (SmoothGrad: one batch of its n noisy copies), Captum ``LayerGradCam`` / ``GuidedGradCam`` per image, then
  per map the authors' numpy ``rankdata`` + ``spectral_density`` + EF loop;
* chains: the definition — one ``extract(model, x, "gradient", materialize=False)`` per image, VG =
  ``chain.explain(of="logprob")``, GradCAM from the chain suffix ``chain.apply(r, start=i+1)`` — on the first
  ``--chain-images`` images (it is much slower).

Printed: seconds and images/s per method and pipeline, the ratio, and the largest per-image EF difference
between the pipelines (same maps up to float32 rounding for VG/GradCAM; SmoothGrad draws different noise, so
its medians are compared).  Run (2 threads):

    CHAINLAB_DATA=... python scripts/bench_spectral.py [--net scenes-cnn-relu] [--images 200] [--n 64] [--output FILE]

``--smoke``: 4 images, SmoothGrad n = 4, one image through the chains (seconds).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from captum.attr import GuidedGradCam, LayerGradCam
from scipy.stats import rankdata

import _bench
import chainlab
from chainlab import measures as S
from chainlab.nets import data
from chainlab.studies import AUTHORS_GRADCAM, Traced, explanation_spectra, gradcam
from chainlab.studies.explanations import default_layer, features_end


# -- the authors' per-map measure (src/quant_measures_grads.py, src/compute_grad.py) -------------------
def spectral_density(image):
    ft = np.fft.fftshift(np.abs(np.fft.fft2(image)) ** 2)
    center = np.array(ft.shape) // 2
    y, x = np.indices(ft.shape)
    r = np.sqrt((x - center[1]) ** 2 + (y - center[0]) ** 2).astype(np.int32)
    return np.bincount(r.ravel(), ft.ravel()) / np.bincount(r.ravel())


def ef_loop(expl):
    """EF (DC excluded) per map, one map at a time as the authors: signed channel sum, rank, spectrum."""
    out = []
    for e in expl:
        m = e.sum(axis=0)
        rank = rankdata(m.flatten()).reshape(m.shape) / m.size
        P = spectral_density(rank)
        P[0] = 0.0
        f = np.linspace(0, 1, len(P))
        out.append((f * P).sum() / P.sum() if P.sum() > 0 else 0.0)
    return np.asarray(out)


def module_of(model, traced, i):
    """The torch module whose output is stage i's output (its activation, if any)."""
    return model.get_submodule(traced.stages[i].members[-1])


def alternative(model, X, method, n, sigma, seed):
    """Per-image explanations the straightforward way (torch autograd / Captum on the model)."""
    tr = Traced(model, "float32")
    out = []
    rng = np.random.default_rng(seed)
    for x in X:
        xt = torch.as_tensor(x[None], dtype=torch.float32)
        k = int(model(xt).argmax())
        if method == "vanilla":
            xg = xt.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(torch.log_softmax(model(xg), 1)[0, k], xg)
            out.append(g[0].numpy())
        elif method == "smoothgrad":
            noisy = (xt + torch.as_tensor(rng.normal(0, sigma, (n,) + x.shape), dtype=torch.float32)).requires_grad_(True)
            (g,) = torch.autograd.grad(torch.log_softmax(model(noisy), 1)[:, k].sum(), noisy)
            out.append(g.mean(0).numpy())
        elif method == "gradcam":
            lp = torch.nn.Sequential(model, torch.nn.LogSoftmax(1))
            cam = LayerGradCam(lp, module_of(model, tr, default_layer(tr))).attribute(xt, target=k, relu_attributions=True)
            out.append(torch.nn.functional.interpolate(cam, size=x.shape[1:], mode="bilinear",
                                                       align_corners=False)[0].detach().numpy())
        else:
            ggc = GuidedGradCam(model, module_of(model, tr, features_end(tr)))
            out.append(ggc.attribute(xt, target=k)[0].detach().numpy())
    return np.asarray(out, dtype=np.float64)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--net", default="scenes-cnn-relu")
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--n", type=int, default=64, help="SmoothGrad samples")
    p.add_argument("--sigma", type=float, default=0.1)
    p.add_argument("--chain-images", type=int, default=10)
    _bench.add_options(p)
    a = p.parse_args(argv)
    if a.smoke:
        a.images, a.n, a.chain_images = 4, 4, 1
    with _bench.printed_to(a.output):
        run(a)


def run(a):
    torch.set_num_threads(_bench.threads())
    model = chainlab.models.load(a.net)
    X = data.load_scenes("test", a.images, seed=0).x.astype(np.float64)
    methods = {"vanilla": {"kind": "vanilla"},
               "gradcam": {"kind": "gradcam"},
               "guided-gradcam (authors)": {"kind": "gradcam", **AUTHORS_GRADCAM},
               "smoothgrad": {"kind": "smoothgrad", "sigma": a.sigma, "n": a.n}}
    print(f"{a.net}: {a.images} test scenes, SmoothGrad σ = {a.sigma}, n = {a.n}; torch threads {torch.get_num_threads()}")
    print(f"{'method':26s} {'chainlab s':>11s} {'img/s':>8s} {'alternative s':>14s} {'img/s':>8s} {'ratio':>6s}  "
          f"EF agreement")
    tot_a = tot_b = 0.0
    for label, spec in methods.items():
        t = time.perf_counter()
        rows = explanation_spectra(model, X, {label: spec}, reference=None, dtype="float32")
        ta = time.perf_counter() - t
        ef_a = np.array([r["value"] for r in sorted((r for r in rows if r["quantity"] == "EF"),
                                                    key=lambda r: r["image"])])
        kind = "guided" if "authors" in label else spec["kind"]
        t = time.perf_counter()
        ef_b = ef_loop(alternative(model, X, kind, a.n, a.sigma, 1))
        tb = time.perf_counter() - t
        tot_a, tot_b = tot_a + ta, tot_b + tb
        agree = (f"median EF {np.median(ef_a):.4f} vs {np.median(ef_b):.4f} (different noise)" if kind == "smoothgrad"
                 else f"max |ΔEF| {np.abs(ef_a - ef_b).max():.2g}")
        print(f"{label:26s} {ta:11.2f} {a.images / ta:8.1f} {tb:14.2f} {a.images / tb:8.1f} {tb / ta:6.3g}x  {agree}",
              flush=True)
    print(f"{'all methods':26s} {tot_a:11.2f} {a.images / tot_a:8.1f} {tot_b:14.2f} {a.images / tot_b:8.1f} "
          f"{tot_b / tot_a:6.3g}x")

    # the spectral measure alone, on the vanilla maps
    E = np.random.default_rng(0).standard_normal((a.images, 3, 32, 32))
    t = time.perf_counter()
    ef1 = S.expected_frequency(S.radial_spectrum(S.channel_maps(E)))
    t1 = time.perf_counter() - t
    t = time.perf_counter()
    ef2 = ef_loop(E)
    t2 = time.perf_counter() - t
    print(f"spectral measure only ({a.images} maps): batched {t1 * 1e3:.1f} ms, per-map loop {t2 * 1e3:.1f} ms "
          f"({t2 / t1:.3g}x), max |ΔEF| {np.abs(ef1 - ef2).max():.2g}")

    # chains: the definition, per image
    k = min(a.chain_images, a.images)
    tr = Traced(model, "float64")
    t = time.perf_counter()
    vg = []
    for x in X[:k]:
        ch = chainlab.extract(model, x[None], "gradient", materialize=False)
        vg.append(ch.explain(of="logprob")[0])
    tc = time.perf_counter() - t
    t = time.perf_counter()
    gc_chain = gradcam(model, X[:k], backend="chain", traced=tr)
    tg = time.perf_counter() - t
    ef_c = S.expected_frequency(S.radial_spectrum(S.channel_maps(np.asarray(vg))))
    ef_a = S.expected_frequency(S.radial_spectrum(S.channel_maps(
        chainlab.studies.vanilla(model, X[:k], traced=tr))))
    ef_g = S.expected_frequency(S.radial_spectrum(S.channel_maps(gradcam(model, X[:k], traced=tr))))
    ef_gc = S.expected_frequency(S.radial_spectrum(S.channel_maps(gc_chain)))
    print(f"chains ({k} images, float64, one extraction per image): VG {k / tc:.2f} img/s, GradCAM {k / tg:.2f} img/s; "
          f"max |ΔEF| vs batched float64 autograd: VG {np.abs(ef_c - ef_a).max():.2g}, "
          f"GradCAM {np.abs(ef_gc - ef_g).max():.2g}")


if __name__ == "__main__":
    main()
