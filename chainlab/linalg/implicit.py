"""Stage operators: the backward map of one layer at B inputs, applied with torch (kind ``"implicit"``).

One object serves a single chain (B = 1: the full operator protocol, ``materialize`` builds the explicit
matrix) and a batch (B images: :meth:`TorchOperator.back` on signals (B, m, *out_shape)).  Every per-image
factor — masks, denominators, multipliers — is a tensor (B|1, 1, *shape) (:func:`per_image`): batch
dimension 1 is shared by all images, B holds one factor per image.  A stage's map is split as

    back = lin ∘ act,

``act`` the output-side factor of the activation after the stage (a :class:`Scale` by ρ'(z) in gradient
space, DeepLIFT's multipliers, a rectifier; None in relevance space) and ``lin`` the rest:

* :class:`TermsOperator` — a Linear/Conv2d layer under a rule, :class:`LayerTerms`
  M = Σ_t diag(a_t) W_tᵀ diag(c_t) · diag(d), W_t the forward map of the modified weight φ_t (n_out × n_in):
      lin(X)  = Σ_t a_t ⊙ W_tᵀ(c_t ⊙ X)      (conv: ``conv2d_input`` = conv_transpose2d, linear: X φ_t),
      Mᵀ U    = d ⊙ Σ_t c_t ⊙ W_t(a_t ⊙ U)   (conv: ``conv2d`` without bias, linear: U φ_tᵀ);
  materialized: dense n_in × n_out (Linear) or CSC built from the kernel (:func:`~.conv.conv_matrix`).
* :class:`GatherOperator` — winner-take-all (max-pool): lin scatters column j to its input rows_j.
* :class:`PoolOperator` — average pools: lin = diag(a) Aᵀ diag(c) with A torch's pooling map
  (1/divisor_j over window j); Aᵀ through autograd of the pooling function.
* :class:`DiagonalOperator` — diag(d) (a leading activation's derivative, or the identity).

Signals of a single chain are numpy columns (n, k); ``matmat`` runs them as one torch batch (1, k, *shape)
in float32 when operator and operand are float32, else float64.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, NotLinearError
from .conv import ConvGeometry, conv_matrix, conv_nnz
from .operators import DenseOperator, Diagonal, Operator, SparseOperator
from .parts import known_sign
from .pool import PoolSpec, column_weights, gather_matrix, window_matrix

__all__ = ["LayerTerms", "ConvSpec", "TorchOperator", "TermsOperator", "GatherOperator", "PoolOperator",
           "DiagonalOperator", "Scale", "per_image", "flat_numpy"]


@dataclass(frozen=True)
class ConvSpec:
    """torch's numeric parameters of a Conv2d (padding already numeric: 'same'/'valid' resolved)."""

    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1

    def kwargs(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)


def per_image(t, shape) -> torch.Tensor | None:
    """A per-image factor — (n,), (B, n), (B, *shape) or (B, 1, *shape) — as (B|1, 1, *shape); None stays None."""
    if t is None:
        return None
    t = torch.as_tensor(t)
    shape = tuple(int(v) for v in shape)
    if t.numel() == int(np.prod(shape)):
        return t.reshape((1, 1) + shape)
    return t.reshape((t.shape[0], 1) + shape)


def flat_numpy(t) -> np.ndarray | None:
    """A per-image factor of one image as a flat float64 numpy vector (None stays None)."""
    if t is None:
        return None
    if t.shape[0] != 1:
        raise InputError(f"a factor of {t.shape[0]} images has no single-chain matrix; extract one input")
    return t.reshape(-1).to(torch.float64).numpy()


def batch_of(*factors) -> int:
    """The number of images of per-image factors (B|1, …): the largest leading dimension (1 without factors)."""
    return max([1] + [int(f.shape[0]) for f in factors if isinstance(f, torch.Tensor)])


