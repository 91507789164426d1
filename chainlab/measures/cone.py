"""Cone shrinkage of the prefix products P_k = M_1 ⋯ M_k.

Angular diameter  θ(A) = max over pairs of nonzero columns a, b of ∠(a, b) = arccos(⟨a,b⟩/(‖a‖‖b‖)).
Exact (Gram matrix of the normalized columns) for ≤ ``exact_columns`` nonzero columns; above that
``sample`` columns are drawn: the sampled maximum is a lower bound (``value``) and
2·max_j ∠(c, a_j) for the normalized mean direction c is an upper bound (``upper``, triangle
inequality on the sphere, capped at π).  For non-negative chains the columns of P_(k+1) are
non-negative combinations of those of P_k, and spherical caps of radius ≤ π/2 are convex, so
θ(P_(k+1)) ≤ θ(P_k).

Hilbert projective metric on the non-negative orthant: for a, b with the same support S
    d_H(a, b) = log( max_(i∈S) a_i/b_i · max_(j∈S) b_j/a_j ),
and d_H = ∞ when the supports differ.  Projective diameter Δ(A) = max over pairs of nonzero
columns; Birkhoff contraction τ(A) = tanh(Δ(A)/4) (τ = 1 for Δ = ∞) with d_H(Au, Av) ≤ τ(A) d_H(u, v).
Checks reported per k (and violations raise ``ConeViolationError``):
    Δ(P_(k+1)) ≤ Δ(P_k)                                  (cone inclusion)
    Δ(P_(k+1)) ≤ τ(M_1) ⋯ τ(M_k) · Δ(M_(k+1))             (Birkhoff; 0·∞ := ∞, no information)
Both need non-negative matrices; on chains with negative entries only the angle is reported.
Zero columns are dropped and counted (extra ``zero_columns``).
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from ..errors import ConeViolationError, InputError
from ._common import as_matrix, layer_label, record, to_dense
from .prefix import prefix_products

__all__ = ["angular_diameter", "hilbert_distance", "projective_diameter", "birkhoff", "cone",
           "ConeViolationError"]

REL_TOL = 1e-9


def _columns(A):
    """Dense array of A and the mask of its nonzero columns."""
    A = to_dense(as_matrix(A)).astype(np.float64, copy=False)
    nz = np.any(A != 0, axis=0)
    return A, nz


def angular_diameter(A, exact_columns: int = 2000, sample: int = 2000, seed: int = 0) -> dict:
    """{'value', 'upper', 'exact', 'zero_columns', 'columns'} of the largest angle between nonzero columns."""
    A, nz = _columns(A)
    X = A[:, nz]
    n_cols = X.shape[1]
    out = {"zero_columns": int((~nz).sum()), "columns": int(n_cols)}
    if n_cols < 2:
        return {**out, "value": 0.0, "upper": 0.0, "exact": True}
    X = X / np.linalg.norm(X, axis=0)
    exact = n_cols <= exact_columns
    S = X if exact else X[:, np.random.default_rng(seed).choice(n_cols, size=sample, replace=False)]
    G = np.clip(S.T @ S, -1.0, 1.0)
    value = float(np.arccos(G.min()))
    if exact:
        upper = value
    else:
        c = X.mean(axis=1)
        nc = np.linalg.norm(c)
        upper = math.pi if nc == 0 else min(math.pi, 2 * float(np.arccos(np.clip((c / nc) @ X, -1, 1).min())))
    return {**out, "value": value, "upper": upper, "exact": exact}


def hilbert_distance(a, b) -> float:
    """d_H(a, b) for non-negative vectors (∞ if the supports differ; 0 for a ∥ b)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if (a < 0).any() or (b < 0).any():
        raise InputError("the Hilbert projective metric needs non-negative vectors")
    sa, sb = a > 0, b > 0
    if not sa.any() or not sb.any():
        raise InputError("the Hilbert projective metric is undefined for a zero vector")
    if not np.array_equal(sa, sb):
        return math.inf
    la, lb = np.log(a[sa]), np.log(b[sb])
    return float(max(0.0, (la - lb).max() + (lb - la).max()))


