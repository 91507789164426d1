"""Matrix-free singular values of prefix products P_k = M_1 ⋯ M_k by block subspace iteration.

For nets whose layer operators are implicit (``extract(..., materialize=False)``; VGG-16 or
ResNet-50 at 224×224) P_k can neither be formed nor stored: it is n_input × n_k with
n_input = 150,528.  Only two products with it are needed:

    P_k V  = ``chain.apply(V, 0, k)``   (M_k first, then … M_1; n_k × p → n_input × p)
    P_kᵀ U = ``chain.rapply(U, 0, k)``  (M_1ᵀ first, then … M_kᵀ; n_input × p → n_k × p)

Block subspace (simultaneous) iteration on the symmetric PᵀP with p = ``top + extra`` columns:

    Q_0 = orth(G),  G ~ N(0, 1)^(n_k × p)
    Y = P Q_i,  Z = Pᵀ Y = PᵀP Q_i,  Q_(i+1) = orth(Z)

Rayleigh–Ritz after every step: the SVD Y = U S Wᵀ gives Ritz values σ̂_j = S_jj (the singular
values of P restricted to span Q_i, lower bounds of the true σ_j that converge at the rate
(σ_(p+1)/σ_j)^(2i)) and Ritz vectors q_j = Q_i w_j.  The relative residual of the eigenpair
(σ̂_j², q_j) of PᵀP,

    ρ_j = ‖PᵀP q_j − σ̂_j² q_j‖ / σ̂_j² = ‖Z w_j − σ̂_j² Q_i w_j‖ / σ̂_j²,

costs no further product; iteration stops when ρ_j ≤ ``tol`` for j = 1 … top.  For a symmetric
matrix the eigenvalue error is at most the residual norm (and O(ρ²/gap) near convergence), so
|σ̂_j − σ_j| / σ_j ≲ ρ_j / 2.  The obvious alternative, ARPACK ``svds`` on the LinearOperator
of P_k (:func:`chainlab.measures._products.implicit_prefix`), applies one vector at a time; the
block iteration applies p at once (one batched torch convolution per layer and step).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._common import layer_label, rank_tol, require_linear
from .spectra import spectrum_records

__all__ = ["PowerResult", "prefix_power", "prefix_spectra_power", "subspace_singular_values"]


class PowerResult(NamedTuple):
    """Top singular values of P_k (descending), the iterations used, convergence flag, relative residuals ρ_j."""

    sigma: np.ndarray
    iterations: int
    converged: bool
    residuals: np.ndarray


def _orth(A):
    """An orthonormal basis of the columns of a tall A (n × p): CholeskyQR2 (G = QᵀQ = RᵀR, Q ← Q R⁻¹, twice;
    two passes of BLAS-3 over A, ~10× faster than Householder QR for n = 3·10⁶, p = 8), Householder QR
    when G is too ill-conditioned for Cholesky (columns of very different size, rank deficiency)."""
    Q = A
    for _ in range(2):
        try:
            R = np.linalg.cholesky(Q.T @ Q).T
        except np.linalg.LinAlgError:
            return np.linalg.qr(A)[0]
        Q = Q @ np.linalg.inv(R)
    if not np.allclose(Q.T @ Q, np.eye(Q.shape[1]), atol=1e-10):
        return np.linalg.qr(A)[0]
    return Q


def subspace_singular_values(matmat, rmatmat, shape, *, top: int = 2, extra: int = 4, tol: float = 1e-9,
                             maxiter: int = 500, seed: int = 0, dtype=np.float64) -> PowerResult:
    """σ_1 ≥ … ≥ σ_top of a matrix A (shape (m, n)) given only ``matmat(V)`` = A V and ``rmatmat(U)`` = Aᵀ U.

    Block subspace iteration on AᵀA with p = min(top + extra, m, n) columns and Rayleigh–Ritz (module
    docstring); the products run in ``dtype`` (float32 for float32 operators: torch's float32 convolutions,
    half the memory), the Rayleigh–Ritz step in float64; stops when the relative residuals ρ_j ≤ ``tol`` (j ≤ top) or after ``maxiter`` steps.
    σ_j ≤ σ_1·max(m, n)·eps (numerically zero, the rank tolerance of numpy.linalg.matrix_rank) need no
    convergence; they are returned as computed (rounding noise).
    """
    if not (isinstance(top, (int, np.integer)) and top >= 1):
        raise ValueError(f"top must be a positive integer, got {top!r}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol!r}")
    m_rows, n_cols = int(shape[0]), int(shape[1])
    dtype = np.dtype(dtype)
    p = int(min(top + max(int(extra), 0), m_rows, n_cols))
    rng = np.random.default_rng(seed)
    Q = _orth(rng.standard_normal((n_cols, p)))
    sig = np.zeros(p)
    res = np.full(p, np.inf)
    it = 0
    converged = False
    m = min(top, p)
    while it < maxiter:
        it += 1
        Y = np.asarray(matmat(Q.astype(dtype, copy=False)), dtype=np.float64)
        Z = np.asarray(rmatmat(Y.astype(dtype, copy=False)), dtype=np.float64)
        _, S, Wt = np.linalg.svd(Y, full_matrices=False)
        sig = S
        lam = S ** 2
        W = Wt.T
        R = Z @ W - (Q @ W) * lam[None, :]
        # σ_j at or below the numerical rank tolerance σ_1·max(m, n)·eps (rounding noise of the products,
        # e.g. σ_2 of a converged rank-1 prefix) has nothing left to converge: its residual counts as 0
        live = S > rank_tol(S[0], shape) if S.size and S[0] > 0 else np.zeros(S.shape, bool)
        with np.errstate(divide="ignore", invalid="ignore"):
            res = np.where(live, np.linalg.norm(R, axis=0) / np.where(live, lam, 1.0), 0.0)
        if np.all(res[:m] <= tol) or not np.any(Z):
            converged = True
            break
        Q = _orth(Z @ W)   # Ritz vectors of the next subspace, in descending order
    out = np.zeros(top)
    out[:m] = sig[:m]
    r = np.zeros(top)
    r[:m] = res[:m]
    return PowerResult(out, it, converged, r)


def prefix_power(chain, k: int, *, top: int = 2, extra: int = 4, tol: float = 1e-9, maxiter: int = 500,
                 seed: int = 0) -> PowerResult:
    """σ_1 ≥ … ≥ σ_top of P_k = M_1 ⋯ M_k by block subspace iteration (module docstring), matrix-free.

    ``k`` in 1 … len(chain); ``extra`` additional block columns (faster convergence of σ_top, rate
    (σ_(top+extra+1)/σ_top)²); ``tol`` on the relative residuals ρ_j; stops after ``maxiter`` steps with
    ``converged=False`` (values are then lower bounds).  Products in float32 when M_1 … M_k are all float32.
    Works on any linear chain whose operators have
    matmat/rmatmat (dense, sparse, implicit, residual).
    """
    require_linear(chain, "prefix_power")
    L = len(chain)
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= L):
        raise ValueError(f"prefix_power: k must be an integer in 1..{L} (the chain has {L} layers), got {k!r}")
    shape = (chain[0].shape[0], chain[k - 1].shape[1])
    single = all(np.dtype(op.dtype) == np.float32 for op in list(chain)[:k])
    return subspace_singular_values(lambda V: chain.apply(V, 0, k), lambda U: chain.rapply(U, 0, k), shape,
                                    top=top, extra=extra, tol=tol, maxiter=maxiter, seed=seed,
                                    dtype=np.float32 if single else np.float64)


def prefix_spectra_power(chain, ks=None, *, top: int = 2, extra: int = 4, tol: float = 1e-9, maxiter: int = 500,
                         seed: int = 0) -> list[dict]:
    """Records σ1, σ2, σ1/σ2 of P_k for every k in ``ks`` (default 1 … L) by :func:`prefix_power`.

    Same records as ``spectra(of="prefix")`` (measure "spectra", of "prefix", layer = name of M_k) but
    the true σ of P_k (``log_scale`` 0), with extras method "power", iterations, converged, residual (max ρ_j).
    """
    require_linear(chain, "prefix_spectra_power")
    ks = range(1, len(chain) + 1) if ks is None else ks
    rows = []
    for k in ks:
        r = prefix_power(chain, int(k), top=top, extra=extra, tol=tol, maxiter=maxiter, seed=seed)
        rows += spectrum_records(chain, r.sigma, measure="spectra", of="prefix", layer=layer_label(chain, int(k) - 1),
                                 k=int(k), top=top, method="power", log_scale=0.0, iterations=r.iterations,
                                 converged=r.converged, residual=float(np.max(r.residuals)))
    return rows
