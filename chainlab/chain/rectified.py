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

Residual blocks z = Σ_t f_t(h), h_out = ReLU(z): the gradient of the sum is the identity to every
branch (Sixt et al. 2020, eq. 3), so the signal g at the block's output is rectified by the ReLU
after the sum, ρ_out(g), and handed unchanged to every branch; each branch propagates it through
its own stages with the rectifiers of its own ReLUs, and the block's input signal is the sum

    r_in = Σ_t B_t(ρ_out(g)),   B_t(v) = L_t1 ρ_t1( L_t2 ρ_t2( ⋯ L_tK ρ_tK(v) ) ),   B_t = id for an identity,

with L_tk the linear part of stage k of branch t and ρ_tk the rectifier of the ReLU after it (none:
identity).  A :class:`RectifiedResidual` holds the branches' (linear part, rectifier) steps; as an
operator it is the linear part of the block, Σ_t L_t1 ⋯ L_tK, and :meth:`RectifiedResidual.rectified`
is B above.  Its steps may be residual blocks themselves (nested blocks).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..linalg import Diagonal, Product, Sum
from .base import Chain, as_columns

__all__ = ["RectifiedChain", "RectifiedResidual", "Rectifier", "RECTIFIERS"]

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


class RectifiedResidual(Sum):
    """One residual block of a rectified chain: its branches as lists of (linear part, rectifier or None) steps.

    As an :class:`~chainlab.linalg.Operator` (n × n_out) it is the block's linear part Σ_t L_t1 ⋯ L_tK
    (an identity branch contributes I); :meth:`rectified` applies the rectified branches (module
    docstring).  The rectifier of the ReLU after the sum is not part of the block: the chain applies
    it before the block, as after any stage.
    """

    kind = "residual"

    def __init__(self, branches, n_out: int, names=None, layer_rules=None):
        self.steps = [list(b) for b in branches]
        terms = [Product([op for op, _ in b]) if b else Diagonal(np.ones(n_out)) for b in self.steps]
        super().__init__(terms)
        self.names = names or [[] for _ in self.steps]
        self.layer_rules = layer_rules or [[] for _ in self.steps]

    @property
    def branches(self) -> list:
        """The linear parts of each branch's stages; [] for an identity."""
        return [[op for op, _ in b] for b in self.steps]

    def rectified(self, R: np.ndarray) -> np.ndarray:
        """Σ_t B_t(R) for R (n_out, k): each branch's linear parts with its own rectifiers between them."""
        out = np.zeros((self.shape[0], R.shape[1]), dtype=np.result_type(self.dtype, R.dtype))
        for b in self.steps:
            V = R
            for op, rect in reversed(b):
                V = rectified_step(op, rect, V)
            out += V
        return out

    def astype(self, dtype):
        return RectifiedResidual([[(op.astype(dtype), rect) for op, rect in b] for b in self.steps], self.shape[1],
                                 self.names, self.layer_rules)


def rectified_step(op, rect, R: np.ndarray) -> np.ndarray:
    """op(ρ(R)): the rectifier ``rect`` (or none) at a stage's output, then the stage's linear part (or block)."""
    if rect is not None:
        R = rect(R)
    return op.rectified(R) if isinstance(op, RectifiedResidual) else op.matmat(R)


class RectifiedChain(Chain):
    """A chain whose backward signal is rectified between the layers (``linear = False``).

    ``rectifiers[i]`` is the :class:`Rectifier` of the ReLU after stage i, or None; ``chain[i]`` is the linear
    part of stage i, a :class:`RectifiedResidual` for a residual block.
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
        """ρ-rectified propagation: for i = stop−1 … start, R ← chain[i] @ ρ_i(R), column by column (a residual
        block: R ← Σ_t B_t(ρ_i(R)), :meth:`RectifiedResidual.rectified`)."""
        layers = self._signal_layers(R, start, stop)
        if not layers:
            return np.asarray(R)
        R2, vec = as_columns(R)
        R2 = R2.astype(np.float64)
        for i in reversed(layers):
            R2 = rectified_step(self.operators[i], self.rectifiers[i], R2)
        return R2.reshape(-1) if vec else R2
