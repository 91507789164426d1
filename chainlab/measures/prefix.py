"""Prefix products P_k = M_1 ⋯ M_k for the measures: materialized while they fit, matrix-free beyond.

* :func:`prefix_products` — materialized P_k from ``Chain.prefix_products(normalize=True)``
  (renormalized per step: true P_k = exp(log_scale) · matrix, see :mod:`chainlab.linalg.products`);
* :func:`implicit_prefix` — P_k as a scipy LinearOperator applying the factors one by one
  (``Chain.apply`` / ``Chain.rapply``), for products too large to store;
* :func:`prefix_power` — σ_1, σ_2 of P_k by block subspace iteration
  (:func:`~.svd.subspace_singular_values`) through ``chain.apply`` / ``chain.rapply``: P_k V and P_kᵀ U are
  all that is needed, so the n_input × n_k product of VGG-16 or ResNet-50 at 224×224 is never formed.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla

from ..errors import InputError
from ..linalg import PrefixProduct
from .svd import PowerResult, subspace_singular_values

__all__ = ["PrefixProduct", "PowerResult", "prefix_products", "implicit_prefix", "prefix_products_or_operators",
           "prefix_power"]


def prefix_products(chain, start: int = 0, stop: int | None = None):
    """Iterate PrefixProduct(k, matrix, log_scale) for k = start+1 … stop (default: all L layers)."""
    chain.require_linear("prefix products")
    yield from chain.prefix_products(normalize=True, start=start, stop=stop)


def implicit_prefix(chain, k: int):
    """P_k = M_1 ⋯ M_k as a scipy LinearOperator (products through chain.apply, transposes through chain.rapply)."""
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
    chain.require_linear("prefix products")
    n_in = chain[0].shape[0]
    fits = [n_in * op.shape[1] <= max_dense for op in chain]
    last_ok = len(fits) if all(fits) else fits.index(False)
    if last_ok:
        for pp in prefix_products(chain, 0, last_ok):
            yield pp.k, pp.matrix, pp.log_scale
    for k in range(last_ok + 1, len(chain) + 1):
        yield k, None, 0.0


def prefix_power(chain, k: int, *, top: int = 2, extra: int = 4, tol: float = 1e-9, maxiter: int = 500,
                 seed: int = 0) -> PowerResult:
    """σ_1 ≥ … ≥ σ_top of P_k = M_1 ⋯ M_k by block subspace iteration (module docstring), matrix-free.

    ``k`` in 1 … len(chain); ``extra`` additional block columns (faster convergence of σ_top, rate
    (σ_(top+extra+1)/σ_top)²); ``tol`` on the relative residuals ρ_j; stops after ``maxiter`` steps with
    ``converged=False`` (values are then lower bounds).  Products in float32 when M_1 … M_k are all float32.
    Works on any linear chain whose operators have
    matmat/rmatmat (dense, sparse, implicit, residual).
    """
    chain.require_linear("prefix_power")
    L = len(chain)
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= L):
        raise InputError(f"prefix_power: k must be an integer in 1..{L} (the chain has {L} layers), got {k!r}")
    shape = (chain[0].shape[0], chain[k - 1].shape[1])
    single = all(np.dtype(op.dtype) == np.float32 for op in list(chain)[:k])
    return subspace_singular_values(lambda V: chain.apply(V, 0, k), lambda U: chain.rapply(U, 0, k), shape,
                                    top=top, extra=extra, tol=tol, maxiter=maxiter, seed=seed,
                                    dtype=np.float32 if single else np.float64)
