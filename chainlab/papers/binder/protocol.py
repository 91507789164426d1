"""The protocol of Binder et al.'s claims: nets per role, images, rules, perturbations and sizes per setting.

Roles:

* the weight-norm study — ``STUDY``: one architecture (scenes-cnn) trained with weight decay 0, 1e-4, 1e-3,
  1e-2 and with BatchNorm, every one from several seeds (``<net>-seed<k>``, :func:`chainlab.papers.seeds.family`);
  the covariate of every trend is Π_l ‖W_l‖_∞ (BatchNorm folded), the a-priori gradient constant;
* the controlled net — ``CONTROLLED`` (or the first net the user registered): its Linear/Conv2d weights
  multiplied by c ∈ ``SCALES`` with everything else kept (W_l → c·W_l, biases and BatchNorm untouched), so
  that Π‖W_l‖_∞ moves by c^L and nothing else was chosen; and its function-preserving rescaling
  (W_l → c·W_l, W_{l+1} → W_{l+1}/c, ``RESCALE_C``), reported beside;
* ``--quick``: the digits nets — one net per architecture, so the trained-net groups are not checked there;
  digits-mlp is the controlled net.

Rules: the gradient, z⁺ (LRP-α1β0) and α2β1 (the LRP-β rules of the claim) and LRP-ε at ε = 0.1, 0.01, 0.001;
``--extended`` adds w², flat and gradient × input beside (rules with a-priori constants, no claim).
Perturbations of B3 (their supports bound the copies of an average): SmoothGrad σ = 0.15 (support: the data
box) and brightness ±0.2.  Images: the prefix of the run's fixed held-out set (``ctx.images``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ...studies import rule_label
from ..seeds import family, seed_of

__all__ = ["STUDY", "QUICK", "CONTROLLED", "RULES", "BETA", "DEPENDENT", "EPSILONS", "PERTURBATIONS", "SCALES",
           "RESCALE_C", "Sizes", "sizes", "measured_rules", "normed_rules", "measures_rescaling",
           "measured_perturbations", "rule_table", "study", "controlled_net", "EXTRA_RULES", "EXTENDED"]

STUDY = ("scenes-cnn-wd0", "scenes-cnn-wd1e-4", "scenes-cnn-wd1e-3", "scenes-cnn-wd1e-2", "scenes-cnn-bn")
QUICK = ("digits-mlp", "digits-cnn")
CONTROLLED = "scenes-cnn-wd1e-4"
QUICK_CONTROLLED = "digits-mlp"
EPSILONS = (0.1, 0.01, 0.001)
RULES = {rule_label(r): r for r in [("gradient", {}), ("zplus", {}), ("alpha-beta", {"alpha": 2.0, "beta": 1.0})]
         + [("lrp-epsilon", {"epsilon": e}) for e in EPSILONS]}
EXTRA_RULES = {rule_label(r): r for r in [("wsquare", {}), ("flat", {}), ("gradient-x-input", {})]}
BETA = ("zplus", "alpha2-beta1")                              # LRP-β: the claim's independent constants
DEPENDENT = ("gradient",) + tuple(rule_label(("lrp-epsilon", {"epsilon": e})) for e in EPSILONS)
PERTURBATIONS = (("smoothgrad", 0.15), ("brightness", 0.2))
SCALES = (0.5, 1.0, 2.0)                                      # W → c·W: Π‖W_l‖_∞ × c^L
RESCALE_C = 4.0                                               # (c, 1/c) on consecutive layers: a power of two
EXTENDED = ("--extended adds (not in the default run's ≈ 60 s budget): 8 images per study net and 12 for the "
            "controlled net; the averages study (e(N) against N for SmoothGrad/brightness copies, the fitted "
            "constant beside B3 — the premise and the −½ rate are identities, tested, so no verdict needs it; "
            "≈ 150 ms per copy × 144 copies × rules × nets); σ1 bounds of the study nets (no verdict rests on them); "
            "w², flat and gradient × input beside")


@dataclass(frozen=True)
class Sizes:
    """How much work: test images per study net (the seed is the unit: a few images give each net's median),
    images of the controlled net (the image is the unit there: ≥ 6 for a 95 % order-statistic interval of the
    median; the function-preserving rescaling uses the same images), whether the averages study runs
    (``--extended``) and on how many images, the extra rules, the nets with σ1 bounds."""

    images: int
    controlled_images: int
    averages: bool = False
    averages_images: int = 0
    extra_rules: bool = False
    sigma_bounds: tuple = ()


def measured_rules(s, extra: bool = False) -> tuple:
    """The labels of the rules a run measures: RULES (and EXTRA_RULES with ``extra``); a run that decides B1 and
    neither B2 nor B3 (``s.claims``, a user's ``--claims``) only the LRP-β rules B1 decides on and the gradient,
    whose Π‖W_l‖_∞ is B1's axis.  :func:`rule_table` gives their (rule, options)."""
    labels = tuple(RULES) + (tuple(EXTRA_RULES) if extra else ())
    if not _decides(s, "B2", "B3"):
        labels = tuple(k for k in labels if k in ("gradient",) + BETA)
    return labels


def _decides(s, *ids) -> bool:
    """Whether the run decides one of the claims ``ids`` (every claim when ``s.claims`` is None: no --claims)."""
    claims = getattr(s, "claims", None)
    return claims is None or bool(set(ids) & set(claims))


def normed_rules(s, labels) -> tuple:
    """The labels among ``labels`` whose bound constant c_norm1 = Π_l ‖M_l(x)‖₁ the run computes — the costly
    quantity (a residual block's ‖M‖₁ multiplies the block out): every rule, except in a run that decides B1 and
    neither B2 nor B3, where the gradient is measured for its Π‖W_l‖_∞ (B1's axis) only and B1 reads the LRP-β
    rules' c_norm1 alone (:func:`measured_rules`)."""
    if not _decides(s, "B2", "B3"):
        return tuple(k for k in labels if k in BETA)
    return tuple(labels)


def measures_rescaling(s) -> bool:
    """Whether the run measures the controlled net's function-preserving rescaling: read by B2's report only (beside
    the verdict), so not in a run whose ``--claims`` leave B2 out."""
    return _decides(s, "B2")


def measured_perturbations(s) -> tuple:
    """The perturbations whose support constants the run measures: ``PERTURBATIONS`` (B3's quantity, read by B3's
    verdict, report and figure alone), none in a run whose ``--claims`` leave B3 out."""
    return PERTURBATIONS if _decides(s, "B3") else ()


def rule_table(labels) -> dict:
    """{label: (rule, options)} of rule labels of RULES and EXTRA_RULES."""
    return {k: {**RULES, **EXTRA_RULES}[k] for k in labels}


def sizes(s) -> Sizes:
    """The sizes of the setting; a run on a user's net (``s.images``) caps the image counts at its images."""
    if s.quick:
        z = Sizes(images=4, controlled_images=6, sigma_bounds=QUICK)
    elif s.extended:
        z = Sizes(images=8, controlled_images=12, averages=True, averages_images=2, extra_rules=True,
                  sigma_bounds=STUDY)
    else:
        z = Sizes(images=4, controlled_images=6)
    if s.images is None:
        return z
    return replace(z, images=s.cap(z.images), controlled_images=s.cap(z.controlled_images),
                   averages_images=s.cap(z.averages_images))


def study(ctx) -> tuple[dict, list]:
    """({net: {seed: name}} of the weight-norm study nets the run has, [missing names]); empty with ``--quick``.
    When the user registered nets, the study is the registered nets named after it (``<net>`` and
    ``<net>-seed<k>`` for a net of ``STUDY``) — never a mix with the shipped ones."""
    if ctx.s.quick:
        return {}, []
    if ctx.registered:
        nets = {}
        for name in ctx.registered:
            base = name.rsplit("-seed", 1)[0] if seed_of(name) else name
            if base in STUDY:
                nets.setdefault(base, {})[seed_of(name)] = name
        return nets, []
    nets, missing = {}, []
    for net in STUDY:
        have, miss = family(ctx, net)
        missing += miss
        if have:
            nets[net] = have
    return nets, missing


def controlled_net(ctx):
    """The net of the controlled experiment: a net the user registered, else ``CONTROLLED`` (digits-mlp with
    ``--quick``); None when its weights are missing."""
    if ctx.registered:
        return CONTROLLED if CONTROLLED in ctx.registered else next(iter(ctx.registered))
    name = QUICK_CONTROLLED if ctx.s.quick else CONTROLLED
    return name if ctx.shipped(name) is not None else None
