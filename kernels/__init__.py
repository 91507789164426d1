"""numba kernels of chainlab, installed as ``chainlab.kernels``.

Kernels are pure functions on plain numpy arrays (no torch, no scipy objects); the
Python-facing checks (dtypes, shapes, index width) are done once in thin wrappers in
:mod:`chainlab.linalg.spmat` (sparse products, norms, channel cosines) and
:mod:`chainlab.linalg.conv` (convolution matrices).  This folder imports numpy and numba only.
"""
from .conv import conv_column_counts, conv_csc_fill
from .sparse import (channel_cosine, csc_column_norms, csc_dense, csc_pattern_hash, csc_vector, csr_dense,
                     csr_vector, dense_column_norms, dense_csc, spgemm_dense, spgemm_group_numeric,
                     spgemm_group_symbolic, spgemm_numeric, spgemm_symbolic)

__all__ = ["conv_column_counts", "conv_csc_fill", "channel_cosine", "csc_column_norms", "csc_dense",
           "csc_pattern_hash", "csc_vector", "csr_dense", "csr_vector", "dense_column_norms", "dense_csc",
           "spgemm_dense", "spgemm_group_numeric", "spgemm_group_symbolic", "spgemm_numeric", "spgemm_symbolic"]
