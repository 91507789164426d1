"""DeepLIFT chains: 2×2 block operators on stacked (+, −) multipliers (Sixt et al. 2020, eq. 13).

Every neuron h carries the two parts of its difference from the reference, Δh = Δh⁺ + Δh⁻, and
two multipliers m⁺, m⁻; the backward signal at a boundary with n neurons is the stacked 2n vector
[m⁺; m⁻] (+ first).  The start vector of logit k is [e_k; e_k] (Δf_k = Δf_k⁺ + Δf_k⁻, both with
multiplier 1) and the explanation is the contributions C = m⁺ ⊙ Δx⁺ + m⁻ ⊙ Δx⁻ in the shape of x,
with Σ C = f_k(x) − f_k(x⁰) (summation-to-delta) for Rescale and RevealCancel.  How the blocks are
built: :mod:`chainlab.extraction.deeplift`.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .base import Chain, check_target

__all__ = ["DeepLiftChain"]


class DeepLiftChain(Chain):
    """A DeepLIFT chain of :class:`~chainlab.linalg.BlockOperator` s (``space == "deeplift"``).

    Signals are stacked pairs [m⁺; m⁻] (2n rows, + first); ``shapes`` are the unpaired signal shapes.
    Extra attributes: ``reference`` (x⁰ flat), ``reference_logits`` (f(x⁰)), ``delta_input``
    ((Δx⁺, Δx⁻) flat), ``variant``.
    """

    def __init__(self, *args, reference, reference_logits, delta_input, variant, **kw):
        super().__init__(*args, **kw)
        self.reference = np.asarray(reference, dtype=np.float64).reshape(-1)
        self.reference_logits = np.asarray(reference_logits, dtype=np.float64).reshape(-1)
        self.delta_input = tuple(np.asarray(d, dtype=np.float64).reshape(-1) for d in delta_input)
        self.variant = variant

    def start_vector(self, target: int | None = None, of: str = "logit") -> np.ndarray:
        """[e_k; e_k] (2 n_logits): the multiplier of Δf_k with respect to both of its parts is 1."""
        if of != "logit":
            raise InputError(f"DeepLIFT explains the difference of a logit from the reference (of='logit'), not {of!r}")
        K = self.logits.size
        k = check_target(target, K, self.predicted)
        r = np.zeros(2 * K, dtype=self.dtype)
        r[k] = r[K + k] = 1.0
        return r

    def multipliers(self, target: int | None = None):
        """(m⁺, m⁻) at the input, each flat (n,)."""
        m = self.apply(self.start_vector(target))
        n = self.x.size
        return m[:n], m[n:]

    def contributions(self, M: np.ndarray) -> np.ndarray:
        """C = m⁺ ⊙ Δx⁺ + m⁻ ⊙ Δx⁻ for stacked input signals M (2n × k) or (2n,): (n × k) or (n,)."""
        M = np.asarray(M)
        n = self.x.size
        dp, dm = self.delta_input
        if M.ndim == 1:
            return M[:n] * dp + M[n:] * dm
        return M[:n] * dp[:, None] + M[n:] * dm[:, None]

    def explain(self, target: int | None = None, of: str = "logit") -> np.ndarray:
        """Contributions C = m⁺ ⊙ Δx⁺ + m⁻ ⊙ Δx⁻ in the shape of x (batch dimension included)."""
        return self.contributions(self.apply(self.start_vector(target, of))).reshape(self.input_shape)

    def delta(self, target: int | None = None) -> float:
        """f_k(x) − f_k(x⁰)."""
        k = check_target(target, self.logits.size, self.predicted)
        return float(self.logits[k] - self.reference_logits[k])

    def collapsed(self) -> Chain:
        """For Rescale: the ordinary chain of the collapsed operators A + B = WᵀS (multipliers; gradient-like).

        ``collapsed().explain(k) * (x − x⁰)`` equals ``explain(k)``.  Raises InputError if a block
        does not collapse (RevealCancel, ablation).
        """
        ops = [op.collapse(atol=0.0) for op in self.operators]
        return Chain(ops, names=self.names, shapes=self.shapes, input_shape=self.input_shape, x=self.x,
                     logits=self.logits, rule=self.rule + "-collapsed", options=self.options, space="gradient",
                     layer_rules=self.layer_rules, meta=self.meta)
