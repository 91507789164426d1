"""What a rule is: a small object that writes a layer's backward matrix as groups of terms.

For a Linear/Conv2d layer z = W x + b a rule returns groups g, each with terms
t = (a_t, φ_t, b_t): an input factor a_t (shape of x), a modified weight φ_t
(shape of W) and the numerator b_t (n_out,) that the bias contributes to the
group's denominator.  The group's column factor is

    c_g = coef_g · mask_g / s(Σ_t φ_t a_t + Σ_t b_t)   (normalized groups, s = stabilizer)
    c_g = coef_g · mask_g                               (unnormalized, gradient-type groups)

and the layer matrix is M = Σ_g Σ_t diag(a_t) φ_tᵀ diag(c_g), n_in × n_out.
The bias policy acts here: ``"none"`` drops every b_t, ``"zennit"`` keeps them in
the denominators, ``"full"`` also reports the bias's share Σ_g c_g Σ_t b_t.

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
from ..linalg import LayerTerms
from ..trace import Record, Stage

__all__ = ["BIAS_POLICIES", "Term", "Group", "LayerContext", "Rule", "stabilize", "pos", "neg"]

BIAS_POLICIES = ("zennit", "none", "full")


def stabilize(d: torch.Tensor, eps: float) -> torch.Tensor:
    """s(d) = d + eps·sign0(d) with sign0(0) = +1 (zennit's stabilizer)."""
    return d + eps * torch.where(d >= 0, 1.0, -1.0).to(d.dtype)


def pos(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(min=0)


def neg(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(max=0)


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
    """Everything a rule may read about one Linear/Conv2d stage for one input."""

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
    def z(self) -> torch.Tensor:
        """True pre-activation W x + b, flat (n_out,)."""
        return self.record.z.reshape(-1)

    @property
    def weight(self) -> torch.Tensor:
        return self.stage.weight

    @property
    def bias(self) -> torch.Tensor:
        b = self.stage.bias
        return b if b is not None else torch.zeros(self.stage.weight.shape[0], dtype=torch.float64)

    @property
    def n_out_per_channel(self) -> int:
        return int(np.prod(self.record.out_shape[1:])) if self.stage.kind == "conv2d" else 1

    @property
    def derivative(self) -> torch.Tensor:
        """ρ'(z) of the activation after the stage (the ReLU mask 1[z > 0]), ones without one; (n_out,)."""
        act = self.stage.activation
        return act.derivative(self.z) if act is not None else torch.ones_like(self.z)

    def per_unit(self, v: torch.Tensor) -> torch.Tensor:
        """Broadcast a per-channel vector (bias-shaped) to all output units (n_out,)."""
        return v.repeat_interleave(self.n_out_per_channel)

    def fwd(self, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Σ_i φ_ji a_i for every output unit j (no bias), flat (n_out,)."""
        return self.stage.linear_map(a.reshape(self.x.shape), w).reshape(-1)

    def expand_input(self, v, what: str) -> torch.Tensor:
        """Broadcast a scalar or array (e.g. a box bound) to this stage's input shape (1, *in_shape)."""
        t = torch.as_tensor(v, dtype=torch.float64)
        try:
            return t.expand_as(self.x).clone() if t.ndim else torch.full_like(self.x, float(t))
        except RuntimeError:
            raise OptionError(
                f"{what} of shape {tuple(t.shape)} cannot be broadcast to the input of layer {self.stage.describe()} "
                f"of shape {tuple(self.x.shape)}"
            ) from None


class Rule:
    """Base of all rules. Subclasses set ``name`` and ``space``, take their options as keyword arguments of
    ``__init__`` (stored under the same names) and implement :meth:`groups`."""

    name = "rule"
    space = "relevance"          # "relevance" or "gradient" (which signal the chain propagates)
    multiply_input = False       # the chain's first operator gets diag(x) (gradient × input)
    batchable = True             # extract_batch can build it (False: per-image activation derivatives)

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
        """The output-side diagonal d (n_out,) when the rule's matrix factors as M = M_lin diag(d) with the mask
        of the activation after the stage in d (gradient-type rules: d = ρ'(z)); None otherwise (the default:
        relevance rules).  It becomes ``Chain.masks``, which lets a chain apply the mask step and the linear
        step of a layer separately."""
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
        """Evaluate the groups of this rule at ``ctx`` into numeric :class:`~chainlab.linalg.LayerTerms`."""
        keep_bias = ctx.bias_policy != "none"
        n_out = ctx.z.numel()
        A, K, C = [], [], []
        bias_rel = torch.zeros(n_out, dtype=torch.float64)
        for g in self.groups(ctx):
            mask = g.mask if g.mask is not None else torch.ones(n_out, dtype=torch.float64)
            bias_num = torch.zeros(n_out, dtype=torch.float64)
            if keep_bias:
                for t in g.terms:
                    if t.b is not None:
                        bias_num = bias_num + ctx.per_unit(t.b)
            if g.eps is None:
                c = g.coef * mask
            else:
                d = sum(ctx.fwd(t.a, t.w) for t in g.terms) + bias_num
                c = g.coef * mask / stabilize(d, g.eps)
            for t in g.terms:
                A.append(t.a.reshape(-1))
                K.append(t.w)
                C.append(c)
            bias_rel = bias_rel + c * bias_num
        return LayerTerms(
            a=torch.stack(A).numpy(),
            phi=torch.stack(K).numpy(),
            c=torch.stack(C).numpy(),
            bias_relevance=bias_rel.numpy() if ctx.bias_policy == "full" else None,
        )
