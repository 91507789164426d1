"""Rank-1 convergence of the prefix products P_k = M_1 ⋯ M_k (Sixt et al. Thm. 1).

For every k (records ``measure="rank1"``, layer = name of M_k):

* ``sigma2/sigma1``       σ2(P_k)/σ1(P_k)  (0 for an exactly rank-1 product; None for P_k = 0)
* ``rank1_residual``      ‖P_k − σ1 u1 v1ᵀ‖_F / ‖P_k‖_F = √(Σ_(i≥2) σ_i²) / √(Σ_i σ_i²)
* ``stable_rank``         ‖P_k‖_F² / σ1²  (≥ 1, = 1 iff rank 1)
* ``effective_rank``      exp(H(p)), p_i = σ_i / Σ_j σ_j, H the Shannon entropy (Roy & Vetterli 2007)
* ``log_sigma1``          log σ1 of the true (unnormalized) P_k = log_scale + log σ1(matrix)

Singular values ≤ σ1·max(n, m)·eps count as 0 (numerical rank).  All are scale-invariant, so they are computed on the renormalized product (see :mod:`.prefix`).
Exact from the full SVD when P_k is materialized (n_input·n_k ≤ ``max_dense``); above that only
σ2/σ1 and log σ1 are given, from ``svds`` on the implicit product (extra ``method="svds"``).
"""
from __future__ import annotations

import math

import numpy as np

from . import lapack
from ._common import layer_label, rank_tol, ratio, record, to_dense
from .prefix import implicit_prefix, prefix_products_or_operators
from .spectra import singular_values

__all__ = ["rank1", "rank1_quantities"]


def rank1_quantities(s: np.ndarray, shape=None) -> dict:
    """The rank-1 quantities from a full list of singular values s (any order).

    With ``shape`` given, σ_i ≤ σ1·max(n, m)·eps count as 0 (numerical rank, as matrix_rank).
    """
    s = np.sort(np.abs(np.asarray(s, dtype=np.float64)))[::-1]
    if s.size and shape is not None:
        s[s <= rank_tol(s[0], shape)] = 0.0
    if s.size == 0 or s[0] == 0:
        return {"sigma2/sigma1": None, "rank1_residual": None, "stable_rank": None, "effective_rank": None}
    s2 = s[1] if s.size > 1 else 0.0
    fro2 = float(np.sum(s ** 2))
    p = s / s.sum()
    p = p[p > 0]
    return {
        "sigma2/sigma1": float(s2 / s[0]),
        "rank1_residual": float(math.sqrt(float(np.sum(s[1:] ** 2)) / fro2)),
        "stable_rank": fro2 / float(s[0] ** 2),
        "effective_rank": float(np.exp(-np.sum(p * np.log(p)))),
    }


def rank1(chain, *, max_dense: float = 2e7, exact_below: int = 400) -> list[dict]:
    """Rank-1 convergence records of every prefix product P_k of ``chain``."""
    chain.require_linear("rank-1 convergence")
    rows = []
    for k, P, log_scale in prefix_products_or_operators(chain, max_dense):
        layer = layer_label(chain, k - 1)
        if P is not None:
            s = lapack.svd(to_dense(P), compute_uv=False)
            q = rank1_quantities(s, P.shape)
            for name, v in q.items():
                rows.append(record(chain, "rank1", name, layer, k, v, method="svd",
                                   note=None if v is not None else "zero product"))
            ls = log_scale + math.log(s[0]) if s.size and s[0] > 0 else -math.inf
            rows.append(record(chain, "rank1", "log_sigma1", layer, k, ls, method="svd"))
        else:
            op = implicit_prefix(chain, k)
            s = singular_values(op, 2, exact_below)
            if s[1] <= rank_tol(s[0], op.shape):
                s[1] = 0.0
            r = ratio(s[1], s[0])
            rows.append(record(chain, "rank1", "sigma2/sigma1", layer, k, r if r != math.inf else None,
                               method="svds"))
            rows.append(record(chain, "rank1", "log_sigma1", layer, k,
                               math.log(s[0]) if s[0] > 0 else -math.inf, method="svds"))
    return rows
