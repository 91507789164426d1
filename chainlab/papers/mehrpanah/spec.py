"""Mehrpanah et al. (ICCV 2025), "On the Complexity-Faithfulness Trade-off of Gradient-Based Explanations": the
claims M1, M2, M4, M5 and our hypothesis M3, pre-registered.

Only the abstract is available (seed 002); the authors' code (Amir-Mehrpanah/On-the-Complexity-Faithfulness-
Trade-off-of-Gradient-Based-Explanations-ICCV25, cited as file:line) fixes what the text leaves open: EF =
``(freq * P / P.sum()).mean()`` per image (src/quant_measures_grads.py:46-50), explanations of log p_k for VG and
SmoothGrad, their "GRAD_CAM" = Captum's GuidedGradCam at ``model.features[-1]`` on the logit
(src/utils.py:198-211), EF regressed on log β with ReLU at 2 × the largest finite β (interactive/plots.py:
1009-1021), nets trained until held-out accuracy > 0.6 (interactive/submission.py:160).  Their code measures no
faithfulness: ours is pixel deletion/insertion (:mod:`chainlab.studies.faithfulness`).
"""
from __future__ import annotations

from ..spec import ClaimSpec, Scope, Threshold, code, ours, paper
from . import protocol as P

__all__ = ["SPECS", "TREND", "ACCURACY", "GAP", "GROWTH", "COST", "RISE", "ABSTRACT", "REPO"]

ABSTRACT = "abstract (arXiv 2508.10490; seed 002)"
REPO = "Amir-Mehrpanah/On-the-Complexity-Faithfulness-Trade-off-of-Gradient-Based-Explanations-ICCV25"

TREND = Threshold("trend", 0.0, code(
    "EF of the vanilla gradient regressed on log β (ReLU placed at 2 × the largest finite β); the fitted line "
    "rising with β is the finding (smaller β, smoother gradient)", f"{REPO} interactive/plots.py:1009-1021"))
ACCURACY = Threshold("trained", P.ACC_MIN, code(
    "min_test_acc = [0.6]: a net enters the study once its held-out accuracy exceeds 0.6",
    f"{REPO} interactive/submission.py:160"))
GAP = Threshold("gap", 0.0, paper(
    "Existing methods, such as GradCAM, smooth these explanations by producing surrogate models at the cost of "
    "faithfulness", ABSTRACT))
GROWTH = Threshold("growth", 0.0, ours(
    "SmoothGrad's expectation is the gradient convolved with N(0, σ²I): a larger σ smooths more, so the gap should "
    "grow with σ; the authors plot the spectra per noise scale (interactive/plots.py:520-612) without a stated "
    "trend — the direction is our reading"))
COST = Threshold("cost", 0.0, paper(
    "Existing methods, such as GradCAM, smooth these explanations by producing surrogate models at the cost of "
    "faithfulness", ABSTRACT))
RISE = Threshold("rise", 0.0, ours(
    "our hypothesis that ReLU masks (pointwise products) put the high frequencies into the backward signal: any "
    "rise of EF at the mask step"))

_EF = ("EF per image of the signed channel sum, rank-normalized, radial power spectrum to the corners (L bins): "
       "primary the authors' EF_code = (1/L)·Σ_r f_r P(r)/Σ_r P(r) with the DC bin "
       "(src/quant_measures_grads.py:46-50), beside ours Σ_r f_r P(r)/Σ_r P(r) without it; the same rule decided "
       "on both, a verdict that changes with the metric says so")
_SEEDS = "(every net from ≥ 3 seeds: <net>-seed<k>)"
_BETA_NETS = ", ".join(P.BETAS)

