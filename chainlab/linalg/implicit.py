"""Implicit operators: layer matrices applied through torch, never built (kind ``"implicit"``).

Each has the full operator protocol (matmat = M V, rmatmat = Mᵀ U on torch batches, ``to_csc`` /
``materialize`` build the explicit matrix on request), so ``scipy.sparse.linalg.aslinearoperator``
and ``svds`` work on them without materializing.

* :class:`TermsOperator` — a Linear/Conv2d layer under a rule, given as :class:`LayerTerms`
  M = Σ_t diag(a_t) W_tᵀ diag(c_t), W_t the forward map of the modified weight φ_t (n_out × n_in):
      M V  = Σ_t a_t ⊙ W_tᵀ(c_t ⊙ V)   (conv: ``conv2d_input`` = conv_transpose2d, linear: V φ_t),
      Mᵀ U = Σ_t c_t ⊙ W_t(a_t ⊙ U)    (conv: ``conv2d`` without bias, linear: U φ_tᵀ);
  materialized: dense n_in × n_out (Linear) or CSC built from the kernel (:func:`~.conv.conv_matrix`).
* :class:`GatherOperator` — winner-take-all (max-pool): M_ij = col_j if i = rows_j; M V scatters
  (index_add), Mᵀ U gathers.
* :class:`PoolOperator` — average pools: M = diag(a) Aᵀ diag(c) with A torch's pooling map
  (1/divisor_j over window j); Aᵀ through autograd of the pooling function.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .conv import ConvGeometry, conv_matrix, conv_nnz
from .operators import DenseOperator, Operator, SparseOperator
from .pool import PoolSpec, column_weights, gather_matrix, window_matrix

__all__ = ["LayerTerms", "ConvSpec", "TorchOperator", "TermsOperator", "GatherOperator", "PoolOperator"]


@dataclass(frozen=True)
class ConvSpec:
    """torch's numeric parameters of a Conv2d (padding already numeric: 'same'/'valid' resolved)."""

    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1

    def kwargs(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)


@dataclass
class LayerTerms:
    """M = Σ_t diag(a[t]) φ[t]ᵀ diag(c[t]) of one Linear/Conv2d layer (all float64 numpy).

    a: (T, n_in); phi: (T, *weight.shape); c: (T, n_out); bias_relevance: (n_out,) or None — the
    relevance share of the bias per output unit.  Terms with a_t = 0 or c_t = 0 are dropped by
    :meth:`live` (one kept for an all-zero matrix, so that the shapes stay defined).
    """

    a: np.ndarray
    phi: np.ndarray
    c: np.ndarray
    bias_relevance: np.ndarray | None = None

    def live(self) -> "LayerTerms":
        keep = [t for t in range(self.a.shape[0]) if self.a[t].any() and self.c[t].any()] or [0]
        return LayerTerms(self.a[keep], self.phi[keep], self.c[keep], self.bias_relevance)


def _t(a, dtype):
    return torch.as_tensor(np.asarray(a), dtype=dtype)


class TorchOperator(Operator):
    """Base of the implicit kinds: signals go through ``_back`` (M V) and ``_fwd`` (Mᵀ U) as torch batches.

    ``_back`` maps (K, *out_shape) → (K, *in_shape), ``_fwd`` the reverse; subclasses also give
    ``materialize()`` (the explicit operator) and ``_with(**changes)``.
    """

    kind = "implicit"

    def __init__(self, in_shape, out_shape, dtype, name="", bias_relevance=None):
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(out_shape)
        self.shape = (int(np.prod(self.in_shape)), int(np.prod(self.out_shape)))
        self.dtype = np.dtype(dtype)
        self.name = name
        self.bias_relevance = bias_relevance
        self._nnz = None

    def _run(self, V, fn, shape_in):
        dt = np.result_type(self.dtype, V.dtype)
        dt = np.float32 if dt == np.float32 else np.float64
        tdt = torch.float32 if dt == np.float32 else torch.float64
        X = torch.from_numpy(np.ascontiguousarray(V.T, dtype=dt)).reshape(V.shape[1], *shape_in)
        with torch.no_grad():
            Y = fn(X, tdt)
        return Y.reshape(V.shape[1], -1).numpy().T

    def _matmat(self, V):
        return self._run(V, self._back, self.out_shape)

    def _rmatmat(self, U):
        return self._run(U, self._fwd, self.in_shape)

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
        return f"<{type(self).__name__} {self.name!r} {self.shape[0]}x{self.shape[1]} {self.dtype.name}>"


