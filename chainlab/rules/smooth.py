"""smooth-gradient: the gradient chain with every ReLU mask 1[z > 0] replaced by a soft mask s(βz).

For a Linear/Conv2d layer z = W x + b followed by a ReLU (gradient space, n_in × n_out):

    M = Wᵀ diag(s(β ⊙ z)),    z the pre-activation of the net at x (the ReLU net's own forward),

    activation="softplus":  s = sigmoid,  s(βz) = d/dz softplus_β(z),  softplus_β(z) = log(1 + e^(βz))/β
    activation="gaussian":  s = Φ (standard normal CDF),  s(βz) = d/dz (ReLU ∗ N(0, 1/β²))(z)
                            = d/dz E[max(z + ε, 0)], ε ~ N(0, 1/β²)   (the SP-β of Mehrpanah et al.: ReLU
                            convolved with a Gaussian; their code trains nn.Softplus(β) nets instead)

β → ∞ gives the hard mask back (β = math.inf is allowed: exactly 1[z > 0]).  Activations other than
ReLU (Softplus, SiLU) keep their own derivative.  The chain stays a product of matrices, so every
measure applies; ``Chain.masks`` holds the soft masks.

What equals what (tests/test_smooth_gradient.py):

* one hidden layer f(x) = A ρ(Wx + b): the softplus soft-mask chain of the ReLU net is exactly the
  gradient of the Softplus(β) net with the same weights (the pre-activation z = Wx + b does not depend
  on ρ);  with two or more hidden layers it is not — the deeper pre-activations of the two nets differ
  (W₂ ReLU(z₁) ≠ W₂ softplus_β(z₁)); it is the gradient of the ReLU net with ReLU's backward replaced by
  s(βz) (a custom autograd function), at every depth;
* one hidden layer and ``sigma=σ``: the Gaussian soft mask with per-unit β_j = 1/(σ‖w_j‖₂) is the
  expectation of SmoothGrad, E_ε ∇f(x + ε) with ε ~ N(0, σ²I): w_jᵀε ~ N(0, σ²‖w_j‖²), so
  E 1[z_j + w_jᵀε > 0] = Φ(z_j/(σ‖w_j‖)).

Options (validated with :mod:`chainlab.options`):

* ``activation``: "softplus" (default) | "gaussian";
* ``beta``: one number > 0 for every ReLU (default 1.0; ``math.inf`` = hard mask), or a mapping
  {layer name: number or array} with one β per output unit (n_out values) or per channel (C values);
  ReLUs after layers not in the mapping keep the hard mask;
* ``sigma``: None (default) or σ > 0: the first Linear/Conv2d layer gets β_j = 1/(σ‖w_j‖₂) per unit,
  ‖w_j‖ the norm of row j of the unrolled weight (BatchNorm folded; zero padding counted, so border
  units of a conv have smaller norms; ‖w_j‖ = 0 gives the hard mask, which is then exact); ``beta``
  still applies to the deeper layers.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from ..errors import OptionError
from ..options import choice, number
from ..trace import Stage
from .base import Group, LayerContext, Term
from .lrp import Gradient

__all__ = ["SmoothGradient", "soft_mask", "SOFT_ACTIVATIONS"]

SOFT_ACTIVATIONS = ("softplus", "gaussian")


def soft_mask(z: torch.Tensor, beta, activation: str = "softplus") -> torch.Tensor:
    """s(β z) elementwise (β a number or a tensor broadcastable to z; β = inf gives 1[z > 0])."""
    b = torch.as_tensor(beta, dtype=z.dtype)
    hard = (z > 0).to(z.dtype)
    if bool(torch.isinf(b).all()):
        return hard
    bz = torch.where(torch.isinf(b), torch.zeros_like(z), b * z)
    s = torch.sigmoid(bz) if activation == "softplus" else torch.special.ndtr(bz)
    return torch.where(torch.isinf(b), hard, s)


def row_norms(stage: Stage, in_shape) -> torch.Tensor:
    """‖w_j‖₂ of every output unit j of a Linear/Conv2d stage at an input of shape ``in_shape`` (flat)."""
    ones = torch.ones((1, *in_shape), dtype=stage.weight.dtype)
    return stage.linear_map(ones, weight=stage.weight ** 2).reshape(-1).clamp(min=0).sqrt()


def _all_stages(stages):
    """Every stage in forward order, residual blocks and the stages inside their branches."""
    for st in stages:
        if st.kind == "residual":
            for b in st.branches:
                yield from _all_stages(b)
        yield st


class SmoothGradient(Gradient):
    """M = Wᵀ diag(s(β z)) at every Linear/Conv2d layer followed by a ReLU (see the module docstring)."""

    name = "smooth-gradient"
    space = "gradient"

    def __init__(self, activation: str = "softplus", beta=1.0, sigma=None):
        where = f"rule {self.name!r}"
        self.activation = choice("activation", activation, SOFT_ACTIVATIONS, where)
        if isinstance(beta, Mapping):
            checked = {}
            for key, v in beta.items():
                if not isinstance(key, str):
                    raise OptionError(f"option beta of {where} maps layer names (str) to β, got key {key!r}")
                a = np.asarray(v, dtype=object)
                if a.ndim == 0:
                    checked[key] = number("beta", v, where, positive=True, finite=False)
                    continue
                try:
                    arr = np.asarray(v, dtype=np.float64).reshape(-1)
                except (TypeError, ValueError):
                    raise OptionError(f"option beta of {where} for layer {key!r} must be numbers, got {v!r}") from None
                if arr.size == 0 or np.isnan(arr).any() or not (arr > 0).all():
                    raise OptionError(f"option beta of {where} for layer {key!r} must be > 0 (inf allowed), "
                                      f"got values in [{np.nanmin(arr) if arr.size else 'empty'}, "
                                      f"{np.nanmax(arr) if arr.size else 'empty'}]")
                checked[key] = arr
            self.beta = checked
        else:
            self.beta = number("beta", beta, where, positive=True, finite=False)
        self.sigma = None if sigma is None else number("sigma", sigma, where, positive=True)
        self._relu_layers = None

    # -- options ------------------------------------------------------------------------------
    def options(self):
        if isinstance(self.beta, dict):
            beta = {k: (v if isinstance(v, float) else f"array({v.size})") for k, v in self.beta.items()}
        else:
            beta = self.beta
        return {"activation": self.activation, "beta": beta, "sigma": self.sigma}

    def prepare(self, net, model) -> None:
        """Check that a β mapping names layers followed by a ReLU (residual sums included)."""
        relu = [st.name for st in _all_stages(net.stages) if st.activation is not None and st.activation.is_relu]
        self._relu_layers = relu
        if isinstance(self.beta, dict):
            bad = sorted(set(self.beta) - set(relu))
            if bad:
                raise OptionError(f"option beta of rule {self.name!r} names {', '.join(map(repr, bad))}, not a layer "
                                  f"followed by a ReLU; those are: {', '.join(relu) or 'none'}")

    # -- β per unit ---------------------------------------------------------------------------
    def beta_of(self, stage: Stage, z_shape, first: bool = False, in_shape=None) -> torch.Tensor | float:
        """β for the units of the activation after ``stage`` (a number or a flat tensor of n_out values)."""
        n_out = int(np.prod(z_shape[1:]))
        if first and self.sigma is not None and stage.is_parametric:
            norms = row_norms(stage, in_shape).to(torch.float64)
            return torch.where(norms > 0, 1.0 / (self.sigma * norms.clamp(min=1e-300)),
                               torch.full_like(norms, math.inf))
        if not isinstance(self.beta, dict):
            return self.beta
        if stage.name not in self.beta:
            return math.inf
        v = self.beta[stage.name]
        if isinstance(v, float):
            return v
        t = torch.as_tensor(v, dtype=torch.float64)
        if t.numel() == n_out:
            return t
        channels = int(z_shape[1]) if len(z_shape) == 4 else None
        if channels is not None and t.numel() == channels:
            return t.repeat_interleave(n_out // channels)
        raise OptionError(f"option beta of rule {self.name!r} for layer {stage.name!r} has {t.numel()} values; the "
                          f"layer has {n_out} units" + (f" in {channels} channels" if channels else ""))

    def _derivative(self, stage: Stage, z: torch.Tensor, first: bool = False, in_shape=None) -> torch.Tensor:
        """(B, n_out) derivative of the activation after ``stage`` at pre-activations z (B, …)."""
        act = stage.activation
        zf = z.reshape(z.shape[0], -1)
        if act is None:
            return torch.ones_like(zf)
        if not act.is_relu:
            return act.derivative(zf)
        return soft_mask(zf, self.beta_of(stage, tuple(z.shape), first, in_shape), self.activation)

    # -- the rule -----------------------------------------------------------------------------
    def groups(self, ctx: LayerContext):
        return [Group([Term(torch.ones_like(ctx.x[:1]), ctx.weight)])]

    def mask(self, ctx: LayerContext):
        if ctx.stage.activation is None:
            return None
        return self._derivative(ctx.stage, ctx.record.z, ctx.is_first, ctx.record.in_shape)

    def activation_derivative(self, stage: Stage, z: torch.Tensor) -> torch.Tensor:
        return self._derivative(stage, z).reshape(z.shape)
