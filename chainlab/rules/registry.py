"""Rules and composites by name: what ``extract(model, x, "<name>", **options)`` builds.

``RULES`` maps layer-rule names to rule classes, ``COMPOSITES`` composite names to factories.
:func:`resolve` turns what a user passes — a rule name, a composite name, a :class:`Rule`, a
:class:`Composite` or a plain dict — into a :class:`Composite` with every rule built from the
options it takes, and reports which options it used (the caller refuses the rest).
"""
from __future__ import annotations

import inspect

from ..errors import OptionError
from .base import Rule
from .composites import COMPOSITES, Composite
from .lrp import (LRP0, AlphaBeta, ContrastiveExcitation, Epsilon, ExcitationBP, Flat, Gamma, Gradient, GradientXInput,
                  WSquare, ZBox, ZPlus)
from .pattern_rules import PatternAttribution, PatternNet
from .smooth import SmoothGradient

__all__ = ["RULES", "COMPOSITES", "make_rule", "resolve", "rule_names", "composite_params"]


def composite_params(name: str) -> tuple:
    """The option names of a named composite (its factory's keyword parameters)."""
    return tuple(inspect.signature(COMPOSITES[name]).parameters)


RULES: dict[str, type] = {
    "gradient": Gradient,
    "gradient-x-input": GradientXInput,
    "lrp-0": LRP0,
    "lrp-epsilon": Epsilon,
    "zplus": ZPlus,
    "alpha-beta": AlphaBeta,
    "gamma": Gamma,
    "zbox": ZBox,
    "wsquare": WSquare,
    "flat": Flat,
    "excitation-bp": ExcitationBP,
    "contrastive-excitation": ContrastiveExcitation,
    "patternnet": PatternNet,
    "patternattribution": PatternAttribution,
    "smooth-gradient": SmoothGradient,
}


def rule_names() -> list[str]:
    return sorted(RULES) + sorted(COMPOSITES)


def make_rule(name: str, options: dict) -> tuple[Rule, set]:
    """Build the rule called ``name`` from the options it takes; return it and the option names used."""
    if name not in RULES:
        raise OptionError(f"unknown rule {name!r}; known rules: {', '.join(rule_names())}")
    cls = RULES[name]
    used = {p for p in cls.params() if p in options}
    return cls(**{p: options[p] for p in used}), used


def resolve(rule, options: dict) -> tuple[Composite, set, set]:
    """(a :class:`Composite` for ``rule`` with every rule name built, the option names it consumed, the option
    names its named rules take at all — what an unknown-option error lists)."""
    if isinstance(rule, str):
        if rule in COMPOSITES:
            factory = COMPOSITES[rule]
            takes = set(composite_params(rule))
            used = {p for p in takes if p in options}
            try:
                comp = factory(**{p: options[p] for p in used})
            except OptionError as exc:
                raise OptionError(f"{exc} (in composite {rule!r})") from None
            return comp, used, takes
        r, used = make_rule(rule, options)
        return Composite(default=r, name=rule), used, set(RULES[rule].params())
    if isinstance(rule, Rule):
        return Composite(default=rule, name=rule.name), set(), set()
    if isinstance(rule, dict):
        rule = Composite(rule)
    if isinstance(rule, Composite):
        used: set = set()
        takes: set = set()

        def build(v):
            if isinstance(v, str):
                r, u = make_rule(v, options)
                used.update(u)
                takes.update(RULES[v].params())
                return r
            if isinstance(v, Rule) or v is None:
                return v
            raise OptionError(f"composite value {v!r} must be a rule name or a Rule object")

        comp = Composite({k: build(v) for k, v in rule.mapping.items()}, default=build(rule.default), name=rule.name)
        return comp, used, takes
    raise OptionError(f"rule must be a rule name, a Rule, a Composite or a dict, got {type(rule).__name__}")
