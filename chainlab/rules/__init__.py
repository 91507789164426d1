"""Rules (one small object per rule) and composites (which rule each layer gets).

``resolve(rule, options)`` turns what a user passes to :func:`chainlab.extract`
— a rule name, a composite name, a :class:`Rule`, a :class:`Composite` or a
plain dict — into a :class:`Composite`, and reports which options it used.
"""
from __future__ import annotations

from .base import BIAS_POLICIES, Group, LayerContext, Rule, Term
from .composites import COMPOSITES, Composite
from .lrp import AlphaBeta, Epsilon, Flat, Gamma, Gradient, GradientXInput, LRP0, WSquare, ZBox, ZPlus

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
}


def register_rule(name: str, cls: type):
    """Make a layer-wise rule class available under ``name``."""
    RULES[name] = cls


def rule_names() -> list[str]:
    return sorted(RULES) + sorted(COMPOSITES)


def make_rule(name: str, options: dict) -> tuple[Rule, set]:
    """Build the rule called ``name`` from the options it takes; return it and the option names used."""
    if name not in RULES:
        raise ValueError(f"unknown rule {name!r}; known rules: {', '.join(rule_names())}")
    cls = RULES[name]
    used = {p for p in cls.params if p in options}
    return cls(**{p: options[p] for p in used}), used


def resolve(rule, options: dict) -> tuple[Composite, set]:
    """A :class:`Composite` for ``rule`` with every rule name built; plus the option names consumed."""
    if isinstance(rule, str):
        if rule in COMPOSITES:
            factory, params = COMPOSITES[rule]
            used = {p for p in params if p in options}
            return factory(**{p: options[p] for p in used}), used
        r, used = make_rule(rule, options)
        return Composite(default=r, name=rule), used
    if isinstance(rule, Rule):
        return Composite(default=rule, name=rule.name), set()
    if isinstance(rule, dict):
        rule = Composite(rule)
    if isinstance(rule, Composite):
        used: set = set()

        def build(v):
            if isinstance(v, str):
                r, u = make_rule(v, options)
                used.update(u)
                return r
            if isinstance(v, Rule) or v is None:
                return v
            raise TypeError(f"composite value {v!r} must be a rule name or a Rule object")

        comp = Composite({k: build(v) for k, v in rule.mapping.items()}, default=build(rule.default), name=rule.name)
        return comp, used
    raise TypeError(f"rule must be a rule name, a Rule, a Composite or a dict, got {type(rule).__name__}")


__all__ = [
    "BIAS_POLICIES", "COMPOSITES", "RULES", "AlphaBeta", "Composite", "Epsilon", "Flat", "Gamma", "Gradient",
    "GradientXInput", "Group", "LRP0", "LayerContext", "Rule", "Term", "WSquare", "ZBox", "ZPlus", "make_rule",
    "register_rule", "resolve", "rule_names",
]