class Scale:
    """The output-side factor X ↦ d ⊙ X of a stage, d per image (B|1, 1, *shape): ρ'(z) of the activation after
    the stage in gradient space, a rule's soft mask, a residual split z_t/s(z).  Linear and symmetric."""

    linear = True

    def __init__(self, d, shape):
        self.d = per_image(d, shape)
        self.shape = tuple(shape)

    @property
    def batch(self) -> int:
        return int(self.d.shape[0])

    def __call__(self, X):
        return X * self.d.to(X.dtype)

    transpose = __call__

    def diag(self) -> np.ndarray:
        """d of one image, flat float64."""
        return flat_numpy(self.d)


@dataclass
class LayerTerms:
    """M = Σ_t diag(a_t) φ_tᵀ diag(c_t) · diag(mask) of one Linear/Conv2d layer at B inputs (torch tensors).

    terms: [(a_t, φ_t, c_t)] with a_t (B|1, n_in) or None (ones), φ_t of the weight's shape, c_t (B|1, n_out) or
    None (ones); mask: the output-side factor d (B|1, n_out) or None (a gradient-type rule's ρ'(z));
    bias_relevance: (B|1, n_out) or None — the relevance share of the bias per output unit."""

    terms: list = field(default_factory=list)
    mask: torch.Tensor | None = None
    bias_relevance: torch.Tensor | None = None


