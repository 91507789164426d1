"""Exceptions raised by chainlab.

Every error names what is wrong (the layer's module path and type, the shape,
the file) so that a user can act on it without reading a traceback.
"""


class ChainlabError(Exception):
    """Base class of chainlab's own errors."""


class UnsupportedLayerError(ChainlabError, TypeError):
    """A module or operation in the model has no explicit backward matrix here."""


class ExtractionError(ChainlabError, RuntimeError):
    """The extracted chain does not reproduce the model (a tracing or folding problem)."""


class NotLinearError(ChainlabError, TypeError):
    """The rule's backward pass is not a matrix product, so no matrix can be given."""
