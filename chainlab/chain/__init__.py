"""Chains: the operators M_1 … M_L of one input under one rule, and how to read them.

* :class:`Chain` — a linear chain (products, prefix products, apply, rapply, explain);
* :class:`ContrastiveChain` — the z⁺ chain whose explanation is contrastive LRP (a contrast of two maps);
* :class:`DeepLiftChain` — block operators on stacked (+, −) multipliers, explanations as contributions;
* :class:`RectifiedChain` — guided BP, deconv, RectGrad: the signal is rectified between layers, so
  only ``apply``/``explain`` exist (a residual block is a :class:`RectifiedResidual`);
* :class:`BatchChain` — the backward pass of B inputs as stage operators on torch batches; with B = 1 it
  gives the chain of that input (``BatchChain.chain``).

May import: :mod:`chainlab.linalg`, :mod:`chainlab.errors`.  Chains know nothing of torch models.
"""
from .base import Chain, as_columns, check_target
from .batch import BatchChain
from .contrastive import ContrastiveChain
from .deeplift import DeepLiftChain
from .rectified import RECTIFIERS, RectifiedChain, RectifiedResidual, Rectifier

__all__ = ["BatchChain", "Chain", "ContrastiveChain", "DeepLiftChain", "RectifiedChain", "RectifiedResidual",
           "Rectifier", "RECTIFIERS", "as_columns", "check_target"]
