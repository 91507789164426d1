"""The operator protocol, its two stored kinds and its algebra.

An operator ``M`` of shape ``(n_in, n_out)`` maps the backward signal at a layer's output to the
signal at its input, ``r_in = M @ r_out``.  Like :class:`scipy.sparse.linalg.LinearOperator`:

* ``shape``, ``dtype``, ``nnz`` (stored entries), ``bias_relevance`` (n_out,) or None;
* ``matmat(V)`` = M V (V: n_out × k), ``rmatmat(U)`` = Mᵀ U (U: n_in × k), ``matvec``, ``rmatvec`` —
  public, they check the operand once and call the kind's ``_matmat``/``_rmatmat``;
* ``to_csc()`` — the matrix as scipy CSC (the hook products use; matrix-free kinds materialize),
  ``to_dense()``, ``to_sparse(format)``; ``stored()`` — the stored numpy/scipy matrix or None;
* ``T`` (transpose), ``astype``, ``column_sums``.

so ``scipy.sparse.linalg.aslinearoperator(op)`` accepts every operator and ``svds`` works on it.

Kinds here: :class:`DenseOperator` (a numpy array) and :class:`SparseOperator` (scipy CSR/CSC).
Composition without materializing: ``A @ B`` of two operators is a :class:`Product`, ``A + B`` a
:class:`Sum`, :class:`Diagonal` is diag(d), :class:`Transposed` is Aᵀ; their ``to_csc()`` multiplies
out through :mod:`chainlab.linalg.products`, and :meth:`Operator.materialize` gives the stored
operator.  ``A @ V`` of an operator and an array is ``A.matmat(V)`` / ``A.matvec(v)``.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..errors import InputError
from . import products as _products
from .spmat import spmm

__all__ = ["Operator", "DenseOperator", "SparseOperator", "Sum", "Product", "Diagonal", "Transposed",
           "as_operator", "zero_operator", "scale_rows"]


def _check_format(format):
    if format not in ("csr", "csc"):
        raise InputError(f"format must be 'csr' or 'csc', got {format!r}")


class Operator:
    """Protocol shared by all operator kinds (subclasses give ``_matmat``, ``_rmatmat``, ``nnz``).

    Attributes
    ----------
    shape : (n_in, n_out)
    dtype : numpy dtype of the stored values
    bias_relevance : ndarray (n_out,) or None
        Share of the relevance of output unit j that the rule assigns to the layer's bias (reported
        with ``bias="full"``): for conserving rules ``colsum(M)_j + bias_relevance_j = 1`` up to the stabilizer.
    """

    shape: tuple[int, int]
    dtype: np.dtype
    bias_relevance: np.ndarray | None = None
    kind = "abstract"

    # -- the LinearOperator protocol: checks here, arithmetic in the kinds ---------------------------------
    def matmat(self, V):
        """M V for V of shape (n_out, k)."""
        V = np.asarray(V)
        if V.ndim != 2 or V.shape[0] != self.shape[1]:
            raise InputError(f"matmat: operator of shape {self.shape} needs an array with {self.shape[1]} rows, "
                             f"got shape {V.shape}")
        return self._matmat(V)

    def rmatmat(self, U):
        """Mᵀ U for U of shape (n_in, k)."""
        U = np.asarray(U)
        if U.ndim != 2 or U.shape[0] != self.shape[0]:
            raise InputError(f"rmatmat: transpose of operator of shape {self.shape} needs an array with "
                             f"{self.shape[0]} rows, got shape {U.shape}")
        return self._rmatmat(U)

    def matvec(self, v):
        v = np.asarray(v)
        return self.matmat(v.reshape(-1, 1) if v.ndim == 1 else v).reshape(-1)

    def rmatvec(self, u):
        u = np.asarray(u)
        return self.rmatmat(u.reshape(-1, 1) if u.ndim == 1 else u).reshape(-1)

    def _matmat(self, V):
        raise NotImplementedError(f"{type(self).__name__} must implement _matmat")

    def _rmatmat(self, U):
        raise NotImplementedError(f"{type(self).__name__} must implement _rmatmat")

    # -- matrices ----------------------------------------------------------------------------------------------
    def stored(self):
        """The stored matrix (numpy array or scipy CSR/CSC) of a stored kind; None for matrix-free kinds."""
        return None

    def to_csc(self) -> sp.csc_matrix:
        """The matrix as scipy CSC (matrix-free kinds multiply themselves out)."""
        return sp.csc_matrix(self.to_dense())

    def to_dense(self) -> np.ndarray:
        return self.to_csc().toarray()

    def to_sparse(self, format: str = "csr"):
        _check_format(format)
        M = self.to_csc()
        return M if format == "csc" else M.tocsr()

    def materialize(self) -> "Operator":
        """The same matrix as a stored operator: sparse (CSC) or, above the products' density threshold, dense."""
        M = self.stored()
        if M is None:
            M = _products._settle(self.to_csc(), _products.DENSE_ABOVE)
        return as_operator(M, self.bias_relevance)

    @property
    def nnz(self) -> int:
        raise NotImplementedError

    # -- algebra -----------------------------------------------------------------------------------------------
    @property
    def T(self) -> "Operator":
        """The transpose Mᵀ."""
        return Transposed(self)

    def aslinearoperator(self) -> spla.LinearOperator:
        return spla.aslinearoperator(self)

    def __matmul__(self, other):
        if isinstance(other, Operator):
            return Product([self, other])
        other = np.asarray(other)
        return self.matvec(other) if other.ndim == 1 else self.matmat(other)

    def __add__(self, other):
        if not isinstance(other, Operator):
            return NotImplemented
        return Sum([self, other])

    def column_sums(self) -> np.ndarray:
        """Σ_i M_ij for every output column j, shape (n_out,)."""
        return self.rmatvec(np.ones(self.shape[0], dtype=self.dtype))

    def abs_column_sums(self) -> np.ndarray:
        """Σ_i |M_ij| for every output column j, shape (n_out,) (‖M‖₁ is their maximum).  Stored kinds sum
        their entries; matrix-free kinds multiply themselves out unless they know a shortcut."""
        M = self.stored()
        if M is None:
            M = self.to_csc()
        if sp.issparse(M):
            return np.asarray(abs(M).sum(axis=0), dtype=np.float64).reshape(-1)
        return np.abs(np.asarray(M, dtype=np.float64)).sum(axis=0)

    def astype(self, dtype) -> "Operator":
        raise NotImplementedError(f"{type(self).__name__} has no astype")

    def __repr__(self):
        return f"<{type(self).__name__} {self.shape[0]}x{self.shape[1]} {np.dtype(self.dtype).name} nnz={self.nnz}>"


