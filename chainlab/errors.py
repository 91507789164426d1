"""Every exception chainlab raises on purpose, in one hierarchy.

``ChainlabError`` and its subclasses are *user errors*: bad input, an option that does not
exist or has a bad value, a file that is not what it claims, a model chainlab cannot read.
Each names what is wrong (the option and its value, the layer's module path and type, the
shape, the file) so that a user can act on it without reading a traceback; the command line
prints them as one ``chainlab: error: …`` line.  Anything else that escapes (TypeError,
KeyError, AttributeError, …) is a bug in chainlab and is shown as one.

Several classes also derive from the matching built-in (ValueError, TypeError, …) so that
code catching the built-in keeps working.

    ChainlabError
    ├── OptionError          unknown option, or an option value of the wrong type or range
    ├── InputError           bad input data: shapes, non-finite values, targets, image ranges
    ├── MissingFileError     a file or directory that should exist does not
    ├── ModelFileError       a model/weights file that cannot be read or would run code
    ├── ChecksumError        a shipped data file whose bytes differ from its recorded sha256
    ├── PatternError         pattern files or patterns that do not fit the model
    ├── UnsupportedLayerError  a layer or operation without an explicit backward matrix here
    ├── NotLinearError       a rule whose backward pass is not a product of matrices
    ├── ExtractionError      the traced stages do not reproduce the model
    ├── ArchiveError         a chain archive that cannot be read or written
    ├── BoundViolationError  an observed value above a bound that holds by construction
    ├── ConeViolationError   a cone-inclusion or Birkhoff inequality that failed
    └── RunError             tasks of a distributed run failed after their retries
"""
from __future__ import annotations

__all__ = [
    "ChainlabError", "OptionError", "InputError", "MissingFileError", "ModelFileError", "ChecksumError",
    "PatternError", "UnsupportedLayerError", "NotLinearError", "ExtractionError", "ArchiveError", "BoundViolationError",
    "ConeViolationError", "RunError",
]


class ChainlabError(Exception):
    """Base class of chainlab's own (user) errors."""


class OptionError(ChainlabError, ValueError):
    """An option that nothing takes, or a value of the wrong type or outside its range."""


class InputError(ChainlabError, ValueError):
    """Input data that does not fit: a shape, a non-finite value, a target, an image range."""


class MissingFileError(ChainlabError, FileNotFoundError):
    """A file or directory that should exist does not."""


class ModelFileError(ChainlabError, ValueError):
    """A model or weights file that cannot be read, does not fit, or would execute code on loading."""


class ChecksumError(ChainlabError, ValueError):
    """A shipped data file (net, patterns, digits) whose sha256 differs from the one its folder's SHA256SUMS
    records: a damaged copy, or a file remade without recording it (:mod:`chainlab.nets.manifest`)."""


class PatternError(ChainlabError, ValueError):
    """Patterns that do not fit the model, an unknown pattern type, or an unreadable pattern file."""


class UnsupportedLayerError(ChainlabError, TypeError):
    """A module or operation in the model has no explicit backward matrix here."""


class NotLinearError(ChainlabError, TypeError):
    """The rule's backward pass is not a matrix product, so no matrix can be given."""


class ExtractionError(ChainlabError, RuntimeError):
    """The extracted chain does not reproduce the model (a tracing or folding problem)."""


class ArchiveError(ChainlabError):
    """A chain archive cannot be read or written (names the file and, where known, chain and layer)."""


class BoundViolationError(ChainlabError, ArithmeticError):
    """An observed value exceeds a bound that holds by construction: a bug in extraction or in the bound."""


class ConeViolationError(ChainlabError, ArithmeticError):
    """A cone-inclusion or Birkhoff inequality failed: a bug in extraction or in the measure."""


class RunError(ChainlabError):
    """Some tasks of a distributed run failed after their retries; ``.report`` holds what was written."""

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report