class TermsOperator(TorchOperator):
    """M = Σ_t diag(a_t) W_tᵀ diag(c_t) of a Linear (``conv=None``) or Conv2d layer, applied with torch."""

    def __init__(self, terms: LayerTerms, in_shape, out_shape, conv: ConvSpec | None = None, dtype=np.float64,
                 name=""):
        super().__init__(in_shape, out_shape, dtype, name, terms.bias_relevance)
        self.terms = terms.live()
        self.conv = conv
        self._torch_terms = {}
        n_in, n_out = self.shape
        if self.terms.a.shape[1] != n_in or self.terms.c.shape[1] != n_out:
            raise InputError(f"layer terms of {name!r} with {self.terms.a.shape[1]} inputs and {self.terms.c.shape[1]} "
                             f"outputs do not fit the shapes {self.in_shape} → {self.out_shape}")

    def _tensors(self, tdt):
        """[(a_t, φ_t, c_t)] as torch tensors of dtype tdt, converted once per dtype (φ of VGG-16's first
        Linear is 10⁸ numbers: converting it on every product cost more than the product)."""
        if tdt not in self._torch_terms:
            self._torch_terms[tdt] = [(_t(a, tdt), _t(phi, tdt), _t(c, tdt))
                                      for a, phi, c in zip(self.terms.a, self.terms.phi, self.terms.c)]
        return self._torch_terms[tdt]

    def __getstate__(self):
        return {**self.__dict__, "_torch_terms": {}}          # the cache is not shipped (pickling, dask)

    def _with(self, dtype=None, a=None):
        t = self.terms
        return TermsOperator(LayerTerms(t.a if a is None else a, t.phi, t.c, t.bias_relevance), self.in_shape,
                             self.out_shape, self.conv, self.dtype if dtype is None else dtype, self.name)

    def scale_rows(self, v):
        """diag(v) M: every input factor a_t multiplied by v."""
        return self._with(a=self.terms.a * np.asarray(v, np.float64)[None, :])

    def _back(self, X, tdt):
        K = X.shape[0]
        out = None
        for a, phi, c in self._tensors(tdt):
            Y = X * c.reshape(1, *self.out_shape)
            if self.conv is not None:
                Y = torch.nn.grad.conv2d_input((K, *self.in_shape), phi, Y, **self.conv.kwargs())
            else:
                Y = Y @ phi
            Y = Y * a.reshape(1, *self.in_shape)
            out = Y if out is None else out.add_(Y)
        return out

    def _fwd(self, U, tdt):
        out = None
        for a, phi, c in self._tensors(tdt):
            Y = U * a.reshape(1, *self.in_shape)
            if self.conv is not None:
                Y = F.conv2d(Y, phi, None, **self.conv.kwargs())
            else:
                Y = Y @ phi.T
            Y = Y * c.reshape(1, *self.out_shape)
            out = Y if out is None else out.add_(Y)
        return out

    def abs_column_sums(self):
        """Σ_i |M_ij| without building M when the terms' weights φ_t have disjoint supports (each weight entry
        non-zero in at most one term: one term, or α-β's φ⁺/φ⁻): an entry M_ij comes from one weight entry
        (a Linear's w_ji; a Conv2d's one kernel tap linking input i and output j), so at most one term is
        non-zero at (i, j) and |M|ᵀ1 = Σ_t |c_t| ⊙ |W_t|(|a_t|) — one forward product per term.  Otherwise
        the matrix is multiplied out."""
        t = self.terms
        if int(np.max(np.count_nonzero(t.phi, axis=0), initial=0)) > 1:
            return super().abs_column_sums()
        out = np.zeros(self.shape[1])
        with torch.no_grad():
            for a, phi, c in zip(t.a, t.phi, t.c):
                U = torch.from_numpy(np.abs(a)).reshape(1, *self.in_shape)
                W = torch.from_numpy(np.abs(phi))
                Y = F.conv2d(U, W, None, **self.conv.kwargs()) if self.conv is not None else U @ W.T
                out += np.abs(c) * Y.reshape(-1).numpy()
        return out

    def geometry(self) -> ConvGeometry:
        s = self.conv
        return ConvGeometry.of(self.in_shape, self.out_shape, self.terms.phi.shape[-2:], s.stride, s.padding,
                               s.dilation, s.groups)

    def materialize(self) -> Operator:
        """Dense (Linear) or CSC sparse (Conv2d) operator of the terms."""
        t = self.terms
        if self.conv is not None:
            return SparseOperator(conv_matrix(self.geometry(), t.a, t.phi, t.c, self.dtype), t.bias_relevance)
        # built as Mᵀ = Σ_t diag(c_t) φ_t diag(a_t) in φ's (n_out, n_in) layout, returned as the view M
        Mt = None
        for a_t, phi_t, c_t in zip(t.a, t.phi, t.c):
            term = phi_t * c_t[:, None]
            term *= a_t[None, :]
            Mt = term if Mt is None else Mt.__iadd__(term)
        return DenseOperator(Mt.T.astype(self.dtype, copy=False), t.bias_relevance)

    def _count(self):
        if self.conv is None:
            return self.shape[0] * self.shape[1]
        t = self.terms
        return int(conv_nnz(self.geometry(), (t.a != 0).any(axis=0), (t.c != 0).any(axis=0)).sum())


