"""Singular values of layer matrices, prefix products and Sixt's inter-layer members.

σ_1 ≥ σ_2 ≥ … of an operator M (n_in × n_out) come from :mod:`.svd` (dense SVD when small, ARPACK
``svds`` on the operator when large, or Golub–Kahan–Lanczos with ``method="lanczos"``).

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

from ..errors import OptionError
from . import lapack
from ._common import layer_label, rank_tol, ratio, record
from .prefix import implicit_prefix, prefix_power, prefix_products_or_operators
from .svd import SVDS_TOL, singular_triplets, singular_values, uses_dense

__all__ = ["interlayer_members", "spectra", "spectrum_records", "prefix_spectra_power"]


def interlayer_members(chain, rank: int | None = 16, exact_below: int = 400):
    """T_l = √Σ_l V_l U_(l+1) √Σ_(l+1) for l = 1 … L−1 (list of ndarrays), see the module docstring."""
    chain.require_linear("inter-layer members T_l")
    trip = [singular_triplets(op, rank if not uses_dense(op.shape, 2, exact_below) else None, exact_below)
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
    chain.require_linear("spectra")
    of = (of,) if isinstance(of, str) else tuple(of)
    bad = sorted(set(of) - {"layer", "prefix", "interlayer"})
    if bad:
        raise OptionError(f"spectra: unknown of={bad}; choose from 'layer', 'prefix', 'interlayer'")
    layers, prefix, interlayer = "layer" in of, "prefix" in of, "interlayer" in of
    top = max(int(top), 2)
    rows = []
    if layers:
        for i, op in enumerate(chain):
            used = "svd" if uses_dense(op.shape, top, exact_below) else method
            s = singular_values(op, top, exact_below, tol, method=method)
            rows += spectrum_records(chain, s, measure="spectra", of="layer", layer=layer_label(chain, i), k=i + 1,
                                     top=top, method=used, shape=op.shape)
    if prefix:
        for k, P, log_scale in prefix_products_or_operators(chain, max_dense):
            op = P if P is not None else implicit_prefix(chain, k)
            used = "svd" if uses_dense(op.shape, top, exact_below) else method
            s = singular_values(op, top, exact_below, tol, method=method)
            rows += spectrum_records(chain, s, measure="spectra", of="prefix", layer=layer_label(chain, k - 1), k=k,
                                     top=top, method=used, log_scale=log_scale, shape=op.shape)
    if interlayer and len(chain) > 1:
        for l, T in enumerate(interlayer_members(chain, rank, exact_below)):
            s = lapack.svd(T, compute_uv=False) if T.size else np.zeros(2)
            s = np.concatenate([s, np.zeros(max(0, top - len(s)))])
            trunc = not all(uses_dense(chain[j].shape, 2, exact_below) for j in (l, l + 1))
            rows += spectrum_records(chain, s, measure="spectra", of="interlayer", layer=layer_label(chain, l),
                                     k=l + 1, top=top, shape=T.shape, truncated=rank if trunc else None)
    return rows


def prefix_spectra_power(chain, ks=None, *, top: int = 2, extra: int = 4, tol: float = 1e-9, maxiter: int = 500,
                         seed: int = 0) -> list[dict]:
    """Records σ1, σ2, σ1/σ2 of P_k for every k in ``ks`` (default 1 … L) by :func:`prefix_power`.

    Same records as ``spectra(of="prefix")`` (measure "spectra", of "prefix", layer = name of M_k) but
    the true σ of P_k (``log_scale`` 0), with extras method "power", iterations, converged, residual (max ρ_j).
    """
    chain.require_linear("prefix_spectra_power")
    ks = range(1, len(chain) + 1) if ks is None else ks
    rows = []
    for k in ks:
        r = prefix_power(chain, int(k), top=top, extra=extra, tol=tol, maxiter=maxiter, seed=seed)
        rows += spectrum_records(chain, r.sigma, measure="spectra", of="prefix", layer=layer_label(chain, int(k) - 1),
                                 k=int(k), top=top, method="power", log_scale=0.0, iterations=r.iterations,
                                 converged=r.converged, residual=float(np.max(r.residuals)))
    return rows
