"""numba kernels (through their wrappers in chainlab.linalg.spmat) against numpy/scipy references."""
import numpy as np
import pytest
import scipy.sparse as sp

from chainlab import linalg as pr
from chainlab.linalg import spmat


def rand_sparse(m, n, density, seed, dtype=np.float64, index=np.int32, fmt="csc"):
    """Random sparse matrix with an empty row (0), an empty column (1) and the given index width."""
    rng = np.random.default_rng(seed)
    A = sp.random(m, n, density=density, random_state=rng, format="lil", dtype=np.float64)
    if m > 1 and n > 2:
        A[0, :] = 0
        A[:, 1] = 0
    A = A.asformat(fmt).astype(dtype)
    A.eliminate_zeros()
    A.indptr = A.indptr.astype(index)
    A.indices = A.indices.astype(index)
    return A


def close(got, ref, dtype):
    ref = ref.toarray() if sp.issparse(ref) else np.asarray(ref)
    got = got.toarray() if sp.issparse(got) else np.asarray(got)
    assert got.shape == ref.shape
    tol = 1e-12 if dtype == np.float64 else 2e-5
    scale = max(np.abs(ref).max(initial=0.0), 1e-300)
    assert np.abs(got - ref).max(initial=0.0) <= tol * scale


DTYPES = [np.float64, np.float32]
INDEX = [np.int32, np.int64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index", INDEX)
@pytest.mark.parametrize("fmt", ["csc", "csr"])
def test_spmm_matches_scipy(dtype, index, fmt):
    A = rand_sparse(37, 23, 0.2, 1, dtype, index, fmt)
    rng = np.random.default_rng(2)
    B = rng.normal(size=(23, 9)).astype(dtype)
    close(pr.spmm(A, B), A @ B, dtype)
    close(pr.spmm(A, B[:, 0]), A @ B[:, 0], dtype)                       # a vector
    close(pr.spmm(A, B[:, ::2]), A @ B[:, ::2], dtype)                   # non-contiguous columns
    Bc = np.ascontiguousarray(B)                                         # C order
    close(pr.spmm(A, Bc), A @ Bc, dtype)
    assert pr.spmm(A, B).dtype == dtype
    assert pr.spmm(A, B.astype(np.float64)).dtype == np.float64          # mixed precision goes up


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index", INDEX)
def test_dense_sparse_matches_numpy(dtype, index):
    S = rand_sparse(23, 31, 0.15, 3, dtype, index)
    A = np.random.default_rng(4).normal(size=(12, 23)).astype(dtype)
    close(pr.dense_sparse(A, S), A @ S.toarray(), dtype)
    close(pr.dense_sparse(A[::2], S.tocsr()), A[::2] @ S.toarray(), dtype)  # strided rows, CSR operand


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index", INDEX)
def test_spgemm_matches_scipy(dtype, index):
    A = rand_sparse(40, 30, 0.1, 5, dtype, index)
    B = rand_sparse(30, 50, 0.08, 6, dtype, index)
    C = pr.spgemm(A, B)
    assert sp.isspmatrix_csc(C) and C.has_sorted_indices
    for j in range(C.shape[1]):  # rows sorted and unique per column (our own check, not the flag)
        assert np.all(np.diff(C.indices[C.indptr[j]:C.indptr[j + 1]]) > 0)
    close(C, (A.tocsr() @ B.tocsr()), dtype)
    D = pr.spgemm(A, B, dense_above=0.0)   # forced dense output
    assert isinstance(D, np.ndarray)
    close(D, A @ B, dtype)


def test_spgemm_dense_columns_scan_path_and_large_matrices():
    # columns with more than m/16 entries take the ordered-scan branch, the others the sort branch
    A = rand_sparse(300, 200, 0.3, 7)
    B = rand_sparse(200, 400, 0.02, 8)
    C = pr.spgemm(A, B)
    close(C, A @ B, np.float64)
    for j in range(C.shape[1]):
        assert np.all(np.diff(C.indices[C.indptr[j]:C.indptr[j + 1]]) > 0)


def test_single_nonzero_and_empty_matrices():
    A = sp.csc_matrix(([2.5], ([3], [4])), shape=(6, 7))
    B = sp.csc_matrix(([-4.0], ([4], [0])), shape=(7, 3))
    C = pr.spgemm(A, B)
    assert C.nnz == 1 and C[3, 0] == -10.0
    V = np.arange(21.0).reshape(7, 3)
    close(pr.spmm(A, V), A.toarray() @ V, np.float64)
    close(pr.spmm(A.tocsr(), V), A.toarray() @ V, np.float64)
    Z = sp.csc_matrix((6, 7))
    assert pr.spgemm(Z, B).nnz == 0
    assert np.all(pr.spmm(Z, V) == 0)
    E = pr.spgemm(sp.csc_matrix((6, 0)), sp.csc_matrix((0, 3)))
    assert E.shape == (6, 3) and E.nnz == 0


def test_wrappers_reject_bad_shapes():
    A = rand_sparse(5, 4, 0.5, 9)
    with pytest.raises(ValueError, match="4 rows"):
        pr.spmm(A, np.ones((5, 2)))
    with pytest.raises(ValueError, match="cannot multiply"):
        pr.spgemm(A, A)
    with pytest.raises(TypeError, match="scipy.sparse"):
        pr.spmm(A.toarray(), np.ones((4, 2)))


def pr_todense(X):
    return X.toarray() if sp.issparse(X) else np.asarray(X)


@pytest.mark.parametrize("ord_, ref", [("max", lambda D: np.abs(D).max(0)), ("l1", lambda D: np.abs(D).sum(0)),
                                       ("l2", lambda D: np.sqrt((D ** 2).sum(0)))])
def test_column_norms(ord_, ref):
    A = rand_sparse(20, 15, 0.3, 19)
    D = A.toarray()
    for M in (A, D, np.ascontiguousarray(D), A.tocsr()):
        close(pr.column_norms(M, ord_), ref(D), np.float64)
    assert np.all(pr_todense(A) == D)                  # inputs untouched


def test_channel_cosine_matches_loop_reference():
    rng = np.random.default_rng(20)
    C, H, W, n = 4, 3, 5, 6
    X = rng.normal(size=(C * H * W, n))
    X[:, 5] = 0                       # a zero signal: NaN everywhere it takes part
    X[np.arange(C) * H * W + 7, 2] = 0  # one zero channel vector at location 7 of signal 2
    pairs = np.array([[0, 1], [2, 3], [4, 5], [1, 2]])
    got = pr.channel_cosine(X[:, :], (C, H, W), pairs)
    T = X.reshape(C, H * W, n)
    for t, (u, v) in enumerate(pairs):
        for l in range(H * W):
            a, b = T[:, l, u], T[:, l, v]
            if not a.any() or not b.any():
                assert np.isnan(got[l, t])
            else:
                assert abs(got[l, t] - abs(a @ b) / np.linalg.norm(a) / np.linalg.norm(b)) < 1e-14
    assert np.isnan(got[7, 1]) and np.isnan(got[7, 3]) and np.all(np.isnan(got[:, 2]))


@pytest.mark.parametrize("index", INDEX)
def test_spgemm_grouped_columns_with_shared_patterns(index):
    """Columns of B in groups with one row pattern (as a conv's output channels) take the dense-block path."""
    rng = np.random.default_rng(21)
    base = rand_sparse(30, 12, 0.25, 22)
    reps = 6
    B = sp.hstack([base] * reps, format="csc")                  # every pattern 6 times
    B.data = rng.normal(size=B.nnz)
    extra = rand_sparse(30, 5, 0.3, 23)                          # a few unique patterns
    B = sp.hstack([B, extra], format="csc")
    B = B[:, rng.permutation(B.shape[1])].tocsc()
    B.indptr, B.indices = B.indptr.astype(index), B.indices.astype(index)
    A = rand_sparse(40, 30, 0.2, 24, index=index)
    gptr, _ = spmat._pattern_groups(B.indptr, B.indices)
    assert gptr.size - 1 <= B.shape[1] // 4                     # the grouped path is taken
    C = pr.spgemm(A, B)
    close(C, A @ B, np.float64)
    for j in range(C.shape[1]):
        assert np.all(np.diff(C.indices[C.indptr[j]:C.indptr[j + 1]]) > 0)
    close(pr.spgemm(A, B, dense_above=0.0), A @ B, np.float64)
    close(pr.spgemm(A, B, group=False), A @ B, np.float64)


@pytest.mark.parametrize("index", INDEX)
def test_csc_scatter_kernels_with_any_column_split(index):
    """kernels.csc_dense / csc_vector directly: every split of the columns over tasks (incl. empty ranges and one
    task per column) gives A @ B, and the slabs are overwritten, not accumulated from old contents."""
    from chainlab import kernels as K
    A = rand_sparse(33, 21, 0.2, 25, index=index)
    B = np.random.default_rng(26).normal(size=(21, 7))
    for bounds in ([0, 21], [0, 5, 5, 21], [0, 3, 10, 17, 21], list(range(22))):
        bounds = np.array(bounds, np.int64)
        out = np.full((33, 7), np.nan)
        work = np.full((len(bounds) - 2, 33, 7), np.nan)
        K.csc_dense(A.indptr, A.indices, A.data, B, out, bounds, work)
        close(out, A @ B, np.float64)
        y = np.full(33, np.nan)
        K.csc_vector(A.indptr, A.indices, A.data, B[:, 2].copy(), y, bounds, np.full((len(bounds) - 2, 33), np.nan))
        close(y, A @ B[:, 2], np.float64)
