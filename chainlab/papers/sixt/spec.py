"""The claims of Sixt, Granz, Landgraf (ICML 2020), "When Explanations Lie" (S1–S8), pre-registered.

Text first (../shared/seeds/004, the full paper), the authors' code (github.com/berleon/when-explanations-lie,
cited file:line; notebook lines are lines of the .ipynb file) where the text is silent.

Nets are named by their *role* (the paper's net they stand for): ``sixt-cifar`` the paper's CIFAR net (Fig. 5d's
"small 6-layer network"), ``vgg-cifar`` VGG-16, ``resnet-cifar`` ResNet-50.  A second training seed of a net
(``vgg-cifar-seed1``) has its role's scope; a net the paper never saw (a user's, the quick run's digits nets)
has the scope of :data:`ANY` (every method of the group).

Boundaries: j = 0 is the input, j = k the output of the k-th top-level stage.  *Eligible* boundaries are layer
outputs (j ≥ 1: the input is the explanation itself), have at least :data:`MIN_CHANNELS` channels per location
(|cos| in fewer dimensions is high by chance: d = 1 gives 1 always; the paper: "The jump in cosine similarity for
the input is a result of the input's low dimension of 3 channels") and are not right below a max-pool (the stage taking boundary j is a max-pool: the backward scatter
leaves one of every 2×2 locations per channel non-zero, so the channel vectors are sparse with a support fixed
by the forward pass and their |cos| is inflated — vgg-cifar deconv 0.93 there against 0.63–0.69 elsewhere).
The *decided* boundary is the lowest eligible one (on every shipped net: the output of the first conv, where
the paper's Fig. 5e–g histograms are taken); the maximum over the eligible boundaries is reported beside.
"""
from __future__ import annotations

from ...studies.sixt import DEEPLIFT_PM, PROPORTIONAL_VARIANTS, SIXT_METHODS, SMOOTHGRAD
from ..spec import ClaimSpec, Scope, Threshold, code, ours, paper

__all__ = ["SPECS", "ANY", "MIN_CHANNELS", "LEVEL", "GROUPS", "decided", "beside", "PAPER"]

PAPER = "Sixt et al. 2020"
ANY = "*"               # scope key of nets the paper never saw
MIN_CHANNELS = 8
LEVEL = 0.95            # every interval: 95 % (Fig. 4b's bands: 99 %, drawn as such)

_M = {m.id: m for m in (*SIXT_METHODS, SMOOTHGRAD, *PROPORTIONAL_VARIANTS, *DEEPLIFT_PM)}


def _ids(*groups):
    return tuple(m.id for m in (*SIXT_METHODS, SMOOTHGRAD) if m.group in groups)


GROUPS = {g: _ids(g) for g in ("converging", "excepted", "ablation", "reference", "extra")}
CONVERGING = tuple(i for i in GROUPS["converging"])
REST = GROUPS["excepted"] + GROUPS["reference"]          # LRP-z, DeepLIFT Resc./Rev.C., gradient, SmoothGrad
DEEPLIFT = ("deeplift-rescale", "deeplift-revealcancel")
ABLATION = ("deeplift-ablation",)

# -- the paper's and the authors' exclusions ---------------------------------------------------------------
_PATTERNS_NOT_CIFAR = code("PatternAttr. and PatternNet are run with ['exclude_resnet50', 'exclude_cifar10']",
                           "when_explanations_lie.py:418-421")
_PATTERNS_NOT_RESNET = _PATTERNS_NOT_CIFAR
_DTD_NOT_RESNET = code("DTD is run with ['exclude_resnet50']", "when_explanations_lie.py:415-416")
_A5B4_VGG = paper("LRP α5β4 converges less strongly for VGG-16.", "§4")
_CMP = code("Fig. 5 is drawn for every method but LRP-CMP (selected_attr_names = [n for n in attr_names if not "
            "n.startswith(\"LRP CMP\")]); LRP-CMP is Fig. 6", "cosine_similarity_convergence.ipynb:913")
_CHAINLAB_RESIDUAL = ours("chainlab's own residual rule (relevance split z_t/s(z) at a sum, BatchNorm folded into its "
                          "conv) beside the authors' (αβ at each sum, branches clipped to [0, 1000], BatchNorm an αβ "
                          "layer of its own: monkey_patch_lrp_resnet.py:87-191), which decides")
