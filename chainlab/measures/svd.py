"""Singular values of operators: every solver in one place.

* dense SVD (numpy) when min(n_in, n_out) ≤ ``exact_below`` and the dense copy has at most
  ``DENSE_LIMIT`` entries — exact;
* ARPACK on the operator (:func:`arpack_svds`: implicitly restarted Lanczos on MᵀM as
  ``scipy.sparse.linalg.svds`` does it, relative accuracy ``tol`` = 1e-8 of each returned σ; the start
  vector AND every restart vector ARPACK asks for are drawn from ``seed``), never materializing it;
  on ARPACK's breakdown (degenerate spectra of max-pool and mask operators, "No shifts could be
  applied") block subspace iteration takes over;
* Golub–Kahan–Lanczos bidiagonalization stopping when the values settle (:func:`lanczos_singular_values`,
  ``method="lanczos"``: far fewer products on the clustered spectra of large conv layers);
* block subspace iteration with Rayleigh–Ritz and a residual certificate
  (:func:`subspace_singular_values`), for operators given only by their products — prefix products
  P_k = M_1 ⋯ M_k that are never formed.

Golub–Kahan–Lanczos
-------------------
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

Block subspace iteration
------------------------
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
of P_k (:func:`chainlab.measures.prefix.implicit_prefix`), applies one vector at a time; the
block iteration applies p at once (one batched torch convolution per layer and step).
"""
from __future__ import annotations

import inspect
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..errors import InputError, OptionError
from ..linalg import Operator
from . import lapack
from ._common import rank_tol

__all__ = ["DENSE_LIMIT", "SVDS_TOL", "LanczosResult", "PowerResult", "lanczos_singular_values",
           "subspace_singular_values", "singular_values", "singular_triplets", "uses_dense"]


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
        raise InputError(f"lanczos_singular_values: reorthogonalize must be 'both' or 'smaller', got {reorthogonalize!r}")
    if stop not in ("stalled", "residual"):
        raise InputError(f"lanczos_singular_values: stop must be 'stalled' or 'residual', got {stop!r}")
    m, n = (int(s) for s in shape)
    kmax = int(min(maxiter, m, n))
    top = int(top)
    if top < 1 or kmax < 1:
        raise InputError(f"lanczos_singular_values: need top ≥ 1 and a non-empty operator, got top={top}, shape {shape}")
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
            vals = list(lapack.svd(C, compute_uv=False)) if k else [a]
        else:
            U[:, nu] = u / a
            alpha.append(a)
            w = np.asarray(rmatvec(U[:, nu]), dtype=dtype).reshape(-1) - a * V[:, nv - 1]
            nu += 1
            w, b = _reorthogonalize(w, V, nv if orth_v else 0)
            beta.append(b)
            k = len(alpha)
            P, sv, _ = lapack.svd(np.diag(alpha) + np.diag(beta[:-1], 1))
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


class PowerResult(NamedTuple):
    """Top singular values of P_k (descending), the iterations used, convergence flag, relative residuals ρ_j."""

    sigma: np.ndarray
    iterations: int
    converged: bool
    residuals: np.ndarray
    U: np.ndarray | None = None      # left Ritz vectors (m × top), with ``vectors=True``
    Vh: np.ndarray | None = None     # right Ritz vectors as rows (top × n)


def _orth(A):
    """An orthonormal basis of the columns of a tall A (n × p): CholeskyQR2 (G = QᵀQ = RᵀR, Q ← Q R⁻¹, twice;
    two passes of BLAS-3 over A, ~10× faster than Householder QR for n = 3·10⁶, p = 8), Householder QR
    when G is too ill-conditioned for Cholesky (columns of very different size, rank deficiency)."""
    Q = A
    for _ in range(2):
        try:
            R = lapack.cholesky(Q.T @ Q).T
        except np.linalg.LinAlgError:
            return lapack.qr(A)[0]
        Q = Q @ lapack.inv(R)
    if not np.allclose(Q.T @ Q, np.eye(Q.shape[1]), atol=1e-10):
        return lapack.qr(A)[0]
    return Q


def subspace_singular_values(matmat, rmatmat, shape, *, top: int = 2, extra: int = 4, tol: float = 1e-9,
                             maxiter: int = 500, seed: int = 0, dtype=np.float64, vectors: bool = False) -> PowerResult:
    """σ_1 ≥ … ≥ σ_top of a matrix A (shape (m, n)) given only ``matmat(V)`` = A V and ``rmatmat(U)`` = Aᵀ U.

    Block subspace iteration on AᵀA with p = min(top + extra, m, n) columns and Rayleigh–Ritz (module
    docstring); the products run in ``dtype`` (float32 for float32 operators: torch's float32 convolutions,
    half the memory), the Rayleigh–Ritz step in float64; stops when the relative residuals ρ_j ≤ ``tol`` (j ≤ top) or after ``maxiter`` steps.
    σ_j ≤ σ_1·max(m, n)·eps (numerically zero, the rank tolerance of numpy.linalg.matrix_rank) need no
    convergence; they are returned as computed (rounding noise).  With ``vectors`` the Ritz vectors come
    too: A ≈ U diag(σ) Vh on the top singular subspace.
    """
    if not (isinstance(top, (int, np.integer)) and top >= 1):
        raise InputError(f"top must be a positive integer, got {top!r}")
    if not tol > 0:
        raise InputError(f"tol must be positive, got {tol!r}")
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
        Uy, S, Wt = lapack.svd(Y, full_matrices=False)
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
    if not vectors:
        return PowerResult(out, it, converged, r)
    return PowerResult(out[:m], it, converged, r[:m], Uy[:, :m], (Q @ W)[:, :m].T)