class TorchOperator(Operator):
    """Base of the stage operators: ``lin`` (and ``act``, ``back = lin ∘ act``) on torch batches (B, m, *shape).

    Subclasses give ``lin``, ``lin_t`` (the transpose of lin: (B, m, *in) → (B, m, *out)), ``factors()`` (their
    per-image tensors), ``_materialize_lin(d)`` (the explicit matrix of lin · diag(d) for one image) and
    ``_with(**changes)``.  ``act``: None, a :class:`Scale` (linear) or any callable on signals (a rectifier,
    DeepLIFT's multipliers; then the operator is the stage's linear part ``lin`` plus that step).
    """

    kind = "implicit"

    def __init__(self, in_shape, out_shape, dtype=np.float64, name="", act=None, bias_relevance=None):
        self.in_shape = tuple(int(v) for v in in_shape)
        self.out_shape = tuple(int(v) for v in out_shape)
        self.shape = (int(np.prod(self.in_shape)), int(np.prod(self.out_shape)))
        self.dtype = np.dtype(dtype)
        self.name = name
        self.act_step = act
        self._bias = bias_relevance
        self._nnz = None
        self._cache = {}

    # -- the stage ----------------------------------------------------------------------------------
    def factors(self) -> list:
        return []

    @property
    def batch(self) -> int:
        """Images whose factors the operator holds (1: one chain's operator)."""
        b = batch_of(*self.factors())
        return max(b, getattr(self.act_step, "batch", 1))

    @property
    def has_act(self) -> bool:
        return self.act_step is not None

    @property
    def linear(self) -> bool:
        return self.act_step is None or getattr(self.act_step, "linear", False)

    def act(self, X):
        """The output-side step of the stage (identity without one)."""
        return X if self.act_step is None else self.act_step(X)

    def lin(self, X):
        raise NotImplementedError

    def lin_t(self, U):
        raise NotImplementedError

    def back(self, X):
        """The stage's backward map of signals X (B, m, *out_shape) → (B, m, *in_shape)."""
        return self.lin(self.act(X))

    def back_t(self, U):
        """The transpose of back (linear stages): (B, m, *in_shape) → (B, m, *out_shape)."""
        if not self.linear:
            raise NotLinearError(f"operator {self.name!r} rectifies its signal; it has no transpose")
        Y = self.lin_t(U)
        return Y if self.act_step is None else self.act_step.transpose(Y)

    def _f(self, t, dtype):
        """A factor in ``dtype``, converted once per dtype (φ of VGG-16's first Linear is 10⁸ numbers)."""
        if t is None or t.dtype == dtype:
            return t
        key = (id(t), dtype)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = (t, t.to(dtype))
        return hit[1]

    def __getstate__(self):
        return {**self.__dict__, "_cache": {}}          # the cache is not shipped (pickling, dask)

    # -- the operator protocol of one chain (B = 1) ---------------------------------------------------
    def _run(self, V, fn, shape_in):
        if self.batch != 1:
            raise InputError(f"operator {self.name!r} holds the factors of {self.batch} images; as a matrix it "
                             "needs one (extract one input)")
        dt = np.result_type(self.dtype, V.dtype)
        dt = np.float32 if dt == np.float32 else np.float64
        X = torch.from_numpy(np.ascontiguousarray(V.T, dtype=dt)).reshape((1, V.shape[1]) + shape_in)
        with torch.no_grad():
            Y = fn(X)
        return Y.reshape(V.shape[1], -1).numpy().T

    def _matmat(self, V):
        return self._run(V, self.back, self.out_shape)

    def _rmatmat(self, U):
        return self._run(U, self.back_t, self.in_shape)

    @property
    def bias_relevance(self):
        return flat_numpy(self._bias) if isinstance(self._bias, torch.Tensor) else self._bias

    @bias_relevance.setter
    def bias_relevance(self, value):
        self._bias = value

    def _output_diag(self) -> np.ndarray | None:
        """d of a linear ``act`` (None without one); refused for a non-linear step."""
        if self.act_step is None:
            return None
        if isinstance(self.act_step, Scale):
            return self.act_step.diag()
        raise NotLinearError(f"operator {self.name!r} ends in a non-linear step ({type(self.act_step).__name__}); "
                             "only its linear part has a matrix (linear_part())")

    def nonnegative(self) -> bool:
        """Whether one image's matrix is entrywise ≥ 0 by its factors' signs (every factor ≥ 0; False when that is
        not known — a sign-changing product of signed factors counts as signed)."""
        return False

    def _act_nonnegative(self) -> bool:
        """Whether the output-side step is the identity or a diagonal d ≥ 0."""
        return self.act_step is None or (isinstance(self.act_step, Scale) and _nonneg(self.act_step.d))

    def materialize(self) -> Operator:
        """The explicit matrix of one image's stage: lin · diag(d)."""
        if self.batch != 1:
            raise InputError(f"operator {self.name!r} holds the factors of {self.batch} images; only one image's "
                             "operator has a matrix")
        return self._materialize_lin(self._output_diag())

    def linear_part(self) -> "TorchOperator":
        """The same operator without its ``act`` step."""
        return self._with(act=None)

    def with_act(self, act) -> "TorchOperator":
        """The same operator with ``act`` as its output-side step."""
        return self._with(act=act)

    def to_csc(self):
        return self.materialize().to_csc()

    def to_dense(self):
        return self.materialize().to_dense()

    @property
    def nnz(self):
        """Entries the materialized matrix would store (counted without building it where possible)."""
        if self._nnz is None:
            self._nnz = self._count()
        return self._nnz

    def _count(self):
        return self.materialize().nnz

    def astype(self, dtype):
        return self._with(dtype=np.dtype(dtype))

    def __repr__(self):
        b = f" B={self.batch}" if self.batch != 1 else ""
        return f"<{type(self).__name__} {self.name!r} {self.shape[0]}x{self.shape[1]} {self.dtype.name}{b}>"


def _transposed_map(phi, Y, in_shape, conv):
    """W_φᵀ Y for Y (K, *out): ``conv2d_input`` for a convolution, Y φ for a Linear (φ: n_out × n_in)."""
    if conv is not None:
        return torch.nn.grad.conv2d_input((Y.shape[0],) + tuple(in_shape), phi, Y, **conv.kwargs())
    return Y.reshape(Y.shape[0], -1) @ phi


def _forward_map(phi, U, conv):
    """W_φ U for U (K, *in)."""
    if conv is not None:
        return F.conv2d(U, phi, None, **conv.kwargs())
    return U.reshape(U.shape[0], -1) @ phi.T


