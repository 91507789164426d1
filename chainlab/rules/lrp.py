"""The gradient and the LRP family as matrices of one Linear/Conv2d layer z = W x + b.

Entries are for input i (row) and output j (column); s(d) = d + ε·sign0(d),
sign0(0) = +1; W± = max/min(W, 0), likewise x±, b±.  The bias numerators below
enter under the bias policies "zennit"/"full" and are dropped under "none".

=================  ==========================================================================
Gradient           M_ij = W_ji · ρ'(z_j)  (the ReLU mask 1[z_j > 0]; ones without activation; gradient space)
Epsilon / LRP-0    M_ij = x_i W_ji / s(Σ_k x_k W_jk + b_j)                 (ε = epsilon / stabilizer)
ZPlus              M_ij = (x⁺_i W⁺_ji + x⁻_i W⁻_ji) / s(Σ_k x⁺_k W⁺_jk + x⁻_k W⁻_jk + b⁺_j)
AlphaBeta          α·[ZPlus] − β·(x⁺_i W⁻_ji + x⁻_i W⁺_ji) / s(Σ_k x⁺_k W⁻_jk + x⁻_k W⁺_jk + b⁻_j)
Gamma              z_j > 0: (x⁺_i (W+γW⁺)_ji + x⁻_i (W+γW⁻)_ji) / s(Σ_k same + b_j + γb⁺_j)
                   z_j < 0: W⁺ and W⁻ swap places, bias b_j + γb⁻_j;  z_j = 0: 0
ZBox               (x_i W_ji − l_i W⁺_ji − h_i W⁻_ji) / s(Σ_k same)        (bias cancels, as zennit)
WSquare            W_ji² / s(Σ_k W_jk² + b_j²)
Flat               1_ji / s(Σ_k 1_jk)   over the layer's connections (bias ignored, as zennit)
ExcitationBP       M_ij = x_i W⁺_ji / s(Σ_k x_k W⁺_jk)                      (no bias, Zhang et al.)
ContrastiveExc.    x_i W⁺_ji / s(Σ_k x_k W⁺_jk) − x_i (−W)⁺_ji / s(Σ_k x_k (−W)⁺_jk)   (no bias)
=================  ==========================================================================

The first nine are zennit's rules (Epsilon, ZPlus, AlphaBeta, Gamma, ZBox, WSquare, Flat)
written as explicit matrices.

Excitation backprop (Zhang et al. 2016, "Top-down neural attention by excitation backprop",
eq. 3–4) passes the probability of an output neuron to its inputs with the marginal winning
probability P(a_i | a_j) = a_i W⁺_ji / Σ_k a_k W⁺_jk: only positive weights, the input activations
a as they are (assumed ≥ 0: they are ReLU outputs), no bias.  Where every input of a layer is ≥ 0
(after a ReLU, a max- or average pool of ReLU outputs, or an image in [0, 1]) x⁻ = 0 and this is the
z⁺ matrix without bias, ``ZPlus`` with ``bias="none"``.  It differs from z⁺ (i) at a layer with
negative inputs (typically the first layer on mean-subtracted images): z⁺ pairs x⁻ with W⁻
((x⁺W⁺ + x⁻W⁻)/Σ), excitation BP keeps x·W⁺, which may be negative and need not conserve; and
(ii) with biases, which z⁺ puts into its denominator (b⁺, bias policies "zennit"/"full") and
excitation BP never does.

Contrastive excitation backprop as Sixt et al. 2020 write it (eq. 16): the final layer's matrix
is Z⁺ − N⁺, N⁺ the same rule with the weights negated (−W), i.e. the excitation of the class
minus the excitation of its "dual" neuron of weights −W (Zhang et al.'s contrastive top-down
signal); every other layer keeps excitation BP.  (−W)⁺ = −W⁻, so on non-negative inputs the
final matrix is z⁺ − z⁻-normalized: LRP-αβ with α = β = 1.)
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import OptionError
from ..options import number
from .base import Group, LayerContext, Rule, Term, neg, pos


class Gradient(Rule):
    """The plain gradient: M = Wᵀ diag(ρ'(z)) (ρ' = 1[z > 0] for ReLU; gradient space)."""

    name = "gradient"
    space = "gradient"

    def groups(self, ctx: LayerContext):
        return [Group([Term(torch.ones_like(ctx.x[:1]), ctx.weight)])]

    def mask(self, ctx: LayerContext):
        return ctx.derivative if ctx.stage.activation is not None else None


class GradientXInput(Gradient):
    """Gradient × input: the gradient chain with its first operator's rows scaled by x (diag(x) M_1)."""

    name = "gradient-x-input"
    multiply_input = True