def projective_diameter(A, budget: int = 4_000_000) -> dict:
    """{'value': Δ(A), 'zero_columns'} for a non-negative matrix A (max Hilbert distance of nonzero columns)."""
    A, nz = _columns(A)
    if (A < 0).any():
        raise InputError("projective diameter needs a non-negative matrix")
    X = A[:, nz]
    out = {"zero_columns": int((~nz).sum()), "columns": int(X.shape[1])}
    if X.shape[1] < 2:
        return {**out, "value": 0.0}
    supp = X > 0
    if not (supp == supp[:, :1]).all():
        return {**out, "value": math.inf}
    L = np.log(X[supp[:, 0]])                               # (|S|, m)
    m = L.shape[1]
    best = 0.0
    block = max(1, int(budget // max(1, L.shape[0] * m)))
    for s in range(0, m, block):
        D = L[:, s:s + block, None] - L[:, None, :]          # (|S|, b, m): log a_i − log b_i
        v = D.max(axis=0) + (-D).max(axis=0)
        best = max(best, float(v.max()))
    return {**out, "value": best}


def birkhoff(delta: float) -> float:
    """τ = tanh(Δ/4), 1 for Δ = ∞."""
    return 1.0 if math.isinf(delta) else math.tanh(delta / 4.0)


def _nonneg(m) -> bool:
    if sp.issparse(m):
        return bool((m.data >= 0).all())
    return bool((np.asarray(m) >= 0).all())


def cone(chain, *, exact_columns: int = 2000, sample: int = 2000, seed: int = 0, check: bool = True,
         max_dense: float = 2e7) -> list[dict]:
    """Angular diameter of every P_k and, for non-negative chains, Δ(P_k), τ(M_l) and both checks."""
    chain.require_linear("cone shrinkage")
    n_in = chain[0].shape[0]
    rows = []
    nonneg_layers = [_nonneg(as_matrix(op)) for op in chain]
    taus, prev_delta, prev_angle = [], None, None
    all_nonneg = True
    fits = [n_in * op.shape[1] <= max_dense for op in chain]
    stop = len(chain) if all(fits) else fits.index(False)
    for k in range(stop + 1, len(chain) + 1):
        rows.append(record(chain, "cone", "angular_diameter", layer_label(chain, k - 1), k, None,
                           note=f"skipped: P_k would exceed max_dense={max_dense:g} entries"))
    for pp in (prefix_products(chain, 0, stop) if stop else ()):
        k = pp.k
        layer = layer_label(chain, k - 1)
        ang = angular_diameter(pp.matrix, exact_columns, sample, seed)
        rows.append(record(chain, "cone", "angular_diameter", layer, k, ang["value"], upper=ang["upper"],
                           exact=ang["exact"], zero_columns=ang["zero_columns"], columns=ang["columns"]))
        all_nonneg = all_nonneg and nonneg_layers[k - 1]
        if all_nonneg and prev_angle is not None and check and ang["exact"]:
            if ang["value"] > prev_angle + 1e-7:
                raise ConeViolationError(
                    f"angular diameter grew from {prev_angle:.6g} (P_{k - 1}) to {ang['value']:.6g} (P_{k}, layer "
                    f"'{layer}') on a non-negative chain of rule {chain.rule!r}")
        prev_angle = ang["value"]
        if not all_nonneg:
            continue
        dP = projective_diameter(pp.matrix)["value"]
        dM = projective_diameter(chain[k - 1])
        tau_prod = math.prod(taus) if taus else 1.0
        bound = math.inf if (math.isinf(dM["value"]) or (tau_prod == 0 and math.isinf(dM["value"]))) \
            else tau_prod * dM["value"]
        rows.append(record(chain, "cone", "hilbert_diameter", layer, k, dP))
        rows.append(record(chain, "cone", "birkhoff_tau", layer, k, birkhoff(dM["value"]),
                           layer_diameter=dM["value"]))
        rows.append(record(chain, "cone", "birkhoff_bound", layer, k, bound, tau_product=tau_prod))
        if check:
            if prev_delta is not None and dP > prev_delta * (1 + REL_TOL) + REL_TOL:
                raise ConeViolationError(
                    f"Hilbert diameter grew: Δ(P_{k}) = {dP:.6g} > Δ(P_{k - 1}) = {prev_delta:.6g} at layer '{layer}' "
                    f"(rule {chain.rule!r})")
            if dP > bound * (1 + REL_TOL) + REL_TOL:
                raise ConeViolationError(
                    f"Birkhoff bound violated at layer '{layer}': Δ(P_{k}) = {dP:.6g} > τ(M_1)⋯τ(M_{k - 1})·Δ(M_{k}) "
                    f"= {bound:.6g} (rule {chain.rule!r})")
        taus.append(birkhoff(dM["value"]))
        prev_delta = dP
    return rows
