"""DeepLIFT's stage operators: multipliers of the (+, −) parts of a difference from the reference.

A DeepLIFT signal is a pair X = (X⁺, X⁻) of multipliers, stored as (B, m, 2, *shape) (+ first); a plain
signal (B, m, *shape) stands for the tied pair (X, X).  With s = X⁺ + X⁻ and d = X⁺ − X⁻:

* :class:`PairScale` — an activation's multipliers, (X⁺, X⁻) ↦ (s⁺ ⊙ X⁺, s⁻ ⊙ X⁻), s± per image;
* :class:`PairLinear` — a Linear/Conv2d layer W (W⁺ = max(W, 0), W⁻ = min(W, 0)), one of
      "coupled":    (W⁺ᵀX⁺ + W⁻ᵀX⁻, W⁻ᵀX⁺ + W⁺ᵀX⁻) = ½(Wᵀs + |W|ᵀd, Wᵀs − |W|ᵀd)   (Sixt et al. eq. 13 on pairs)
      "decoupled":  (W⁺ᵀX⁺, W⁻ᵀX⁻)                                                 (the ± ablation)
  or, with the sign σ = sign(Δx) of the layer's *total* input difference (the ``deeplift`` package, one
  multiplier per input neuron: P± = [σ ≷ 0], P⁰ = [σ = 0]),
      "package":    P⁺(W⁺ᵀX⁺ + W⁻ᵀX⁻) + P⁻(W⁻ᵀX⁺ + W⁺ᵀX⁻) + P⁰ Wᵀ½(X⁺ + X⁻) = ½Wᵀs + ½σ ⊙ |W|ᵀd
      "package-ablation":  P⁺W⁺ᵀX⁺ + P⁻W⁺ᵀX⁻ + P⁰ Wᵀ½(X⁺ + X⁻) = ½|σ| ⊙ W⁺ᵀs + ½σ ⊙ W⁺ᵀd + ½P⁰ ⊙ Wᵀs
  — two transposed convolutions, one when d = 0 (tied signals; "package" is then WᵀX);
* :class:`SignCombine` — the package's rule for the inputs of a sum (an Add is a Dense layer of weights 1):
  (X⁺, X⁻) ↦ P⁺X⁺ + P⁻X⁻ + P⁰½(X⁺ + X⁻) with σ the sign of the summand's total difference;
* :class:`PairMap` — the same linear map on both parts (pools, the identity);
* :class:`DeltaMaxPoolOperator` — captum's DeepLIFT max-pool (conservative: Σ_i M_ij Δx_i = Δy_j).

For one image (B = 1) ``materialize`` gives the 2×2 :class:`~.block.BlockOperator` of a ± stage,
[[A, B], [C, D]] on stacked [m⁺; m⁻]: the coupled layer is [[W⁺ᵀS⁺, W⁻ᵀS⁻], [W⁻ᵀS⁺, W⁺ᵀS⁻]] (shared blocks
A = D, B = C when S⁺ is S⁻), the decoupled [[W⁺ᵀS, 0], [0, W⁻ᵀS]], a pair map diag(P S⁺, P S⁻); a package
stage (its multipliers S± = diag(s±) as its step) is the plain n_in × n_out matrix
P⁺(W⁺ᵀS⁺ + W⁻ᵀS⁻) + P⁻(W⁻ᵀS⁺ + W⁺ᵀS⁻) + P⁰Wᵀ½(S⁺ + S⁻) (ablation P⁺W⁺ᵀS⁺ + P⁻W⁺ᵀS⁻ + P⁰Wᵀ½(S⁺ + S⁻)).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ..errors import InputError
from .block import BlockOperator
from .conv import ConvGeometry, conv_matrix
from .implicit import LayerTerms, TermsOperator, TorchOperator, _transposed_map, flat_numpy, per_image
from .operators import DenseOperator, Diagonal, SparseOperator, zero_operator
from .parts import negative_part, positive_part

__all__ = ["PairScale", "PairLinear", "PairMap", "SignCombine", "DeltaMaxPoolOperator", "is_pair", "parts",
           "as_pair", "DELTA_EPS", "sign_split", "diag_block"]

DELTA_EPS = 1e-10          # |Δ| below which DeepLIFT falls back to the gradient (as captum)


def is_pair(X, shape) -> bool:
    """Whether X (B, m, [2,] *shape) is a pair signal."""
    return X.ndim == 3 + len(shape)


def parts(X, shape):
    """(X⁺, X⁻) of a pair, (X, X) of a plain (tied) signal."""
    return (X[:, :, 0], X[:, :, 1]) if is_pair(X, shape) else (X, X)


def as_pair(P, N):
    return torch.stack([P, N], dim=2)


class PairScale:
    """(X⁺, X⁻) ↦ (s⁺ ⊙ X⁺, s⁻ ⊙ X⁻), s± per image (B|1, 1, *shape).  ``keep_pairs``: a plain (tied) signal comes
    out as a pair (the ± chains carry pairs everywhere); else it stays plain where s⁺ is s⁻."""

    linear = True

    def __init__(self, sp_, sm_, shape, keep_pairs: bool = True):
        self.shape = tuple(shape)
        self.sp = per_image(sp_, shape)
        self.sm = self.sp if sm_ is sp_ else per_image(sm_, shape)
        self.keep_pairs = keep_pairs

    @property
    def tied(self) -> bool:
        return self.sm is self.sp

    @property
    def batch(self) -> int:
        return int(max(self.sp.shape[0], self.sm.shape[0]))

    def __call__(self, X):
        sp_, sm_ = self.sp.to(X.dtype), self.sm.to(X.dtype)
        if not is_pair(X, self.shape):
            if self.tied and not self.keep_pairs:
                return X * sp_
            return as_pair(X * sp_, X * sm_)
        return as_pair(X[:, :, 0] * sp_, X[:, :, 1] * sm_)

    def diagonals(self):
        """(s⁺, s⁻) of one image as flat float64 numpy (the second is the first when tied)."""
        p = flat_numpy(self.sp)
        return p, (p if self.tied else flat_numpy(self.sm))


class SignCombine:
    """(X⁺, X⁻) ↦ P⁺ ⊙ X⁺ + P⁻ ⊙ X⁻ + P⁰ ⊙ ½(X⁺ + X⁻), P± = [σ ≷ 0], P⁰ = [σ = 0], σ per image (B|1, 1, *shape); a
    plain (tied) signal passes unchanged (P⁺ + P⁻ + P⁰ = 1)."""

    linear = True

    def __init__(self, sigma, shape):
        self.shape = tuple(shape)
        self.sigma = per_image(sigma, shape)

    @property
    def batch(self) -> int:
        return int(self.sigma.shape[0])

    def __call__(self, X):
        if not is_pair(X, self.shape):
            return X
        P, N = X[:, :, 0], X[:, :, 1]
        s = self.sigma.to(X.dtype)
        return torch.where(s > 0, P, torch.where(s < 0, N, 0.5 * (P + N)))


class _PairStage(TorchOperator):
    """A DeepLIFT stage on pairs; its ``act`` is a :class:`PairScale` (or None)."""

    def _act_diagonals(self):
        if self.act_step is None:
            ones = np.ones(self.shape[1])
            return ones, ones
        return self.act_step.diagonals()

    def materialize(self) -> BlockOperator:
        if self.batch != 1:
            raise InputError(f"operator {self.name!r} holds the factors of {self.batch} images; only one image's "
                             "operator has a matrix")
        return self._blocks(*self._act_diagonals())


def sign_split(M: sp.csc_matrix):
    """(positive part, negative part) of a CSC matrix, as CSC matrices without explicit zeros (one pass)."""
    n_out = M.shape[1]
    col = np.repeat(np.arange(n_out, dtype=np.int64), np.diff(M.indptr))
    out = []
    for keep in (M.data > 0, M.data < 0):
        indptr = np.zeros(n_out + 1, dtype=M.indptr.dtype)
        np.cumsum(np.bincount(col[keep], minlength=n_out), out=indptr[1:])
        P = sp.csc_matrix((M.data[keep], M.indices[keep], indptr), shape=M.shape, copy=False)
        P.has_sorted_indices = M.has_sorted_indices
        out.append(P)
    return out[0], out[1]


class PairLinear(_PairStage):
    """A Linear/Conv2d layer on pairs, ``mode`` one of MODES (module docstring); the weight is shared by the batch,
    ``sigma`` (the package modes) is the sign of the total input difference per image (B|1, n_in)."""

    MODES = ("coupled", "decoupled", "package", "package-ablation")

    def __init__(self, weight, in_shape, out_shape, conv=None, mode="coupled", dtype=np.float64, name="", act=None,
                 sigma=None):
        super().__init__(in_shape, out_shape, dtype, name, act)
        if mode not in self.MODES:
            raise InputError(f"PairLinear mode must be one of {', '.join(self.MODES)}, got {mode!r}")
        if mode.startswith("package") and sigma is None:
            raise InputError(f"PairLinear mode {mode!r} needs sigma, the sign of the input difference")
        self.weight, self.conv, self.mode = weight, conv, mode
        self.sigma = per_image(sigma, self.in_shape)

    def factors(self):
        return [self.sigma]

    def _with(self, dtype=None, act=False):
        return PairLinear(self.weight, self.in_shape, self.out_shape, self.conv, self.mode,
                          self.dtype if dtype is None else dtype, self.name, self.act_step if act is False else act,
                          self.sigma)

    @property
    def paired_output(self) -> bool:
        return not self.mode.startswith("package")

    def _t(self, phi, Y):
        """W_φᵀ Y for Y (B, m, *out)."""
        B, M = Y.shape[:2]
        Z = _transposed_map(self._f(phi, Y.dtype), Y.reshape((B * M,) + self.out_shape), self.in_shape, self.conv)
        return Z.reshape((B, M) + self.in_shape)

    def _w(self, which):
        key = ("w", which)
        if key not in self._cache:
            W = self.weight
            make = {"W": lambda: W, "abs": W.abs, "pos": lambda: positive_part(W), "neg": lambda: negative_part(W)}
            self._cache[key] = make[which]()                # only the variant asked for (VGG's fc1: 10⁸ numbers)
        return self._cache[key]

    def lin(self, X):
        P, N = parts(X, self.out_shape)
        tied = P is N or not bool((P != N).any())
        if self.mode == "decoupled":
            return as_pair(self._t(self._w("pos"), P), self._t(self._w("neg"), N))
        if self.mode == "package-ablation":
            sig = self._f(self.sigma, X.dtype)
            ps = self._t(self._w("pos"), P if tied else P + N)
            out = sig.abs() * ps if tied else 0.5 * sig.abs() * ps + 0.5 * sig * self._t(self._w("pos"), P - N)
            zero = sig == 0
            if bool(zero.any()):
                out = out + zero * self._t(self._w("W"), P if tied else 0.5 * (P + N))
            return out
        if self.mode == "package" and tied:
            return self._t(self._w("W"), P)
        s = self._t(self._w("W"), P + N)
        if tied:
            h = 0.5 * s
            return as_pair(h, h)
        d = self._t(self._w("abs"), P - N)
        if self.mode == "package":
            return 0.5 * s + 0.5 * self._f(self.sigma, X.dtype) * d
        return as_pair(0.5 * (s + d), 0.5 * (s - d))

    def _weight_blocks(self, s):
        """(W⁺ᵀ diag(s), W⁻ᵀ diag(s)) for s ≥ 0, as stored operators (n_in × n_out)."""
        W = self.weight.to(torch.float64).numpy()
        if self.conv is None:
            Wt = W.T * s[None, :]
            return (DenseOperator(np.maximum(Wt, 0.0).astype(self.dtype)),
                    DenseOperator(np.minimum(Wt, 0.0).astype(self.dtype)))
        c = self.conv
        geom = ConvGeometry.of(self.in_shape, self.out_shape, W.shape[2:], c.stride, c.padding, c.dilation, c.groups)
        M = conv_matrix(geom, np.ones((1, geom.n_in)), W[None], s[None, :], self.dtype)
        P, N = sign_split(M)
        return SparseOperator(P), SparseOperator(N)

    def materialize(self):
        """One image's stage: a BlockOperator (± modes) or the plain matrix of the package modes (module docstring)."""
        if not self.mode.startswith("package"):
            return super().materialize()
        if self.batch != 1:
            raise InputError(f"operator {self.name!r} holds the factors of {self.batch} images; only one image's "
                             "operator has a matrix")
        sp_, sm_ = self._act_diagonals()
        sig = flat_numpy(self.sigma)
        Pp, Pm, P0 = (sig > 0).astype(float), (sig < 0).astype(float), (sig == 0).astype(float)
        W = self.weight.to(torch.float64)
        Wp, Wn = positive_part(W), negative_part(W)
        mean = 0.5 * (sp_ + sm_)
        if self.mode == "package":
            terms = [(None, W, sp_)] if sm_ is sp_ else [(Pp, Wp, sp_), (Pp, Wn, sm_), (Pm, Wn, sp_), (Pm, Wp, sm_),
                                                         (P0, W, mean)]
        else:
            terms = [(Pp, Wp, sp_), (Pm, Wp, sm_), (P0, W, mean)]
        terms = [(None if a is None else torch.from_numpy(a), phi, torch.from_numpy(np.asarray(c, np.float64)))
                 for a, phi, c in terms]
        return TermsOperator(LayerTerms(terms), self.in_shape, self.out_shape, self.conv, self.dtype,
                             self.name).materialize()

    def _blocks(self, sp_, sm_):
        Ap, Bp = self._weight_blocks(sp_)                       # W⁺ᵀS⁺, W⁻ᵀS⁺
        if self.mode == "decoupled":
            Z = zero_operator(*Ap.shape, dtype=self.dtype)
            return BlockOperator(Ap, Z, Z, Bp)
        if sm_ is sp_:
            return BlockOperator(Ap, Bp, Bp, Ap)                # shared blocks: A = D, B = C
        Dm, Bm = self._weight_blocks(sm_)                       # W⁺ᵀS⁻, W⁻ᵀS⁻
        return BlockOperator(Ap, Bm, Bp, Dm)