_SECTION6 = ours("excitation BP and the contrastive methods are discussed in §5 (Discussion), not measured in "
                 "Figs. 4–5 nor in the authors' code: reported, never decided")
_FIG4_VGG = code("the sanity checks run for model_names = ['resnet50', 'vgg16'] (the committed cell: ['vgg16'] only)",
                 "sanity_checks.ipynb:121, :330")
_FIG1_VGG = paper("Class insensitivity of LRP α1β0 on VGG-16.", "Fig. 1 caption")
_DEEPLIFT_PACKAGE = code("(\"DeepLIFT Rev.C.\", \"deep_lift.wrapper\", 'sum', [], "
                         "{'nonlinear_mode': 'reveal_cancel'}), "
                         "(\"DeepLIFT Resc.\", \"deep_lift.wrapper\", 'sum', [], {'nonlinear_mode': 'rescale'}) — "
                         "innvestigate's deep_lift.wrapper runs the deeplift package (kundajelab/deeplift), which "
                         "splits "
                         "each Dense/Conv layer's total input difference by sign and gives both input multipliers one "
                         "value; the ablation is deeplift_resnet.py's cross_mxts=False",
                         "when_explanations_lie.py get_analyser_params; deeplift_resnet.py")
_PM_RULE = ours("DeepLIFT's ± rule (the (+, −) parts carried through the whole net, two multipliers per neuron, "
                "extraction.deeplift_pm, float64): not the authors' rule — reported beside (--extended) with tied and "
                "independent ± injections")
_FIG3_VGG = paper("σ1(A)/σ2(A) > 6 for almost all the VGG-16 patterns (see Figure 3a)", "§2.2")


def _extras(ids=GROUPS["extra"]):
    return {i: (_CMP if i.startswith("lrp-cmp") else _SECTION6) for i in ids}


def _csc_scope(methods_of):
    """Scope of a CSC claim (Fig. 5 nets): decided methods per role, the exclusions beside with their sources."""
    rm = lambda ids, drop: tuple(i for i in ids if i not in drop)  # noqa: E731
    methods = {
        "sixt-cifar": rm(methods_of, ("patternattribution", "patternnet")),
        "vgg-cifar": rm(methods_of, ("lrp-a5b4",)),
        "resnet-cifar": rm(methods_of, ("dtd", "patternattribution", "patternnet")),
        ANY: tuple(methods_of),
    }
    beside = {
        "sixt-cifar": {i: _PATTERNS_NOT_CIFAR for i in ("patternattribution", "patternnet") if i in methods_of},
        "vgg-cifar": {i: _A5B4_VGG for i in ("lrp-a5b4",) if i in methods_of},
        "resnet-cifar": {**{i: _PATTERNS_NOT_RESNET for i in ("patternattribution", "patternnet") if i in methods_of},
                         **{i: _DTD_NOT_RESNET for i in ("dtd",) if i in methods_of}},
    }
    for net in ("sixt-cifar", "vgg-cifar", "resnet-cifar"):
        beside[net] = {**beside[net], **_extras()}
    beside["resnet-cifar"].update({m.id: _CHAINLAB_RESIDUAL for m in PROPORTIONAL_VARIANTS})
    return Scope(methods, beside)


def decided(spec: ClaimSpec, role: str) -> tuple:
    """The method ids a claim is decided on for a net of ``role`` (nets the paper never saw: the :data:`ANY` scope;
    a role the spec leaves out, e.g. sixt-cifar in S5: nothing)."""
    m = spec.scope.methods
    return tuple(m[role]) if role in m else (tuple(m.get(ANY, ())) if role not in spec.scope.beside else ())


def beside(spec: ClaimSpec, role: str) -> dict:
    """{method id: Source} measured on ``role`` but reported beside the verdict (the spec's exclusions)."""
    return dict(spec.scope.beside.get(role, {}))


_FIG5_PROTOCOL = ("5 N(0, I) vectors per image (10 pairs) injected at the output of the final layer (the logits), "
                  "read at every lower boundary, float32 as the authors; per image the median of |cos| of the channel "
                  "vectors over pairs and locations (zero vectors dropped)")
_S57_NETS = "vgg-cifar (VGG-16, Fig. 4) and resnet-cifar (ResNet-50, App. E); sixt-cifar beside"

