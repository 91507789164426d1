"""chainlab: the backward pass of a trained PyTorch network as an explicit chain of matrices.

    >>> import chainlab
    >>> net = chainlab.models.load("digits-cnn")
    >>> x = chainlab.data.model_input(net, chainlab.data.load_digits().x_test[:1])
    >>> chain = chainlab.extract(net, x, "zplus")
    >>> chain[0].shape, chain.to_dense().shape, chain.explain().shape
"""
from . import data, models
from .chain import Chain
from .errors import ChainlabError, ExtractionError, NotLinearError, UnsupportedLayerError
from .extract import extract, register_method
from .operators import DenseOperator, Operator, SparseOperator, as_operator
from .rules import Composite, Rule
from .blocks import BlockOperator
from .rules import deeplift as _deeplift
from .rules import nonlinear as _nonlinear
from .rules import pattern as _pattern
from . import patterns

_deeplift.register()
_nonlinear.register()
_pattern.register()

__version__ = "0.1.0"

__all__ = [
    "BlockOperator", "Chain", "ChainlabError", "Composite", "DenseOperator", "ExtractionError", "NotLinearError", "Operator", "Rule",
    "SparseOperator", "UnsupportedLayerError", "as_operator", "data", "extract", "models", "patterns", "register_method",
]
