"""Rectified chains (guided BP, deconvnet, RectGrad): the backward signal is rectified between layers.

All three propagate the gradient through the linear maps of the net, r_in = Wᵀ ρ(r_out) (Sixt et
al. 2020 eq. 14), but replace the ReLU's mask by a rectification ρ of the signal at the ReLU's
output, which depends on the signal itself:

* ``guided-bp`` (Springenberg et al. 2014):  ρ(g) = 1[z > 0] ⊙ max(g, 0)
* ``deconv`` (Zeiler & Fergus 2014):          ρ(g) = max(g, 0)          (no forward mask)
* ``rectgrad`` (Kim et al. 2019), percentile q:
      ρ(g) = g ⊙ 1[h ⊙ g > τ],  τ = the q-th percentile (numpy's linear interpolation) of the
      values h ⊙ g over all units of the layer, h = ReLU(z) the layer's activation at x.

The chain's operators ``chain[i]`` are the *linear parts* only (Wᵀ of the layer, n_in × n_out, no
mask); the rectification sits between them, so ``apply`` / ``explain`` work (column by column,
since ρ is not linear) while ``to_dense()`` and products raise :class:`NotLinearError`.  The
explanation is a gradient-space signal: the start vector is e_k.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Chain, as_columns

__all__ = ["RectifiedChain", "Rectifier", "RECTIFIERS"]

RECTIFIERS = {
    "guided-bp": "guided backprop: ρ(g) = 1[z>0]·max(g, 0)",
    "deconv": "deconvnet: ρ(g) = max(g, 0)",
    "rectgrad": "RectGrad: ρ(g) = g·1[h·g > q-th percentile]",
}


@dataclass(frozen=True)
class Rectifier:
    """ρ of one ReLU: ``kind`` (a key of RECTIFIERS), its forward mask 1[z > 0] and activation h = ReLU(z)."""

    kind: str
    mask: np.ndarray
    activation: np.ndarray
    q: float | None = None

    def __call__(self, R: np.ndarray) -> np.ndarray:
        """ρ applied to every column of R (n, k)."""
        if self.kind == "guided-bp":
            return np.maximum(R, 0.0) * self.mask[:, None]
        if self.kind == "deconv":
            return np.maximum(R, 0.0)
        prod = self.activation[:, None] * R
        tau = np.percentile(prod, self.q, axis=0)
        return np.where(prod > tau[None, :], R, 0.0)


class RectifiedChain(Chain):
    """A chain whose backward signal is rectified between the layers (``linear = False``).

    ``rectifiers[i]`` is the :class:`Rectifier` of the ReLU after stage i, or None.
    """

    linear = False

    def __init__(self, *args, rectifiers, **kw):
        super().__init__(*args, **kw)
        self.rectifiers = list(rectifiers)
        self.not_linear_reason = (
            f"it rectifies the backward signal at every ReLU ({RECTIFIERS.get(self.rule, self.rule)}), so its "
            "backward pass is not a product of matrices and has no dense matrix or products; use "
            "chain.apply()/chain.explain(), or extract with rule 'gradient' (or 'gradient-x-input') for the "
            "matrix chain of the plain gradient"
        )

    def rectify(self, i: int, R: np.ndarray) -> np.ndarray:
        """ρ_i applied to every column of R (n_out of stage i, k)."""
        rect = self.rectifiers[i]
        return R if rect is None else rect(R)

    def apply(self, R, start: int = 0, stop: int | None = None, **_):
        """ρ-rectified propagation: for i = stop−1 … start, R ← chain[i] @ ρ_i(R), column by column."""
        layers = self._signal_layers(R, start, stop)
        if not layers:
            return np.asarray(R)
        R2, vec = as_columns(R)
        R2 = R2.astype(np.float64)
        for i in reversed(layers):
            R2 = self.operators[i].matmat(self.rectify(i, R2))
        return R2.reshape(-1) if vec else R2
