"""The operator protocol: every kind against its dense matrix, and scipy's LinearOperator machinery."""
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from chainlab.linalg import DENSE_ABOVE, DenseOperator, SparseOperator, as_operator


def kinds(seed=0, shape=(13, 9), density=0.3):
    rng = np.random.default_rng(seed)
    A = sp.random(*shape, density=density, random_state=rng, format="csr")
    A[0, :] = 0  # an empty row
    A = A.tocsr()
    A[:, 2] = 0  # an empty column
    A.eliminate_zeros()
    D = A.toarray()
    return D, [DenseOperator(D), SparseOperator(A.tocsr()), SparseOperator(A.tocsc())]


@pytest.mark.parametrize("k", [0, 1, 2])
def test_protocol_matches_dense(k):
    D, ops = kinds(k)
    rng = np.random.default_rng(10 + k)
    for op in ops:
        assert op.shape == D.shape and op.dtype == np.float64
        v, V = rng.normal(size=D.shape[1]), rng.normal(size=(D.shape[1], 4))
        u, U = rng.normal(size=D.shape[0]), rng.normal(size=(D.shape[0], 3))
        np.testing.assert_allclose(op.matvec(v), D @ v, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(op.matmat(V), D @ V, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(op.rmatvec(u), D.T @ u, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(op.rmatmat(U), D.T @ U, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(op @ V, D @ V, rtol=1e-13, atol=1e-14)
        np.testing.assert_array_equal(op.to_dense(), D)
        for fmt in ("csr", "csc"):
            S = op.to_sparse(fmt)
            assert S.format == fmt
            np.testing.assert_array_equal(S.toarray(), D)
        np.testing.assert_allclose(op.column_sums(), D.sum(axis=0), rtol=1e-13, atol=1e-14)
        np.testing.assert_array_equal(op.T.to_dense(), D.T)


def test_nnz_counts_stored_entries():
    D, (dense, csr, csc) = kinds(3)
    assert dense.nnz == D.size
    assert csr.nnz == csc.nnz == np.count_nonzero(D)


def test_aslinearoperator_and_svds_work_without_materializing():
    D, ops = kinds(4, shape=(40, 30), density=0.4)
    s_ref = np.linalg.svd(D, compute_uv=False)[:3]
    for op in ops:
        L = spla.aslinearoperator(op)
        assert L.shape == D.shape
        s = np.sort(spla.svds(L, k=3, return_singular_vectors=False, random_state=0))[::-1]
        np.testing.assert_allclose(s, s_ref, rtol=1e-8)


def test_products_of_operators_keep_sparse_sparse_and_equal_dense_products():
    D1, ops1 = kinds(5, shape=(8, 11))
    D2, ops2 = kinds(6, shape=(11, 7))
    for a in ops1:
        for b in ops2:
            p = a @ b                                   # composition without materializing
            assert p.kind == "product" and p.factors == [a, b]
            np.testing.assert_allclose(p.to_dense(), D1 @ D2, rtol=1e-12, atol=1e-14)
            V = np.random.default_rng(0).normal(size=(7, 3))
            np.testing.assert_allclose(p @ V, D1 @ (D2 @ V), rtol=1e-12, atol=1e-14)
            m = p.materialize()                         # multiplied out: sparse while at most DENSE_ABOVE full
            dens = np.count_nonzero(D1 @ D2) / (D1 @ D2).size
            assert m.kind == ("dense" if dens > DENSE_ABOVE else "sparse")
            np.testing.assert_allclose(m.to_dense(), D1 @ D2, rtol=1e-12, atol=1e-14)


def test_shape_errors_name_the_shapes():
    D, ops = kinds(7)
    for op in ops:
        with pytest.raises(ValueError, match=r"needs an array with 9 rows, got shape \(5, 2\)"):
            op.matmat(np.ones((5, 2)))
        with pytest.raises(ValueError, match=r"13 rows"):
            op.rmatmat(np.ones((5, 2)))
    with pytest.raises(ValueError, match="cannot multiply"):
        ops[0] @ ops[0]


def test_as_operator_wraps_arrays_and_sparse():
    D, _ = kinds(8)
    assert as_operator(D).kind == "dense"
    assert as_operator(sp.csr_matrix(D)).kind == "sparse"
    op = as_operator(D)
    assert as_operator(op) is op
