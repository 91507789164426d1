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
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..matrices import LayerTerms, stabilize
from ..trace import Record, Stage, conv_padding

BIAS_POLICIES = ("zennit", "none", "full")


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
        return int(np.prod(self.stage.out_shape[1:])) if self.stage.kind == "conv2d" else 1

    @property
    def relu_mask(self) -> torch.Tensor:
        """1[z_j > 0] when a ReLU follows the stage, else ones; (n_out,)."""
        z = self.z
        return (z > 0).to(z.dtype) if self.stage.relu else torch.ones_like(z)

    def per_unit(self, v: torch.Tensor) -> torch.Tensor:
        """Broadcast a per-channel vector (bias-shaped) to all output units (n_out,)."""
        return v.repeat_interleave(self.n_out_per_channel)

    def fwd(self, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Σ_i φ_ji a_i for every output unit j (no bias), flat (n_out,)."""
        st = self.stage
        if st.kind == "linear":
            return F.linear(a.reshape(1, -1), w).reshape(-1)
        m = st.module
        return F.conv2d(a, w, None, m.stride, conv_padding(m), m.dilation, m.groups).reshape(-1)

    def expand_input(self, v, what: str) -> torch.Tensor:
        """Broadcast a scalar or array (e.g. a box bound) to this stage's input shape (1, *in_shape)."""
        t = torch.as_tensor(v, dtype=torch.float64)
        try:
            return t.expand_as(self.x).clone() if t.ndim else torch.full_like(self.x, float(t))
        except RuntimeError:
            raise ValueError(
                f"{what} of shape {tuple(t.shape)} cannot be broadcast to the input of layer {self.stage.describe()} "
                f"of shape {tuple(self.x.shape)}"
            ) from None


class Rule:
    """Base of all rules. Subclasses set ``name``, ``space`` and implement :meth:`groups`."""

    name = "rule"
    space = "relevance"          # "relevance" or "gradient" (which signal the chain propagates)
    params: tuple = ()           # names of the rule's own options

    def groups(self, ctx: LayerContext) -> list[Group]:
        raise NotImplementedError

    def options(self) -> dict:
        return {p: getattr(self, p) for p in self.params}

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"

    def terms(self, ctx: LayerContext) -> LayerTerms:
        """Evaluate the groups of this rule at ``ctx`` into numeric :class:`LayerTerms`."""
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
            stage=ctx.stage,
            a=torch.stack(A).numpy(),
            phi=torch.stack(K).numpy(),
            c=torch.stack(C).numpy(),
            bias_relevance=bias_rel.numpy() if ctx.bias_policy == "full" else None,
        )


def pos(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(min=0)


def neg(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(max=0)
