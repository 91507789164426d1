"""Dense factorizations whose every bit is independent of the BLAS thread count.

LAPACK's blocked SVD/QR/Cholesky call multithreaded BLAS-3 kernels; OpenBLAS splits their sums by
the number of threads, so ``np.linalg.svd`` of the same matrix differs in the last bits between
``OPENBLAS_NUM_THREADS=1`` and ``=2`` (measured: the inter-layer σ of digits-mlp's DeepLIFT chain
moves by 2 ulp).  These wrappers run the factorization on one BLAS thread (threadpoolctl), so a
measure — and a verdict computed from it — is the same on every machine and every thread setting.
The matrices factorized here are small (at most ``DENSE_LIMIT`` entries, Ritz blocks of a few
columns), so one thread costs little; products of large dense operators keep all threads (OpenBLAS
gemm/gemv give every output entry to one thread: the same bits at any thread count).

    svd(a, compute_uv=True, full_matrices=True)  = np.linalg.svd
    qr(a)                                        = np.linalg.qr (reduced)
    cholesky(a), inv(a)                          = np.linalg.cholesky, np.linalg.inv
"""
from __future__ import annotations

import contextlib

import numpy as np
from threadpoolctl import ThreadpoolController

__all__ = ["svd", "qr", "cholesky", "inv", "one_blas_thread"]

_CONTROLLER = None


@contextlib.contextmanager
def one_blas_thread():
    """Run the block on one BLAS thread (the thread count is restored afterwards)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    with _CONTROLLER.limit(limits=1, user_api="blas"):
        yield


def svd(a, compute_uv: bool = True, full_matrices: bool = True):
    with one_blas_thread():
        return np.linalg.svd(a, compute_uv=compute_uv, full_matrices=full_matrices)


def qr(a):
    with one_blas_thread():
        return np.linalg.qr(a)


def cholesky(a):
    with one_blas_thread():
        return np.linalg.cholesky(a)


def inv(a):
    with one_blas_thread():
        return np.linalg.inv(a)