def _sanity_scope():
    conv = CONVERGING + ABLATION
    rest = REST
    methods = {"vgg-cifar": tuple(i for i in conv + rest if i != "lrp-a5b4"),
               "resnet-cifar": tuple(i for i in conv + rest if i not in ("dtd", "patternattribution", "patternnet")),
               ANY: conv + rest}
    extra = _extras()
    beside_ = {"vgg-cifar": {"lrp-a5b4": _A5B4_VGG, **extra},
               "resnet-cifar": {"dtd": _DTD_NOT_RESNET, "patternattribution": _PATTERNS_NOT_RESNET,
                                "patternnet": _PATTERNS_NOT_RESNET, **extra},
               "sixt-cifar": {i: _FIG4_VGG for i in conv + rest + GROUPS["extra"]}}
    return Scope(methods, beside_)


S1 = ClaimSpec(
    "S1", PAPER,
    "Every modified BP method but LRP-z and DeepLIFT converges: median CSC ≥ 0.99 (Fig. 5, final-layer injection).",
    paper("Except for LRP_z and DeepLIFT, all methods show convergence up to at least 0.99 cosine similarity. "
          "LRP α5β4 converges less strongly for VGG-16.", "§4"),
    "Fig. 5a–d",
    "CSC: |cos| of the channel vectors of two backward signals per location, per image the median over 10 pairs and "
    "the locations, at each boundary",
    "median over images of the per-image medians at the decided boundary: the lowest eligible boundary (≥ 8 "
    "channels, not right below a max-pool; module docstring); the maximum over the eligible boundaries reported "
    "beside",
    "exact order-statistic 95 % interval of the median; unit: images (200, the paper's 'All results were computed "
    "on 200 images')",
    "reproduced iff on every net and for every decided method the interval lies at or above 0.99 (not reproduced "
    "if one lies wholly below; else inconclusive), each training seed separately, the seeds agreeing",
    (Threshold("converges", 0.99, paper("all methods show convergence up to at least 0.99 cosine similarity", "§4")),),
    _csc_scope(CONVERGING),
    protocol=_FIG5_PROTOCOL + "; nets sixt-cifar, vgg-cifar, resnet-cifar; on resnet-cifar the αβ methods (and "
             "LRP-CMP) use the authors' ResNet rule — αβ at each residual sum, each branch's relevance clipped to "
             "[0, 1000], BatchNorm an αβ layer of its own (monkey_patch_lrp_resnet.py:87-191; extract option "
             "residual='authors') — and chainlab's own (z_t/z split, BatchNorm folded) is reported beside")

S2 = ClaimSpec(
    "S2", PAPER,
    "LRP-α1β0 median CSC > 1 − 1e-6 on the small 6-layer network (sixt-cifar).",
    paper("Even on the small 6-layer network, the median CSC is greater than 1-1e-6 for LRP α1β0 (see Figure 5d).",
          "§4"),
    "Fig. 5d",
    "1 − CSC at the input (the end of Fig. 5d's curve), per image the median over pairs and locations",
    "median over images of the per-image medians of 1 − |cos|",
    "exact order-statistic 95 % interval of the median; unit: images",
    "reproduced iff the interval lies below 1e-6; not reproduced iff it lies at or above",
    (Threshold("gap", 1e-6, paper("the median CSC is greater than 1-1e-6", "§4")),),
    Scope({"sixt-cifar": ("lrp-a1b0",)}),
    protocol=_FIG5_PROTOCOL + "; inputs at the training scale [0, 1] decide, the authors' ×255 (raw uint8 CIFAR "
             "pixels, when_explanations_lie.py:196-212) beside; the boundary: ours (the paper reads the number off "
             "Fig. 5d, whose curve ends at the input)")

