"""HDF5 archives of chains: one file, many chains, lazy per-layer reads, atomic writes.

Layout::

    /                           attrs: encoding-type = "chainlab-archive", schema_version = 1,
                                       chainlab_version, next_index
    /chains/<key>/              one chain, encoded as :mod:`.encoding` describes

Writes never touch the target in place: :func:`write`, :func:`append` and :func:`delete` build the
new file as ``<name>.tmp-<pid>-<n>`` in the same directory, flush and fsync it, then ``os.replace``
it onto the target.  A writer killed at any moment leaves the previous archive intact (and at most a
stale temp file).  One writer at a time: two concurrent appenders would each replace the file and
one append would be lost.

A truncated, corrupt (checksum failure), foreign (an HDF5 file that is not an archive, a text
file) or newer-schema file raises :class:`ArchiveError` naming the file and, where known, the chain
and the layer.
"""
from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import h5py
import numpy as np

from ..chain import Chain
from ..errors import ArchiveError, ChainlabError
from ..files import atomic_path
from ..version import __version__
from .encoding import LIBVER, attr, chain_fields, check_archivable, read_matrix, set_str, write_chain

__all__ = ["ArchiveReader", "SCHEMA_VERSION", "append", "delete", "open", "write"]

SCHEMA_VERSION = 1
ENCODING = "chainlab-archive"
# what h5py, the HDF5 library and the decoding raise on unreadable or inconsistent content
_READ_ERRORS = (OSError, KeyError, ValueError, RuntimeError, IndexError, json.JSONDecodeError)


def _new_root(f):
    set_str(f.attrs, "encoding-type", ENCODING)
    set_str(f.attrs, "encoding-version", f"{SCHEMA_VERSION}.0.0")
    f.attrs["schema_version"] = SCHEMA_VERSION
    set_str(f.attrs, "chainlab_version", __version__)
    f.attrs["next_index"] = 0
    f.create_group("chains")


def _next_key(f) -> str:
    n = int(f.attrs.get("next_index", 0))
    existing = set(f["chains"].keys())
    while f"{n:06d}" in existing:
        n += 1
    f.attrs["next_index"] = n + 1
    return f"{n:06d}"