class PairMap(_PairStage):
    """The linear map ``inner`` (a stage operator without act) on both parts: (L X⁺, L X⁻)."""

    def __init__(self, inner: TorchOperator, act=None):
        super().__init__(inner.in_shape, inner.out_shape, inner.dtype, inner.name, act)
        self.inner = inner

    def factors(self):
        return self.inner.factors()

    def _with(self, dtype=None, act=False):
        inner = self.inner if dtype is None else self.inner.astype(dtype)
        return PairMap(inner, self.act_step if act is False else act)

    def lin(self, X):
        if not is_pair(X, self.out_shape):
            Y = self.inner.lin(X)
            return as_pair(Y, Y)
        B, M = X.shape[:2]
        Y = self.inner.lin(X.reshape((B, 2 * M) + self.out_shape))
        return Y.reshape((B, M, 2) + self.in_shape)

    def _blocks(self, sp_, sm_):
        L = self.inner.materialize().to_csc()
        P = SparseOperator((L @ sp.diags(sp_)).tocsc().astype(self.dtype))
        Q = P if sm_ is sp_ else SparseOperator((L @ sp.diags(sm_)).tocsc().astype(self.dtype))
        Z = zero_operator(*P.shape, dtype=self.dtype)
        return BlockOperator(P, Z, Z, Q)