S3 = ClaimSpec(
    "S3", PAPER,
    "DeepLIFT (Rescale, RevealCancel) does not converge (CSC < 0.99); DeepLIFT Ablation does (≥ 0.99).",
    paper("DeepLIFT is the only tested modified BP method which does not converge to a rank-1 matrix. […] In the "
          "evaluation, we included this variant as DeepLIFT Ablation, and as predicted by the theory, it converges.",
          "§2.2"),
    "Fig. 5a–d",
    "CSC of the DeepLIFT contributions m ⊙ Δh of the deeplift package's rule, which the authors' code runs (the "
    "total Δx of every Dense/Conv layer split by sign, both input multipliers equal: one multiplier m per neuron at "
    "every layer boundary; extraction.deeplift), the N(0, I) vectors injected as the multipliers of the logits, per "
    "image the median over pairs and locations",
    "median over images of the per-image medians at the lowest eligible boundary (as S1)",
    "exact order-statistic 95 % interval of the median; unit: images",
    "group 'not converging' (Rescale, RevealCancel): reproduced iff the interval lies below 0.99; group "
    "'converging' (Ablation): reproduced iff it lies at or above 0.99; every net, each seed, the seeds agreeing",
    (Threshold("deeplift_below", 0.99, paper("Except for LRP_z and DeepLIFT, all methods show convergence up to at "
                                             "least 0.99 cosine similarity", "§4")),
     Threshold("ablation_converges", 0.99, paper("as predicted by the theory, it converges", "§2.2; the 0.99 of §4"))),
    Scope({"sixt-cifar": DEEPLIFT + ABLATION, "vgg-cifar": DEEPLIFT + ABLATION, "resnet-cifar": DEEPLIFT + ABLATION,
           ANY: DEEPLIFT + ABLATION},
          {net: {m.id: _PM_RULE for m in DEEPLIFT_PM} for net in ("sixt-cifar", "vgg-cifar", "resnet-cifar")}),
    protocol=_FIG5_PROTOCOL + "; DeepLIFT as the authors ran it: " + _DEEPLIFT_PACKAGE.text + " ("
             + _DEEPLIFT_PACKAGE.where + "); the ± rule (deeplift-*-pm) with tied and with independent ± injections "
             "(--extended) beside: independent injections excite m⁺ − m⁻, which "
             "propagates through the non-negative |W|ᵀS and converges whatever DeepLIFT does. The paper: 'For DeepLIFT "
             "Ablation, numerical instabilities result in a cosine similarity of 0 for the first layers of the "
             "ResNet-50' (§4) — an artefact of their implementation, not part of the claim")

S4 = ClaimSpec(
    "S4", PAPER,
    "Fig. 3 (data-independent): σ1/σ2 of the patterns A > 6 for almost all layers; W⊙A more rank-1-like than W per "
    "layer (3×3 kernels sliced to the centre tap) and for the inter-layer members T_l.",
    paper("σ1(A)/σ2(A) > 6 for almost all the VGG-16 patterns (see Figure 3a) […] For W ⊙ A, the first singular value "
          "is considerably larger than for the plain weights W. Interestingly, the singular value ratio of inter-layer "
          "matrices shrinks for the plain W matrix. Whereas for PatternAttribution, the ratio increases for some "
          "layers", "§2.2, Fig. 3"),
    "Fig. 3a–c",
    "σ1/σ2 of the ReLU patterns A (full kernels, k·k·c_in × c_out), of W and W⊙A (centre taps; dense layers at the "
    "centre location), of T_l = √Σ_l V_l U_(l+1) √Σ_(l+1) — kernels only, no input",
    "(a) the share of layers with σ1/σ2(A) > 6; (b) the share of layers with σ1/σ2(W⊙A) > σ1/σ2(W); (c) median over l "
    "of σ1/σ2(T_l) for W⊙A divided by that for W",
    "none: deterministic functions of the shipped weights and patterns (no sampling)",
    "reproduced iff (a) ≥ 0.8 and (b) > 0.5 and (c) > 1",
    (Threshold("pattern_ratio", 6.0, paper("σ1(A)/σ2(A) > 6", "§2.2")),
     Threshold("almost_all", 0.8, ours("'for almost all the VGG-16 patterns' read as at least 80 % of the layers")),
     Threshold("wa_layers", 0.5, ours("'considerably larger than for the plain weights W' read as: larger at more than "
                                      "half of the layers (the paper gives no number)")),
     Threshold("t_ratio", 1.0, ours("'the ratio increases for some layers' (W⊙A) against 'shrinks' (W) read as: the "
                                    "median σ1/σ2(T_l) is larger for W⊙A"))),
    Scope({"vgg-cifar": ("patterns",), ANY: ("patterns",)}, {"sixt-cifar": {"patterns": _FIG3_VGG}}),
    protocol="the shipped ReLU patterns (fitted on training scenes by scripts/fit_patterns.py); the per-input chain "
             "version (σ1/σ2 of one image's T_l) with --extended")

