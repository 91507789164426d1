"""Results that do not depend on scheduling: the same bits on 1 or 2 numba/torch/BLAS threads and on every run.

What used to differ (and why): the CSC × dense kernel split its columns by the thread count (the sums of
the slabs, and so the last bits of every explanation, changed with NUMBA_NUM_THREADS); scipy's svds drew
ARPACK's restart vectors from OS entropy (singular vectors of degenerate spectra — max-pool layers — and
with them Sixt's inter-layer σ changed from run to run, moving S4's counts); LAPACK's SVD summed by the
BLAS thread count.  The whole verify job is compared in tests/test_verify.py.
"""
import hashlib

import numba
import numpy as np
import pytest
import scipy.sparse as sp
import torch

import chainlab
from chainlab import measures
from chainlab.linalg.spmat import spmm
from chainlab.measures import lapack
from chainlab.measures.svd import singular_triplets, singular_values

two_threads = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")


def digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def chain_digest(chain) -> str:
    parts = []
    for op in chain:
        blocks = [b for row in op.blocks for b in row] if op.kind == "block" else [op]
        for b in blocks:
            M = b.to_sparse("csc") if b.kind != "dense" else b.to_dense()
            parts += [M.data, M.indices, M.indptr] if sp.issparse(M) else [M]
    return digest(*parts, chain.logits, *(chain.explain(k) for k in range(len(chain.logits))))


@pytest.fixture
def threads():
    old_numba, old_torch = numba.get_num_threads(), torch.get_num_threads()

    def set_to(n):
        numba.set_num_threads(n)
        torch.set_num_threads(n)
        return lapack.one_blas_thread() if n == 1 else _nothing()
    yield set_to
    numba.set_num_threads(old_numba)
    torch.set_num_threads(old_torch)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


@two_threads
def test_spmm_is_bit_identical_on_any_thread_count(threads):
    rng = np.random.default_rng(0)
    A = sp.random(1500, 1000, density=0.01, format="csc", random_state=1)
    for B in (rng.standard_normal(1000), rng.standard_normal((1000, 7))):
        got = []
        for n in (1, 2):
            with threads(n):
                got.append(spmm(A, B).tobytes())
        assert got[0] == got[1]


@two_threads
def test_extraction_explanations_and_spectra_are_bit_identical_across_threads(threads):
    net = chainlab.models.load("digits-cnn")
    x = chainlab.data.model_input("digits-cnn", chainlab.data.load_digits().x_test[:1])
    out = []
    for n in (1, 2):
        with threads(n):
            ch = chainlab.extract(net, x, "zplus")
            recs = measures.spectra(ch, of="interlayer")       # ARPACK triplets of max-pool layers, LAPACK SVDs
            got = [chain_digest(ch), chain_digest(chainlab.extract(net, x, "deeplift-rescale")),
                   repr([(r["quantity"], r["k"], r["value"]) for r in recs])]
            out.append(got)
    assert out[0] == out[1]


def test_singular_vectors_of_a_degenerate_operator_are_the_same_on_every_call():
    """A max-pool-like selection matrix (all σ = 1): ARPACK restarts; the old svds drew the restarts from OS
    entropy and returned different singular vectors (and last bits of σ) on every call."""
    rng = np.random.default_rng(0)
    rows = rng.permutation(512)[:128]
    M = chainlab.linalg.SparseOperator(sp.csc_matrix((np.ones(128), (rows, np.arange(128))), shape=(512, 128)))
    runs = [singular_triplets(M, 8, exact_below=100) for _ in range(2)]
    for U, s, Vh in runs[1:]:
        assert digest(U, s, Vh) == digest(*runs[0])
    np.testing.assert_allclose(runs[0][1], 1.0, rtol=1e-10)
    vals = [singular_values(M, 2, exact_below=100) for _ in range(2)]
    assert all(v.tobytes() == vals[0].tobytes() for v in vals)
