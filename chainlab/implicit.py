"""Implicit operators: layer matrices applied through torch, never built (kind ``"implicit"``).

``extract(model, x, rule, materialize=False)`` returns a chain of these.  Each has the full
operator protocol (matvec/matmat = M V, rmatvec/rmatmat = Mᵀ U, to_dense, to_sparse, nnz, T,
astype), so ``scipy.sparse.linalg.aslinearoperator(op)`` and ``svds`` work on them, and
``to_sparse`` builds the same CSC matrix as the materialized extraction when one is wanted.

* Linear/Conv2d stage with rule terms (:class:`chainlab.matrices.LayerTerms`)
  M = Σ_t diag(a_t) W_tᵀ diag(c_t), W_t the forward map of the modified weight φ_t (n_out × n_in):
  M V = Σ_t a_t ⊙ W_tᵀ(c_t ⊙ V)   (conv: ``conv2d_input`` = conv_transpose2d, linear: V φ_t),
  Mᵀ U = Σ_t c_t ⊙ W_t(a_t ⊙ U)   (conv: ``conv2d`` without bias, linear: U φ_tᵀ).
* Max-pool: M_ij = col_j if i is torch's argmax of window j: M V scatters (index_add), Mᵀ U gathers.
* Average pools: M = diag(a) Aᵀ diag(c) with A torch's pooling map (1/divisor_j over window j),
  a = x and c = 1/s(z) (relevance, proportional) or a = 1 and c = ReLU mask (gradient);
  Aᵀ through autograd of the pooling function.
* Leading ReLU: M = diag(d).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from .kernels import conv_column_counts
from .matrices import (ConvGeometry, LayerTerms, avgpool_column_weights, materialize, maxpool_operator, stabilize,
                       window_operator)
from .operators import Operator, SparseOperator
from .trace import conv_padding

__all__ = ["ImplicitOperator", "TermsOperator", "MaxPoolOperator", "PoolOperator", "MaskOperator",
           "TransposedOperator", "from_terms", "fixed_operator"]


def _t(a, dtype):
    return torch.as_tensor(np.asarray(a), dtype=dtype)


class ImplicitOperator(Operator):
    """Base of the implicit kinds: signals go through ``_back`` (M V) and ``_fwd`` (Mᵀ U) as torch batches.

    ``_back`` maps (K, *out_shape) → (K, *in_shape), ``_fwd`` the reverse; subclasses also give
    ``_materialize()`` (the explicit operator, for to_dense/to_sparse) and ``_with(**changes)``.
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

    def _run(self, V, rows, fn, shape_in, shape_out):
        dt = np.result_type(self.dtype, V.dtype)
        dt = np.float32 if dt == np.float32 else np.float64
        tdt = torch.float32 if dt == np.float32 else torch.float64
        X = torch.from_numpy(np.ascontiguousarray(V.T, dtype=dt)).reshape(V.shape[1], *shape_in)
        with torch.no_grad():
            Y = fn(X, tdt)
        return Y.reshape(V.shape[1], -1).numpy().T

    def matmat(self, V):
        V = self._check_rows(V)
        return self._run(V, self.shape[1], self._back, self.out_shape, self.in_shape)

    def rmatmat(self, U):
        U = self._check_cols(U)
        return self._run(U, self.shape[0], self._fwd, self.in_shape, self.out_shape)

    def to_sparse(self, format="csr"):
        if format not in ("csr", "csc"):
            raise ValueError(f"format must be 'csr' or 'csc', got {format!r}")
        return self._materialize().to_sparse(format)

    def to_dense(self):
        return self._materialize().to_dense()

    def materialize(self) -> Operator:
        """The explicit operator (CSC sparse for conv/pool stages, dense for Linear) of the same matrix."""
        return self._materialize()

    @property
    def nnz(self):
        """Entries the materialized matrix would store (counted without building it where possible)."""
        if self._nnz is None:
            self._nnz = self._count()
        return self._nnz

    def _count(self):
        return self._materialize().nnz

    @property
    def T(self):
        return TransposedOperator(self)

    def astype(self, dtype):
        return self._with(dtype=np.dtype(dtype))

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r} {self.shape[0]}x{self.shape[1]} {self.dtype.name}>"


