"""Binder et al. (2025), "Value bounds and convergence analysis for averages of LRP attributions" (arXiv
2509.08963): the claims B1–B3, pre-registered.

Only the abstract is available (seeds 000/001); it states: LRP-type attributions are products of modified
gradient matrices; component-wise bounds give "multiplicative constants" that "govern the convergence of
empirical means of attributions to expectations of attribution maps" (SmoothGrad, non-geometric
augmentations); "the constants for LRP-beta remain independent of weight norms, a significant distinction
from both gradient-based methods and LRP-epsilon".  The bounds and their constants are derived here
(:mod:`chainlab.measures.bounds`, :mod:`chainlab.studies.ranges`); what the abstract calls a constant is the
multiplier of a bound — decided on the bound's own constant (data-dependent Π‖M_l(x)‖₁ and the a-priori
Π c_l), never on the attribution's largest entry (which is 10⁻²…10⁻⁸ of the bound: reported as tightness).

Identities (algebra, regression tests in tests/test_binder.py, not claims): the Hoeffding premise (no copy
outside the a-priori range) and the −½ rate of an i.i.d. mean; the exact scaling of the gradient constant and
the invariance of the z⁺/α-β constants under W_l → c_l·W_l with biases along; the function-preserving
rescaling; the growth of LRP-ε's bound constant as ε → 0 (|s_ε(z)| = |z| + ε: every column sum grows).
"""
from __future__ import annotations

from ..spec import ClaimSpec, Scope, Threshold, ours, paper
from . import protocol as P

__all__ = ["SPECS", "BAND", "DISTINCTION", "ABSTRACT"]

ABSTRACT = "abstract (arXiv 2509.08963; seeds 000/001)"
QUOTE = ("In particular, our analysis reveals that the constants for LRP-beta remain independent of weight norms, a "
         "significant distinction from both gradient-based methods and LRP-epsilon.")

BAND = Threshold(
    "band", 0.5,
    ours("the midpoint between the two regimes the abstract contrasts: the a-priori LRP-β constants do not involve "
         "the weights (Π c_l = 1 for z⁺, (α+β)^L for α-β: slope 0 against Π‖W_l‖_∞) and the a-priori gradient "
         "constant is Π‖W_l‖_∞ itself (slope 1); a slope nearer 0 than 1 counts as independent"))
DISTINCTION = Threshold(
    "distinction", 0.0,
    paper("a significant distinction from both gradient-based methods and LRP-epsilon", ABSTRACT))

_TREND = ("least-squares slope of log(constant) on log Π_l‖W_l‖_∞ across the 5 weight-norm study nets, per "
          "training seed (each net: the median of its per-image constants); controlled group: per image, the "
          "slope across the scale grid")
_INTERVAL = ("95 % Student t over the per-seed slopes (the seed is the unit); controlled group: exact "
             "order-statistic interval of the median per-image slope (the image is the unit)")
_ROBUST = ("; per rule the interval with all nets, the interval with each net left out and every seed's own slope "
           "must agree (else inconclusive)")
_NETS = ", ".join(P.STUDY)
_PROTOCOL = (f"nets {_NETS} (≥ 3 seeds each: <net>-seed<k>), 4 held-out scenes each (8 with --extended); "
             f"controlled: {P.CONTROLLED} with W_l → c·W_l, c ∈ ({', '.join(f'{c:g}' for c in P.SCALES)}) "
             "(biases and BatchNorm kept), 6 held-out scenes (12 with --extended); --quick: digits-mlp controlled "
             "only, 6 test digits")


def _scope(rules, beside=None):
    return Scope({net: tuple(rules) for net in P.STUDY + (P.CONTROLLED,)}, beside or {})


