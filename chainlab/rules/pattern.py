"""PatternNet and PatternAttribution (Kindermans et al. 2018) as gradient-space matrix chains.

With the fitted pattern A of a Linear/Conv2d layer (same shape as W, rows a_j; see
:mod:`chainlab.patterns`) and the ReLU mask of the layer's output:

    patternnet:          M_ij = A_ji · 1[z_j > 0]            (Aᵀ diag(mask), Sixt eq. 10)
    patternattribution:  M_ij = (W ⊙ A)_ji · 1[z_j > 0]      ((W ⊙ A)ᵀ diag(mask), Sixt eq. 11)

Convolutions use the unrolled pattern / W⊙A kernel.  Pools as for the gradient (max-pool
winner-take-all).  The start vector is e_k and the explanation is the propagated signal itself
(for PatternAttribution the pattern takes the place of the input factor: no extra ×x).

Options: ``patterns`` = a :class:`~chainlab.patterns.Patterns`, a path to a pattern file, or None
for the shipped ``data/patterns-<net>.npz`` of a shipped net (``model.name``); ``pattern_type`` =
"relu" (default) or "linear".  The patterns are checked against the model (layers, shapes,
fingerprint) before use.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .. import patterns as _patterns
from ..models import data_dir
from .base import Group, LayerContext, Rule, Term

__all__ = ["PatternNet", "PatternAttribution", "resolve_patterns", "OWN_OPTIONS"]

OWN_OPTIONS = ("patterns", "pattern_type")


class PatternNet(Rule):
    """M = Aᵀ diag(1[z > 0]) with A the fitted pattern of the layer (gradient space)."""

    name = "patternnet"
    space = "gradient"

    def __init__(self, patterns: "_patterns.Patterns", pattern_type: str = "relu"):
        self.table = patterns.of_kind(pattern_type)
        self.pattern_type = pattern_type

    def pattern(self, ctx: LayerContext) -> torch.Tensor:
        return torch.from_numpy(self.table[ctx.stage.name]).to(torch.float64)

    def kernel(self, ctx: LayerContext) -> torch.Tensor:
        return self.pattern(ctx)

    def groups(self, ctx: LayerContext):
        return [Group([Term(torch.ones_like(ctx.x), self.kernel(ctx))], mask=ctx.relu_mask)]

    def options(self):
        return {"pattern_type": self.pattern_type}


class PatternAttribution(PatternNet):
    """M = (W ⊙ A)ᵀ diag(1[z > 0]) (gradient space; the propagated signal is the explanation)."""

    name = "patternattribution"

    def kernel(self, ctx: LayerContext) -> torch.Tensor:
        return ctx.weight * self.pattern(ctx)


def resolve_patterns(model, value) -> "_patterns.Patterns":
    if isinstance(value, _patterns.Patterns):
        return value
    if value is None:
        name = getattr(model, "name", None)
        if name is None:
            raise _patterns.PatternError(
                "rule needs patterns=<Patterns or file>; this model is not a shipped net (no .name), so no shipped "
                "patterns apply; fit them with chainlab.patterns.fit(model, data)"
            )
        path = data_dir() / f"patterns-{name}.npz"
        if not path.exists():
            raise FileNotFoundError(f"no shipped patterns for {name!r} ({path} missing); run scripts/fit_patterns.py")
        return _patterns.load(path)
    if isinstance(value, (str, Path)):
        return _patterns.load(value)
    raise TypeError(f"patterns must be a chainlab.patterns.Patterns, a file path or None, got {type(value).__name__}")


def _builder(cls):
    def build(model, net, xt, records, options):
        from ..extract import COMMON_OPTIONS, extract

        unknown = sorted(set(options) - set(COMMON_OPTIONS) - set(OWN_OPTIONS))
        if unknown:
            raise TypeError(f"unknown option(s) {', '.join(map(repr, unknown))} for rule {cls.name!r}; it takes "
                            f"{', '.join(OWN_OPTIONS)}; common options: {', '.join(COMMON_OPTIONS)}")
        pattern_type = options.get("pattern_type", "relu")
        if pattern_type not in _patterns.KINDS:
            raise _patterns.PatternError(
                f"unknown pattern type {pattern_type!r} for rule {cls.name!r}; pattern types: {', '.join(_patterns.KINDS)}"
            )
        pats = resolve_patterns(model, options.get("patterns"))
        pats.check(net, what=f"model {getattr(model, 'name', type(model).__name__)!r}")
        rule = cls(pats, pattern_type)
        common = {k: options[k] for k in COMMON_OPTIONS if k in options}
        chain = extract(model, xt, rule, **common)
        chain.options.update({"pattern_type": pattern_type, "patterns": pats.net_fingerprint})
        return chain
    build.__name__ = f"build_{cls.name}"
    return build


def register():
    from ..extract import register_method
    for cls in (PatternNet, PatternAttribution):
        register_method(cls.name, _builder(cls))