S5 = ClaimSpec(
    "S5", PAPER,
    "Random logit (Fig. 4a): the converging methods' maps hardly change when a random logit is explained "
    "(SSIM ≈ 1, here ≥ 0.9), the rest's do (SSIM ≤ 0.8).",
    paper("converging methods produce almost identical saliency maps, independently of the output logit (SSIM very "
          "close to 1). The rest of the field (SSIM between 0.4 and 0.8) produces saliency maps different from the "
          "ground-truth logit's map (see Figure 4a).", "§4"),
    "Fig. 4a",
    "SSIM between the map of the ground-truth label and of a uniformly drawn other logit (the authors' "
    "get_random_target, when_explanations_lie.py:81-82): maps reduced per method (abs-max / sum over channels, "
    "when_explanations_lie.py:399-446), normalized as normalize_sanity (clip at the 99.5th percentile, RectGrad "
    "100th: sanity_checks.ipynb:496-498), 5×5 uniform window, the maximum over the sign flip (ssim_flipped, "
    "when_explanations_lie.py:124-131)",
    "median over images of the per-image SSIM",
    "exact order-statistic 95 % interval of the median; unit: images",
    "group 'converging' (the converging methods and DeepLIFT Ablation): reproduced iff every interval lies at or "
    "above 0.9; group 'rest' (LRP-z, DeepLIFT Resc./Rev.C., gradient, SmoothGrad): iff every interval lies at or "
    "below 0.8; both groups on " + _S57_NETS + "; each seed, the seeds agreeing",
    (Threshold("ssim_converging", 0.9, ours("'SSIM very close to 1' read as a median SSIM of at least 0.9 (the paper "
                                            "gives no number)")),
     Threshold("ssim_rest", 0.8, paper("The rest of the field (SSIM between 0.4 and 0.8)", "§4"))),
    _sanity_scope(),
    protocol="200 test scenes; SmoothGrad as the authors (50 noisy copies, σ = 0.15 × the input range: "
             "when_explanations_lie.py:409-410, 435-436) with --extended (cost, see the verdict)")

S6 = ClaimSpec(
    "S6", PAPER,
    "Thm. 1: products of non-negative matrices converge to rank 1 exponentially fast — σ2/σ1 of the LRP-α1β0 prefix "
    "products P_k shrinks by a factor < 1 per layer; in App. B's simulation the non-negative matrices too.",
    paper("the product of all terms of the sequence converges to a rank-1 matrix […] In the appendix B, we simulate "
          "different matrix properties and find non-negative matrices to converge exponentially fast.",
          "Theorem 1, §2.1"),
    "Thm. 1, App. B",
    "σ2/σ1 of 64 sampled columns of P_k = M_1⋯M_k (LRP-α1β0) for every k; the simulation's 1 − mean |cos| of 32 "
    "vectors after each product (convergence_simulation.ipynb:3, measure_convergence)",
    "per unit the factor q = e^b of the least-squares line log y_k = a + b·k (values ≤ 1e-15 — rank 1 at float "
    "precision — left out); the median over units",
    "exact order-statistic 95 % interval of the median; unit: images for the chains, draws (20) for the simulation",
    "group 'chains': reproduced iff on every net the interval of the factor lies below 1 (not reproduced iff at or "
    "above 1); group 'simulation': the same for the non-negative variants (positive, non-negative, stochastic) "
    "on VGG-16's centre-tap shapes",
    (Threshold("factor", 1.0, paper("converge exponentially fast", "§2.1: a per-layer factor below 1; no rate is "
                                    "given")),
     Threshold("sim_factor", 1.0, paper("find non-negative matrices to converge exponentially fast", "§2.1"))),
    Scope({"sixt-cifar": ("lrp-a1b0",), "vgg-cifar": ("lrp-a1b0",), ANY: ("lrp-a1b0",),
           "simulation": ("positive", "non-negative", "stochastic")},
          {"sixt-cifar": {"gradient": ours("the signed chain of the same net: the theorem does not apply")},
           "vgg-cifar": {"gradient": ours("the signed chain of the same net: the theorem does not apply")}}),
    protocol="the factor per layer is a measure (reported with its interval); the theorem's hypotheses: zero columns "
             "of each layer's matrix counted (the theorem excludes zero columns of the limit), Birkhoff's τ per layer "
             "reported; App. B's variants from the real nets' weights ('ReLU learned', pattern A⊙W) and the α = 1…10 "
             "sweep of αβ matrices reported beside (figure)")

