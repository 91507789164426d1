"""The protocol of Mehrpanah et al.'s claims: nets per role, methods, images and sizes per setting.

Roles:

* the activation study (M1) — ``BETAS``: scenes-cnn with Softplus(β) in place of every ReLU for the authors'
  grid (their small β 0.1 … 0.9, then 1, 3, 10, 30) and ReLU (β = ∞: ``ACTIVATION_RELU`` = ``RELU_NET``), every
  one on the same recipe (scripts/train_scenes.py: lr 0.01, the only rate at which Softplus(β = 1) trains) and from
  several seeds (``<net>-seed<k>``); a net enters only if it trained (held-out accuracy ≥ 0.6, the authors' rule);
* the ReLU net (M2, M3) — ``RELU_NET`` (or the first net the user registered);
* the ablations (M4, ``--extended``): the authors' depth ablation (their SimpleConvNet with d = 1 … 5 blocks,
  ReLU and Softplus β = 1: ``depth-cnn<d>-<act>``) and the l2 ablation (the ReLU scenes-cnn trained with weight
  decay 0 … 1e-2: the weight-norm study nets of Binder et al., and Softplus nets with weight decay where shipped);
* the regularized nets (M5, ``--extended``): a net trained with a penalty (``REGULARIZED``) against its
  unregularized twin, where shipped; else the Softplus nets against the ReLU net.

Methods (M2, on log p_k of the predicted class k as the authors' VG and SmoothGrad; their Captum methods on the
logit): VG; the authors' "GRAD_CAM" = Captum's GuidedGradCam at the last max-pool, nearest upsampling, on the
logit (``AUTHORS_GRADCAM``, their utils.py:198-211) — decided; plain bilinear GradCAM of the last conv block —
beside; SmoothGrad n = 64 at the authors' σ sweep 1e-3, 1e-2, 1e-1 (standardized units; × our pixel std 0.30 in
[0, 1] units), σ = 0.1 standardized = 0.03 here decided.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ...nets import models
from ...studies import AUTHORS_GRADCAM
from ..seeds import family, seed_of

__all__ = ["BETAS", "QUICK_BETAS", "SMALL_BETA_PROBE", "RELU_NET", "ACTIVATION_RELU", "PIXEL_STD", "AUTHORS_SIGMAS", "DECIDED_SIGMA", "ACC_MIN", "methods",
           "sg_label", "Sizes", "sizes", "activation_study", "relu_net", "DEPTHS", "depth_study", "l2_study",
           "REGULARIZED", "DECIDED", "BESIDE", "EXTENDED"]

RELU_NET = "scenes-cnn-relu"
# the ReLU (β = ∞) of the activation study: the ReLU scenes-cnn trained on the Softplus nets' recipe (lr 0.01; the
# weight-norm study's scenes-cnn-wd1e-4 is the same net at lr 0.05)
ACTIVATION_RELU = RELU_NET
SMALL_BETAS = tuple(k / 10 for k in range(1, 10))                  # their SOFTPLUS_B_1 … _9 (utils.py:63-72)
BETAS = {**{f"scenes-cnn-softplus{b:g}": b for b in SMALL_BETAS + (1.0, 3.0, 10.0, 30.0)}, ACTIVATION_RELU: math.inf}
QUICK_BETAS = {n: b for n, b in BETAS.items() if b >= 1.0}
# why the small-β grid does not ship (stated in M1's notes): the one probe, from scripts/train_scenes.py's log
SMALL_BETA_PROBE = ("the authors' small-β grid (β = 0.1 … 0.9) is not shipped: β = 0.5 on β = 1's recipe (lr 0.01, "
                    "the rest as every scenes-cnn) stayed at chance level — loss 2.306, batch accuracy 0.12 after 3 "
                    "of 8 epochs, where β = 1 had reached 1.43 and 0.52 — so the grid does not train on one recipe "
                    "here (the authors train each net until its accuracy passes 0.6).")
PIXEL_STD = 0.30           # std of the pixels of data.test_set("scenes") (0.3004): σ in [0, 1] units = σ_std × 0.30
AUTHORS_SIGMAS = (1e-3, 1e-2, 1e-1)     # their SmoothGrad sweep in standardized units; 0.1 is their final setting
DECIDED_SIGMA = 1e-1
ACC_MIN = 0.6              # the authors train until held-out accuracy > 0.6 (interactive/submission.py:160)
DECIDED = ("guided-gradcam (authors)", f"smoothgrad σ={DECIDED_SIGMA * PIXEL_STD:g}")
BESIDE = ("gradcam",)
DEPTHS = (1, 2, 3, 4, 5)
L2_RELU = {"scenes-cnn-wd0": 0.0, "scenes-cnn-wd1e-4": 1e-4, "scenes-cnn-wd1e-3": 1e-3, "scenes-cnn-wd1e-2": 1e-2}
REGULARIZED = {}           # {penalized net: its unregularized twin} — filled when such nets ship
EXTENDED = {
    "M1": "--extended: 1000 images per net (the authors' num_distinct_images; 64 suffice for a net's mean EF when the "
          "seed is the unit)",
    "M2": "--extended: 500 images (SmoothGrad 200), 32 faithfulness steps and the faithfulness of every method, the "
          "smooth-gradient soft masks beside (SmoothGrad's 64 gradients per image and σ and the 2 × 11 forward "
          "passes per map of deletion/insertion are the default run's largest cost)",
    "M3": "--extended: 64 images, sixt-cifar beside",
}


def sg_label(sigma_std: float) -> str:
    """The label of SmoothGrad at σ (standardized units) in records: σ in [0, 1] units."""
    return f"smoothgrad σ={sigma_std * PIXEL_STD:g}"


def methods(sigmas, n_samples, seed, extended=False) -> tuple[dict, dict]:
    """({label: method spec} on all images, {label: method spec} on the SmoothGrad images) of M2."""
    full = {"vanilla": {"kind": "vanilla"}, "guided-gradcam (authors)": {"kind": "gradcam", **AUTHORS_GRADCAM},
            "gradcam": {"kind": "gradcam"}}
    sg = {sg_label(s): {"kind": "smoothgrad", "sigma": s * PIXEL_STD, "n": n_samples, "seed": seed} for s in sigmas}
    if extended:
        full.update({f"smooth-gradient β={b:g}": {"kind": "rule", "rule": "smooth-gradient", "beta": b,
                                                  "materialize": False} for b in (1.0, 3.0, 10.0, 30.0)})
    return full, sg


@dataclass(frozen=True)
class Sizes:
    """Images per activation-study net (M1: the seed is the unit, the images give each net's mean EF), images of
    the ReLU net for VG/GradCAM/faithfulness (M2: the image is the unit), SmoothGrad images and samples, the
    σ sweep, faithfulness steps, M3 images, whether the small-β grid runs and whether every method's faithfulness
    is measured (default: the decided methods, VG and plain GradCAM only)."""

    m1_images: int
    m2_images: int
    sg_images: int
    sg_samples: int
    sigmas: tuple
    steps: int
    m3_images: int
    all_betas: bool = True
    ablations: bool = False
    all_faithfulness: bool = False


def sizes(s) -> Sizes:
    """The sizes of the setting; a run on a user's net (``s.images``) caps the image counts at its images."""
    if s.quick:
        z = Sizes(6, 6, 6, 8, AUTHORS_SIGMAS[1:], 8, 5, all_betas=False)
    elif s.extended:
        z = Sizes(1000, 500, 200, 64, AUTHORS_SIGMAS, 32, 64, ablations=True, all_faithfulness=True)
    else:
        z = Sizes(64, 48, 16, 64, AUTHORS_SIGMAS, 10, 24)
    if s.images is None:
        return z
    return replace(z, m1_images=s.cap(z.m1_images), m2_images=s.cap(z.m2_images), sg_images=s.cap(z.sg_images),
                   m3_images=s.cap(z.m3_images))


def activation_study(ctx, betas=None) -> tuple[dict, list]:
    """({β: {seed: net name}} of the activation-study nets the run has, [missing names])."""
    betas = (BETAS if sizes(ctx.s).all_betas else QUICK_BETAS) if betas is None else betas
    return _known(ctx, betas)


def relu_net(ctx):
    """The net of M2 and M3: ``RELU_NET`` if the user registered it, else the first registered net, else the
    shipped ``RELU_NET``; None without weights."""
    if ctx.registered:
        return RELU_NET if RELU_NET in ctx.registered else next(iter(ctx.registered))
    return RELU_NET if ctx.shipped(RELU_NET) is not None else None


def depth_study(ctx) -> tuple[dict, list]:
    """({depth: {β: {seed: name}}}, missing) of the depth ablation (ReLU = β ∞, Softplus β = 1)."""
    out, missing = {}, []
    for d in DEPTHS:
        nets = {f"depth-cnn{d}-relu": math.inf, f"depth-cnn{d}-softplus1": 1.0}
        got, miss = _known(ctx, nets)
        missing += miss
        if got:
            out[d] = got
    return out, missing


def l2_study(ctx) -> tuple[dict, list]:
    """({weight decay: {β: {seed: name}}}, missing) of the l2 ablation: the ReLU nets trained with weight decay
    (Binder's study nets) and Softplus nets trained with the same decay where shipped
    (``scenes-cnn-softplus<β>-wd<λ>``)."""
    out, missing = {}, []
    for relu, wd in L2_RELU.items():
        tag = relu.rsplit("-", 1)[1]
        nets = {relu: math.inf, f"scenes-cnn-softplus1-{tag}": 1.0}
        got, miss = _known(ctx, nets)
        missing += miss
        if got:
            out[wd] = got
    return out, missing


def _known(ctx, nets) -> tuple[dict, list]:
    """{β: {seed: name}} of the nets ({name: β}) that the package knows and the run has; a name it does not know
    counts as not shipped.  When the user registered nets, only those (named ``<name>`` / ``<name>-seed<k>``)."""
    if ctx.registered:
        got = {}
        for reg in ctx.registered:
            base = reg.rsplit("-seed", 1)[0] if seed_of(reg) else reg
            if base in nets:
                got.setdefault(nets[base], {})[seed_of(reg)] = reg
        return got, []
    got, missing = {}, []
    for net, beta in nets.items():
        if net not in models.NAMES and net not in ctx.registered:
            missing.append(net)
            continue
        have, miss = family(ctx, net)
        missing += miss
        if have:
            got[beta] = have
    return got, missing
