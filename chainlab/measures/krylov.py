"""Top singular values of a large operator by Golub–Kahan–Lanczos bidiagonalization.

For A (m × n) given only ``matvec`` (A v) and ``rmatvec`` (Aᵀ u), k steps of the Golub–Kahan
recurrence from a random unit v_1 ∈ ℝⁿ,

    α_j u_j = A v_j − β_(j−1) u_(j−1),      β_j v_(j+1) = Aᵀ u_j − α_j v_j,

with full reorthogonalization of every new u and v against the earlier ones (classical
Gram–Schmidt, repeated once when the norm drops below 1/√2 of its value, the DGKS rule), give
A V_k = U_k B_k and Aᵀ U_k = V_k B_kᵀ + β_k v_(k+1) e_kᵀ with the upper-bidiagonal

    B_k = [[α_1, β_1, 0, …], [0, α_2, β_2, …], …, [… , 0, α_k]]        (k × k).

The singular values θ_1 ≥ θ_2 ≥ … of B_k are the Ritz values of A on span V_k.  They satisfy
θ_i ≤ σ_i (Cauchy interlacing for the Lanczos tridiagonal B_kᵀB_k of AᵀA) and increase with k,
and with B_k = P Θ Qᵀ the Ritz triplet i has the residual

    ρ_i = ‖Aᵀ ũ_i − θ_i ṽ_i‖ = β_k |P_(k,i)|         (‖A ṽ_i − θ_i ũ_i‖ = 0),

so some singular value of A lies within ρ_i of θ_i.

Stopping: ``"residual"`` when ρ_i ≤ tol·θ_i for i ≤ top (a certificate), or ``"stalled"`` when
each θ_i (i ≤ top) grew by at most tol·θ_i over the last w = max(``window``, ⌈k/4⌉) steps.  The second is what
makes clustered spectra cheap: a conv layer at 224×224 has σ_1/σ_2 − 1 ≈ 1e-5 and ARPACK, which
waits for the residuals, needs hundreds of products per layer, while the values themselves settle
after a few dozen steps.  Because θ_i increases monotonically toward σ_i, a stall leaves a
one-sided error (θ_i ≤ σ_i) of the order of tol: at the edge of a continuous spectrum
σ_i − θ_i(k) ≈ C/k², so the growth over the last quarter of the steps is C/k²·((4/3)² − 1) ≈ 0.78 of
the remaining error (a fixed window would see only 2w/k of it and stop far too early); ``"residual"``
bounds the error rigorously.  Each step costs one A v, one
Aᵀ u and O(k·(m + n)) for the reorthogonalization; memory is k·(m + n) numbers.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["LanczosResult", "lanczos_singular_values"]


class LanczosResult(NamedTuple):
    """sigma: top Ritz values (descending, ≤ the true σ_i); steps: products with A (= with Aᵀ);
    converged: "residual", "stalled" or "" (maxiter reached / invariant subspace: see ``exhausted``);
    residuals: ρ_i; history: θ_1..θ_top after every step (steps × top); growth: max_i relative growth
    of θ_i over the last max(window, ⌈k/4⌉) steps (≈ 0.8 × the remaining relative error, see above)."""

    sigma: np.ndarray
    steps: int
    converged: str
    residuals: np.ndarray
    history: np.ndarray
    exhausted: bool = False
    growth: float = float("nan")


def _reorthogonalize(x, Q, j):
    """x − Q[:, :j] (Q[:, :j]ᵀ x), once more when ‖x‖ drops below ‖x_before‖/√2 (DGKS); returns (x, ‖x‖)."""
    norm0 = float(np.linalg.norm(x))
    if j == 0:
        return x, norm0
    for _ in range(2):
        Qj = Q[:, :j]
        x = x - Qj @ (Qj.T @ x)
        norm = float(np.linalg.norm(x))
        if norm > norm0 / np.sqrt(2):
            break
        norm0 = norm
    return x, norm


def lanczos_singular_values(matvec, rmatvec, shape, *, top: int = 2, tol: float = 1e-3, window: int = 4,
                            maxiter: int = 300, dtype=np.float64, seed: int = 0,
                            stop: str = "stalled", reorthogonalize: str = "smaller") -> LanczosResult:
    """σ_1 ≥ … ≥ σ_top of A (``shape`` (m, n)) from ``matvec(v)`` = A v (n,) → (m,) and ``rmatvec(u)`` = Aᵀ u.

    ``stop`` = "stalled" accepts either criterion of the module docstring, "residual" only the residual
    certificate.  ``dtype`` is the precision of the stored Lanczos vectors (float32 halves the memory of an
    operator applied in float32).  ``reorthogonalize`` = "both" keeps U and V orthogonal; "smaller" only
    the side of the smaller dimension (one-sided reorthogonalization, Simon & Zha 2000: the Ritz values
    stay accurate while that side is orthogonal; half the cost and memory traffic).  Stops early, with ``exhausted``, when A has fewer than k nonzero
    singular values reachable from v_1 (β_j or α_j = 0: the Ritz values are then exact).
    """
    if reorthogonalize not in ("both", "smaller"):
        raise ValueError(f"lanczos_singular_values: reorthogonalize must be 'both' or 'smaller', got {reorthogonalize!r}")
    if stop not in ("stalled", "residual"):
        raise ValueError(f"lanczos_singular_values: stop must be 'stalled' or 'residual', got {stop!r}")
    m, n = (int(s) for s in shape)
    kmax = int(min(maxiter, m, n))
    top = int(top)
    if top < 1 or kmax < 1:
        raise ValueError(f"lanczos_singular_values: need top ≥ 1 and a non-empty operator, got top={top}, shape {shape}")
    dtype = np.dtype(dtype)
    orth_u = reorthogonalize == "both" or m <= n
    orth_v = reorthogonalize == "both" or n < m
    U = np.empty((m, kmax), dtype, order="F")          # columns contiguous
    V = np.empty((n, kmax + 1), dtype, order="F")
    v = np.random.default_rng(seed).standard_normal(n).astype(dtype)
    V[:, 0] = v / np.linalg.norm(v)
    alpha, beta = [], []
    history = []
    theta, rho, converged, exhausted, growth = np.zeros(top), np.zeros(top), "", False, float("nan")
    u_prev = None
    for j in range(kmax):
        u = np.asarray(matvec(V[:, j]), dtype=dtype).reshape(-1)
        if u_prev is not None:
            u = u - beta[-1] * u_prev
        u, a = _reorthogonalize(u, U, j if orth_u else 0)
        if a == 0.0:
            exhausted = True
            if j == 0:
                break
            # A v_j is in span U: B_j (j × j) is final, the Ritz values are singular values of A
            break
        U[:, j] = u / a
        alpha.append(a)
        w = np.asarray(rmatvec(U[:, j]), dtype=dtype).reshape(-1) - a * V[:, j]
        w, b = _reorthogonalize(w, V, j + 1 if orth_v else 0)
        beta.append(b)
        k = j + 1
        B = np.diag(alpha) + np.diag(beta[:-1], 1)
        P, s, _ = np.linalg.svd(B)
        theta = np.zeros(top)
        theta[:min(top, k)] = s[:top]
        rho = np.full(top, np.inf)
        rho[:min(top, k)] = b * np.abs(P[-1, :top])
        history.append(theta.copy())
        if b == 0.0:
            exhausted, rho[:] = True, 0.0
            converged = "residual"
            break
        V[:, k] = w / b
        u_prev = U[:, j]
        if k >= top and np.all(rho <= tol * np.maximum(theta, np.finfo(float).tiny)):
            converged = "residual"
            break
        w_k = max(window, -(-k // 4))
        if k > max(w_k, top):
            growth = float(np.max((theta - history[-1 - w_k]) / np.maximum(theta, np.finfo(float).tiny)))
            if stop == "stalled" and growth <= tol:
                converged = "stalled"
                break
    hist = np.array(history) if history else np.zeros((0, top))
    return LanczosResult(theta, len(alpha), converged, rho, hist, exhausted, growth)
