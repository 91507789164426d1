"""Theorem 1 of Sixt et al. made falsifiable: exponential rank-1 convergence of non-negative products.

The theorem says that the product P_k = A_1 ⋯ A_k of non-negative matrices (limit existing, no zero
column, no two orthogonal columns in the limit) converges to a rank-1 matrix; the appendix simulates
random products and finds "non-negative matrices to converge exponentially fast".  Exponential
convergence is a prediction with a number: a per-layer factor q < 1 with

    σ2/σ1(P_k) ≈ C·q^k,      Δ(P_k) ≈ C'·q'^k      (Δ: Hilbert projective diameter of the columns).

* :func:`decay_fit` — the least-squares line through log y_k over k (finite, positive y): rate
  q = exp(slope), its 95 % interval (t quantile), R².
* :func:`column_ratio`, :func:`column_diameter` — σ2/σ1 and Δ of a matrix of (sampled) columns.
* :func:`zero_lines` — zero rows and columns of a non-negative operator from M·1 and Mᵀ·1 (the
  theorem excludes zero columns; Birkhoff's and Hajnal's positivity needs no zero rows either).
* :func:`birkhoff_tau` — τ(M) = tanh(Δ(M)/4) of one layer: 1 when its columns have different
  supports (Δ = ∞, every sparse conv / winner-take-all matrix), so the contraction that Birkhoff's
  theorem guarantees per layer is the product of these τ — the rate an observed decay must beat.
* :func:`convergence_simulation` — the appendix's simulation (authors' convergence_simulation.ipynb):
  32 N(0, 1) start vectors multiplied by random matrices of VGG-16's centre-tap shapes (output side
  first), per step 1 − nanmean of |cos| over the lower triangle (diagonal included) of the 32×32
  cosine matrix, median over ``draws`` draws; variants vanilla N(0,1), relu (clipped at 0 after every
  product: measure_convergence clips after each product but the one with the identity, notebook line 57),
  positive |N|, non-negative max(0, N), stochastic |N|/column sums, LRP-αβ-like α·N⁺ + β·N⁻, and fixed
  matrices given by the caller (``learned``: the authors' "ReLU learned" — a trained net's weights with
  the clip — and "pattern A⊙W").
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats

from ..errors import InputError
from . import lapack
from .cone import projective_diameter

__all__ = ["decay_fit", "column_ratio", "column_diameter", "zero_lines", "birkhoff_tau", "VGG16_SHAPES",
           "SIM_VARIANTS", "convergence_simulation"]

# VGG-16 centre-tap backward shapes, output side first (authors' transpose_shapes; fc1 sliced to 512 rows)
VGG16_SHAPES = ((1000, 4096), (4096, 4096), (4096, 512)) + ((512, 512),) * 6 + (
    (512, 256), (256, 256), (256, 256), (256, 128), (128, 128), (128, 64), (64, 64), (64, 3))
SIM_VARIANTS = ("vanilla", "relu", "positive", "non-negative", "stochastic", "alpha-beta")


def decay_fit(ks, values, floor: float = 0.0) -> dict:
    """Fit log y = a + b·k over the points with finite y > floor: {rate = e^b, slope = b, rate_lo, rate_hi
    (95 % interval of e^b), r2, n}; rate None with fewer than 2 points (3 for the interval)."""
    k = np.asarray(ks, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(y) & (y > floor)
    k, y = k[ok], np.log(y[ok])
    out = {"n": int(k.size), "rate": None, "slope": None, "rate_lo": None, "rate_hi": None, "r2": None}
    if k.size < 2 or np.ptp(k) == 0:
        return out
    b, a = np.polyfit(k, y, 1)
    res = y - (a + b * k)
    ss = float(((y - y.mean()) ** 2).sum())
    out.update(slope=float(b), rate=float(math.exp(b)), r2=1.0 - float((res ** 2).sum()) / ss if ss > 0 else 1.0)
    if k.size >= 3:
        se = math.sqrt(float((res ** 2).sum()) / (k.size - 2) / float(((k - k.mean()) ** 2).sum()))
        t = float(stats.t.ppf(0.975, k.size - 2))
        out.update(rate_lo=math.exp(b - t * se), rate_hi=math.exp(b + t * se))
    return out


def column_ratio(Y) -> float:
    """σ2/σ1 of Y (n × c) (0 for rank ≤ 1 up to the numerical-rank cutoff σ1·max(n, c)·eps; None for Y = 0)."""
    Y = np.asarray(Y, dtype=np.float64)
    if Y.shape[1] < 2:
        return None
    s = lapack.svd(Y, compute_uv=False)
    if s[0] == 0:
        return None
    s2 = s[1] if s[1] > s[0] * max(Y.shape) * np.finfo(np.float64).eps else 0.0
    return float(s2 / s[0])


def column_diameter(Y) -> float:
    """Hilbert projective diameter Δ of the nonzero columns of a non-negative Y (∞ if their supports differ)."""
    Y = np.asarray(Y, dtype=np.float64)
    if (Y < 0).any():
        raise InputError("the Hilbert diameter needs non-negative columns")
    return float(projective_diameter(Y)["value"])


def zero_lines(op) -> dict:
    """{zero_rows, zero_columns, rows, columns} of a non-negative operator (from M·1 and Mᵀ·1)."""
    n, m = op.shape
    rows = np.asarray(op.matmat(np.ones((m, 1)))).reshape(-1)
    cols = np.asarray(op.rmatmat(np.ones((n, 1)))).reshape(-1)
    return {"zero_rows": int((rows == 0).sum()), "zero_columns": int((cols == 0).sum()), "rows": n, "columns": m}


def birkhoff_tau(M, max_entries: float = 2e7, probe: int = 16, negative: str = "raise") -> dict:
    """{tau, delta, why}: Birkhoff's contraction τ = tanh(Δ/4) of a non-negative matrix or operator M.

    Two nonzero columns with different supports give Δ = ∞ and τ = 1 (why = "supports differ"): this is
    checked first on ``probe`` columns spread over M (M e_j through the operator, nothing densified — every
    sparse conv or winner-take-all matrix is decided here).  Otherwise Δ is computed on the dense matrix when
    it has at most ``max_entries`` entries, else τ is None (why = "too large").  A negative entry (in the probed
    columns, or anywhere in the dense matrix) leaves τ undefined: InputError, or with ``negative="none"``
    τ = None (why = "negative entries") — e.g. LRP-z⁺ at a residual sum, whose shares z_t / Σ_u z_u are signed."""
    if negative not in ("raise", "none"):
        raise InputError(f"negative must be 'raise' or 'none', got {negative!r}")

    def signed():
        if negative == "raise":
            raise InputError("Birkhoff's contraction needs a non-negative matrix")
        return {"tau": None, "delta": None, "why": "negative entries"}

    n, m = M.shape
    dense = isinstance(M, np.ndarray)
    cols = np.unique(np.linspace(0, m - 1, min(probe, m)).astype(np.int64))
    E = np.zeros((m, cols.size))
    E[cols, np.arange(cols.size)] = 1.0
    P = (M @ E) if dense else np.asarray(M.matmat(E))
    if (P < 0).any():
        return signed()
    live = P.any(axis=0)
    S = P[:, live] > 0
    if S.shape[1] >= 2 and not (S == S[:, :1]).all():
        return {"tau": 1.0, "delta": math.inf, "why": "supports differ"}
    if n * m > max_entries:
        return {"tau": None, "delta": None, "why": "too large"}
    A = M if dense else np.asarray(M.to_dense())
    if (A < 0).any():
        return signed()
    live = np.any(A != 0, axis=0)
    if live.sum() < 2:
        return {"tau": 0.0, "delta": 0.0, "why": "fewer than two nonzero columns"}
    S = A[:, live] > 0
    if not (S == S[:, :1]).all():
        return {"tau": 1.0, "delta": math.inf, "why": "supports differ"}
    d = column_diameter(A)
    return {"tau": 1.0 if math.isinf(d) else math.tanh(d / 4.0), "delta": d, "why": ""}


def _gap(W) -> float:
    """1 − nanmean |cos| over the lower triangle (diagonal included) of the rows of W (authors' metric)."""
    W = W.to(torch.float64)
    U = W / W.norm(dim=1, keepdim=True)
    C = (U @ U.T).abs()
    i, j = torch.tril_indices(C.shape[0], C.shape[0])
    return float(1.0 - torch.nanmean(C[i, j]))


def _step(w, G, P, A, s, variant, a, b):
    """w M for the variant's M built from G (N(0,1)), P = G⁺, A = |G|, s = column sums of A."""
    if variant in ("vanilla", "relu"):
        return w @ G
    if variant == "positive":
        return w @ A
    if variant == "non-negative":
        return w @ P
    if variant == "stochastic":
        return (w @ A) / s
    if variant == "alpha-beta":                    # α G⁺ + β G⁻ with G⁻ = G − G⁺
        wp = w @ P
        return a * wp + b * (w @ G - wp)
    raise InputError(f"unknown simulation variant {variant!r}; variants: {', '.join(SIM_VARIANTS)}")


def convergence_simulation(variants=("vanilla", "relu", "positive", "non-negative", "stochastic"), *,
                           shapes=VGG16_SHAPES, vectors: int = 32, draws: int = 20, seed: int = 0,
                           alpha_beta=((2.0, 1.0), (5.0, 4.0)), learned=None) -> dict:
    """{variant label: (draws, len(shapes)+1) array of 1 − mean|cos| after 0 … len(shapes) products}.

    Every draw uses one set of N(0, 1) matrices for all variants, so they differ only by the variant's map;
    "alpha-beta" expands to one label per (α, β) in ``alpha_beta``.  ``learned``: {label: (matrices, relu)} with
    fixed matrices G_l (shapes[l], output side first: rows of the product live in G_l's first dimension) used
    in every draw (only the start vectors are drawn), clipped at 0 after each product when ``relu``.
    Products in float32, the metric in float64 (float32 rounding of the vectors limits 1 − |cos| to ≈ 1e-14)."""
    learned = dict(learned or {})
    for lab, (mats, _) in learned.items():
        got = tuple(tuple(np.shape(m)) for m in mats)
        if got != tuple(tuple(sh) for sh in shapes):
            raise InputError(f"learned matrices {lab!r} have shapes {got}, the simulation's are {tuple(shapes)}")
    labels = []
    for v in variants:
        if v == "alpha-beta":
            labels += [(f"alpha-beta {a:g},{b:g}", v, a, b) for a, b in alpha_beta]
        elif v in SIM_VARIANTS:
            labels.append((v, v, None, None))
        else:
            raise InputError(f"unknown simulation variant {v!r}; variants: {', '.join(SIM_VARIANTS)}")
    fixed = {lab: ([torch.as_tensor(np.asarray(m), dtype=torch.float32) for m in mats], bool(relu))
             for lab, (mats, relu) in learned.items()}
    out = {lab: np.empty((draws, len(shapes) + 1)) for lab in [x[0] for x in labels] + list(fixed)}
    g = torch.Generator().manual_seed(int(seed))
    for d in range(draws):
        w0 = torch.randn((vectors, shapes[0][0]), generator=g, dtype=torch.float32)
        ws = {lab: w0 for lab in out}
        for lab in ws:
            out[lab][d, 0] = _gap(w0)
        for i, shp in enumerate(shapes):
            G = torch.randn(shp, generator=g, dtype=torch.float32)
            P, A = G.clamp(min=0.0), G.abs()
            s = A.sum(dim=0, keepdim=True)
            steps = [(lab, _step(ws[lab], G, P, A, s, v, a, b), v == "relu") for lab, v, a, b in labels]
            steps += [(lab, ws[lab] @ mats[i], relu) for lab, (mats, relu) in fixed.items()]
            for lab, w, relu in steps:
                if relu:
                    w = w.clamp(min=0.0)
                w = w / w.norm(dim=1, keepdim=True).clamp(min=1e-30)     # rows rescaled (cosines unchanged)
                ws[lab] = w
                out[lab][d, i + 1] = _gap(w)
    return out
