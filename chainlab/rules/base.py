"""What a rule is: a small object that writes a layer's backward matrix as groups of terms.

For a Linear/Conv2d layer z = W x + b a rule returns groups g, each with terms
t = (a_t, φ_t, b_t): an input factor a_t (shape of x), a modified weight φ_t
(shape of W) and the numerator b_t (n_out,) that the bias contributes to the
group's denominator.  The group's column factor is

    c_g = coef_g · mask_g / s(Σ_t φ_t a_t + Σ_t b_t)   (normalized groups, s = stabilizer)
    c_g = coef_g · mask_g                               (unnormalized, gradient-type groups)

and the layer matrix is M = Σ_g Σ_t diag(a_t) φ_tᵀ diag(c_g) · diag(d), n_in × n_out, with d the
rule's output-side factor (:meth:`Rule.mask`: the derivative ρ'(z) of the activation after the stage for
gradient-type rules, none for relevance rules) — kept apart so that a signal can be injected or read
between the activation and the linear map.  Everything is evaluated at B inputs at once (the record's
batch): a_t, c_g and d are per image, φ_t is shared.  The bias policy acts here: ``"none"`` drops every
b_t, ``"zennit"`` keeps them in the denominators, ``"full"`` also reports the bias's share Σ_g c_g Σ_t b_t.

The stabilizer s(d) = d + ε·sign0(d), sign0(0) = +1 (:func:`stabilize`) is the one used
everywhere in chainlab: rule denominators, the proportional split of residual sums, the
proportional average pool.

A rule owns its parameters: the keyword arguments of its ``__init__`` are its option list
(:meth:`Rule.params`), checked there once (:mod:`chainlab.options`).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import OptionError
from ..linalg import LayerTerms, negative_part, positive_part
from ..trace import Record, Stage

__all__ = ["BIAS_POLICIES", "Term", "Group", "LayerContext", "Rule", "stabilize", "pos", "neg"]

BIAS_POLICIES = ("zennit", "none", "full")


def stabilize(d: torch.Tensor, eps: float) -> torch.Tensor:
    """s(d) = d + eps·sign0(d) with sign0(0) = +1 (zennit's stabilizer)."""
    return d + eps * torch.where(d >= 0, 1.0, -1.0).to(d.dtype)


def pos(t: torch.Tensor) -> torch.Tensor:
    """t⁺ = max(t, 0), one copy per tensor (:func:`chainlab.linalg.positive_part`: shared by images and rules)."""
    return positive_part(t)


def neg(t: torch.Tensor) -> torch.Tensor:
    """t⁻ = min(t, 0), one copy per tensor (:func:`chainlab.linalg.negative_part`)."""
    return negative_part(t)


@dataclass
class Term:
    a: torch.Tensor              # input factor, shape (1, *in_shape)
    w: torch.Tensor              # modified weight, shape of the layer weight
    b: torch.Tensor | None = None  # bias numerator, (n_out,)


@dataclass
class Group:
    terms: list
    coef: float = 1.0
    mask: torch.Tensor | None = None   # (n_out,) column factor before normalization
    eps: float | None = None           # None: unnormalized; else the stabilizer of s(·)


@dataclass
class LayerContext:
    """Everything a rule may read about one Linear/Conv2d stage at B inputs (the record's batch; one input: B = 1).

    Quantities are batched: x (B, *in_shape), z (B, n_out), the derivative (B, n_out); a rule's factors may be
    per image (B, n) or shared (n,) — broadcasting decides."""

    stage: Stage
    record: Record
    index: int                 # position of the stage in the chain
    is_first: bool             # first Linear/Conv2d stage of the net
    bias_policy: str = "zennit"
    stabilizer: float = 1e-6
    extra: dict = field(default_factory=dict)

    @property
    def x(self) -> torch.Tensor:
        return self.record.x

    @property
    def batch(self) -> int:
        return int(self.record.x.shape[0])

    @property
    def z(self) -> torch.Tensor:
        """True pre-activation W x + b, (B, n_out)."""
        return self.record.z.reshape(self.batch, -1)

    @property
    def dtype(self) -> torch.dtype:
        return self.record.z.dtype

    @property
    def weight(self) -> torch.Tensor:
        return self.stage.weight

    @property
    def bias(self) -> torch.Tensor:
        b = self.stage.bias
        return b if b is not None else torch.zeros(self.stage.weight.shape[0], dtype=self.stage.weight.dtype)

    @property
    def n_out_per_channel(self) -> int:
        return int(np.prod(self.record.out_shape[1:])) if self.stage.kind == "conv2d" else 1

    @property
    def derivative(self) -> torch.Tensor:
        """ρ'(z) of the activation after the stage (the ReLU mask 1[z > 0]), ones without one; (B, n_out)."""
        act = self.stage.activation
        return act.derivative(self.z) if act is not None else torch.ones_like(self.z)

    def per_unit(self, v: torch.Tensor) -> torch.Tensor:
        """Broadcast a per-channel vector (bias-shaped) to all output units (n_out,)."""
        return v.repeat_interleave(self.n_out_per_channel)

    def fwd(self, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Σ_i φ_ji a_i for every output unit j (no bias) and image, (B, n_out); a of the input's shape (B or 1)."""
        a = a.reshape((-1,) + tuple(self.x.shape[1:])).to(self.dtype)
        return self.stage.linear_map(a, w.to(self.dtype)).reshape(a.shape[0], -1)

    def expand_input(self, v, what: str) -> torch.Tensor:
        """Broadcast a scalar or array (e.g. a box bound) to this stage's input shape (1, *in_shape)."""
        t = torch.as_tensor(v, dtype=self.dtype)
        one = self.x[:1]
        try:
            return t.expand_as(one).clone() if t.ndim else torch.full_like(one, float(t))
        except RuntimeError:
            raise OptionError(
                f"{what} of shape {tuple(t.shape)} cannot be broadcast to the input of layer {self.stage.describe()} "
                f"of shape {tuple(one.shape)}"
            ) from None


class Rule:
    """Base of all rules. Subclasses set ``name`` and ``space``, take their options as keyword arguments of
    ``__init__`` (stored under the same names) and implement :meth:`groups`."""

    name = "rule"
    space = "relevance"          # "relevance" or "gradient" (which signal the chain propagates)
    multiply_input = False       # the chain's first operator gets diag(x) (gradient × input)

    @classmethod
    def params(cls) -> tuple:
        """The rule's own option names: the keyword parameters of its ``__init__``."""
        sig = inspect.signature(cls.__init__)
        return tuple(n for n, p in sig.parameters.items()
                     if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))

    def options(self) -> dict:
        return {p: getattr(self, p) for p in self.params()}

    def prepare(self, net, model) -> None:
        """Called once per extraction before any layer is built (rules that need the model look here)."""

    def groups(self, ctx: LayerContext) -> list[Group]:
        raise NotImplementedError

    def mask(self, ctx: LayerContext) -> torch.Tensor | None:
        """The output-side diagonal d ((B, n_out) or (n_out,)) of M = M_lin diag(d), M_lin the groups' matrix: the
        mask of the activation after the stage (gradient-type rules: d = ρ'(z)); None (the default: relevance
        rules).  It becomes ``Chain.masks`` and the stage's ``act`` step, which lets a chain apply the mask step
        and the linear step of a layer separately."""
        return None

    def activation_derivative(self, stage: Stage, z: torch.Tensor) -> torch.Tensor:
        """ρ'(z) of the activation after a stage the rule has no matrix for (a pool, a residual sum, a leading
        activation), as this rule propagates it in gradient space: the true derivative unless a rule replaces
        it (smooth-gradient's soft masks)."""
        return stage.activation.derivative(z)

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"

    def terms(self, ctx: LayerContext) -> LayerTerms:
        """Evaluate the groups of this rule at ``ctx`` (B inputs) into :class:`~chainlab.linalg.LayerTerms`:
        [(a_t, φ_t, c_g)] with c_g the column factor of the term's group, and :meth:`mask` as the output-side
        factor.  Terms whose a_t vanishes for every image are neither evaluated nor kept (x⁻ = 0 after a ReLU);
        an input factor or column factor of ones is stored as None (nothing to multiply)."""
        keep_bias = ctx.bias_policy != "none"
        dt = ctx.dtype
        B, n_out = ctx.z.shape
        out = []
        bias_rel = torch.zeros((1, n_out), dtype=dt)
        for g in self.groups(ctx):
            live = [t for t in g.terms if _nonzero(t.a)]
            bias_num = torch.zeros(n_out, dtype=dt)
            if keep_bias:
                for t in g.terms:
                    if t.b is not None:
                        bias_num = bias_num + ctx.per_unit(t.b).to(dt)
            mask = 1.0 if g.mask is None else torch.as_tensor(g.mask).to(dt).reshape(-1, n_out)
            if g.eps is None:
                c = g.coef * mask
            else:
                d = bias_num
                for t in live:
                    d = d + ctx.fwd(t.a, t.w)
                c = g.coef * mask / stabilize(d, g.eps)
            c = torch.as_tensor(c, dtype=dt).reshape(-1, n_out) if isinstance(c, torch.Tensor) else (
                None if c == 1.0 else torch.full((1, n_out), float(c), dtype=dt))
            bias_rel = bias_rel + (bias_num if c is None else c * bias_num)
            if not live or (c is not None and not bool(c.any())):
                continue
            c = None if c is not None and _ones(c) else c
            for t in live:
                a = t.a.reshape(t.a.shape[0], -1).to(dt)
                out.append((None if _ones(a) else a, t.w.to(dt), c))
        if not out:        # an all-zero matrix: one term with zero columns keeps the shapes
            t = self.groups(ctx)[0].terms[0]
            out.append((t.a.reshape(t.a.shape[0], -1).to(dt), t.w.to(dt), torch.zeros((1, n_out), dtype=dt)))
        mask = self.mask(ctx)
        return LayerTerms(out, None if mask is None else torch.as_tensor(mask).to(dt).reshape(-1, n_out),
                          bias_rel if ctx.bias_policy == "full" else None)


def _nonzero(t) -> bool:
    """Whether a tensor has a non-zero entry (looks at a head first: most are dense)."""
    head = t.reshape(-1)[:256]
    return bool(head.any()) or bool(t.amax() != 0) or bool(t.amin() != 0)


def _ones(t) -> bool:
    head = t.reshape(-1)[:256]
    return bool((head == 1).all()) and bool(t.amin() == 1) and bool(t.amax() == 1)
