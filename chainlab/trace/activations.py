"""Elementwise activations that follow a linear map: the function and its derivative.

An activation ρ after a stage enters the chain only through its derivative: in gradient space
the stage's operator is Wᵀ diag(ρ'(z)) (for ReLU the mask 1[z > 0]), in relevance space the
activation passes relevance through unchanged (the identity, as zennit does).

* ``relu``:        ρ(z) = max(z, 0),               ρ'(z) = 1[z > 0]
* ``softplus``(β): ρ(z) = log(1 + exp(βz)) / β,    ρ'(z) = sigmoid(βz)   (torch's nn.Softplus(beta); for
                   βz > threshold torch returns z, whose derivative 1 agrees with sigmoid to float64 rounding)
* ``silu``:        ρ(z) = z·sigmoid(z),            ρ'(z) = sigmoid(z)·(1 + z·(1 − sigmoid(z)))

``derivative_bound`` is an upper bound of |ρ'| over ℝ (what the a-priori value bounds of the gradient
need): 1 for ReLU and Softplus (ρ' = 1[z > 0] or sigmoid(βz), in [0, 1]); for SiLU ρ' has its
maximum ≈ 1.0998 at z ≈ 2.3994 (the root of ρ'' = s(1 − s)(2 + z(1 − 2s)) = 0) and its minimum
≈ −0.0998 at z ≈ −2.3994, so |ρ'| ≤ 1.1.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Activation", "RELU"]

KINDS = ("relu", "softplus", "silu")


@dataclass(frozen=True)
class Activation:
    """An elementwise activation: ``kind`` (relu | softplus | silu), ``beta`` and ``threshold`` for softplus."""

    kind: str = "relu"
    beta: float = 1.0
    threshold: float = 20.0

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        if self.kind == "relu":
            return torch.relu(z)
        if self.kind == "softplus":
            return F.softplus(z, beta=self.beta, threshold=self.threshold)
        return F.silu(z)

    def derivative(self, z: torch.Tensor) -> torch.Tensor:
        """ρ'(z), elementwise (same shape and dtype as z)."""
        if self.kind == "relu":
            return (z > 0).to(z.dtype)
        if self.kind == "softplus":
            return torch.sigmoid(self.beta * z)
        s = torch.sigmoid(z)
        return s * (1 + z * (1 - s))

    @property
    def derivative_bound(self) -> float:
        """An upper bound of |ρ'(z)| over all z (see the module docstring)."""
        return 1.1 if self.kind == "silu" else 1.0

    @property
    def is_relu(self) -> bool:
        return self.kind == "relu"

    def describe(self) -> str:
        return f"softplus(beta={self.beta:g})" if self.kind == "softplus" else self.kind

    @classmethod
    def of_module(cls, m) -> "Activation":
        name = type(m).__name__
        if name == "ReLU":
            return RELU
        if name == "Softplus":
            return cls("softplus", float(m.beta), float(m.threshold))
        if name == "SiLU":
            return cls("silu")
        raise ValueError(f"not an activation module: {name}")


RELU = Activation("relu")
