"""Prefix products P_k = M_1 ⋯ M_k of a chain, renormalized per step.

Uses ``Chain.prefix_products(normalize=True)`` (issue 5) when the chain has it; otherwise
computes the same plainly: P_1 = M_1, P_(k+1) = P_k M_(k+1); after every step the matrix is
divided by its largest |entry| and the log of that factor is accumulated, so the true product
is exp(log_scale) · matrix and a 50-layer chain neither overflows nor underflows.  Sparse
stays sparse (CSC) while the density is below ``DENSE_ABOVE``.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from ._common import as_matrix, require_linear

DENSE_ABOVE = 0.1


class PrefixProduct(NamedTuple):
    """P_k = exp(log_scale) · matrix, matrix an ndarray or scipy csc_matrix (n_input × n_k)."""
    k: int
    matrix: object
    log_scale: float


def _maxabs(m) -> float:
    if sp.issparse(m):
        return float(abs(m).max()) if m.nnz else 0.0
    return float(np.abs(m).max()) if m.size else 0.0


def _densify(m):
    if sp.issparse(m) and m.shape[0] * m.shape[1] > 0 and m.nnz / (m.shape[0] * m.shape[1]) > DENSE_ABOVE:
        return m.toarray()
    return m


def _normalize(m, log_scale):
    a = _maxabs(m)
    if a > 0 and np.isfinite(a):
        m = m / a
        log_scale += math.log(a)
    return (m.tocsc() if sp.issparse(m) else m), log_scale


def prefix_products(chain, start: int = 0, stop: int | None = None):
    """Iterate PrefixProduct(k, matrix, log_scale) for k = start+1 … stop (default: all L layers)."""
    require_linear(chain, "prefix products")
    native = getattr(type(chain), "prefix_products", None)
    if native is not None:
        yield from chain.prefix_products(normalize=True, start=start, stop=stop)
        return
    stop = len(chain) if stop is None else stop
    P, log_scale = None, 0.0
    for i in range(start, stop):
        M = _densify(as_matrix(chain[i]))
        if P is None:
            P = M.copy()
        elif sp.issparse(P) and sp.issparse(M):
            P = P @ M
        else:
            P = np.asarray(P @ M)
        P = _densify(P)
        P, log_scale = _normalize(P, log_scale)
        yield PrefixProduct(i + 1, P, log_scale)


def implicit_prefix(chain, k: int):
    """P_k = M_1 ⋯ M_k as a scipy LinearOperator (matvec through chain.apply, rmatvec through Mᵀ)."""
    import scipy.sparse.linalg as spla
    ops = chain.operators[:k] if hasattr(chain, "operators") else list(chain)[:k]
    n, m = ops[0].shape[0], ops[-1].shape[1]
    dtype = np.result_type(*[o.dtype for o in ops])

    def mv(V):
        V = np.asarray(V).reshape(m, -1)
        for op in reversed(ops):
            V = op.matmat(V)
        return V

    def rmv(U):
        U = np.asarray(U).reshape(n, -1)
        for op in ops:
            U = op.rmatmat(U)
        return U

    return spla.LinearOperator((n, m), matvec=mv, rmatvec=rmv, matmat=mv, rmatmat=rmv, dtype=dtype)


def prefix_products_or_operators(chain, max_dense: float = 2e7):
    """(k, matrix | None, log_scale, size_ok): materialized P_k while n_input·n_k ≤ max_dense for all k ≤ this k."""
    require_linear(chain, "prefix products")
    n_in = chain[0].shape[0]
    fits = [n_in * op.shape[1] <= max_dense for op in chain]
    last_ok = len(fits) if all(fits) else fits.index(False)
    if last_ok:
        for pp in prefix_products(chain, 0, last_ok):
            yield pp.k, pp.matrix, pp.log_scale
    for k in range(last_ok + 1, len(chain) + 1):
        yield k, None, 0.0
