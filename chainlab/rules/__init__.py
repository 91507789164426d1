"""Rules (one small object per rule, owning its options) and composites (which rule each layer gets).

* :mod:`.base` — the rule protocol: groups of terms → :class:`~chainlab.linalg.LayerTerms`, the layer
  context a rule reads, the one stabilizer s(z) = z + ε·sign0(z);
* :mod:`.lrp` — gradient, LRP-0/ε, z⁺, αβ, γ, z^B, w², flat, excitation BP and its contrastive final layer;
* :mod:`.patterns`, :mod:`.pattern_rules` — signal patterns (fit, store, check) and PatternNet /
  PatternAttribution as layer rules;
* :mod:`.smooth` — smooth-gradient: the gradient with soft masks s(βz) in place of the ReLU masks;
* :mod:`.composites` — rule per layer by index, path, "first", "last" or type; named composites;
* :mod:`.registry` — rules and composites by name, :func:`resolve`.

May import: :mod:`chainlab.trace` (stages and records the rules read), :mod:`chainlab.linalg`,
:mod:`chainlab.nets` (shipped pattern files), :mod:`chainlab.options`, :mod:`chainlab.errors`.
"""
from . import patterns
from .base import BIAS_POLICIES, Group, LayerContext, Rule, Term, neg, pos, stabilize
from .composites import COMPOSITES, Composite
from .lrp import (LRP0, AlphaBeta, ContrastiveExcitation, Epsilon, ExcitationBP, Flat, Gamma, Gradient, GradientXInput,
                  WSquare, ZBox, ZPlus)
from .pattern_rules import PatternAttribution, PatternNet
from .registry import RULES, composite_params, make_rule, resolve, rule_names
from .smooth import SmoothGradient, soft_mask

__all__ = [
    "BIAS_POLICIES", "COMPOSITES", "RULES", "AlphaBeta", "Composite", "ContrastiveExcitation", "Epsilon",
    "ExcitationBP", "Flat", "Gamma", "Gradient",
    "GradientXInput", "Group", "LRP0", "LayerContext", "PatternAttribution", "PatternNet", "Rule", "Term", "WSquare",
    "ZBox", "ZPlus", "SmoothGradient", "soft_mask", "composite_params", "make_rule", "neg", "patterns", "pos", "resolve", "rule_names", "stabilize",
]