class Epsilon(Rule):
    """LRP-ε: M_ij = x_i W_ji / s_ε(z_j); with ``epsilon=None`` it is LRP-0 (ε = the stabilizer)."""

    name = "lrp-epsilon"

    def __init__(self, epsilon: float = 1e-6):
        self.epsilon = number("epsilon", epsilon, f"rule {self.name!r}", positive=True)

    def groups(self, ctx: LayerContext):
        eps = self.epsilon if self.epsilon is not None else ctx.stabilizer
        return [Group([Term(ctx.x, ctx.weight, ctx.bias)], eps=eps)]


class LRP0(Epsilon):
    """LRP-0: M_ij = x_i W_ji / s(z_j) with the stabilizer as the only ε."""

    name = "lrp-0"

    def __init__(self):
        self.epsilon = None


class ZPlus(Rule):
    """z⁺ (LRP-α1β0, excitation BP, DTD z⁺): non-negative, column sums ≤ 1."""

    name = "zplus"

    def groups(self, ctx: LayerContext):
        x, W, b = ctx.x, ctx.weight, ctx.bias
        terms = [Term(pos(x), pos(W), pos(b))]
        if bool((x < 0).any()):             # x⁻ W⁻ (after a ReLU x⁻ = 0: no copy of W⁻)
            terms.append(Term(neg(x), neg(W)))
        return [Group(terms, eps=ctx.stabilizer)]


class AlphaBeta(Rule):
    """LRP-αβ with α − β = 1: α·Z⁺ − β·Z⁻ (columns have absolute sums ≤ α + β)."""

    name = "alpha-beta"

    def __init__(self, alpha: float = 2.0, beta: float = 1.0):
        where = f"rule {self.name!r}"
        alpha = number("alpha", alpha, where, nonnegative=True)
        beta = number("beta", beta, where, nonnegative=True)
        if abs((alpha - beta) - 1.0) > 1e-12:
            raise OptionError(f"options alpha, beta of {where} must satisfy alpha - beta = 1, got alpha={alpha}, "
                              f"beta={beta} (difference {alpha - beta})")
        self.alpha, self.beta = alpha, beta

    def groups(self, ctx: LayerContext):
        x, W, b = ctx.x, ctx.weight, ctx.bias
        Wp, Wn = pos(W), neg(W)          # one copy each, shared by both groups (a VGG's first Linear: 10⁸ numbers)
        gs = [Group([Term(pos(x), Wp, pos(b)), Term(neg(x), Wn)], coef=self.alpha, eps=ctx.stabilizer)]
        if self.beta != 0:
            gs.append(Group([Term(pos(x), Wn, neg(b)), Term(neg(x), Wp)], coef=-self.beta, eps=ctx.stabilizer))
        return gs


class Gamma(Rule):
    """Generalized LRP-γ as zennit: favours the contributions that share the sign of z_j."""

    name = "gamma"

    def __init__(self, gamma: float = 0.25):
        self.gamma = number("gamma", gamma, f"rule {self.name!r}", nonnegative=True)

    def groups(self, ctx: LayerContext):
        x, W, b, g = ctx.x, ctx.weight, ctx.bias, self.gamma
        z = ctx.z
        Wp, Wn = W + g * pos(W), W + g * neg(W)
        up = Group([Term(pos(x), Wp, b + g * pos(b)), Term(neg(x), Wn)], mask=(z > 0).to(z.dtype),
                   eps=ctx.stabilizer)
        down = Group([Term(pos(x), Wn, b + g * neg(b)), Term(neg(x), Wp)], mask=(z < 0).to(z.dtype),
                     eps=ctx.stabilizer)
        return [up, down]


