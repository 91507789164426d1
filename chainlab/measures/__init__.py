"""Measures on chains: what the theory predicts, computed on extracted operators (never on torch models)."""
from .spectra import singular_values

__all__ = ["singular_values"]