# ---------------------------------------------------------------------------------------------
# stored kinds


class DenseOperator(Operator):
    """An operator stored as a dense numpy array ``M`` of shape (n_in, n_out)."""

    kind = "dense"

    def __init__(self, array, bias_relevance=None):
        array = np.asarray(array)
        if array.ndim != 2:
            raise InputError(f"a dense operator needs a 2-d array, got shape {array.shape}")
        self.array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.bias_relevance = bias_relevance

    def _matmat(self, V):
        return self.array @ V

    def _rmatmat(self, U):
        return self.array.T @ U

    def stored(self):
        return self.array

    def to_dense(self):
        return np.array(self.array)

    def to_csc(self):
        return sp.csc_matrix(self.array)

    @property
    def nnz(self):
        return int(self.array.size)

    @property
    def T(self):
        return DenseOperator(self.array.T)

    def astype(self, dtype):
        return DenseOperator(self.array.astype(dtype, copy=False), self.bias_relevance)


class SparseOperator(Operator):
    """An operator stored as a scipy CSR or CSC matrix of shape (n_in, n_out); products through the numba kernels."""

    kind = "sparse"

    def __init__(self, matrix, bias_relevance=None):
        if not sp.issparse(matrix):
            raise InputError(f"SparseOperator needs a scipy.sparse matrix, got {type(matrix).__name__}")
        if matrix.format not in ("csr", "csc"):
            matrix = matrix.tocsr()
        self.matrix = matrix
        self.shape = matrix.shape
        self.dtype = matrix.dtype
        self.bias_relevance = bias_relevance

    @property
    def format(self) -> str:
        return self.matrix.format

    def _matmat(self, V):
        return spmm(self.matrix, V)

    def _rmatmat(self, U):
        return spmm(self.matrix.T, U)

    def stored(self):
        return self.matrix

    def to_dense(self):
        return self.matrix.toarray()

    def to_csc(self):
        return self.matrix.tocsc()

    def to_sparse(self, format="csr"):
        _check_format(format)
        return self.matrix.asformat(format)

    @property
    def nnz(self):
        return int(self.matrix.nnz)

    @property
    def T(self):
        return SparseOperator(self.matrix.T)

    def astype(self, dtype):
        return SparseOperator(self.matrix.astype(dtype, copy=False), self.bias_relevance)


