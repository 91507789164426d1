"""Rectified chains (guided BP, deconvnet, RectGrad): the backward signal is rectified between layers.

All three propagate the gradient through the linear maps of the net, r_in = Wᵀ ρ(r_out) (Sixt et
al. 2020 eq. 14), but replace the ReLU's mask by a rectification ρ of the signal at the ReLU's
output, which depends on the signal itself:

* ``guided-bp`` (Springenberg et al. 2014):  ρ(g) = 1[z > 0] ⊙ max(g, 0)
* ``deconv`` (Zeiler & Fergus 2014):          ρ(g) = max(g, 0)          (no forward mask)
* ``rectgrad`` (Kim et al. 2019), percentile q:
      ρ(g) = g ⊙ 1[h ⊙ g > τ],  τ = the q-th percentile (numpy's linear interpolation) of the
      values h ⊙ g over all units of the layer, h = ReLU(z) the layer's activation at x.

:class:`Rectifier` is ρ for B images at once (torch; one threshold τ per image and signal); it is the
``act`` step of the stage operators (:mod:`chainlab.linalg.implicit`) that :class:`RectifiedChain` and a
batch (:class:`~.batch.BatchChain`) apply alike.  The chain's operators ``chain[i]`` are the *linear parts*
only (Wᵀ of the layer, n_in × n_out, no mask), so ``apply`` / ``explain`` work (through the stage
operators, since ρ is not linear) while ``to_dense()`` and products raise :class:`NotLinearError`.  The
explanation is a gradient-space signal: the start vector is e_k.

Residual blocks z = Σ_t f_t(h), h_out = ReLU(z): the gradient of the sum is the identity to every
branch (Sixt et al. 2020, eq. 3), so the signal g at the block's output is rectified by the ReLU
after the sum, ρ_out(g), and handed unchanged to every branch; each branch propagates it through
its own stages with the rectifiers of its own ReLUs, and the block's input signal is the sum

    r_in = Σ_t B_t(ρ_out(g)),   B_t(v) = L_t1 ρ_t1( L_t2 ρ_t2( ⋯ L_tK ρ_tK(v) ) ),   B_t = id for an identity,

with L_tk the linear part of stage k of branch t and ρ_tk the rectifier of the ReLU after it (none:
identity) — :class:`chainlab.linalg.ResidualOperator` with the rectifier as its step.  As a chain operator
a block is its linear part Σ_t L_t1 ⋯ L_tK, a :class:`RectifiedResidual`.
"""
from __future__ import annotations

import numpy as np
import torch

from ..linalg import Diagonal, Product, Sum, per_image
from .base import Chain, as_columns

__all__ = ["RectifiedChain", "RectifiedResidual", "Rectifier", "RECTIFIERS", "percentile"]

RECTIFIERS = {
    "guided-bp": "guided backprop: ρ(g) = 1[z>0]·max(g, 0)",
    "deconv": "deconvnet: ρ(g) = max(g, 0)",
    "rectgrad": "RectGrad: ρ(g) = g·1[h·g > q-th percentile]",
}


def percentile(P: torch.Tensor, q: float) -> torch.Tensor:
    """numpy's q-th percentile (linear interpolation) along the last axis, keepdim: v_lo + (pos − lo)(v_(lo+1) − v_lo),
    pos = q/100·(n − 1), lo = ⌊pos⌋, from the top n − lo values (a partial selection; q = 98 needs the top 2 %)."""
    n = P.shape[-1]
    pos = q / 100.0 * (n - 1)
    lo = int(np.floor(pos))
    top = torch.topk(P, n - lo, dim=-1, largest=True, sorted=True).values      # v_(n−1) … v_(lo)
    v_lo = top[..., -1:]
    v_hi = top[..., -2:-1] if n - lo >= 2 else v_lo
    return v_lo + (pos - lo) * (v_hi - v_lo)


