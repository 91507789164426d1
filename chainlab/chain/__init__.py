"""Chains: the operators M_1 … M_L of one input under one rule, and how to read them.

* :class:`Chain` — a linear chain (products, prefix products, apply, rapply, explain);
* :class:`DeepLiftChain` — block operators on stacked (+, −) multipliers, explanations as contributions;
* :class:`RectifiedChain` — guided BP, deconv, RectGrad: the signal is rectified between layers, so
  only ``apply``/``explain`` exist.

May import: :mod:`chainlab.linalg`, :mod:`chainlab.errors`.  Chains know nothing of torch models.
"""
from .base import Chain, as_columns, check_target
from .deeplift import DeepLiftChain
from .rectified import RECTIFIERS, RectifiedChain, Rectifier

__all__ = ["Chain", "DeepLiftChain", "RectifiedChain", "Rectifier", "RECTIFIERS", "as_columns", "check_target"]