@contextlib.contextmanager
def _replacing(path: Path, copy_from: Path | None = None):
    """Yield an open h5py.File on a temp file beside ``path``; on success fsync it and os.replace it onto path."""
    try:
        with atomic_path(path) as tmp:
            if copy_from is not None:
                shutil.copyfile(copy_from, tmp)
                f = h5py.File(tmp, "r+")
            else:
                f = h5py.File(tmp, "w", libver=LIBVER)
            try:
                yield f
                f.flush()
            finally:
                f.close()
    except BaseException as exc:
        if isinstance(exc, (ChainlabError, KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        if isinstance(exc, _READ_ERRORS):
            raise ArchiveError(f"{path}: cannot write the archive: {exc}") from exc
        raise


def write(path, chains) -> list[str]:
    """Write ``chains`` (a list of Chains, or a mapping key -> Chain) as a new archive at ``path``.

    An existing file at ``path`` is replaced atomically, only after the new one is complete.
    Returns the keys, in order ('000000', '000001', … for a list).
    """
    path = Path(path)
    items = list(chains.items()) if isinstance(chains, dict) else [(None, c) for c in chains]
    keys = []
    with _replacing(path) as f:
        _new_root(f)
        for key, chain in items:
            key = _next_key(f) if key is None else _check_key(key, path)
            keys.append(write_chain(f, key, chain, path))
    return keys


def _check_key(key, path):
    key = str(key)
    if not key or "/" in key or key in (".", ".."):
        raise ArchiveError(f"{path}: bad chain key {key!r} (non-empty, no '/')")
    return key


def append(path, chain, key: str | None = None) -> str:
    """Add one chain to the archive at ``path`` (created if missing); returns its key.

    The archive is copied to a temp file, the chain added there, and the copy replaces the
    original only when complete and flushed: chains already in the file are never damaged.
    Cost: one copy of the file per append.
    """
    path = Path(path)
    check_archivable(chain, f"{path}: new chain")
    if not path.exists():
        return write(path, {key: chain} if key is not None else [chain])[0]
    with open(path):   # validates: an HDF5 file, ours, schema we read
        pass
    with _replacing(path, copy_from=path) as f:
        key = _next_key(f) if key is None else _check_key(key, path)
        write_chain(f, key, chain, path)
    return key


def delete(path, key: str) -> None:
    """Remove chain ``key`` from the archive (rewrites the file without it, atomically)."""
    path = Path(path)
    with open(path) as reader:
        if key not in reader:
            raise ArchiveError(f"{path}: no chain {key!r} to delete; chains: {_list(reader.keys())}")
        src = reader._file
        with _replacing(path) as f:
            for k, v in src.attrs.items():
                if isinstance(v, bytes):
                    set_str(f.attrs, k, v.decode("utf-8"))
                else:
                    f.attrs[k] = v
            dst = f.create_group("chains")
            for k in src["chains"]:
                if k != key:
                    src.copy(src["chains"][k], dst, name=k)


def _list(keys, n=8):
    keys = list(keys)
    s = ", ".join(keys[:n])
    return (s + f", … ({len(keys)} in all)") if len(keys) > n else (s or "none")


# -- reading -----------------------------------------------------------------------------------
def open(path) -> "ArchiveReader":   # noqa: A001 — archive.open mirrors h5py.File / builtins.open
    """Open an archive for lazy reading (use as a context manager or call ``close()``)."""
    return ArchiveReader(path)


class ArchiveReader:
    """Lazy reader of an archive: ``keys()``, ``info(key)``, ``load(key)``, ``load_layer(key, i)``.

    Nothing but the root attributes is read on open; ``info`` reads a chain's attributes,
    ``load_layer`` one layer's datasets.  ``len(reader)`` is the number of chains, iteration
    yields the keys, ``key in reader`` tests membership.
    """

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.exists():
            raise ArchiveError(f"{self.path}: no such archive file")
        if self.path.is_dir():
            raise ArchiveError(f"{self.path}: is a directory, not an archive file")
        try:
            self._file = h5py.File(self.path, "r")
        except _READ_ERRORS as exc:
            raise ArchiveError(
                f"{self.path}: not a readable HDF5 file (truncated, corrupt or not HDF5 at all): {exc}") from None
        try:
            enc = attr(self._file, "encoding-type")
            if enc != ENCODING:
                raise ArchiveError(
                    f"{self.path}: an HDF5 file but not a chainlab archive (root encoding-type {enc!r}, "
                    f"expected {ENCODING!r})")
            ver = int(self._file.attrs.get("schema_version", -1))
            if ver > SCHEMA_VERSION:
                raise ArchiveError(
                    f"{self.path}: archive schema version {ver} is newer than this chainlab reads "
                    f"(≤ {SCHEMA_VERSION}); upgrade chainlab")
            if ver < 1 or "chains" not in self._file:
                raise ArchiveError(f"{self.path}: damaged chainlab archive (schema version {ver}, "
                                   f"chains group {'present' if 'chains' in self._file else 'missing'})")
        except ArchiveError:
            self._file.close()
            raise
        except _READ_ERRORS as exc:
            self._file.close()
            raise ArchiveError(f"{self.path}: corrupt archive (root metadata unreadable): {exc}") from None

    @contextlib.contextmanager
    def _guard(self, key=None, layer=None, name=None):
        try:
            yield
        except ChainlabError:
            raise
        except _READ_ERRORS as exc:
            where = f"{self.path}"
            if key is not None:
                where += f": chain {key!r}"
            if layer is not None:
                where += f", layer {layer}" + (f" ({name!r})" if name else "")
            raise ArchiveError(f"{where}: corrupt or unreadable: {type(exc).__name__}: {exc}") from exc

    # -- listing ---------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        with self._guard():
            return sorted(self._file["chains"].keys())

    def __len__(self):
        return len(self.keys())

    def __iter__(self):
        return iter(self.keys())

    def __contains__(self, key):
        with self._guard():
            return str(key) in self._file["chains"]

    def _group(self, key):
        key = str(key)
        if key not in self:
            raise ArchiveError(f"{self.path}: no chain {key!r}; chains: {_list(self.keys())}")
        with self._guard(key):
            return self._file["chains"][key]

    def info(self, key) -> dict:
        """The chain's metadata without its matrices: net, fingerprint, input_hash, rule, options, space,
        meta, image, names, layer_rules, shapes, input_shape, n_layers, dtype, logits, predicted, kinds."""
        g = self._group(key)
        with self._guard(key):
            a = {k: attr(g, k) for k in g.attrs}
            meta = json.loads(a["meta"])
            logits = g["logits"][()]
            layers = g["layers"]
            kinds = [attr(layers[n], "kind") for n in sorted(layers.keys())]
            return {
                "key": str(key), "net": a["net"] or None, "fingerprint": a["fingerprint"] or None,
                "input_hash": a["input_hash"], "rule": a["rule"], "space": a["space"],
                "options": json.loads(a["options"]), "meta": meta, "image": meta.get("image"),
                "names": json.loads(a["names"]), "layer_rules": json.loads(a["layer_rules"]),
                "shapes": [tuple(s) for s in json.loads(a["shapes"])],
                "input_shape": tuple(json.loads(a["input_shape"])), "n_layers": int(a["n_layers"]),
                "dtype": a["dtype"], "logits": logits, "predicted": int(np.argmax(logits)) if logits.size else None,
                "kinds": kinds,
            }

    def load_layer(self, key, i: int):
        """Operator M_i of chain ``key`` (reads only that layer)."""
        g = self._group(key)
        with self._guard(key):
            n = int(g.attrs["n_layers"])
        i = int(i)
        if not -n <= i < n:
            raise ArchiveError(f"{self.path}: chain {key!r} has {n} layers; no layer {i}")
        i %= n
        with self._guard(key, i):
            lg = g["layers"][f"{i:04d}"]
            name = attr(lg, "name")
        with self._guard(key, i, name):
            op = read_matrix(lg["matrix"])
            if "bias_relevance" in lg:
                op.bias_relevance = lg["bias_relevance"][()]
            shape = tuple(int(v) for v in lg.attrs["shape"])
            if tuple(op.shape) != shape:
                raise ValueError(f"stored matrix has shape {op.shape}, layer attribute says {shape}")
            kind = attr(lg, "kind")
            if getattr(op, "kind", None) != kind:
                raise ValueError(f"stored matrix is of kind {getattr(op, 'kind', None)!r}, layer says {kind!r}")
            return op

    def load(self, key) -> Chain:
        """The whole chain ``key`` as a :class:`Chain` (bit-exact copy of what was written)."""
        g = self._group(key)
        with self._guard(key):
            fields, n = chain_fields(g)
        ops = [self.load_layer(key, i) for i in range(n)]
        with self._guard(key):
            layers = g["layers"]
            masks = [layers[f"{i:04d}"]["mask"][()] if "mask" in layers[f"{i:04d}"] else None for i in range(n)]
            try:
                return Chain(ops, **fields, masks=masks)
            except ValueError as exc:
                raise ArchiveError(f"{self.path}: chain {key!r}: stored layers do not form a chain: {exc}") from None

    def __getitem__(self, key) -> Chain:
        return self.load(key)

    # -- lifetime ----------------------------------------------------------------------------------
    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<ArchiveReader {self.path} ({len(self) if self._file.id.valid else 'closed'} chains)>"
