"""Chain.product, Chain.prefix_products and streamed Chain.apply against scipy/numpy products."""
import math
from functools import reduce

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import chainlab
from chainlab import linalg as pr
from chainlab.chain import Chain
from chainlab.linalg import Transposed
from chainlab.errors import NotLinearError
from chainlab.linalg import DenseOperator, SparseOperator

from conftest import conv_net


def make_chain(ops):
    shapes = [(ops[0].shape[0],)] + [(op.shape[1],) for op in ops]
    return Chain(ops, names=[f"m{i}" for i in range(len(ops))], shapes=shapes, input_shape=(1, ops[0].shape[0]),
                 x=np.zeros(ops[0].shape[0]), logits=np.zeros(ops[-1].shape[1]), rule="test", options={},
                 space="relevance")


def scipy_product(ops):
    mats = [op.to_sparse("csr") if op.kind == "sparse" else op.to_dense() for op in ops]
    P = reduce(lambda a, b: a @ b, mats)
    return P.toarray() if sp.issparse(P) else np.asarray(P)


def rel(a, b):
    a = a.toarray() if sp.issparse(a) else np.asarray(a)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


@pytest.fixture(scope="module")
def conv_chains():
    net = conv_net(1)
    x = torch.rand(1, 2, 9, 9, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    return [chainlab.extract(net, x, r) for r in ("zplus", "gradient", "lrp-epsilon")]


@pytest.mark.parametrize("dense_above", [0.0, pr.DENSE_ABOVE, 0.5, 1.0])
def test_product_equals_scipy(conv_chains, dense_above):
    for ch in conv_chains:
        L = len(ch)
        for start, stop in [(0, None), (0, 3), (1, L - 1), (2, L)]:
            ref = scipy_product(ch.operators[start:stop])
            got = ch.product(start, stop, dense_above=dense_above)
            assert got.shape == ref.shape
            assert rel(got.to_dense(), ref) < 1e-12, (ch.rule, start, stop)
        assert rel(ch.product().to_dense(), ch.to_dense()) < 1e-12


def test_product_stays_sparse_while_sparse_and_goes_dense(conv_chains):
    ch = conv_chains[0]
    P2 = ch.product(0, 2, dense_above=1.0)
    assert P2.kind == "sparse"                          # never dense when the threshold is 1
    assert ch.product(0, 2, dense_above=0.0).kind == "dense"
    full = ch.product()                                 # ends with Linear layers: dense
    assert full.kind == "dense"


def test_prefix_products_match_plain_prefixes(conv_chains):
    for ch in conv_chains:
        ks = []
        for pp in ch.prefix_products():
            ref = scipy_product(ch.operators[:pp.k])
            assert rel(pp.value(), ref) < 1e-12
            m = pp.matrix.toarray() if sp.issparse(pp.matrix) else pp.matrix
            assert np.abs(m).max() == pytest.approx(1.0, abs=1e-15) or not m.any()
            assert isinstance(pp.matrix, np.ndarray) or sp.isspmatrix_csc(pp.matrix)
            ks.append(pp.k)
        assert ks == list(range(1, len(ch) + 1))
        plain = list(ch.prefix_products(normalize=False, start=1, stop=4))
        assert [p.k for p in plain] == [2, 3, 4] and all(p.log_scale == 0.0 for p in plain)
        for p in plain:
            assert rel(p.matrix, scipy_product(ch.operators[1:p.k])) < 1e-12


def deep_chain(L=50, n=24, scale=1e8, seed=0, sparse_every=3):
    """M_l = c_l · Q_l with Q_l non-negative column-stochastic (so Π Q_l stays in [0, 1]) and c_l = scale."""
    rng = np.random.default_rng(seed)
    ops, Qs = [], []
    for layer in range(L):
        Q = rng.random((n, n)) * (rng.random((n, n)) < 0.3)
        Q[rng.integers(n, size=n), np.arange(n)] += 0.1          # no empty column
        Q /= Q.sum(axis=0, keepdims=True)
        Qs.append(Q)
        M = scale * Q
        ops.append(SparseOperator(sp.csc_matrix(M)) if layer % sparse_every == 0 else DenseOperator(M))
    return ops, Qs


@pytest.mark.parametrize("scale", [1e8, 1e-8])
def test_deep_chain_prefix_products_neither_overflow_nor_underflow(scale):
    ops, Qs = deep_chain(scale=scale)
    ch = make_chain(ops)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        plain = ch.product().to_dense()
    assert (not np.isfinite(plain).all() if scale > 1 else not plain.any())   # the plain product is useless
    Qprod = np.eye(Qs[0].shape[0])
    last = None
    for pp, Q in zip(ch.prefix_products(), Qs):
        Qprod = Qprod @ Q
        m = pp.matrix.toarray() if sp.issparse(pp.matrix) else pp.matrix
        assert np.all(np.isfinite(m)) and np.abs(m).max() == pytest.approx(1.0)
        # P_k = scale^k · Π Q = exp(log_scale) · matrix
        shift = pp.log_scale - pp.k * math.log(scale)
        assert rel(m * math.exp(shift), Qprod) < 1e-12
        last = pp
    assert last.k == 50 and abs(last.log_scale) > 700   # exp(log_scale) itself would not fit a float64


def test_product_ranges_and_nonlinear_chains_are_rejected(conv_chains):
    ch = conv_chains[0]
    with pytest.raises(ValueError, match="start < stop"):
        ch.product(3, 3)
    with pytest.raises(ValueError, match="start < stop"):
        list(ch.prefix_products(stop=len(ch) + 1))
    nl = make_chain(list(ch.operators))
    nl.linear = False
    with pytest.raises(NotLinearError):
        nl.product()
    with pytest.raises(NotLinearError):
        next(iter(nl.prefix_products()))


def test_streamed_apply_equals_unstreamed(conv_chains):
    ch = conv_chains[1]
    rng = np.random.default_rng(5)
    R = rng.normal(size=(ch.n_output, 37))
    ref = scipy_product(ch.operators) @ R
    widest = max(op.shape[0] + op.shape[1] for op in ch)
    for budget in (None, 8 * widest, 8 * widest * 5 + 3):  # one block, 1-column blocks, 5-column blocks
        got = ch.apply(R, max_memory=budget, basis=False)
        assert got.shape == ref.shape and rel(got, ref) < 1e-12
    assert rel(ch.apply(R), ref) < 1e-12                    # basis path (37 > 5 rows)
    assert rel(ch.apply(R[:, 3]), ref[:, 3]) < 1e-12
    mid = rng.normal(size=(ch[2].shape[1], 4))
    assert rel(ch.apply(mid, 1, 3, max_memory=1), scipy_product(ch.operators[1:3]) @ mid) < 1e-12
    with pytest.raises(ValueError, match="max_memory"):
        ch.apply(R, max_memory=-1, basis=False)


def test_multiply_handles_every_representation_pair():
    rng = np.random.default_rng(6)
    A = sp.random(15, 12, density=0.2, random_state=rng, format="csc")
    B = sp.random(12, 9, density=0.3, random_state=rng, format="csc")
    ref = A.toarray() @ B.toarray()
    for P in (A, A.toarray()):
        for M in (SparseOperator(B), DenseOperator(B.toarray()), SparseOperator(B.T.tocsc()).T,
                  Transposed(DenseOperator(B.toarray().T))):            # stored kinds, and matrix-free ones
            for t in (0.0, 0.05, 1.0):
                assert rel(pr.multiply(P, M, dense_above=t), ref) < 1e-12


@pytest.mark.parametrize("kind", ["diagonal", "gather", "sparse", "dense-ish"])
def test_dense_partial_product_times_each_kind_of_sparse_factor(kind):
    """A dense P times a sparse M takes one of three paths (columns of P scaled/gathered when M has ≤ 1 entry per
    column, the dense × CSC kernel, BLAS on M made dense above BLAS_ABOVE): each equals numpy's dense product."""
    rng = np.random.default_rng(7)
    P = rng.standard_normal((40, 30))
    if kind == "diagonal":
        M = sp.diags(rng.standard_normal(30)).tocsc()
    elif kind == "gather":      # column j takes row perm[j] (column 3 empty), scaled
        perm = rng.permutation(30)[:25]
        M = sp.csc_matrix((rng.standard_normal(25), (perm, np.r_[0:3, 4:26])), shape=(30, 26))
    else:
        d = {"sparse": 0.5 * pr.products.BLAS_ABOVE, "dense-ish": min(1.0, 3 * pr.products.BLAS_ABOVE)}[kind]
        M = sp.random(30, 26, density=d, random_state=rng, format="csc")
    want = P @ M.toarray()
    for p in (P, np.asfortranarray(P)):
        got = pr.multiply(p, SparseOperator(M), dense_above=1.0)
        assert rel(got, want) < 1e-13, kind


def test_residual_sum_abs_column_sums_equal_the_dense_sum():
    """Σ_i |(A_1 A_2 D + S)_ij| from Sum.abs_column_sums (a dense product added to a sparse term without a CSC copy)
    equals the column sums of the dense matrix; a cancelling pair of terms sums to zero columns."""
    from chainlab.linalg import Diagonal, Product, Sum
    rng = np.random.default_rng(8)
    A1 = sp.random(20, 20, density=0.6, random_state=rng, format="csc")
    A2 = sp.random(20, 20, density=0.6, random_state=rng, format="csc")
    d = rng.standard_normal(20)
    S = sp.random(20, 20, density=0.1, random_state=rng, format="csc")
    block = Sum([Product([SparseOperator(A1), SparseOperator(A2), Diagonal(d)]), SparseOperator(S)])
    want = np.abs(A1.toarray() @ A2.toarray() @ np.diag(d) + S.toarray()).sum(axis=0)
    assert np.allclose(block.abs_column_sums(), want, rtol=1e-13, atol=0)
    W = rng.standard_normal((20, 20))
    D = DenseOperator(W.copy())
    zero = Sum([D, DenseOperator(-W)]).abs_column_sums()
    assert np.array_equal(zero, np.zeros(20)) and np.array_equal(D.to_dense(), W)     # the stored term not summed into
