"""Singular values of operators.

σ_1 ≥ σ_2 ≥ … of an operator M (n_in × n_out): exact by dense SVD when
min(n_in, n_out) ≤ ``exact_below`` and the dense copy is small, else by
``scipy.sparse.linalg.svds`` on the operator (ARPACK/Lanczos, relative tolerance
``tol``) without materializing it.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla

from ..operators import Operator

DENSE_LIMIT = 4_000_000   # entries of a dense copy we are willing to make for an exact SVD


def singular_values(op: Operator, k: int = 1, exact_below: int = 1500, tol: float = 1e-8, seed: int = 0) -> np.ndarray:
    """The k largest singular values of ``op``, descending (zeros padded when rank < k)."""
    n, m = op.shape
    small = min(n, m)
    if small <= exact_below and n * m <= DENSE_LIMIT or small <= k + 1:
        s = np.linalg.svd(op.to_dense().astype(np.float64), compute_uv=False)
    else:
        rng = np.random.default_rng(seed)
        v0 = rng.standard_normal(min(n, m))
        s = spla.svds(spla.aslinearoperator(op), k=k, tol=tol, return_singular_vectors=False, v0=v0,
                      random_state=seed)
        s = np.sort(s)[::-1]
    out = np.zeros(k)
    out[: min(k, len(s))] = s[:k]
    return out