def as_operator(obj, bias_relevance=None) -> Operator:
    """Wrap a numpy array or scipy sparse matrix as an operator (operators pass through)."""
    if isinstance(obj, Operator):
        return obj
    if sp.issparse(obj):
        return SparseOperator(obj, bias_relevance)
    return DenseOperator(np.asarray(obj), bias_relevance)


def zero_operator(n_in: int, n_out: int, dtype=np.float64) -> SparseOperator:
    """An all-zero n_in × n_out operator stored as an empty CSC matrix (nnz = 0)."""
    return SparseOperator(sp.csc_matrix((n_in, n_out), dtype=dtype))


# ---------------------------------------------------------------------------------------------
# composition (matrix-free)


def _result_dtype(ops):
    return np.result_type(*[np.dtype(o.dtype) for o in ops])


class Diagonal(Operator):
    """diag(d), n × n."""

    kind = "diagonal"

    def __init__(self, d, dtype=None):
        d = np.asarray(d).reshape(-1)
        self.d = d.astype(dtype, copy=False) if dtype is not None else d
        self.shape = (d.size, d.size)
        self.dtype = self.d.dtype

    def _matmat(self, V):
        return self.d[:, None] * V

    _rmatmat = _matmat

    def to_csc(self):
        return sp.diags(self.d, format="csc")

    def abs_column_sums(self):
        return np.abs(self.d).astype(np.float64)

    @property
    def nnz(self):
        return int(np.count_nonzero(self.d))

    @property
    def T(self):
        return self

    def astype(self, dtype):
        return Diagonal(self.d, dtype)


class Transposed(Operator):
    """Aᵀ of an operator A, without building either (matmat ↔ rmatmat)."""

    kind = "transposed"

    def __init__(self, base: Operator):
        self.base = base
        self.shape = (base.shape[1], base.shape[0])
        self.dtype = base.dtype

    def _matmat(self, V):
        return self.base._rmatmat(V)

    def _rmatmat(self, U):
        return self.base._matmat(U)

    def to_csc(self):
        return self.base.to_csc().T.tocsc()

    @property
    def nnz(self):
        return self.base.nnz

    @property
    def T(self):
        return self.base

    def astype(self, dtype):
        return Transposed(self.base.astype(dtype))


class Product(Operator):
    """A_1 A_2 ⋯ A_n (input side first), applied factor by factor; ``to_csc`` multiplies out."""

    kind = "product"

    def __init__(self, factors, bias_relevance=None):
        self.factors = factors = _products.check_chained(factors)
        self.shape = (factors[0].shape[0], factors[-1].shape[1])
        self.dtype = _result_dtype(factors)
        self.bias_relevance = bias_relevance

    def _matmat(self, V):
        for A in reversed(self.factors):
            V = A._matmat(V)
        return V

    def _rmatmat(self, U):
        for A in self.factors:
            U = A._rmatmat(U)
        return U

    def to_csc(self):
        P = _products.product(self.factors)
        return P.tocsc() if sp.issparse(P) else sp.csc_matrix(P)

    @property
    def nnz(self):
        """Stored entries of the factors (the product is not multiplied out)."""
        return int(sum(A.nnz for A in self.factors))

    @property
    def T(self):
        return Product([A.T for A in reversed(self.factors)])

    def astype(self, dtype):
        return Product([A.astype(dtype) for A in self.factors], self.bias_relevance)

    def __repr__(self):
        return f"<Product {self.shape[0]}x{self.shape[1]} [{' · '.join(A.kind for A in self.factors)}]>"


