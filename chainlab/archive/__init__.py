"""Archives of chains in HDF5: one file, many chains, lazy per-layer reads, crash-safe writes.

* :mod:`.encoding` — how an operator and a chain are encoded (anndata-style sparse groups, blocks,
  checksummed datasets and attributes);
* :mod:`.store` — the archive file: :func:`write`, :func:`append`, :func:`delete`, :func:`open` and the
  lazy :class:`ArchiveReader`.

May import: :mod:`chainlab.chain`, :mod:`chainlab.linalg`, :mod:`chainlab.files`, :mod:`chainlab.errors`.
"""
from ..errors import ArchiveError
from .encoding import COMPRESSION, input_hash
from .store import SCHEMA_VERSION, ArchiveReader, append, delete, open, write

__all__ = ["ArchiveError", "ArchiveReader", "COMPRESSION", "SCHEMA_VERSION", "append", "delete", "input_hash",
           "open", "write"]
