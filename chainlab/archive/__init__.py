"""Archives of chains in HDF5: an index file (one entry point) plus one file per chain, lazy per-layer
reads, crash-safe appends that cost O(new chain), one writer at a time (an OS lock).

* :mod:`.encoding` — how an operator and a chain are encoded (anndata-style sparse groups, blocks,
  checksummed datasets and attributes) and checked against the chain's own metadata on reading;
* :mod:`.store` — the archive on disk: :func:`write`, :func:`append`, :func:`delete`, :func:`writer`,
  :func:`open` and the lazy :class:`ArchiveReader`;
* :mod:`.lock` — the writers' lock beside the archive.

May import: :mod:`chainlab.chain`, :mod:`chainlab.linalg`, :mod:`chainlab.files`, :mod:`chainlab.errors`.
"""
from ..errors import ArchiveError
from .encoding import COMPRESSION, input_hash
from .lock import LOCK_TIMEOUT, lock_path
from .store import SCHEMA_VERSION, ArchiveReader, Writer, append, check_space, delete, open, write, writer

__all__ = ["ArchiveError", "ArchiveReader", "COMPRESSION", "LOCK_TIMEOUT", "SCHEMA_VERSION", "Writer", "append",
           "check_space", "delete", "input_hash", "lock_path", "open", "write", "writer"]