class Sum(Operator):
    """A_1 + A_2 + ⋯ + A_n (one shape), applied term by term; ``to_csc`` adds the multiplied-out terms."""

    kind = "sum"

    def __init__(self, terms, bias_relevance=None):
        terms = list(terms)
        if not terms:
            raise InputError("a Sum needs at least one term")
        shapes = {tuple(t.shape) for t in terms}
        if len(shapes) != 1:
            raise InputError(f"cannot add operators of shapes {', '.join(str(s) for s in sorted(shapes))}")
        self.terms = terms
        self.shape = tuple(terms[0].shape)
        self.dtype = _result_dtype(terms)
        self.bias_relevance = bias_relevance

    def _matmat(self, V):
        out = np.zeros((self.shape[0], V.shape[1]), dtype=np.result_type(self.dtype, V.dtype))
        for t in self.terms:
            out += t._matmat(V)
        return out

    def _rmatmat(self, U):
        out = np.zeros((self.shape[1], U.shape[1]), dtype=np.result_type(self.dtype, U.dtype))
        for t in self.terms:
            out += t._rmatmat(U)
        return out

    def to_csc(self):
        total = sp.csc_matrix(self.shape, dtype=self.dtype)
        for t in self.terms:
            total = total + t.to_csc()
        total = total.tocsc()
        total.eliminate_zeros()
        return total.astype(self.dtype, copy=False)

    def abs_column_sums(self) -> np.ndarray:
        """Σ_i |(A_1 + ⋯ + A_n)_ij| per column j: the terms multiplied out and added in the representation their
        products come in (a dense product is added densely, never converted to CSC), shape (n_out,)."""
        total = None
        for t in self.terms:
            M = t.stored()
            if M is not None and not sp.issparse(M):
                M = np.array(M, dtype=np.float64)                   # a copy: summed into in place below
            elif M is None:
                M = _products.product(t.factors) if isinstance(t, Product) else t.to_csc()
            if total is None:
                total = M
            elif sp.issparse(total) and sp.issparse(M):
                total = total + M
            else:
                if sp.issparse(total):
                    total = total.toarray()
                total += M.toarray() if sp.issparse(M) else M
        if sp.issparse(total):
            return np.asarray(abs(total).sum(axis=0), dtype=np.float64).reshape(-1)
        return np.abs(total, out=total).sum(axis=0, dtype=np.float64)

    @property
    def nnz(self):
        """Stored entries of the terms (the sum is not multiplied out)."""
        return int(sum(t.nnz for t in self.terms))

    @property
    def T(self):
        return Sum([t.T for t in self.terms])

    def astype(self, dtype):
        return Sum([t.astype(dtype) for t in self.terms], self.bias_relevance)


def scale_rows(op: Operator, v) -> Operator:
    """diag(v) @ op: a stored operator stays stored (same kind), anything else becomes a Product."""
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    if hasattr(op, "scale_rows"):               # kinds that fold a row scaling into themselves
        return op.scale_rows(v)
    M = op.stored()
    if M is None:
        return Product([Diagonal(v, op.dtype), op], op.bias_relevance)
    if not sp.issparse(M):
        return DenseOperator(M * v[:, None].astype(M.dtype), op.bias_relevance)
    M = M.copy()
    if M.format == "csc":
        M.data *= v[M.indices].astype(M.dtype)
    else:
        M.data *= np.repeat(v, np.diff(M.indptr)).astype(M.dtype)
    return SparseOperator(M, op.bias_relevance)