SPECS = {
    "B1": ClaimSpec(
        id="B1", paper="Binder et al. 2025",
        statement="The constants of LRP-β (z⁺ = α1β0, α2β1) are independent of the weight norms.",
        quote=paper(QUOTE, ABSTRACT), figure="abstract (no figure available)",
        quantity=("c_norm1 = Π_l ‖M_l(x)‖₁, the constant of the componentwise bound ‖R(x)‖_∞ ≤ Π_l ‖M_l(x)‖₁ "
                  "‖r_L‖₁ at a held-out image x, against Π_l ‖W_l‖_∞"),
        statistic=_TREND, interval=_INTERVAL,
        rule=("reproduced ⇔ for z⁺ and α2β1 the slope's interval lies in [−band, band] in the trained-net group "
              "and in the controlled group" + _ROBUST + "; not reproduced ⇔ an interval lies wholly outside; "
              "otherwise inconclusive"),
        thresholds=(BAND,), scope=_scope(P.BETA), protocol=_PROTOCOL),
    "B2": ClaimSpec(
        id="B2", paper="Binder et al. 2025",
        statement=("The constants of the gradient and of LRP-ε (ε = 0.1, 0.01, 0.001) depend on the weight norms, "
                   "a significant distinction from LRP-β."),
        quote=paper(QUOTE, ABSTRACT), figure="abstract (no figure available)",
        quantity="c_norm1 = Π_l ‖M_l(x)‖₁ (as B1) against Π_l ‖W_l‖_∞",
        statistic=("per seed, the slope of the rule minus the mean slope of the LRP-β rules (z⁺, α2β1) of the same "
                   "seed (" + _TREND + ")"),
        interval=_INTERVAL,
        rule=("reproduced ⇔ for the gradient and for LRP-ε at every ε the interval of the slope difference lies "
              "above the distinction threshold, in the trained-net group and in the controlled group" + _ROBUST
              + "; not reproduced ⇔ an interval lies wholly at or below it; otherwise inconclusive.  Beside (not "
              "decided): the growth of the constants as ε → 0 — our derivation, not the abstract's words, and an "
              "identity for the bound's constant (|s_ε(z)| = |z| + ε); the slope in 1/ε of c_norm1 and of C_emp "
              "is reported"),
        thresholds=(DISTINCTION,), scope=_scope(P.DEPENDENT), protocol=_PROTOCOL),
    "B3": ClaimSpec(
        id="B3", paper="Binder et al. 2025",
        statement=("The multiplicative constants that govern the convergence of averages of attributions over "
                   "perturbed copies (SmoothGrad, non-geometric augmentations) are independent of the weight norms "
                   "for LRP-β (z⁺, α2β1), unlike those of the gradient and LRP-ε."),
        quote=paper("As a main result, we apply these component-wise bounds to obtain multiplicative constants. "
                    "These constants govern the convergence of empirical means of attributions to expectations of "
                    "attribution maps. [...] the constants for LRP-beta remain independent of weight norms, a "
                    "significant distinction from both gradient-based methods and LRP-epsilon.", ABSTRACT),
        figure="abstract (no figure available)",
        quantity=("Π_l c_l(S): the a-priori per-layer constants with the layer inputs bounded over the perturbation's "
                  "support S (interval bound propagation) — the factor of the Hoeffding range B = Π_l c_l(S)·F that "
                  "does not involve the logit; the logit's range F/|f_k(x)| is reported beside.  Perturbations: "
                  + ", ".join(f"{p} {lv:g}" for p, lv in P.PERTURBATIONS)
                  + ".  For z⁺, α2β1 and the gradient Π_l c_l(S) is a closed form of the weights (1, 3^L, Π‖W_l‖_∞):"
                  " there the verdict checks the derivation on the nets; LRP-ε's rests on the interval bounds of the "
                  "layer inputs over S"),
        statistic=_TREND + "; per perturbation",
        interval=_INTERVAL,
        rule=("reproduced ⇔ for every perturbation the LRP-β slopes lie in [−band, band] and the gradient's and "
              "LRP-ε's slope differences lie above the distinction threshold, in both groups" + _ROBUST
              + "; not reproduced ⇔ an interval lies wholly on the wrong side; otherwise inconclusive"),
        thresholds=(BAND, DISTINCTION), scope=_scope(P.BETA + P.DEPENDENT), protocol=_PROTOCOL),
}