class TermsOperator(ImplicitOperator):
    """M = Σ_t diag(a_t) W_tᵀ diag(c_t) of a Linear/Conv2d stage, applied with torch (see module docstring)."""

    def __init__(self, terms: LayerTerms, dtype=np.float64):
        st = terms.stage
        super().__init__(st.in_shape, st.out_shape, dtype, st.name, terms.bias_relevance)
        live = [t for t in range(terms.a.shape[0]) if terms.a[t].any() and terms.c[t].any()] or [0]
        self.terms = LayerTerms(st, terms.a[live], terms.phi[live], terms.c[live], terms.bias_relevance)
        self.stage = st
        self._torch_terms = {}

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
        return TermsOperator(LayerTerms(t.stage, t.a if a is None else a, t.phi, t.c, t.bias_relevance),
                             self.dtype if dtype is None else dtype)

    def scale_rows(self, v):
        """diag(v) M: every input factor a_t multiplied by v."""
        return self._with(a=self.terms.a * np.asarray(v, np.float64)[None, :])

    def _conv_args(self):
        m = self.stage.module
        return dict(stride=m.stride, padding=conv_padding(m), dilation=m.dilation, groups=m.groups)

    def _back(self, X, tdt):
        K = X.shape[0]
        out = None
        for a, phi, c in self._tensors(tdt):
            Y = X * c.reshape(1, *self.out_shape)
            if self.stage.kind == "conv2d":
                Y = torch.nn.grad.conv2d_input((K, *self.in_shape), phi, Y, **self._conv_args())
            else:
                Y = Y @ phi
            Y = Y * a.reshape(1, *self.in_shape)
            out = Y if out is None else out.add_(Y)
        return out

    def _fwd(self, U, tdt):
        out = None
        for a, phi, c in self._tensors(tdt):
            Y = U * a.reshape(1, *self.in_shape)
            if self.stage.kind == "conv2d":
                Y = F.conv2d(Y, phi, None, **self._conv_args())
            else:
                Y = Y @ phi.T
            Y = Y * c.reshape(1, *self.out_shape)
            out = Y if out is None else out.add_(Y)
        return out

    def _materialize(self):
        return materialize(self.terms, self.dtype)

    def _count(self):
        if self.stage.kind != "conv2d":
            return self.shape[0] * self.shape[1]
        geom = ConvGeometry.of_stage(self.stage)
        counts = conv_column_counts(*geom.args(), (self.terms.a != 0).any(axis=0), (self.terms.c != 0).any(axis=0))
        return int(counts.sum())


class MaxPoolOperator(ImplicitOperator):
    """Winner-take-all: M_ij = col_j for i = rows_j (torch's argmax of window j), zero elsewhere."""

    def __init__(self, stage, record, col, dtype=np.float64):
        super().__init__(stage.in_shape, stage.out_shape, dtype, stage.name)
        C, H, W = stage.in_shape
        plane = record.argmax.reshape(C, -1).to(torch.int64)
        self.rows = (plane + torch.arange(C).reshape(-1, 1) * (H * W)).reshape(-1)
        self.col = np.asarray(col, np.float64)
        self.stage, self.record = stage, record

    def _with(self, dtype=None, col=None):
        return MaxPoolOperator(self.stage, self.record, self.col if col is None else col,
                               self.dtype if dtype is None else dtype)

    def scale_rows(self, v):
        return self._with(col=self.col * np.asarray(v, np.float64)[self.rows.numpy()])

    def _back(self, X, tdt):
        Y = X.reshape(X.shape[0], -1) * _t(self.col, tdt)
        out = torch.zeros((X.shape[0], self.shape[0]), dtype=tdt)
        return out.index_add_(1, self.rows, Y)

    def _fwd(self, U, tdt):
        return U.reshape(U.shape[0], -1)[:, self.rows] * _t(self.col, tdt)

    def _materialize(self):
        return maxpool_operator(self.stage, self.record, self.col, self.dtype)

    def _count(self):
        return int(np.count_nonzero(self.col))