class GatherOperator(TorchOperator):
    """Winner-take-all: M_ij = col_j for i = rows_j (torch's argmax of window j, flat over (C, H, W))."""

    def __init__(self, rows, col, in_shape, out_shape, dtype=np.float64, name=""):
        super().__init__(in_shape, out_shape, dtype, name)
        self.rows = torch.as_tensor(np.asarray(rows, np.int64))
        self.col = np.asarray(col, np.float64)

    def _with(self, dtype=None, col=None):
        return GatherOperator(self.rows.numpy(), self.col if col is None else col, self.in_shape, self.out_shape,
                              self.dtype if dtype is None else dtype, self.name)

    def scale_rows(self, v):
        return self._with(col=self.col * np.asarray(v, np.float64)[self.rows.numpy()])

    def _back(self, X, tdt):
        Y = X.reshape(X.shape[0], -1) * _t(self.col, tdt)
        out = torch.zeros((X.shape[0], self.shape[0]), dtype=tdt)
        return out.index_add_(1, self.rows, Y)

    def _fwd(self, U, tdt):
        return U.reshape(U.shape[0], -1)[:, self.rows] * _t(self.col, tdt)

    def materialize(self):
        return SparseOperator(gather_matrix(self.rows.numpy(), self.col, self.shape[0], self.dtype))

    def abs_column_sums(self):
        """Column j holds one entry, col_j (at row rows_j): its abs sum is |col_j|."""
        return np.abs(self.col).astype(np.float64)

    def _count(self):
        return int(np.count_nonzero(self.col))


class PoolOperator(TorchOperator):
    """Average pools: M = diag(a) Aᵀ diag(c) with A = torch's avg_pool2d / adaptive_avg_pool2d (``spec``)."""

    def __init__(self, spec: PoolSpec, a, c, in_shape, out_shape, dtype=np.float64, name=""):
        super().__init__(in_shape, out_shape, dtype, name)
        self.spec = spec
        self.a = np.asarray(a, np.float64)
        self.c = np.asarray(c, np.float64)

    def _with(self, dtype=None, a=None):
        return PoolOperator(self.spec, self.a if a is None else a, self.c, self.in_shape, self.out_shape,
                            self.dtype if dtype is None else dtype, self.name)

    def scale_rows(self, v):
        return self._with(a=self.a * np.asarray(v, np.float64))

    def _back(self, X, tdt):
        G = X * _t(self.c, tdt).reshape(1, *self.out_shape)
        with torch.enable_grad():
            Z = torch.zeros((X.shape[0], *self.in_shape), dtype=tdt, requires_grad=True)
            (g,) = torch.autograd.grad(self.spec.apply(Z), Z, G)
        return g * _t(self.a, tdt).reshape(1, *self.in_shape)

    def _fwd(self, U, tdt):
        return (self.spec.apply(U * _t(self.a, tdt).reshape(1, *self.in_shape))
                * _t(self.c, tdt).reshape(1, *self.out_shape))

    def abs_column_sums(self):
        """M = diag(a) Aᵀ diag(c) with A ≥ 0 (pooling weights): Σ_i |M_ij| = |c_j| (A|a|)_j."""
        with torch.no_grad():
            Y = self.spec.apply(torch.from_numpy(np.abs(self.a)).reshape(1, *self.in_shape))
        return np.abs(self.c) * Y.reshape(-1).numpy().astype(np.float64)

    def materialize(self):
        w = column_weights(self.spec, self.in_shape, self.out_shape)
        return SparseOperator(window_matrix(self.spec, self.in_shape, self.out_shape, self.a, w * self.c, self.dtype))
