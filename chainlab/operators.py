"""Layer operators: one small protocol, several storage kinds.

An operator ``M`` of shape ``(n_in, n_out)`` maps the backward signal at a
layer's output to the signal at its input, ``r_in = M @ r_out``.  Like
:class:`scipy.sparse.linalg.LinearOperator` every kind offers

* ``shape``, ``dtype``, ``nnz`` (stored entries),
* ``matvec(v)`` = M v, ``matmat(V)`` = M V, ``rmatvec(u)`` = Mᵀ u, ``rmatmat(U)`` = Mᵀ U,
* ``to_dense()`` (numpy array) and ``to_sparse(format)`` (scipy CSR/CSC),

so ``scipy.sparse.linalg.aslinearoperator(op)`` accepts it and ``svds``/``eigsh``
work without materializing.  ``A @ B`` of two operators is their product as an
operator, ``A @ V`` of an operator and an array is ``A.matmat(V)``/``matvec``.

Kinds defined here: :class:`DenseOperator` (a numpy array) and
:class:`SparseOperator` (a scipy CSR or CSC matrix).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

__all__ = ["Operator", "DenseOperator", "SparseOperator", "as_operator"]


class Operator:
    """Protocol shared by all operator kinds (subclasses fill in the storage).

    Attributes
    ----------
    shape : (n_in, n_out)
    dtype : numpy dtype of the stored values
    bias_relevance : ndarray (n_out,) or None
        Share of the relevance of output unit j that the rule assigns to the
        layer's bias (reported with ``bias="full"``): for conserving rules
        ``colsum(M)_j + bias_relevance_j = 1`` up to the stabilizer.
    """

    shape: tuple[int, int]
    dtype: np.dtype
    bias_relevance: np.ndarray | None = None
    kind = "abstract"

    # -- the LinearOperator protocol -------------------------------------------------
    def matmat(self, V):
        raise NotImplementedError(f"{type(self).__name__} must implement matmat")

    def rmatmat(self, U):
        raise NotImplementedError(f"{type(self).__name__} must implement rmatmat")

    def matvec(self, v):
        v = np.asarray(v)
        return self.matmat(v.reshape(-1, 1)).reshape(-1)

    def rmatvec(self, u):
        u = np.asarray(u)
        return self.rmatmat(u.reshape(-1, 1)).reshape(-1)

    def to_dense(self) -> np.ndarray:
        raise NotImplementedError

    def to_sparse(self, format: str = "csr"):
        raise NotImplementedError

    @property
    def nnz(self) -> int:
        raise NotImplementedError

    # -- conveniences ------------------------------------------------------------------
    @property
    def T(self) -> "Operator":
        """The transpose Mᵀ as an operator of the same kind."""
        raise NotImplementedError

    def aslinearoperator(self) -> spla.LinearOperator:
        return spla.aslinearoperator(self)

    def __matmul__(self, other):
        if isinstance(other, Operator):
            return self.compose(other)
        other = np.asarray(other)
        if other.ndim == 1:
            return self.matvec(other)
        return self.matmat(other)

    def compose(self, other: "Operator") -> "Operator":
        """The product ``self @ other`` as an operator (sparse stays sparse)."""
        _check_inner(self, other)
        if isinstance(self, SparseOperator) and isinstance(other, SparseOperator):
            return SparseOperator(self.to_sparse("csr") @ other.to_sparse("csr"))
        if isinstance(other, DenseOperator):
            return DenseOperator(self.matmat(other.array))
        if isinstance(self, DenseOperator):
            # A @ B = (Bᵀ Aᵀ)ᵀ with B applied through its own rmatmat
            return DenseOperator(other.rmatmat(self.array.T).T)
        return DenseOperator(self.matmat(other.to_dense()))

    def column_sums(self) -> np.ndarray:
        """Σ_i M_ij for every output column j, shape (n_out,)."""
        return self.rmatvec(np.ones(self.shape[0], dtype=self.dtype))

    def astype(self, dtype) -> "Operator":
        raise NotImplementedError

    def __repr__(self):
        return f"<{type(self).__name__} {self.shape[0]}x{self.shape[1]} {np.dtype(self.dtype).name} nnz={self.nnz}>"

    def _check_rows(self, V, what="matmat"):
        V = np.asarray(V)
        if V.ndim != 2 or V.shape[0] != self.shape[1]:
            raise ValueError(
                f"{what}: operator of shape {self.shape} needs an array with {self.shape[1]} rows, got shape {V.shape}"
            )
        return V

    def _check_cols(self, U, what="rmatmat"):
        U = np.asarray(U)
        if U.ndim != 2 or U.shape[0] != self.shape[0]:
            raise ValueError(
                f"{what}: transpose of operator of shape {self.shape} needs an array with {self.shape[0]} rows, got shape {U.shape}"
            )
        return U


def _check_inner(a: Operator, b: Operator):
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"cannot multiply operators of shapes {a.shape} and {b.shape}")


class DenseOperator(Operator):
    """An operator stored as a dense numpy array ``M`` of shape (n_in, n_out)."""

    kind = "dense"

    def __init__(self, array, bias_relevance=None):
        array = np.asarray(array)
        if array.ndim != 2:
            raise ValueError(f"a dense operator needs a 2-d array, got shape {array.shape}")
        self.array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.bias_relevance = bias_relevance

    def matmat(self, V):
        return self.array @ self._check_rows(V)

    def rmatmat(self, U):
        return self.array.T @ self._check_cols(U)

    def to_dense(self):
        return np.array(self.array)

    def to_sparse(self, format="csr"):
        return sp.csr_matrix(self.array) if format == "csr" else sp.csc_matrix(self.array)

    @property
    def nnz(self):
        return int(self.array.size)

    @property
    def T(self):
        return DenseOperator(self.array.T)

    def astype(self, dtype):
        return DenseOperator(self.array.astype(dtype, copy=False), self.bias_relevance)


class SparseOperator(Operator):
    """An operator stored as a scipy CSR or CSC matrix of shape (n_in, n_out)."""

    kind = "sparse"

    def __init__(self, matrix, bias_relevance=None):
        if not sp.issparse(matrix):
            raise TypeError(f"SparseOperator needs a scipy.sparse matrix, got {type(matrix).__name__}")
        if matrix.format not in ("csr", "csc"):
            matrix = matrix.tocsr()
        self.matrix = matrix
        self.shape = matrix.shape
        self.dtype = matrix.dtype
        self.bias_relevance = bias_relevance

    @property
    def format(self) -> str:
        return self.matrix.format

    def matmat(self, V):
        return np.asarray(self.matrix @ self._check_rows(V))

    def rmatmat(self, U):
        return np.asarray(self.matrix.T @ self._check_cols(U))

    def to_dense(self):
        return self.matrix.toarray()

    def to_sparse(self, format="csr"):
        if format not in ("csr", "csc"):
            raise ValueError(f"format must be 'csr' or 'csc', got {format!r}")
        return self.matrix.asformat(format)

    @property
    def nnz(self):
        return int(self.matrix.nnz)

    @property
    def T(self):
        return SparseOperator(self.matrix.T)

    def astype(self, dtype):
        return SparseOperator(self.matrix.astype(dtype, copy=False), self.bias_relevance)


def as_operator(obj) -> Operator:
    """Wrap a numpy array or scipy sparse matrix as an operator (operators pass through)."""
    if isinstance(obj, Operator):
        return obj
    if sp.issparse(obj):
        return SparseOperator(obj)
    return DenseOperator(np.asarray(obj))
