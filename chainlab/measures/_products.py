"""Prefix products P_k = M_1 ⋯ M_k for the measures: materialized while they fit, implicit beyond.

Materialized products come from ``Chain.prefix_products(normalize=True)`` (renormalized per step,
true P_k = exp(log_scale) · matrix, see :mod:`chainlab.products`); a product too large to store is
a LinearOperator applying the factors one by one (``Chain.apply`` / ``Chain.rapply``).
"""
from __future__ import annotations

import numpy as np

from ..products import PrefixProduct
from ._common import require_linear

__all__ = ["PrefixProduct", "prefix_products", "implicit_prefix", "prefix_products_or_operators"]


def prefix_products(chain, start: int = 0, stop: int | None = None):
    """Iterate PrefixProduct(k, matrix, log_scale) for k = start+1 … stop (default: all L layers)."""
    require_linear(chain, "prefix products")
    yield from chain.prefix_products(normalize=True, start=start, stop=stop)


def implicit_prefix(chain, k: int):
    """P_k = M_1 ⋯ M_k as a scipy LinearOperator (products through chain.apply, transposes through chain.rapply)."""
    import scipy.sparse.linalg as spla

    ops = chain.operators[:k]
    n, m = ops[0].shape[0], ops[-1].shape[1]
    dtype = np.result_type(*[o.dtype for o in ops])

    def mv(V):
        return chain.apply(np.asarray(V).reshape(m, -1), 0, k, basis=False)

    def rmv(U):
        return chain.rapply(np.asarray(U).reshape(n, -1), 0, k)

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
