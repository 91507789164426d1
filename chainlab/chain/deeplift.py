"""DeepLIFT chains: multipliers of the difference from a reference, explanations as contributions.

Two kinds (:mod:`chainlab.extraction.deeplift`):

* the ``deeplift`` package's rule (Sixt et al.'s methods): one multiplier m per neuron at every layer
  boundary, plain n_in × n_out operators; the start vector of logit k is e_k and the explanation the
  contributions C = m ⊙ Δx;
* the ± variants (``-pm``): every neuron carries the two parts of its difference, Δh = Δh⁺ + Δh⁻, and two
  multipliers; the signal at a boundary with n neurons is the stacked 2n vector [m⁺; m⁻] (+ first), the
  operators are 2×2 :class:`~chainlab.linalg.BlockOperator` s (Sixt et al. 2020, eq. 13), the start vector
  [e_k; e_k] (Δf_k = Δf_k⁺ + Δf_k⁻, both with multiplier 1) and C = m⁺ ⊙ Δx⁺ + m⁻ ⊙ Δx⁻.

Σ C = f_k(x) − f_k(x⁰) (summation-to-delta) wherever every layer conserves (see the extraction modules).
``chain.paired`` tells the kinds apart.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .base import Chain, check_target

__all__ = ["DeepLiftChain"]


class DeepLiftChain(Chain):
    """A DeepLIFT chain (``space == "deeplift"``): plain operators on multipliers, or
    :class:`~chainlab.linalg.BlockOperator` s on stacked pairs [m⁺; m⁻] (``paired``; 2n rows, + first).  ``shapes``
    are the unpaired signal shapes.
    Extra attributes: ``reference`` (x⁰ flat), ``reference_logits`` (f(x⁰)), ``delta_input`` ((Δx⁺, Δx⁻) flat),
    ``variant``.
    """

    def __init__(self, *args, reference, reference_logits, delta_input, variant, **kw):
        super().__init__(*args, **kw)
        self.reference = np.asarray(reference, dtype=np.float64).reshape(-1)
        self.reference_logits = np.asarray(reference_logits, dtype=np.float64).reshape(-1)
        self.delta_input = tuple(np.asarray(d, dtype=np.float64).reshape(-1) for d in delta_input)
        self.variant = variant

    @property
    def n_logits(self) -> int:
        return self.logits.size

    def start_vector(self, target: int | None = None, of: str = "logit") -> np.ndarray:
        """e_k (n_logits), or [e_k; e_k] (2 n_logits) for pairs: the multiplier of Δf_k (of both its parts) is 1."""
        if of != "logit":
            raise InputError(f"DeepLIFT explains the difference of a logit from the reference (of='logit'), not {of!r}")
        K = self.n_logits
        k = check_target(target, K, self.predicted)
        r = np.zeros(2 * K if self.paired else K, dtype=self.dtype)
        r[k] = 1.0
        if self.paired:
            r[K + k] = 1.0
        return r

    def multipliers(self, target: int | None = None):
        """(m⁺, m⁻) at the input, each flat (n,) (one array twice for the package's rule)."""
        m = self.apply(self.start_vector(target))
        n = self.x.size
        return (m[:n], m[n:]) if self.paired else (m, m)

    def contributions(self, M: np.ndarray) -> np.ndarray:
        """C = m ⊙ Δx, or m⁺ ⊙ Δx⁺ + m⁻ ⊙ Δx⁻ for stacked pairs, of input signals M ((2)n × k) or ((2)n,): (n × k) or
        (n,)."""
        M = np.asarray(M)
        n = self.x.size
        dp, dm = self.delta_input
        P, N = (M[:n], M[n:]) if self.paired else (M, M)
        if M.ndim == 1:
            return P * dp + N * dm
        return P * dp[:, None] + N * dm[:, None]

    def explain(self, target: int | None = None, of: str = "logit") -> np.ndarray:
        """Contributions C in the shape of x (batch dimension included)."""
        return self.contributions(self.apply(self.start_vector(target, of))).reshape(self.input_shape)

    def delta(self, target: int | None = None) -> float:
        """f_k(x) − f_k(x⁰)."""
        k = check_target(target, self.logits.size, self.predicted)
        return float(self.logits[k] - self.reference_logits[k])

    def collapsed(self) -> Chain:
        """The ordinary chain of the multipliers (gradient-like): for a pair chain the collapsed operators A + B = WᵀS
        (Rescale; raises InputError if a block does not collapse: RevealCancel, ablation), for the package's rule
        its own operators.  ``collapsed().explain(k) * (x − x⁰)`` equals ``explain(k)``."""
        ops = [op.collapse(atol=0.0) for op in self.operators] if self.paired else list(self.operators)
        return Chain(ops, names=self.names, shapes=self.shapes, input_shape=self.input_shape, x=self.x,
                     logits=self.logits, rule=self.rule + "-collapsed", options=self.options, space="gradient",
                     layer_rules=self.layer_rules, meta=self.meta)
