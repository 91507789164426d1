"""PatternNet and PatternAttribution (Kindermans et al. 2018) as gradient-space layer rules.

With the fitted pattern A of a Linear/Conv2d layer (same shape as W, rows a_j; see
:mod:`.patterns`) and the derivative of the layer's activation (the ReLU mask):

    patternnet:          M_ij = A_ji · 1[z_j > 0]            (Aᵀ diag(mask), Sixt eq. 10)
    patternattribution:  M_ij = (W ⊙ A)_ji · 1[z_j > 0]      ((W ⊙ A)ᵀ diag(mask), Sixt eq. 11)

Convolutions use the unrolled pattern / W⊙A kernel.  Pools as for the gradient (max-pool
winner-take-all).  The start vector is e_k and the explanation is the propagated signal itself
(for PatternAttribution the pattern takes the place of the input factor: no extra ×x).

Options: ``patterns`` = a :class:`~.patterns.Patterns`, a path to a pattern file, or None for the
shipped ``data/patterns-<net>.npz`` of a shipped net (``model.name``); ``pattern_type`` = "relu"
(default) or "linear".  :meth:`PatternNet.prepare` resolves them and checks them against the model
(layers, shapes, fingerprint) once per extraction.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import MissingFileError, OptionError, PatternError
from ..nets.models import data_dir
from ..options import choice
from . import patterns as _patterns
from .base import Group, LayerContext, Rule, Term

__all__ = ["PatternNet", "PatternAttribution", "resolve_patterns"]


def resolve_patterns(model, value) -> "_patterns.Patterns":
    """A Patterns object from ``value`` (Patterns, a file path, or None: the shipped patterns of ``model.name``)."""
    if isinstance(value, _patterns.Patterns):
        return value
    if value is None:
        name = getattr(model, "name", None)
        if name is None:
            raise PatternError(
                "rule needs patterns=<Patterns or file>; this model is not a shipped net (no .name), so no shipped "
                "patterns apply; fit them with chainlab.patterns.fit(model, data)"
            )
        path = data_dir() / f"patterns-{name}.npz"
        if not path.exists():
            raise MissingFileError(f"no shipped patterns for {name!r} ({path} missing); run scripts/fit_patterns.py")
        return _patterns.load(path)
    if isinstance(value, (str, Path)):
        return _patterns.load(value)
    raise OptionError(f"option patterns must be a chainlab.patterns.Patterns, a file path or None, "
                      f"got {type(value).__name__}")


class PatternNet(Rule):
    """M = Aᵀ diag(ρ'(z)) with A the fitted pattern of the layer (gradient space)."""

    name = "patternnet"
    space = "gradient"

    def __init__(self, patterns=None, pattern_type: str = "relu"):
        self.patterns = patterns
        self.pattern_type = choice("pattern_type", pattern_type, _patterns.KINDS, f"rule {self.name!r}")
        if not (patterns is None or isinstance(patterns, (_patterns.Patterns, str, Path))):
            raise OptionError(f"option patterns of rule {self.name!r} must be a chainlab.patterns.Patterns, a file "
                              f"path or None, got {type(patterns).__name__}")
        self.table = None

    def prepare(self, net, model) -> None:
        pats = resolve_patterns(model, self.patterns)
        pats.check(net, what=f"model {getattr(model, 'name', type(model).__name__)!r}")
        self.table = pats.of_kind(self.pattern_type)
        self.fingerprint = pats.net_fingerprint

    def pattern(self, ctx: LayerContext) -> torch.Tensor:
        if self.table is None:
            raise PatternError(f"rule {self.name!r} has no patterns yet: extract calls prepare(net, model) first")
        return torch.from_numpy(self.table[ctx.stage.name]).to(torch.float64)

    def kernel(self, ctx: LayerContext) -> torch.Tensor:
        return self.pattern(ctx)

    def groups(self, ctx: LayerContext):
        return [Group([Term(torch.ones_like(ctx.x[:1]), self.kernel(ctx))])]

    def mask(self, ctx: LayerContext):
        return ctx.derivative if ctx.stage.activation is not None else None

    def options(self):
        return {"pattern_type": self.pattern_type, "patterns": getattr(self, "fingerprint", None)}


class PatternAttribution(PatternNet):
    """M = (W ⊙ A)ᵀ diag(ρ'(z)) (gradient space; the propagated signal is the explanation)."""

    name = "patternattribution"

    def kernel(self, ctx: LayerContext) -> torch.Tensor:
        return ctx.weight * self.pattern(ctx)