_BLOCK = 1 << 22          # numbers per block of the blockwise routes (32 MB in float64)


def _nonzero_overlap(p, q) -> bool:
    """Whether tensors p and q of one shape are both non-zero somewhere (compared in blocks of ``_BLOCK``)."""
    p, q = p.reshape(-1), q.reshape(-1)
    for k in range(0, p.numel(), _BLOCK):
        if bool(((p[k:k + _BLOCK] != 0) & (q[k:k + _BLOCK] != 0)).any()):
            return True
    return False


def _nonneg(t) -> bool:
    """Whether a factor is None (ones) or entrywise ≥ 0."""
    return t is None or not bool((t < 0).any())


def _disjoint_terms(terms) -> bool:
    """Whether no two terms (a, φ, c) (flat factors, None = ones) are non-zero at a common matrix entry: every pair
    has disjoint input factors, disjoint weights or disjoint output factors."""
    def apart(p, q):
        if p is None or q is None:
            return False if (p is None or bool(p.any())) and (q is None or bool(q.any())) else True
        return not _nonzero_overlap(p, q)
    for t in range(len(terms)):
        for u in range(t + 1, len(terms)):
            (a1, p1, c1), (a2, p2, c2) = terms[t], terms[u]
            if not (apart(a1, a2) or apart(c1, c2) or (p1 is not p2 and apart(p1, p2))):
                return False
    return True


