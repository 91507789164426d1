"""Helpers shared by the measures: tidy records, ratios, the matrices of operators."""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp


RECORD_KEYS = ("net", "rule", "image", "measure", "quantity", "layer", "k", "value")


def record(chain, measure: str, quantity: str, layer=None, k=None, value=None, **extras) -> dict:
    """One tidy row: net/image from ``chain.meta`` (None if absent), rule from the chain."""
    meta = (getattr(chain, "meta", None) or {}) if chain is not None else {}
    row = {
        "net": meta.get("net"),
        "rule": getattr(chain, "rule", None),
        "image": meta.get("image"),
        "measure": measure,
        "quantity": quantity,
        "layer": layer,
        "k": k,
        "value": _plain(value),
    }
    for key, v in extras.items():
        row[key] = _plain(v)
    return row


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    return v


def ratio(a: float, b: float):
    """a / b with a/0 = inf for a > 0; None when both are 0 (undefined, e.g. σ1/σ2 of a zero matrix)."""
    if a is None or b is None:
        return None
    if b > 0:
        return float(a / b)
    if a > 0:
        return math.inf
    return None


def as_matrix(op):
    """A numpy array or scipy CSC matrix of an operator/array/sparse matrix (no copy when possible;
    matrix-free operators are multiplied out as CSC, never as a huge dense copy)."""
    if isinstance(op, np.ndarray):
        return op
    if sp.issparse(op):
        return op.tocsc()
    M = op.stored()
    if M is None:
        return op.to_csc()
    return M.tocsc() if sp.issparse(M) else M


def to_dense(m) -> np.ndarray:
    return m.toarray() if sp.issparse(m) else np.asarray(m)


def layer_label(chain, i: int) -> str:
    names = getattr(chain, "names", None)
    return names[i] if names and i < len(names) else str(i)


def rank_tol(s1: float, shape) -> float:
    """Numerical-rank cutoff σ1·max(n, m)·eps (as numpy.linalg.matrix_rank): smaller σ_i count as 0."""
    return float(s1) * max(shape) * np.finfo(np.float64).eps
