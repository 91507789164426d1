"""chainlab: the backward pass of a trained PyTorch network as an explicit chain of matrices.

    >>> import chainlab
    >>> net = chainlab.models.load("digits-cnn")
    >>> x = chainlab.data.model_input(net, chainlab.data.load_digits().x_test[:1])
    >>> chain = chainlab.extract(net, x, "zplus")
    >>> chain[0].shape, chain.to_dense().shape, chain.explain().shape

The package's layers, bottom to top (each imports only from those below it):
``kernels`` (numba) → ``errors``, ``options``, ``files``, ``version``, ``lazy`` → ``linalg`` → ``chain`` →
``trace`` → ``nets`` → ``rules`` → ``extraction`` → ``archive`` → ``measures`` → ``studies`` → ``papers`` → ``app``.
This module is the facade above them all.  It loads nothing but the errors and the version: every other
name (``chainlab.extract``, ``chainlab.models``, ``chainlab.Chain``, ``chainlab.linalg``, …) imports its layer
on first use (PEP 562, :mod:`chainlab.lazy`), so ``import chainlab`` costs little more than ``import torch``
and numba, h5py, scipy.stats, scikit-image, scikit-learn, matplotlib, typer and dask load only where used.
"""
from . import lazy
from .errors import (ArchiveError, ChainlabError, ExtractionError, InputError, NotLinearError, OptionError,
                     UnsupportedLayerError)
from .version import __version__

__getattr__, __dir__, _LAZY = lazy.attach(
    __name__,
    submodules=["app", "archive", "chain", "extraction", "files", "kernels", "linalg", "measures", "nets",
                "options", "papers", "rules", "studies", "trace"],
    names={
        ".chain": ["BatchChain", "Chain", "DeepLiftChain", "RectifiedChain"],
        ".extraction": ["extract", "extract_batch"],
        ".linalg": ["BlockOperator", "DenseOperator", "Operator", "SparseOperator", "as_operator"],
        ".nets": ["data", "models", "zoo"],
        ".rules": ["Composite", "Rule", "patterns"],
    },
)

__all__ = [
    "ArchiveError", "BatchChain", "BlockOperator", "Chain", "ChainlabError", "Composite", "DeepLiftChain",
    "DenseOperator", "ExtractionError", "InputError", "NotLinearError", "Operator", "OptionError", "RectifiedChain",
    "Rule", "SparseOperator", "UnsupportedLayerError", "__version__", "archive", "as_operator", "data", "extract",
    "extract_batch", "linalg", "measures", "models", "nets", "patterns", "rules", "studies", "trace", "zoo",
]
