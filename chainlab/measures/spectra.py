"""Singular values of layer matrices, prefix products and Sixt's inter-layer members.

σ_1 ≥ σ_2 ≥ … of an operator M (n_in × n_out): exact by dense SVD when
min(n_in, n_out) ≤ ``exact_below`` and the dense copy has at most ``DENSE_LIMIT`` entries,
else by ``scipy.sparse.linalg.svds`` on the operator (ARPACK implicitly restarted Lanczos on
MᵀM, relative accuracy ``tol`` = 1e-8 of each returned σ) without materializing it, or, with
``method="lanczos"``, by Golub–Kahan–Lanczos stopping when the values settle
(:mod:`chainlab.measures.krylov`: lower bounds θ_i ≤ σ_i, far fewer products on the clustered
spectra of large conv layers).

Records (``spectra``):
* quantity ``sigma1``, ``sigma2``, ``sigma1/sigma2`` (inf when σ2 = 0 < σ1, None for a zero
  matrix; σ_i ≤ σ1·max(n, m)·eps count as 0, the numerical rank of numpy.linalg.matrix_rank, so an
  exactly rank-1 matrix gives inf rather than ~1e16) and, with ``top > 2``, ``sigma_i`` for i ≤ top;
* ``measure="spectra"`` with extra ``of`` = "layer" (layer = operator name, k = 1..L),
  "prefix" (P_k = M_1⋯M_k, layer = name of M_k; σ of the renormalized matrix, the true σ is
  exp(log_scale)·σ, ``log_scale`` given) or "interlayer" (T_l, layer = name of M_l).

Inter-layer members (Sixt et al. §2.2): with the chain's convention r_in = M r_out, M_l plays
the role of Sixt's (W_l⊙A_l)ᵀ, so with the SVD M_l = U_l Σ_l V_l (V_l = Vᴴ, rows = right
singular vectors) the product M_l M_(l+1) = U_l [Σ_l V_l U_(l+1) Σ_(l+1)] V_(l+1), and

    T_l = √Σ_l V_l U_(l+1) √Σ_(l+1)        (r_l × r_(l+1), r = rank kept)

(DESIGN.md writes the same with (M_l)ᵀ in the paper's forward orientation).  Exact with the
full thin SVD when both layers are small, else with the top ``rank`` singular triplets of
each (extra ``truncated`` = rank).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..operators import Operator
from ._common import layer_label, rank_tol, ratio, record, require_linear
from ._products import implicit_prefix, prefix_products_or_operators

DENSE_LIMIT = 4_000_000   # entries of a dense copy we are willing to make for an exact SVD
SVDS_TOL = 1e-8

__all__ = ["singular_values", "singular_triplets", "interlayer_members", "spectra", "spectrum_records"]


def _shape(op):
    return tuple(op.shape)


def _dense_of(op) -> np.ndarray:
    if isinstance(op, Operator):
        return op.to_dense().astype(np.float64)
    if sp.issparse(op):
        return op.toarray().astype(np.float64)
    if isinstance(op, spla.LinearOperator):
        return np.asarray(op.matmat(np.eye(op.shape[1])), dtype=np.float64)
    return np.asarray(op, dtype=np.float64)


def _uses_dense(shape, k, exact_below):
    n, m = shape
    small = min(n, m)
    return (small <= exact_below and n * m <= DENSE_LIMIT) or small <= k + 1


def singular_values(op, k: int = 1, exact_below: int = 1500, tol: float = SVDS_TOL, seed: int = 0,
                    method: str = "svds") -> np.ndarray:
    """The k largest singular values of ``op`` (Operator, ndarray, scipy sparse or LinearOperator), descending.

    Zeros are padded when the rank (or min dimension) is below k.  ``method`` ("svds" or "lanczos") is
    used when the operator is too large for a dense SVD.
    """
    if method not in ("svds", "lanczos"):
        raise ValueError(f"singular_values: method must be 'svds' or 'lanczos', got {method!r}")
    n, m = _shape(op)
    if _uses_dense((n, m), k, exact_below):
        s = np.linalg.svd(_dense_of(op), compute_uv=False)
    elif method == "lanczos":
        from .krylov import lanczos_singular_values
        A = spla.aslinearoperator(op)
        dt = np.float32 if np.dtype(A.dtype) == np.float32 else np.float64
        s = lanczos_singular_values(A.matvec, A.rmatvec, (n, m), top=k, tol=tol, dtype=dt, seed=seed).sigma
    else:
        rng = np.random.default_rng(seed)
        v0 = rng.standard_normal(min(n, m))
        A = spla.aslinearoperator(op)
        try:
            s = spla.svds(A, k=k, tol=tol, return_singular_vectors=False, v0=v0, random_state=seed)
        except spla.ArpackError:
            # ARPACK breaks down on degenerate spectra (max-pool / mask operators: all σ equal), where
            # block subspace iteration converges at once
            from .power import subspace_singular_values
            s = subspace_singular_values(A.matmat, A.rmatmat, (n, m), top=k, tol=max(tol, 1e-12), seed=seed).sigma
        s = np.sort(s)[::-1]
    out = np.zeros(k)
    out[: min(k, len(s))] = s[:k]
    return out


def singular_triplets(op, rank: int | None = None, exact_below: int = 1500, tol: float = SVDS_TOL, seed: int = 0):
    """(U, s, Vh) with op ≈ U diag(s) Vh: the full thin SVD when small (rank=None), else the top ``rank``."""
    n, m = _shape(op)
    if rank is None or _uses_dense((n, m), rank, exact_below):
        U, s, Vh = np.linalg.svd(_dense_of(op), full_matrices=False)
        if rank is not None:
            U, s, Vh = U[:, :rank], s[:rank], Vh[:rank]
        return U, s, Vh
    v0 = np.random.default_rng(seed).standard_normal(min(n, m))
    U, s, Vh = spla.svds(spla.aslinearoperator(op), k=rank, tol=tol, v0=v0, random_state=seed)
    order = np.argsort(s)[::-1]
    return U[:, order], s[order], Vh[order]


def interlayer_members(chain, rank: int | None = 16, exact_below: int = 400):
    """T_l = √Σ_l V_l U_(l+1) √Σ_(l+1) for l = 1 … L−1 (list of ndarrays), see the module docstring."""
    require_linear(chain, "inter-layer members T_l")
    trip = [singular_triplets(op, rank if not _uses_dense(op.shape, 2, exact_below) else None, exact_below)
            for op in chain]
    out = []
    for l in range(len(chain) - 1):
        _, s1, Vh1 = trip[l]
        U2, s2, _ = trip[l + 1]
        out.append(np.sqrt(s1)[:, None] * (Vh1 @ U2) * np.sqrt(s2)[None, :])
    return out


def spectrum_records(chain, matrix_sv, *, measure, of, layer, k, top, shape=None, **extras):
    """σ1, σ2, σ1/σ2 (+ σ_i) records; σ_i ≤ σ1·max(n, m)·eps count as 0 (so rank 1 gives σ1/σ2 = inf)."""
    s = np.asarray(matrix_sv, dtype=np.float64).copy()
    if s.size and shape is not None:
        s[s <= rank_tol(s[0], shape)] = 0.0
    rows = [record(chain, measure, "sigma1", layer, k, float(s[0]), of=of, **extras),
            record(chain, measure, "sigma2", layer, k, float(s[1]) if len(s) > 1 else 0.0, of=of, **extras)]
    r = ratio(s[0], s[1] if len(s) > 1 else 0.0)
    rows.append(record(chain, measure, "sigma1/sigma2", layer, k, r, of=of,
                       note=None if r is not None else "zero matrix", **extras))
    for i in range(2, min(top, len(s))):
        rows.append(record(chain, measure, f"sigma{i + 1}", layer, k, float(s[i]), of=of, **extras))
    return rows


def spectra(chain, *, top: int = 2, of=("layer", "prefix", "interlayer"), exact_below: int = 400, rank: int = 16,
            max_dense: float = 2e7, tol: float = SVDS_TOL, method: str = "svds") -> list[dict]:
    """σ1, σ2, σ1/σ2 (and σ_i, i ≤ top) of every M_l, every prefix product P_k and every T_l, as records.

    ``of`` selects which of "layer", "prefix", "interlayer" to compute; ``method`` ("svds" | "lanczos",
    see :func:`singular_values`) is used for the layers and prefixes too large for a dense SVD.
    """
    require_linear(chain, "spectra")
    of = (of,) if isinstance(of, str) else tuple(of)
    bad = sorted(set(of) - {"layer", "prefix", "interlayer"})
    if bad:
        raise ValueError(f"spectra: unknown of={bad}; choose from 'layer', 'prefix', 'interlayer'")
    layers, prefix, interlayer = "layer" in of, "prefix" in of, "interlayer" in of
    top = max(int(top), 2)
    rows = []
    if layers:
        for i, op in enumerate(chain):
            used = "svd" if _uses_dense(op.shape, top, exact_below) else method
            s = singular_values(op, top, exact_below, tol, method=method)
            rows += spectrum_records(chain, s, measure="spectra", of="layer", layer=layer_label(chain, i), k=i + 1,
                                     top=top, method=used, shape=op.shape)
    if prefix:
        for k, P, log_scale in prefix_products_or_operators(chain, max_dense):
            op = P if P is not None else implicit_prefix(chain, k)
            used = "svd" if _uses_dense(op.shape, top, exact_below) else method
            s = singular_values(op, top, exact_below, tol, method=method)
            rows += spectrum_records(chain, s, measure="spectra", of="prefix", layer=layer_label(chain, k - 1), k=k,
                                     top=top, method=used, log_scale=log_scale, shape=op.shape)
    if interlayer and len(chain) > 1:
        for l, T in enumerate(interlayer_members(chain, rank, exact_below)):
            s = np.linalg.svd(T, compute_uv=False) if T.size else np.zeros(2)
            s = np.concatenate([s, np.zeros(max(0, top - len(s)))])
            trunc = not all(_uses_dense(chain[j].shape, 2, exact_below) for j in (l, l + 1))
            rows += spectrum_records(chain, s, measure="spectra", of="interlayer", layer=layer_label(chain, l),
                                     k=l + 1, top=top, shape=T.shape, truncated=rank if trunc else None)
    return rows