DENSE_LIMIT = 4_000_000   # entries of a dense copy we are willing to make for an exact SVD
SVDS_TOL = 1e-8

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


def uses_dense(shape, k, exact_below):
    n, m = shape
    small = min(n, m)
    return (small <= exact_below and n * m <= DENSE_LIMIT) or small <= k + 1


def _EIGSH_RNG(rng) -> dict:
    """eigsh's keyword for the generator of ARPACK's restart vectors (``rng`` since scipy 1.15; older scipy draws
    them from ARPACK's own fixed-seed generator, deterministic already)."""
    return {"rng": rng} if "rng" in inspect.signature(spla.eigsh).parameters else {}


def arpack_svds(A, k: int, tol: float, seed: int, vectors: bool = True):
    """``scipy.sparse.linalg.svds(A, k, tol, solver="arpack")`` with every random number drawn from ``seed``.

    Same algorithm as scipy (eigsh on XᴴX, X = A or Aᵀ whichever is taller, relative tolerance tol² on the
    eigenvalues, orthonormalized eigenvectors, then the SVD of X·Q), ascending order like scipy.  scipy's svds
    hands its generator to the start vector only: when ARPACK restarts (on degenerate spectra — a max-pool
    matrix has all σ = 1) eigsh draws the new vector from OS entropy and the returned singular vectors, and
    the last bits of σ, change from run to run.  Here eigsh gets the generator too.
    Returns (U, s, Vh) or s.
    """
    n, m = A.shape
    if n >= m:
        X_dot, XH_dot, X_mat, XH_mat, transpose = A.matvec, A.rmatvec, A.matmat, A.rmatmat, False
    else:
        X_dot, XH_dot, X_mat, XH_mat, transpose = A.rmatvec, A.matvec, A.rmatmat, A.matmat, True
    rng = np.random.default_rng(seed)
    p = min(n, m)
    XH_X = spla.LinearOperator((p, p), matvec=lambda v: XH_dot(X_dot(v)), matmat=lambda V: XH_mat(X_mat(V)),
                               dtype=A.dtype)
    v0 = rng.standard_normal(p)
    _, Q = spla.eigsh(XH_X, k=k, tol=tol ** 2, which="LM", v0=v0, **_EIGSH_RNG(rng))
    Q, _ = lapack.qr(Q)
    XQ = X_mat(Q)
    if not vectors:
        return lapack.svd(XQ, compute_uv=False)[::-1]
    u, s, vh = lapack.svd(XQ, full_matrices=False)
    u, s, vh = u[:, ::-1], s[::-1], vh[::-1]
    if transpose:
        return Q @ vh.conj().T, s, u.conj().T
    return u, s, vh @ Q.conj().T


def singular_values(op, k: int = 1, exact_below: int = 1500, tol: float = SVDS_TOL, seed: int = 0,
                    method: str = "svds") -> np.ndarray:
    """The k largest singular values of ``op`` (Operator, ndarray, scipy sparse or LinearOperator), descending.

    Zeros are padded when the rank (or min dimension) is below k.  ``method`` ("svds" or "lanczos") is
    used when the operator is too large for a dense SVD.
    """
    if method not in ("svds", "lanczos"):
        raise OptionError(f"singular_values: method must be 'svds' or 'lanczos', got {method!r}")
    n, m = _shape(op)
    if uses_dense((n, m), k, exact_below):
        s = lapack.svd(_dense_of(op), compute_uv=False)
    elif method == "lanczos":
        A = spla.aslinearoperator(op)
        dt = np.float32 if np.dtype(A.dtype) == np.float32 else np.float64
        s = lanczos_singular_values(A.matvec, A.rmatvec, (n, m), top=k, tol=tol, dtype=dt, seed=seed).sigma
    else:
        A = spla.aslinearoperator(op)
        try:
            s = arpack_svds(A, k, tol, seed, vectors=False)
        except spla.ArpackError:
            # ARPACK breaks down on degenerate spectra (max-pool / mask operators: all σ equal), where
            # block subspace iteration converges at once
            s = subspace_singular_values(A.matmat, A.rmatmat, (n, m), top=k, tol=max(tol, 1e-12), seed=seed).sigma
        s = np.sort(s)[::-1]
    out = np.zeros(k)
    out[: min(k, len(s))] = s[:k]
    return out


def singular_triplets(op, rank: int | None = None, exact_below: int = 1500, tol: float = SVDS_TOL, seed: int = 0):
    """(U, s, Vh) with op ≈ U diag(s) Vh: the full thin SVD when small (rank=None), else the top ``rank``."""
    n, m = _shape(op)
    if rank is None or uses_dense((n, m), rank, exact_below):
        U, s, Vh = lapack.svd(_dense_of(op), full_matrices=False)
        if rank is not None:
            U, s, Vh = U[:, :rank], s[:rank], Vh[:rank]
        return U, s, Vh
    A = spla.aslinearoperator(op)
    try:
        U, s, Vh = arpack_svds(A, rank, tol, seed)
    except spla.ArpackError:
        # ARPACK's breakdown ("No shifts could be applied", degenerate spectra): block subspace iteration,
        # whose Ritz vectors give the triplets
        r = subspace_singular_values(A.matmat, A.rmatmat, (n, m), top=rank, tol=max(tol, 1e-12), seed=seed,
                                     vectors=True)
        return r.U, r.sigma, r.Vh
    order = np.argsort(s)[::-1]
    return U[:, order], s[order], Vh[order]