class DeltaMaxPoolOperator(TorchOperator):
    """captum's DeepLIFT max-pool multipliers, per image: with y = max over window j at x, y⁰ at x⁰, winners a(j),
    a⁰(j), M_ij = ([i = a(j)]·(max(y, y⁰) − y⁰)_j + [i = a⁰(j)]·(y − max(y, y⁰))_j) / Δx_i (summed over
    overlapping windows), the gradient [i = a(j)] in rows with |Δx_i| < DELTA_EPS.  Σ_i M_ij Δx_i = Δy_j.

    ``rec``, ``rec0``: the max-pool stage's records at x and x⁰ (x: B images, x⁰: B or 1)."""

    def __init__(self, rec, rec0, dtype=np.float64, name="", act=None):
        super().__init__(rec.in_shape, rec.out_shape, dtype, name, act)
        C, H, W = self.in_shape
        B = rec.x.shape[0]
        off = (torch.arange(C, dtype=torch.int64) * (H * W)).reshape(1, C, 1)
        flat = lambda am: (am.reshape(am.shape[0], C, -1).to(torch.int64) + off).reshape(am.shape[0], 1, -1)  # noqa
        self.a = flat(rec.argmax).expand(B, 1, -1)
        self.a0 = flat(rec0.argmax).expand(B, 1, -1)
        y, y0 = rec.z.reshape(B, 1, -1), rec0.z.reshape(rec0.z.shape[0], 1, -1)
        ymax = torch.maximum(y, y0)
        self.w1, self.w2 = ymax - y0, y - ymax
        dx = (rec.x - rec0.x).reshape(B, 1, -1)
        self.small = dx.abs() < DELTA_EPS
        self.inv = torch.where(self.small, 0.0, 1.0 / torch.where(self.small, 1.0, dx)).to(dx.dtype)

    def factors(self):
        return [self.a, self.w1, self.inv]

    def _with(self, dtype=None, act=False):
        out = object.__new__(DeltaMaxPoolOperator)
        out.__dict__.update(self.__dict__)
        out._cache = {}
        out.dtype = self.dtype if dtype is None else np.dtype(dtype)
        out.act_step = self.act_step if act is False else act
        return out

    def lin(self, X):
        B, M = X.shape[:2]
        dt = X.dtype
        Xf = X.reshape(B, M, -1)
        a, a0 = self.a.expand(B, M, -1), self.a0.expand(B, M, -1)
        U = Xf.new_zeros((B, M, self.shape[0])).scatter_add_(2, a, Xf * self.w1.to(dt))
        U.scatter_add_(2, a0, Xf * self.w2.to(dt))
        G = Xf.new_zeros((B, M, self.shape[0])).scatter_add_(2, a, Xf)
        return torch.where(self.small, G, U * self.inv.to(dt)).reshape((B, M) + self.in_shape)

    def lin_t(self, U):
        """Mᵀ U: the parts of the pool's output from the parts U of its input."""
        B, M = U.shape[:2]
        dt = U.dtype
        Uf = U.reshape(B, M, -1)
        r = Uf * self.inv.to(dt)
        g = torch.where(self.small, Uf, Uf.new_zeros(()))
        a, a0 = self.a.expand(B, M, -1), self.a0.expand(B, M, -1)
        out = self.w1.to(dt) * r.gather(2, a) + self.w2.to(dt) * r.gather(2, a0) + g.gather(2, a)
        return out.reshape((B, M) + self.out_shape)

    def _materialize_lin(self, d):
        n_in, n_out = self.shape
        a, a0 = self.a.reshape(-1).numpy(), self.a0.reshape(-1).numpy()
        w1, w2 = flat_numpy(self.w1), flat_numpy(self.w2)
        if d is not None:
            w1, w2 = w1 * d, w2 * d
        cols = np.arange(n_out)
        U = sp.coo_matrix((np.concatenate([w1, w2]), (np.concatenate([a, a0]), np.concatenate([cols, cols]))),
                          shape=(n_in, n_out)).tocsr()
        U.sum_duplicates()
        small = self.small.reshape(-1).numpy()
        U = sp.diags(flat_numpy(self.inv)) @ U
        if small.any():  # gradient rows: [i = a(j)]
            g = np.ones(n_out) if d is None else d
            G = sp.coo_matrix((g, (a, cols)), shape=(n_in, n_out)).tocsr()
            U = U + sp.diags(small.astype(np.float64)) @ G
        U = U.tocsc().astype(self.dtype)
        U.eliminate_zeros()
        return SparseOperator(U)


def diag_block(sp_, sm_, dtype=np.float64) -> BlockOperator:
    """diag(S⁺, S⁻) as a block operator (the multipliers of an activation after a residual sum)."""
    P = Diagonal(np.asarray(sp_, dtype))
    Q = P if sm_ is sp_ else Diagonal(np.asarray(sm_, dtype))
    Z = zero_operator(P.shape[0], P.shape[0], dtype=dtype)
    return BlockOperator(P, Z, Z, Q)