S7 = ClaimSpec(
    "S7", PAPER,
    "Cascading randomization (Fig. 4b): when the first conv layer is randomized (after the dense layers), the "
    "converging methods' maps stay similar (SSIM ≥ 0.9), the rest's do not (≤ 0.8).",
    paper("One group of methods produces similar saliency maps even when convolutional layers are randomized (SSIM "
          "close to 1). Again, the rest of the field is sensitive to parameter randomization. The same clustering can "
          "be observed for ResNet-50 (appendix E, Figure 8).", "§4"),
    "Fig. 4b, App. E",
    "SSIM (as S5, original map flipped) between the map of the original net and of the net with its layers "
    "re-initialized from the top, cumulatively (glorot-uniform, zero bias, BatchNorm reset: the authors' "
    "load_model(load_weights=False) and copy_weights, sanity_checks.ipynb:384)",
    "median over images of the per-image SSIM at the first step that randomizes a conv layer",
    "exact order-statistic 95 % interval of the median; unit: images",
    "groups as S5 on " + _S57_NETS + "; each seed, the seeds agreeing",
    (Threshold("ssim_converging", 0.9, ours("'SSIM close to 1' read as a median SSIM of at least 0.9")),
     Threshold("ssim_rest", 0.8, ours("'Again, the rest of the field is sensitive' refers back to the random-logit "
                                      "range 'between 0.4 and 0.8' (§4): its upper end"))),
    _sanity_scope(),
    protocol="200 test scenes, one seeded draw shared by every method; pattern methods keep the trained patterns "
             "(PatternAttribution the trained A⊙W, as the authors' analyzer)")

S8 = ClaimSpec(
    "S8", PAPER,
    "Class insensitivity (Fig. 1): the LRP-α1β0 maps for the two labels of a two-object scene are nearly identical — "
    "mean |Δ| of the normalized maps ≤ 0.01, and ≤ 0.1 × the gradient's on the same image.",
    paper("Figure 1b-1e show how the saliency maps of LRP α1β0 become class-insensitive. […] (e) Difference (c) - (d), "
          "both normalized to [0,1]. L1-norm of (e) = 0.000371.", "§1, Fig. 1 caption"),
    "Fig. 1b–e",
    "mean over the map's elements of |normalize_abs(map of the left label) − normalize_abs(map of the right label)| "
    "(the paper's 'L1-norm' is this per-element mean: normalize_abs is the authors' normalization at the 99.5th "
    "percentile), per two-object scene; the same for the gradient",
    "median over images of α1β0's per-image mean |Δ|; median over images of the per-image ratio α1β0 / gradient",
    "exact order-statistic 95 % interval of each median; unit: images",
    "reproduced iff both intervals lie at or below their thresholds (not reproduced if either lies wholly above)",
    (Threshold("class_diff", 0.01, ours("the paper's single number 0.000371 (one ImageNet image, 224×224) is no "
                                        "threshold; 0.01 = 1 % of the normalized range")),
     Threshold("class_ratio", 0.1, ours("class-insensitive relative to a class-sensitive map of the same net: at most "
                                        "a tenth of the gradient's difference"))),
    Scope({"vgg-cifar": ("lrp-a1b0",), ANY: ("lrp-a1b0",)},
          {"sixt-cifar": {"lrp-a1b0": _FIG1_VGG}, "resnet-cifar": {"lrp-a1b0": _FIG1_VGG}}),
    protocol="200 two-object test scenes (two glyphs, labels left and right); the other methods beside with --extended")


SPECS = {s.id: s for s in (S1, S2, S3, S4, S5, S6, S7, S8)}

# the groups of each claim: {claim: {group: threshold name}} (a part's threshold names its group)
CLAIM_GROUPS = {
    "S1": {"converging": "converges"},
    "S2": {"α1β0 on the 6-layer net": "gap"},
    "S3": {"not converging": "deeplift_below", "converging": "ablation_converges"},
    "S4": {"patterns A": "almost_all", "W⊙A per layer": "wa_layers", "inter-layer T_l": "t_ratio"},
    "S5": {"converging": "ssim_converging", "rest": "ssim_rest"},
    "S6": {"chains": "factor", "simulation": "sim_factor"},
    "S7": {"converging": "ssim_converging", "rest": "ssim_rest"},
    "S8": {"α1β0": "class_diff", "α1β0 / gradient": "class_ratio"},
}


def method_label(mid: str) -> str:
    return _M[mid].label if mid in _M else mid