def _abs_forward(phi, U, conv):
    """W_{|φ|} U for U (1, *in) ≥ 0 in float64: ``conv2d`` with |φ|, or |φ| U for a Linear in blocks of rows of φ
    (|φ| of a VGG classifier layer is never copied whole); a sign part made by :mod:`.parts` (φ⁺ ≥ 0, φ⁻ ≤ 0) is
    used as ±φ, without a copy."""
    sign = known_sign(phi) if phi.dtype == torch.float64 else 0
    if sign:
        Y = F.conv2d(U, phi, None, **conv.kwargs()) if conv is not None else phi @ U.reshape(-1)
        return Y if sign > 0 else -Y
    if conv is not None:
        return F.conv2d(U, phi.to(torch.float64).abs(), None, **conv.kwargs())
    u = U.reshape(-1)
    step = max(1, _BLOCK // max(phi.shape[1], 1))
    return torch.cat([phi[j:j + step].to(torch.float64).abs() @ u for j in range(0, phi.shape[0], step)])


class TermsOperator(TorchOperator):
    """M = Σ_t diag(a_t) W_tᵀ diag(c_t) · diag(d) of a Linear (``conv=None``) or Conv2d layer (module docstring).

    Terms whose a_t or c_t vanish for every image are dropped (x⁻ = 0 after a ReLU); one is kept for an
    all-zero matrix so that the shapes stay defined."""

    def __init__(self, terms: LayerTerms, in_shape, out_shape, conv: ConvSpec | None = None, dtype=np.float64,
                 name="", act=None):
        if act is None and terms.mask is not None:
            act = Scale(terms.mask, out_shape)
        super().__init__(in_shape, out_shape, dtype, name, act, terms.bias_relevance)
        n_in, n_out = self.shape
        kept = [(per_image(a, self.in_shape), phi, per_image(c, self.out_shape)) for a, phi, c in terms.terms]
        for a, phi, c in kept:
            if (a is not None and a[0].numel() != n_in) or (c is not None and c[0].numel() != n_out):
                raise InputError(f"layer terms of {name!r} do not fit the shapes {self.in_shape} → {self.out_shape}")
        live = [t for t in kept if (t[0] is None or bool(t[0].any())) and (t[2] is None or bool(t[2].any()))]
        self.terms = live or kept[:1]
        self.conv = conv

    def factors(self):
        return [t for a, _, c in self.terms for t in (a, c)]

    def _with(self, dtype=None, act=False, a_scale=None):
        terms = self.terms
        if a_scale is not None:
            terms = [(a_scale if a is None else a * a_scale, phi, c) for a, phi, c in terms]
        return TermsOperator(LayerTerms(list(terms), None, self._bias), self.in_shape, self.out_shape, self.conv,
                             self.dtype if dtype is None else dtype, self.name,
                             self.act_step if act is False else act)

    def scale_rows(self, v):
        """diag(v) M: every input factor a_t multiplied by v (one image)."""
        return self._with(a_scale=per_image(torch.as_tensor(np.asarray(v, np.float64)), self.in_shape))

    def nonnegative(self) -> bool:
        """Every a_t, φ_t, c_t and d ≥ 0 (z⁺, w², flat after a ReLU)."""
        return self._act_nonnegative() and all(known_sign(f) > 0 or _nonneg(f) for t in self.terms for f in t)

    def lin(self, X):
        B, M = X.shape[:2]
        dt = X.dtype
        out, scaled = None, {}
        for a, phi, c in self.terms:
            key = id(c)
            if key not in scaled:
                scaled[key] = (X if c is None else X * self._f(c, dt)).reshape((B * M,) + self.out_shape)
            Y = _transposed_map(self._f(phi, dt), scaled[key], self.in_shape, self.conv)
            Y = Y.reshape((B, M) + self.in_shape)
            if a is not None:
                Y = Y * self._f(a, dt)
            out = Y if out is None else out.add_(Y)
        return out

    def lin_t(self, U):
        B, M = U.shape[:2]
        dt = U.dtype
        out = None
        for a, phi, c in self.terms:
            Y = U if a is None else U * self._f(a, dt)
            Y = _forward_map(self._f(phi, dt), Y.reshape((B * M,) + self.in_shape), self.conv)
            Y = Y.reshape((B, M) + self.out_shape)
            if c is not None:
                Y = Y * self._f(c, dt)
            out = Y if out is None else out.add_(Y)
        return out

    def abs_column_sums(self):
        """Σ_i |M_ij| of one image's matrix M = Σ_t diag(a_t) W_tᵀ diag(c_t ⊙ d), never built (float64).

        An entry is M_ij = Σ_t a_t,i · φ_t[k(i, j)] · c_t,j · d_j with k(i, j) the one weight entry that links
        input i and output j (a Linear's w_ji; a Conv2d's kernel tap (c_out(j), c_in(i), (p_i + pad − s·p_j)/dil):
        for given channels and positions the tap is unique).  Two routes, both exact:

        * disjoint terms — every pair of terms (t, u) has disjoint input factors (a_t ⊙ a_u = 0: x⁺/x⁻), disjoint
          weights (φ_t ⊙ φ_u = 0: φ⁺/φ⁻) or disjoint output factors (c_t ⊙ c_u = 0); then at most one term is
          non-zero at any (i, j), |M_ij| = Σ_t |a_t,i| |φ_t[k]| |c_t,j d_j|, and
              |M|ᵀ1 = |d| ⊙ Σ_t |c_t| ⊙ W_{|φ_t|}(|a_t|)
          — one forward product per term with the absolute kernel (``conv2d`` with |φ_t|, or |φ_t| |a_t|).  This
          covers one-term rules (gradient, LRP-ε, w², flat, …), z⁺ and α-β at any input (signed x included);
        * otherwise (a signed sum of overlapping terms, e.g. γ): the entries are formed block by block — a conv's
          input factors unfolded into their windows (``F.unfold``, one row per (c_in, tap), padding taps 0), a
          Linear's rows of Mᵀ — and Σ_t a_t φ_t c_t summed in absolute value over the inputs of each output:
          O(T · nnz) operations in blocks of at most ``_BLOCK`` numbers, never the whole matrix."""
        if self.batch != 1:
            raise InputError(f"operator {self.name!r} holds the factors of {self.batch} images; column sums are "
                             "of one image's matrix")
        d = self._output_diag()
        d = None if d is None else torch.from_numpy(np.asarray(d, np.float64))
        terms = [(None if a is None else a.reshape(-1).to(torch.float64), phi,
                  None if c is None else c.reshape(-1).to(torch.float64)) for a, phi, c in self.terms]
        with torch.no_grad():
            if _disjoint_terms(terms):
                out = torch.zeros(self.shape[1], dtype=torch.float64)
                for a, phi, c in terms:
                    a_abs = torch.ones(self.shape[0], dtype=torch.float64) if a is None else a.abs()
                    y = _abs_forward(phi, a_abs.reshape((1,) + self.in_shape), self.conv).reshape(-1)
                    out += y if c is None else c.abs() * y
            else:
                out = self._abs_column_sums_blocks(terms)
            if d is not None:
                out = out * d.abs()
        return out.numpy()

    def _abs_column_sums_blocks(self, terms) -> torch.Tensor:
        """Σ_i |Σ_t a_t,i φ_t[k(i, j)] c_t,j| per output j, the entries formed in blocks (see abs_column_sums)."""
        n_in, n_out = self.shape
        ones_in = torch.ones(n_in, dtype=torch.float64)
        ones_out = torch.ones(n_out, dtype=torch.float64)
        A = [ones_in if a is None else a for a, _, _ in terms]
        C = [ones_out if c is None else c for _, _, c in terms]
        if self.conv is None:                              # Mᵀ = Σ_t diag(c_t) φ_t diag(a_t), φ_t (n_out, n_in)
            out = torch.empty(n_out, dtype=torch.float64)
            step = max(1, _BLOCK // max(n_in, 1))
            for j0 in range(0, n_out, step):
                j1 = min(n_out, j0 + step)
                S = None
                for a, (_, phi, _), c in zip(A, terms, C):
                    T = phi[j0:j1].to(torch.float64) * a[None, :] * c[j0:j1, None]
                    S = T if S is None else S.add_(T)
                out[j0:j1] = S.abs().sum(dim=1)
            return out
        s = self.conv
        C_in, _, _ = self.in_shape
        C_out, OH, OW = self.out_shape
        L = OH * OW
        kh, kw = self.terms[0][1].shape[-2:]
        g = s.groups
        R = (C_in // g) * kh * kw                          # inputs per output: (c_in of its group, tap)
        U = [F.unfold(a.reshape((1,) + self.in_shape), (kh, kw), dilation=s.dilation, padding=s.padding,
                      stride=s.stride)[0] for a in A]      # (C_in·kh·kw, L): a_t at the window's inputs (0: padding)
        Cs = [c.reshape(C_out, L) for c in C]
        out = torch.empty((C_out, L), dtype=torch.float64)
        per_group = C_out // g
        lstep = max(1, min(L, _BLOCK // max(R, 1)))
        for co in range(C_out):
            rows = slice((co // per_group) * R, (co // per_group + 1) * R)
            for l0 in range(0, L, lstep):
                l1 = min(L, l0 + lstep)
                S = None
                for u, (_, phi, _), c in zip(U, terms, Cs):
                    T = phi[co].reshape(R, 1).to(torch.float64) * u[rows, l0:l1] * c[co, l0:l1][None, :]
                    S = T if S is None else S.add_(T)
                out[co, l0:l1] = S.abs().sum(dim=0)
        return out.reshape(-1)

    def _stacked(self, d=None):
        """(A (T, n_in), Φ (T, *w), C (T, n_out)) as float64 numpy of one image, d folded into C."""
        n_in, n_out = self.shape
        A = np.stack([np.ones(n_in) if a is None else flat_numpy(a) for a, _, _ in self.terms])
        PHI = np.stack([phi.to(torch.float64).numpy() for _, phi, _ in self.terms])
        C = np.stack([np.ones(n_out) if c is None else flat_numpy(c) for _, _, c in self.terms])
        if d is not None:
            C = C * d[None, :]
        return A, PHI, C

    def geometry(self) -> ConvGeometry:
        s = self.conv
        kernel = tuple(self.terms[0][1].shape[-2:])
        return ConvGeometry.of(self.in_shape, self.out_shape, kernel, s.stride, s.padding, s.dilation, s.groups)

    def _materialize_lin(self, d):
        """Dense (Linear) or CSC sparse (Conv2d) operator of the terms (one image)."""
        A, PHI, C = self._stacked(d)
        br = self.bias_relevance
        if self.conv is not None:
            return SparseOperator(conv_matrix(self.geometry(), A, PHI, C, self.dtype), br)
        # built as Mᵀ = Σ_t diag(c_t) φ_t diag(a_t) in φ's (n_out, n_in) layout, returned as the view M
        Mt = None
        for a_t, phi_t, c_t in zip(A, PHI, C):
            term = phi_t * c_t[:, None]
            term *= a_t[None, :]
            Mt = term if Mt is None else Mt.__iadd__(term)
        return DenseOperator(Mt.T.astype(self.dtype, copy=False), br)

    def _count(self):
        if self.conv is None:
            return self.shape[0] * self.shape[1]
        rows = np.zeros(self.shape[0], bool)
        cols = np.zeros(self.shape[1], bool)
        d = self._output_diag()
        for a, _, c in self.terms:
            rows |= True if a is None else flat_numpy(a) != 0
            cc = np.ones(self.shape[1]) if c is None else flat_numpy(c)
            cols |= (cc * (1.0 if d is None else d)) != 0
        return int(conv_nnz(self.geometry(), rows, cols).sum())


class GatherOperator(TorchOperator):
    """Winner-take-all: M_ij = d_j for i = rows_j (torch's argmax of window j, flat over (C, H, W)); rows per image
    (B|1, n_out) int64, d the output-side factor (``act``)."""

    def __init__(self, rows, in_shape, out_shape, dtype=np.float64, name="", act=None):
        super().__init__(in_shape, out_shape, dtype, name, act)
        rows = torch.as_tensor(rows, dtype=torch.int64)
        self.rows = rows.reshape(rows.shape[0] if rows.ndim == 2 else 1, 1, -1)

    def factors(self):
        return [self.rows]

    def _with(self, dtype=None, act=False):
        return GatherOperator(self.rows.reshape(self.rows.shape[0], -1), self.in_shape, self.out_shape,
                              self.dtype if dtype is None else dtype, self.name, self.act_step if act is False else act)

    def nonnegative(self) -> bool:
        return self._act_nonnegative()

    def lin(self, X):
        B, M = X.shape[:2]
        out = X.new_zeros((B, M, self.shape[0]))
        out.scatter_add_(2, self.rows.expand(B, M, -1), X.reshape(B, M, -1))
        return out.reshape((B, M) + self.in_shape)

    def lin_t(self, U):
        B, M = U.shape[:2]
        return U.reshape(B, M, -1).gather(2, self.rows.expand(B, M, -1)).reshape((B, M) + self.out_shape)

    def _materialize_lin(self, d):
        col = np.ones(self.shape[1]) if d is None else d
        return SparseOperator(gather_matrix(self.rows.reshape(-1).numpy(), col,
                                            self.shape[0], self.dtype))

    def abs_column_sums(self):
        """Column j holds one entry, d_j (at row rows_j; 1 without an output-side factor): its abs sum is |d_j|."""
        d = self._output_diag()
        return np.ones(self.shape[1]) if d is None else np.abs(d).astype(np.float64)

    def _count(self):
        d = self._output_diag()
        return self.shape[1] if d is None else int(np.count_nonzero(d))


class PoolOperator(TorchOperator):
    """Average pools: lin = diag(a) Aᵀ diag(c) with A = torch's avg_pool2d / adaptive_avg_pool2d (``spec``);
    a (B|1, n_in), c (B|1, n_out) or None for ones."""

    def __init__(self, spec: PoolSpec, a, c, in_shape, out_shape, dtype=np.float64, name="", act=None):
        super().__init__(in_shape, out_shape, dtype, name, act)
        self.spec = spec
        self.a = per_image(a, self.in_shape)
        self.c = per_image(c, self.out_shape)

    def factors(self):
        return [self.a, self.c]

    def _with(self, dtype=None, act=False, a=False):
        return PoolOperator(self.spec, self.a if a is False else a, self.c, self.in_shape, self.out_shape,
                            self.dtype if dtype is None else dtype, self.name, self.act_step if act is False else act)

    def scale_rows(self, v):
        v = per_image(torch.as_tensor(np.asarray(v, np.float64)), self.in_shape)
        return self._with(a=v if self.a is None else self.a * v)

    def nonnegative(self) -> bool:
        """The pooling weights are ≥ 0: a, c and d ≥ 0."""
        return self._act_nonnegative() and _nonneg(self.a) and _nonneg(self.c)

    def lin(self, X):
        B, M = X.shape[:2]
        G = X if self.c is None else X * self._f(self.c, X.dtype)
        with torch.enable_grad():
            Z = torch.zeros((B * M,) + self.in_shape, dtype=X.dtype, requires_grad=True)
            (g,) = torch.autograd.grad(self.spec.apply(Z), Z, G.reshape((B * M,) + self.out_shape))
        g = g.reshape((B, M) + self.in_shape)
        return g if self.a is None else g * self._f(self.a, X.dtype)

    def lin_t(self, U):
        B, M = U.shape[:2]
        V = U if self.a is None else U * self._f(self.a, U.dtype)
        Y = self.spec.apply(V.reshape((B * M,) + self.in_shape)).reshape((B, M) + self.out_shape)
        return Y if self.c is None else Y * self._f(self.c, U.dtype)

    def abs_column_sums(self):
        """lin · diag(d) = diag(a) Aᵀ diag(c ⊙ d) with A ≥ 0 (pooling weights): Σ_i |M_ij| = |c_j d_j| (A|a|)_j
        (one image)."""
        a = np.ones(self.shape[0]) if self.a is None else flat_numpy(self.a)
        c = np.ones(self.shape[1]) if self.c is None else flat_numpy(self.c)
        d = self._output_diag()
        with torch.no_grad():
            Y = self.spec.apply(torch.from_numpy(np.abs(a)).reshape((1,) + self.in_shape)).reshape(-1).numpy()
        return np.abs(c * (1.0 if d is None else d)) * Y.astype(np.float64)

    def _materialize_lin(self, d):
        w = column_weights(self.spec, self.in_shape, self.out_shape)
        c = np.ones(self.shape[1]) if self.c is None else flat_numpy(self.c)
        a = np.ones(self.shape[0]) if self.a is None else flat_numpy(self.a)
        return SparseOperator(window_matrix(self.spec, self.in_shape, self.out_shape, a,
                                            w * c * (1.0 if d is None else d), self.dtype))


class DiagonalOperator(TorchOperator):
    """diag(d) (n × n), d per image (B|1, n) or None for the identity: a leading activation's derivative."""

    def __init__(self, d, shape, dtype=np.float64, name="", act=None):
        super().__init__(shape, shape, dtype, name, act)
        self.d = per_image(d, self.in_shape)

    def factors(self):
        return [self.d]

    def _with(self, dtype=None, act=False):
        return DiagonalOperator(self.d, self.in_shape, self.dtype if dtype is None else dtype, self.name,
                                self.act_step if act is False else act)

    def nonnegative(self) -> bool:
        return self._act_nonnegative() and _nonneg(self.d)

    def lin(self, X):
        return X if self.d is None else X * self._f(self.d, X.dtype)

    lin_t = lin

    def _materialize_lin(self, d):
        v = np.ones(self.shape[0]) if self.d is None else flat_numpy(self.d)
        return Diagonal((v if d is None else v * d).astype(self.dtype)).materialize()

    def _count(self):
        d = self._output_diag()
        v = np.ones(self.shape[0]) if self.d is None else flat_numpy(self.d)
        return int(np.count_nonzero(v if d is None else v * d))