SPECS = {
    "M1": ClaimSpec(
        id="M1", paper="Mehrpanah et al. 2025",
        statement=("The vanilla gradient of a smoother network is less complex: its EF decreases as the Softplus β "
                   "decreases (ReLU = β → ∞ the most complex)."),
        quote=paper("ReLU networks, while prevalent for visual data, have sharp transitions, sometimes relying on "
                    "individual pixels for predictions, making vanilla gradient-based explanations noisy and "
                    "difficult to interpret. [...] we quantify and regularize the contribution of ReLU networks to "
                    "high-frequency information", ABSTRACT),
        figure=f"the authors' EF-against-β plot ({REPO} interactive/plots.py:973-1062); accuracy against β beside "
               "(plots.py:1375-1463)",
        quantity="EF of the vanilla gradient of log p_k (k predicted); " + _EF,
        statistic=("per seed, the least-squares slope of the net's mean EF over its images on log β, ReLU at "
                   "β = 2·max finite β (the authors' regression)"),
        interval="95 % Student t over the per-seed slopes (the seed is the unit)",
        rule=("nets with held-out accuracy below 'trained' are left out (reported); reproduced ⇔ the slope's "
              "interval lies above 'trend' and every seed's own slope does; not reproduced ⇔ the interval lies "
              "wholly at or below it and so does every seed's; otherwise inconclusive"),
        thresholds=(TREND, ACCURACY),
        scope=Scope({net: ("vanilla",) for net in P.BETAS}),
        protocol=(f"nets {_BETA_NETS} {_SEEDS}; the first 64 held-out scenes each (1000 with --extended; 6 with "
                  "--quick on β ≥ 1)")),
    "M2": ClaimSpec(
        id="M2", paper="Mehrpanah et al. 2025",
        statement=("Surrogate smoothing (the authors' GradCAM, SmoothGrad) makes explanations less complex than the "
                   "vanilla gradient — an explanation gap ΔEF > 0, growing with SmoothGrad's σ — at the cost of "
                   "faithfulness."),
        quote=paper("Existing methods, such as GradCAM, smooth these explanations by producing surrogate models at "
                    "the cost of faithfulness. [...] Our analysis characterizes how surrogate-based smoothing distorts "
                    "explanations, leading to an ``explanation gap'' that we formally define and measure for "
                    "different post-hoc methods.", ABSTRACT),
        figure=f"the authors' table of EF per explanation method ({REPO} interactive/plots.py:1508-1538)",
        quantity=("per image x of the ReLU net, paired with its vanilla gradient: ΔEF_m(x) = EF(VG(x)) − EF(m(x)) "
                  "(" + _EF + "); faithfulness F(x) = AUC_insertion − AUC_deletion of p_k when the pixels are "
                  "replaced in the order of the map (largest first) by a fixed baseline — a constant image at the "
                  "per-channel mean of the 2000 held-out scenes — in 10 equal steps (32 with --extended); the cost "
                  "F_VG(x) − F_m(x). The abstract does not define its faithfulness; read as closeness to the vanilla "
                  "gradient it would make the trade-off with ΔEF an identity — hence a measure of the model's own "
                  "response"),
        statistic=("medians over images of ΔEF_m and of the cost; the per-image slope of ΔEF_SG(σ) on log σ over "
                   "σ = 1e-3, 1e-2, 1e-1 standardized (× 0.30, our pixel std)"),
        interval="exact order-statistic 95 % interval of each median (the image is the unit)",
        rule=("reproduced ⇔ for the authors' GradCAM (Captum GuidedGradCam on the logit at the last max-pool, "
              "their utils.py:198-211) and SmoothGrad σ = 0.1 standardized (= 0.03, n = 64) the median ΔEF lies "
              "above 'gap' and the median cost above 'cost' (the trade-off), and the σ slope above 'growth'; not "
              "reproduced ⇔ one of them lies wholly at or below; otherwise inconclusive"),
        thresholds=(GAP, GROWTH, COST),
        scope=Scope({P.RELU_NET: P.DECIDED},
                    {P.RELU_NET: {"gradcam": ours("plain bilinear GradCAM of the last conv block is not the authors' "
                                                  "method (theirs is Captum's GuidedGradCam); reported beside")}}),
        protocol=(f"{P.RELU_NET}, the first 48 held-out scenes (SmoothGrad: the first 16, n = 64 per σ); "
                  "--extended: 500 (200); --quick: 6")),
    "M3": ClaimSpec(
        id="M3", paper="Mehrpanah et al. 2025", kind="hypothesis",
        statement=("(Our hypothesis, not the paper's.) Within a ReLU net, the EF of the backward signal rises at "
                   "every ReLU mask step, taken where the backward pass takes it: after the max-pool's scatter."),
        quote=ours("the abstract says ReLU networks contribute the high frequencies; that the contribution sits at "
                   "the masks is our reading — the authors' code has no per-layer analysis"),
        figure="none (ours)",
        quantity=("EF of the signed channel sum of the gradient chain's backward signal (of log p_k) after a mask "
                  "minus before it, at every ReLU mask (the chain's order: conv → ReLU → max-pool is undone as "
                  "scatter, then mask); primary with the DC bin (the authors' EF_code × L: a mask keeps the size), "
                  "ours without beside; the same masks taken before the scatter (ReLU and max-pool commute) beside"),
        statistic="median over images of the rise, per mask",
        interval="exact order-statistic 95 % interval of each median (the image is the unit)",
        rule=("reproduced ⇔ at every mask the median rise lies above 'rise'; not reproduced ⇔ at some mask it lies "
              "wholly at or below; otherwise inconclusive"),
        thresholds=(RISE,), scope=Scope({P.RELU_NET: ("gradient",)}),
        protocol=f"{P.RELU_NET}, the first 24 held-out scenes (64 with --extended, sixt-cifar beside; 5 with --quick)"),
    "M4": ClaimSpec(
        id="M4", paper="Mehrpanah et al. 2025",
        statement=("M1's relation holds across the authors' ablations: at every depth of their SimpleConvNet and at "
                   "every weight decay, the ReLU net's gradient is more complex than the Softplus (β = 1) net's."),
        quote=paper("Finally, we validate our theoretical findings across different design choices, datasets, and "
                    "ablations.", ABSTRACT),
        figure=f"the authors' depth and l2 ablations ({REPO} interactive/plots.py:292-452, 1063-1123)",
        quantity="as M1, per ablation setting (depth d = 1 … 5; weight decay 0 … 1e-2)",
        statistic="as M1 within each setting (the slope on log β of two nets: the sign of EF(ReLU) − EF(Softplus 1))",
        interval="as M1 (the seed is the unit)",
        rule="reproduced ⇔ M1's rule holds in every setting with nets; not reproduced ⇔ it fails in one; else inconclusive",
        thresholds=(TREND, ACCURACY),
        protocol="--extended only: depth-cnn<d>-relu / -softplus1 (d = 1 … 5), the weight-decay nets; 1000 images"),
    "M5": ClaimSpec(
        id="M5", paper="Mehrpanah et al. 2025",
        statement=("Regularizing the network's contribution to high frequencies (smooth activations, or a "
                   "training-time penalty where such nets ship) lowers the gradient's EF, at an accuracy cost that "
                   "is stated beside."),
        quote=paper("Using this framework, we quantify and regularize the contribution of ReLU networks to "
                    "high-frequency information, providing a principled approach to identifying this trade-off.",
                    ABSTRACT),
        figure="the authors' accuracy-against-β plot (interactive/plots.py:1375-1463)",
        quantity="per image, EF(VG of the unregularized net) − EF(VG of the regularized net) (" + _EF + ")",
        statistic="median over images, per pair (regularized net, its unregularized twin)",
        interval="exact order-statistic 95 % interval of the median (the image is the unit)",
        rule="reproduced ⇔ for every pair the median lies above 'gap'; not reproduced ⇔ for one it lies wholly at or "
             "below; else inconclusive.  The accuracy difference is stated, not decided",
        thresholds=(GAP,),
        protocol="--extended only: the Softplus nets of M1 (seed 0) against the ReLU net, and any shipped penalized net"),
}