class ZBox(Rule):
    """z^B for inputs in the box [low, high] (meant for the first layer)."""

    name = "zbox"

    def __init__(self, low=None, high=None):
        if low is None or high is None:
            raise OptionError(
                "rule 'zbox' needs low= and high=, the bounds of the input domain (e.g. low=0, high=1 for images in "
                "[0, 1]); scalars or arrays broadcastable to the input"
            )
        box = {}
        for name, v in (("low", low), ("high", high)):
            try:
                a = None if isinstance(v, (bool, str)) else np.asarray(v, dtype=np.float64)
            except (TypeError, ValueError):       # a dict, a ragged list, … given as the option's value
                a = None
            if a is None or not np.isfinite(a).all():
                raise OptionError(f"option {name} of rule 'zbox' must be a finite number or array, got {v!r}"[:300])
            box[name] = a
        try:
            np.broadcast_shapes(box["low"].shape, box["high"].shape)
        except ValueError:
            raise OptionError(f"options low and high of rule 'zbox' do not broadcast: shapes {box['low'].shape} and "
                              f"{box['high'].shape}") from None
        if np.any(box["low"] > box["high"]):
            raise OptionError(f"rule 'zbox' needs low ≤ high (the input box [low, high]), got low={low!r}, "
                              f"high={high!r}"[:300])
        self.low, self.high = low, high

    def groups(self, ctx: LayerContext):
        x, W, b = ctx.x, ctx.weight, ctx.bias
        lo = ctx.expand_input(self.low, "zbox low")
        hi = ctx.expand_input(self.high, "zbox high")
        # the bias numerators b − b⁺ − b⁻ cancel, exactly as in zennit's ZBox
        return [Group([Term(x, W, b), Term(-lo, pos(W), -pos(b)), Term(-hi, neg(W), -neg(b))],
                      eps=ctx.stabilizer)]

    def options(self):
        def short(v):
            t = torch.as_tensor(v)
            return float(t) if t.ndim == 0 else f"array{tuple(t.shape)}"
        return {"low": short(self.low), "high": short(self.high)}


class WSquare(Rule):
    """w²: M_ij = W_ji² / s(Σ_k W_jk² + b_j²) — independent of the input."""

    name = "wsquare"

    def groups(self, ctx: LayerContext):
        return [Group([Term(torch.ones_like(ctx.x), ctx.weight ** 2, ctx.bias ** 2)], eps=ctx.stabilizer)]


class Flat(Rule):
    """flat: equal shares over the layer's connections, M_ij = 1 / s(#inputs of j)."""

    name = "flat"

    def groups(self, ctx: LayerContext):
        return [Group([Term(torch.ones_like(ctx.x), torch.ones_like(ctx.weight))], eps=ctx.stabilizer)]


class ExcitationBP(Rule):
    """Excitation backprop (Zhang et al. 2016): M_ij = x_i W⁺_ji / s(Σ_k x_k W⁺_jk), no bias (module docstring)."""

    name = "excitation-bp"

    def groups(self, ctx: LayerContext):
        return [Group([Term(ctx.x, pos(ctx.weight))], eps=ctx.stabilizer)]


class ContrastiveExcitation(Rule):
    """The final layer of contrastive excitation BP (Sixt et al. 2020 eq. 16): Z⁺ − N⁺, N⁺ = Z⁺ of −W.

    M_ij = x_i W⁺_ji / s(Σ_k x_k W⁺_jk) − x_i (−W)⁺_ji / s(Σ_k x_k (−W)⁺_jk), no bias; column j has sum
    1 − 1 = 0 wherever both denominators are positive (up to the stabilizer).
    """

    name = "contrastive-excitation"

    def groups(self, ctx: LayerContext):
        x, W = ctx.x, ctx.weight
        return [Group([Term(x, pos(W))], eps=ctx.stabilizer),
                Group([Term(x, pos(-W))], coef=-1.0, eps=ctx.stabilizer)]