class PoolOperator(ImplicitOperator):
    """Average pools: M = diag(a) Aᵀ diag(c) with A = torch's avg_pool2d / adaptive_avg_pool2d of the stage."""

    def __init__(self, stage, a, c, dtype=np.float64):
        super().__init__(stage.in_shape, stage.out_shape, dtype, stage.name)
        self.stage = stage
        self.a = np.asarray(a, np.float64)
        self.c = np.asarray(c, np.float64)

    def _with(self, dtype=None, a=None):
        return PoolOperator(self.stage, self.a if a is None else a, self.c, self.dtype if dtype is None else dtype)

    def scale_rows(self, v):
        return self._with(a=self.a * np.asarray(v, np.float64))

    def _pool(self, X):
        m = self.stage.module
        if self.stage.kind == "avgpool2d":
            return F.avg_pool2d(X, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                                m.divisor_override)
        return F.adaptive_avg_pool2d(X, m.output_size)

    def _back(self, X, tdt):
        G = X * _t(self.c, tdt).reshape(1, *self.out_shape)
        with torch.enable_grad():
            Z = torch.zeros((X.shape[0], *self.in_shape), dtype=tdt, requires_grad=True)
            (g,) = torch.autograd.grad(self._pool(Z), Z, G)
        return g * _t(self.a, tdt).reshape(1, *self.in_shape)

    def _fwd(self, U, tdt):
        return self._pool(U * _t(self.a, tdt).reshape(1, *self.in_shape)) * _t(self.c, tdt).reshape(1, *self.out_shape)

    def _materialize(self):
        return window_operator(self.stage, self.a, avgpool_column_weights(self.stage) * self.c, self.dtype)


class MaskOperator(ImplicitOperator):
    """M = diag(d) (a ReLU before any linear map: its mask in gradient space, the identity in relevance space)."""

    def __init__(self, stage, d, dtype=np.float64):
        super().__init__(stage.in_shape, stage.out_shape, dtype, stage.name)
        self.stage = stage
        self.d = np.asarray(d, np.float64)

    def _with(self, dtype=None, d=None):
        return MaskOperator(self.stage, self.d if d is None else d, self.dtype if dtype is None else dtype)

    def scale_rows(self, v):
        return self._with(d=self.d * np.asarray(v, np.float64))

    def _back(self, X, tdt):
        return X * _t(self.d, tdt).reshape(1, *self.in_shape)

    _fwd = _back

    def _materialize(self):
        return SparseOperator(sp.diags(self.d.astype(self.dtype), format="csc"))

    def _count(self):
        return int(np.count_nonzero(self.d))


class TransposedOperator(Operator):
    """Mᵀ of an implicit operator M, without building either (matmat ↔ rmatmat)."""

    kind = "implicit"

    def __init__(self, base: Operator):
        self.base = base
        self.shape = (base.shape[1], base.shape[0])
        self.dtype = base.dtype

    def matmat(self, V):
        return self.base.rmatmat(self._check_rows(V))

    def rmatmat(self, U):
        return self.base.matmat(self._check_cols(U))

    def to_dense(self):
        return self.base.to_dense().T

    def to_sparse(self, format="csr"):
        if format not in ("csr", "csc"):
            raise ValueError(f"format must be 'csr' or 'csc', got {format!r}")
        return self.base.to_sparse("csc" if format == "csr" else "csr").T

    @property
    def nnz(self):
        return self.base.nnz

    @property
    def T(self):
        return self.base

    def astype(self, dtype):
        return TransposedOperator(self.base.astype(dtype))


def from_terms(terms: LayerTerms, dtype=np.float64) -> TermsOperator:
    """The implicit operator of a Linear/Conv2d stage's rule terms (what :func:`materialize` would build)."""
    if terms.stage.kind not in ("linear", "conv2d"):
        raise ValueError(f"no implicit operator for rule terms of stage kind {terms.stage.kind!r}")
    return TermsOperator(terms, dtype)


def fixed_operator(st, rec, space, avgpool, stabilizer, dtype) -> ImplicitOperator:
    """Implicit version of the pooling / leading-ReLU matrices of :func:`chainlab.extract._fixed_operator`."""
    z = rec.z.reshape(-1)
    mask = ((z > 0).to(torch.float64) if (st.relu and space == "gradient") else torch.ones_like(z)).numpy()
    if st.kind == "maxpool2d":
        return MaxPoolOperator(st, rec, mask, dtype)
    if st.kind in ("avgpool2d", "adaptiveavgpool2d"):
        if space == "relevance" and avgpool == "proportional":
            return PoolOperator(st, rec.x.reshape(-1).numpy(), 1.0 / stabilize(z, stabilizer).numpy(), dtype)
        return PoolOperator(st, np.ones(int(np.prod(st.in_shape))), mask, dtype)
    if st.kind == "relu":
        d = (rec.x.reshape(-1) > 0).to(torch.float64).numpy() if space == "gradient" else np.ones(z.numel())
        return MaskOperator(st, d, dtype)
    raise ValueError(f"no implicit operator for stage {st.describe()}")