class Rectifier:
    """ρ of one ReLU at B images: ``kind`` (a key of RECTIFIERS), the ReLU's input z (B|1, *shape) at x, and q
    (rectgrad).  Applied to signals (B, m, *shape), one threshold per image and signal."""

    linear = False

    def __init__(self, kind: str, z: torch.Tensor, shape, q: float | None = None):
        self.kind, self.q, self.shape = kind, q, tuple(shape)
        self.mask = per_image((z > 0).to(z.dtype), shape)
        self.activation = per_image(torch.clamp(z, min=0.0), shape)

    @property
    def batch(self) -> int:
        return int(self.mask.shape[0])

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        if self.kind == "guided-bp":
            return torch.clamp(X, min=0.0) * self.mask.to(X.dtype)
        if self.kind == "deconv":
            return torch.clamp(X, min=0.0)
        B, M = X.shape[:2]
        prod = (self.activation.to(X.dtype) * X).reshape(B, M, -1)
        tau = percentile(prod, self.q)
        return torch.where(prod > tau, X.reshape(B, M, -1), X.new_zeros(())).reshape(X.shape)

    def __repr__(self):
        return f"<Rectifier {self.kind}{'' if self.q is None else f' q={self.q:g}'} B={self.batch}>"


class RectifiedResidual(Sum):
    """One residual block of a rectified chain as an :class:`~chainlab.linalg.Operator`: its linear part
    Σ_t L_t1 ⋯ L_tK (an identity branch contributes I); ``branches`` the linear parts of each branch's stages."""

    kind = "residual"

    def __init__(self, branches, n_out: int, names=None, layer_rules=None):
        self._branches = [list(b) for b in branches]
        terms = [Product(b) if b else Diagonal(np.ones(n_out)) for b in self._branches]
        super().__init__(terms)
        self.names = names or [[] for _ in self._branches]
        self.layer_rules = layer_rules or [[] for _ in self._branches]

    @property
    def branches(self) -> list:
        """The linear parts of each branch's stages; [] for an identity."""
        return self._branches

    def astype(self, dtype):
        return RectifiedResidual([[op.astype(dtype) for op in b] for b in self._branches], self.shape[1], self.names,
                                 self.layer_rules)


class RectifiedChain(Chain):
    """A chain whose backward signal is rectified between the layers (``linear = False``).

    ``stages[i]`` is the stage operator of stage i (its linear part with the :class:`Rectifier` of the ReLU after
    it as its step), ``rectifiers[i]`` that rectifier or None; ``chain[i]`` is the linear part of stage i, a
    :class:`RectifiedResidual` for a residual block.
    """

    linear = False

    def __init__(self, *args, stages, **kw):
        super().__init__(*args, **kw)
        self.stages = list(stages)
        self.rectifiers = [getattr(s, "act_step", None) for s in self.stages]
        self.not_linear_reason = (
            f"it rectifies the backward signal at every ReLU ({RECTIFIERS.get(self.rule, self.rule)}), so its "
            "backward pass is not a product of matrices and has no dense matrix or products; use "
            "chain.apply()/chain.explain(), or extract with rule 'gradient' (or 'gradient-x-input') for the "
            "matrix chain of the plain gradient"
        )

    def rectify(self, i: int, R: np.ndarray) -> np.ndarray:
        """ρ_i applied to every column of R (n_out of stage i, k)."""
        rect = self.rectifiers[i]
        if rect is None:
            return np.asarray(R)
        R2, vec = as_columns(R)
        X = torch.from_numpy(np.ascontiguousarray(R2.T, dtype=np.float64)).reshape((1, R2.shape[1]) +
                                                                                     self.stages[i].out_shape)
        Y = rect(X).reshape(R2.shape[1], -1).numpy().T
        return Y.reshape(-1) if vec else Y

    def apply(self, R, start: int = 0, stop: int | None = None, **_):
        """ρ-rectified propagation: for i = stop−1 … start, R ← L_i ρ_i(R) through the stage operators, column by
        column (each column its own RectGrad threshold)."""
        layers = self._signal_layers(R, start, stop)
        if not layers:
            return np.asarray(R)
        R2, vec = as_columns(R)
        k = R2.shape[1]
        last = layers[-1]
        X = torch.from_numpy(np.ascontiguousarray(R2.T, dtype=np.float64)).reshape((1, k) +
                                                                                     self.stages[last].out_shape)
        with torch.no_grad():
            for i in reversed(layers):
                X = self.stages[i].back(X.reshape((1, k) + self.stages[i].out_shape))
        out = X.reshape(k, -1).numpy().T
        return out.reshape(-1) if vec else out
