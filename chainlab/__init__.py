"""chainlab: the backward pass of a trained PyTorch network as an explicit chain of matrices.

    >>> import chainlab
    >>> net = chainlab.models.load("digits-cnn")
    >>> x = chainlab.data.model_input(net, chainlab.data.load_digits().x_test[:1])
    >>> chain = chainlab.extract(net, x, "zplus")
    >>> chain[0].shape, chain.to_dense().shape, chain.explain().shape

The package's layers, bottom to top (each imports only from those below it):
``kernels`` (numba) → ``errors``, ``options``, ``files``, ``version`` → ``linalg`` → ``chain`` →
``trace`` → ``nets`` → ``rules`` → ``extraction`` → ``archive`` → ``measures`` → ``studies`` → ``app``.
This module is the facade above them all.
"""
from . import archive, linalg, measures, nets, rules, studies, trace
from .chain import BatchChain, Chain, DeepLiftChain, RectifiedChain
from .errors import (ArchiveError, ChainlabError, ExtractionError, InputError, NotLinearError, OptionError,
                     UnsupportedLayerError)
from .extraction import extract, extract_batch
from .linalg import BlockOperator, DenseOperator, Operator, SparseOperator, as_operator
from .nets import data, models, zoo
from .rules import Composite, Rule, patterns
from .version import __version__

__all__ = [
    "ArchiveError", "BatchChain", "BlockOperator", "Chain", "ChainlabError", "Composite", "DeepLiftChain",
    "DenseOperator", "ExtractionError", "InputError", "NotLinearError", "Operator", "OptionError", "RectifiedChain",
    "Rule", "SparseOperator", "UnsupportedLayerError", "__version__", "archive", "as_operator", "data", "extract",
    "extract_batch", "linalg", "measures", "models", "nets", "patterns", "rules", "studies", "trace", "zoo",
]
