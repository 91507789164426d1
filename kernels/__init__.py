"""numba kernels of chainlab, installed as ``chainlab.kernels``.

Kernels are pure functions on plain numpy arrays (no torch, no scipy objects);
the Python-facing checks (dtypes, shapes, index width) are done once in thin
wrappers inside :mod:`chainlab`.
"""
from .conv import conv_column_counts, conv_csc_fill

__all__ = ["conv_column_counts", "conv_csc_fill"]
