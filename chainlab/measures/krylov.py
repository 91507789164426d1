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
Aᵀ u and O(k·min(m, n)) for the reorthogonalization (O(k·(m + n)) with both sides); memory is
k·(m + n) numbers.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["LanczosResult", "lanczos_singular_values"]


class LanczosResult(NamedTuple):
    """sigma: top Ritz values (descending, ≤ the true σ_i); steps: products with A (with Aᵀ: one fewer for
    every block that ended on α = 0);
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
    stay accurate while that side is orthogonal; half the cost and memory traffic).

    Invariant subspaces: when α_j or β_j falls below min(tol, √eps)·θ_1 the Krylov space of the start
    vector is exhausted and the singular values of that block of B are exact (to that size).  A single
    start vector sees each distinct singular value once, so a repeated σ_1 (max-pool and average-pool
    operators: σ = √(windows sharing an input), all equal) would give a wrong σ_2; the process then
    restarts from a random vector orthogonal to all earlier v (B becomes block diagonal; its singular
    values are the union), up to ``top`` blocks, which finds multiplicities up to ``top``.  The stopping
    criteria are applied to the current block's own values.  Multiplicities that never exhaust a block
    (exactly repeated σ of a large operator with a rich spectrum) stay invisible, as in every
    single-vector Krylov method; block methods (:func:`chainlab.measures.power.subspace_singular_values`) see them.
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
    tiny = np.finfo(float).tiny
    small = min(tol, float(np.sqrt(np.finfo(dtype).eps)))
    orth_u = reorthogonalize == "both" or m <= n
    orth_v = reorthogonalize == "both" or n < m
    U = np.empty((m, kmax), dtype, order="F")          # columns contiguous
    V = np.empty((n, kmax + 1), dtype, order="F")
    rng = np.random.default_rng(seed)

    def start_vector(nv):
        """A random unit vector orthogonal to V[:, :nv], stored as V[:, nv]; False when there is none."""
        v, norm = _reorthogonalize(rng.standard_normal(n).astype(dtype), V, nv)
        if norm <= small:
            return False
        V[:, nv] = v / norm
        return True

    def top_of(values, residuals):
        order = np.argsort(values)[::-1][:top]
        th, rh = np.zeros(top), np.zeros(top)
        th[:len(order)], rh[:len(order)] = np.asarray(values)[order], np.asarray(residuals)[order]
        return th, rh

    done = []                    # (σ, ρ = 0) of the exhausted blocks
    alpha, beta, block_hist = [], [], []
    history = []
    theta, rho, converged, exhausted, growth = np.zeros(top), np.zeros(top), "", False, float("nan")
    nu = nv = steps = 0          # stored u and v columns, products with A
    start_vector(0)
    nv = 1
    u_prev, blocks = None, 1
    while nu < kmax:
        u = np.asarray(matvec(V[:, nv - 1]), dtype=dtype).reshape(-1)
        steps += 1
        if u_prev is not None:
            u = u - beta[-1] * u_prev
        u, a = _reorthogonalize(u, U, nu if orth_u else 0)
        scale = max(theta[0], alpha[0] if alpha else a, tiny)
        block_done = a <= small * scale
        if block_done:
            # A v_(k+1) ∈ span U_k: A V_(k+1) = U_k [B_k, β_k e_k], whose singular values are exact
            k = len(alpha)
            C = np.zeros((k, k + 1))
            C[:, :k] = np.diag(alpha) + np.diag(beta[:-1], 1)
            if k:
                C[-1, k] = beta[-1]
            vals = list(np.linalg.svd(C, compute_uv=False)) if k else [a]
        else:
            U[:, nu] = u / a
            alpha.append(a)
            w = np.asarray(rmatvec(U[:, nu]), dtype=dtype).reshape(-1) - a * V[:, nv - 1]
            nu += 1
            w, b = _reorthogonalize(w, V, nv if orth_v else 0)
            beta.append(b)
            k = len(alpha)
            P, sv, _ = np.linalg.svd(np.diag(alpha) + np.diag(beta[:-1], 1))
            block_done = b <= small * max(sv[0], tiny)
            vals = list(sv)
            res = list(b * np.abs(P[-1, :]))
        if block_done:
            done += vals
            theta, rho = top_of(done, np.zeros(len(done)))
            history.append(theta.copy())
            alpha, beta, block_hist, u_prev = [], [], [], None
            if blocks < top and nv < n and nu < kmax and start_vector(nv):
                nv += 1
                blocks += 1
                continue
            exhausted, converged = True, "residual"
            break
        V[:, nv] = w / b
        nv += 1
        u_prev = U[:, nu - 1]
        theta, rho = top_of(done + vals, [0.0] * len(done) + res)
        history.append(theta.copy())
        own, own_rho = top_of(vals, res)
        block_hist.append(own)
        if k >= top and np.all(own_rho <= tol * np.maximum(own, tiny)):
            converged = "residual"
            break
        w_k = max(window, -(-k // 4))
        if k > max(w_k, top):
            growth = float(np.max((own - block_hist[-1 - w_k]) / np.maximum(own, tiny)))
            if stop == "stalled" and growth <= tol:
                converged = "stalled"
                break
    hist = np.array(history) if history else np.zeros((0, top))
    return LanczosResult(theta, steps, converged, rho, hist, exhausted, growth)
