"""numba kernels of chainlab, installed as ``chainlab.kernels``.

Kernels are pure functions on plain numpy arrays (no torch, no scipy objects);
the Python-facing checks (dtypes, shapes, index width) are done once in thin
wrappers inside :mod:`chainlab` (:mod:`chainlab.products` for the sparse kernels).
"""
from .conv import conv_column_counts, conv_csc_fill
from .sparse import (block2_csc_dense, channel_cosine, csc_column_norms, csc_dense, csc_scale_columns, csc_vector, csr_dense, csr_vector,
                     csc_pattern_hash, dense_column_norms, dense_csc, dense_scale_columns, spgemm_dense,
                     spgemm_group_numeric, spgemm_group_symbolic, spgemm_numeric, spgemm_symbolic)

__all__ = ["conv_column_counts", "conv_csc_fill", "block2_csc_dense", "channel_cosine", "csc_column_norms",
           "csc_dense", "csc_scale_columns", "csc_vector", "csr_dense", "csr_vector", "dense_column_norms", "dense_csc", "dense_scale_columns",
           "spgemm_dense", "spgemm_numeric", "csc_pattern_hash", "spgemm_group_numeric", "spgemm_group_symbolic", "spgemm_symbolic"]
