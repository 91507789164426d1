"""HDF5 archives of chains: one file, many chains, lazy per-layer reads, atomic writes.

Layout (readable by any HDF5 ≥ 1.10 tool; sparse groups follow anndata's encoding so
``anndata.io.read_elem`` or a few lines of scipy read them)::

    /                           attrs: encoding-type = "chainlab-archive", schema_version = 1,
                                       chainlab_version, next_index
    /chains/<key>/              attrs: net, fingerprint, input_hash, rule, space, linear, dtype, n_layers,
                                       options, meta, names, layer_rules, shapes, input_shape (JSON strings)
        x        (n_input,)  float64      the input, flat
        logits   (n_output,) float64
        layers/<i:04d>/         attrs: kind ("dense" | "sparse" | "block"), name, rule, shape
            matrix              the operator M_i (n_in × n_out), encoded by kind:
                dense   chunked dataset (n_in, n_out), attrs encoding-type "array", encoding-version "0.2.0"
                sparse  group with datasets data (nnz,), indices (nnz,), indptr (n_major + 1,) and attrs
                        encoding-type "csr_matrix" | "csc_matrix", encoding-version "0.1.0", shape (n_in, n_out);
                        CSR: row i holds data[indptr[i]:indptr[i+1]] at columns indices[...];
                        CSC: the same with rows and columns swapped
                block   group, attrs encoding-type "chainlab-block", shape (2 n_in, 2 n_out), with four
                        sub-elements A, B, C, D encoded the same way: M = [[A, B], [C, D]]
            bias_relevance      (n_out,) when the operator reports it

Every dataset is gzip-compressed (with the shuffle filter) and carries a fletcher32 checksum;
the file is written with HDF5 ≥ 1.10 object headers, which checksum the metadata too.  Values,
dtypes (float32/float64) and index dtypes (int32/int64) are stored as they are, so a round trip is
bit-exact.

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
import hashlib
import itertools
import json
import os
import shutil
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .chain import Chain
from .errors import ChainlabError
from .operators import DenseOperator, SparseOperator

__all__ = ["ArchiveError", "ArchiveReader", "SCHEMA_VERSION", "append", "delete", "fingerprint", "input_hash",
           "open", "write"]

SCHEMA_VERSION = 1
ENCODING = "chainlab-archive"
LIBVER = ("v110", "latest")
COMPRESSION = dict(compression="gzip", compression_opts=1, shuffle=True, fletcher32=True)   # level 1: ~3x faster than 4 on sixt-cifar, 4 % larger
_builtin_open = open
_tmp_counter = itertools.count()
# what h5py and the HDF5 library raise on unreadable content
_READ_ERRORS = (OSError, KeyError, ValueError, RuntimeError, TypeError, AttributeError, IndexError)


class ArchiveError(ChainlabError):
    """A chain archive cannot be read or written (names the file and, where known, chain and layer)."""


# -- hashes ------------------------------------------------------------------------------------
def fingerprint(model) -> str:
    """sha256 over a torch model's state dict: every entry's name, dtype, shape and raw bytes, in order.

    Two models with the same architecture and bit-identical parameters and buffers have the same
    fingerprint; any changed weight changes it.  Returned as 'sha256:<hex>'.
    """
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        a = np.ascontiguousarray(t.detach().cpu().numpy())
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return "sha256:" + h.hexdigest()


def input_hash(x, shape=None) -> str:
    """sha256 of an input as float64 bytes (plus its shape): 'sha256:<hex>'."""
    a = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    h = hashlib.sha256()
    h.update(repr(tuple(shape) if shape is not None else a.shape).encode())
    h.update(a.tobytes())
    return "sha256:" + h.hexdigest()


# -- JSON attributes ---------------------------------------------------------------------------
def _plain(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if isinstance(o, Path):
        return str(o)
    return repr(o)


def _dumps(obj) -> str:
    return json.dumps(obj, default=_plain, sort_keys=False)


def _set_str(attrs, name, s: str):
    """A fixed-length UTF-8 string attribute: kept in the (checksummed) object header, not the global heap."""
    b = str(s).encode("utf-8")
    import h5py

    attrs.create(name, np.array(b, dtype=f"S{max(len(b), 1)}"), dtype=h5py.string_dtype("utf-8", max(len(b), 1)))


# -- writing -----------------------------------------------------------------------------------
def _dataset(parent, name, array):
    a = np.ascontiguousarray(array)
    kw = dict(COMPRESSION)
    if a.size == 0:   # a chunked (filtered) dataset of size 0 needs an extendable shape
        kw["maxshape"] = (None,) * a.ndim
    return parent.create_dataset(name, data=a, chunks=True, **kw)


def _write_matrix(parent, name, op, where):
    """Encode operator ``op`` as ``parent[name]`` (dataset or group) by its kind."""
    kind = getattr(op, "kind", None)
    if kind == "block" and hasattr(op, "blocks"):
        (A, B), (C, D) = op.blocks
        g = parent.create_group(name)
        _set_str(g.attrs, "encoding-type", "chainlab-block")
        _set_str(g.attrs, "encoding-version", "0.1.0")
        g.attrs["shape"] = np.asarray(op.shape, dtype=np.int64)
        for nm, blk in zip("ABCD", (A, B, C, D)):
            _write_matrix(g, nm, blk, f"{where}, block {nm}")
            if getattr(blk, "bias_relevance", None) is not None:
                _dataset(g, f"bias_relevance_{nm}", np.asarray(blk.bias_relevance))
        return "block"
    if isinstance(op, DenseOperator) or (kind == "dense" and hasattr(op, "array")):
        arr = np.asarray(op.array)
        d = _dataset(parent, name, arr)
        _set_str(d.attrs, "encoding-type", "array")
        _set_str(d.attrs, "encoding-version", "0.2.0")
        # values are stored row-major; remember a Fortran layout so products on the loaded
        # array take the same BLAS path and give bit-identical results
        if arr.ndim == 2 and arr.flags.f_contiguous and not arr.flags.c_contiguous:
            _set_str(d.attrs, "memory-order", "F")
        return "dense"
    if isinstance(op, SparseOperator) or sp.issparse(op):
        M = op.matrix if isinstance(op, SparseOperator) else op
        if M.format not in ("csr", "csc"):
            M = M.tocsr()
        g = parent.create_group(name)
        _set_str(g.attrs, "encoding-type", f"{M.format}_matrix")
        _set_str(g.attrs, "encoding-version", "0.1.0")
        g.attrs["shape"] = np.asarray(M.shape, dtype=np.int64)
        _dataset(g, "data", M.data)
        _dataset(g, "indices", M.indices)
        _dataset(g, "indptr", M.indptr)
        return "sparse"
    if isinstance(op, np.ndarray):
        return _write_matrix(parent, name, DenseOperator(op), where)
    if kind in ("implicit", "residual") and hasattr(op, "to_sparse"):
        # matrix-free operators are stored as the matrix they apply (their CSC form);
        # they load back as sparse operators, and the group records what they were
        out = _write_matrix(parent, name, SparseOperator(op.to_sparse("csc")), where)
        _set_str(parent[name].attrs, "materialized-from", kind)
        return out
    raise ArchiveError(
        f"{where}: cannot archive an operator of kind {kind!r} ({type(op).__name__}); "
        "archives store dense, sparse, block, implicit and residual operators"
    )


def _check_archivable(chain, where):
    if not isinstance(chain, Chain):
        raise ArchiveError(f"{where}: expected a chainlab Chain, got {type(chain).__name__}")
    if not getattr(chain, "linear", True):
        raise ArchiveError(
            f"{where}: the chain of rule {chain.rule!r} is not linear (chain.linear is False): its backward pass "
            "is not a product of matrices, so it cannot be archived as matrices"
        )


def _write_chain(root, key, chain, path):
    where = f"{path}: chain {key!r}"
    _check_archivable(chain, where)
    chains = root.require_group("chains")
    if key in chains:
        raise ArchiveError(f"{where} already exists in the archive")
    g = chains.create_group(key)
    meta = dict(chain.meta)
    a = g.attrs
    _set_str(a, "net", str(meta.get("net") or meta.get("model") or ""))
    _set_str(a, "fingerprint", str(meta.get("fingerprint") or ""))
    _set_str(a, "input_hash", input_hash(chain.x, chain.input_shape))
    _set_str(a, "rule", str(chain.rule))
    _set_str(a, "space", str(chain.space))
    a["linear"] = True
    _set_str(a, "dtype", np.dtype(getattr(chain[0], "dtype", np.float64)).name if len(chain) else "")
    a["n_layers"] = len(chain)
    _set_str(a, "options", _dumps(chain.options))
    _set_str(a, "meta", _dumps(meta))
    _set_str(a, "names", _dumps(chain.names))
    _set_str(a, "layer_rules", _dumps(chain.layer_rules))
    _set_str(a, "shapes", _dumps([list(s) for s in chain.shapes]))
    _set_str(a, "input_shape", _dumps(list(chain.input_shape)))
    _dataset(g, "x", chain.x)
    _dataset(g, "logits", chain.logits)
    layers = g.create_group("layers")
    for i, op in enumerate(chain):
        name = chain.names[i] if i < len(chain.names) else ""
        lw = f"{where}, layer {i} ({name!r})"
        lg = layers.create_group(f"{i:04d}")
        kind = _write_matrix(lg, "matrix", op, lw)
        _set_str(lg.attrs, "kind", kind)
        _set_str(lg.attrs, "name", str(name))
        _set_str(lg.attrs, "rule", str(chain.layer_rules[i]) if i < len(chain.layer_rules) else "")
        lg.attrs["shape"] = np.asarray(op.shape, dtype=np.int64)
        if getattr(op, "bias_relevance", None) is not None:
            _dataset(lg, "bias_relevance", np.asarray(op.bias_relevance))
    return key


def _new_root(f):
    _set_str(f.attrs, "encoding-type", ENCODING)
    _set_str(f.attrs, "encoding-version", f"{SCHEMA_VERSION}.0.0")
    f.attrs["schema_version"] = SCHEMA_VERSION
    from . import __version__
    _set_str(f.attrs, "chainlab_version", __version__)
    f.attrs["next_index"] = 0
    f.create_group("chains")


def _next_key(f) -> str:
    n = int(f.attrs.get("next_index", 0))
    existing = set(f["chains"].keys())
    while f"{n:06d}" in existing:
        n += 1
    f.attrs["next_index"] = n + 1
    return f"{n:06d}"


def _tmp_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp-{os.getpid()}-{next(_tmp_counter)}")


def _fsync_dir(d: Path):
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _replacing(path: Path, copy_from: Path | None = None):
    """Yield an open h5py.File on a temp file beside ``path``; on success fsync it and os.replace it onto path."""
    import h5py

    tmp = _tmp_path(path)
    try:
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
        with _builtin_open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
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
            keys.append(_write_chain(f, key, chain, path))
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
    _check_archivable(chain, f"{path}: new chain")
    if not path.exists():
        return write(path, {key: chain} if key is not None else [chain])[0]
    with open(path):   # validates: an HDF5 file, ours, schema we read
        pass
    with _replacing(path, copy_from=path) as f:
        key = _next_key(f) if key is None else _check_key(key, path)
        _write_chain(f, key, chain, path)
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
                    _set_str(f.attrs, k, v.decode("utf-8"))
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
        import h5py

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
            enc = self._attr(self._file, "encoding-type")
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

    @staticmethod
    def _attr(obj, name, default=None):
        v = obj.attrs.get(name, default)
        return v.decode() if isinstance(v, bytes) else v

    @contextlib.contextmanager
    def _guard(self, key=None, layer=None, name=None):
        try:
            yield
        except ChainlabError:
            raise
        except _READ_ERRORS + (json.JSONDecodeError,) as exc:
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
            a = {k: self._attr(g, k) for k in g.attrs}
            meta = json.loads(a["meta"])
            logits = g["logits"][()]
            layers = g["layers"]
            kinds = [self._attr(layers[n], "kind") for n in sorted(layers.keys())]
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
            name = self._attr(lg, "name")
        with self._guard(key, i, name):
            op = self._read_matrix(lg["matrix"])
            if "bias_relevance" in lg:
                op.bias_relevance = lg["bias_relevance"][()]
            shape = tuple(int(v) for v in lg.attrs["shape"])
            if tuple(op.shape) != shape:
                raise ValueError(f"stored matrix has shape {op.shape}, layer attribute says {shape}")
            kind = self._attr(lg, "kind")
            if getattr(op, "kind", None) != kind:
                raise ValueError(f"stored matrix is of kind {getattr(op, 'kind', None)!r}, layer says {kind!r}")
            return op

    def _read_matrix(self, node):
        import h5py

        enc = self._attr(node, "encoding-type")
        if isinstance(node, h5py.Dataset):
            if enc != "array":
                raise ValueError(f"dataset {node.name} has encoding-type {enc!r}, expected 'array'")
            arr = node[()]
            if self._attr(node, "memory-order") == "F":
                arr = np.asfortranarray(arr)
            return DenseOperator(arr)
        if enc in ("csr_matrix", "csc_matrix"):
            shape = tuple(int(v) for v in node.attrs["shape"])
            data, indices, indptr = node["data"][()], node["indices"][()], node["indptr"][()]
            cls = sp.csr_matrix if enc == "csr_matrix" else sp.csc_matrix
            major = shape[0] if enc == "csr_matrix" else shape[1]
            if indptr.shape != (major + 1,) or data.shape != indices.shape or indptr[-1] != data.size:
                raise ValueError(f"inconsistent {enc} group {node.name}: shape {shape}, data {data.shape}, "
                                 f"indices {indices.shape}, indptr {indptr.shape}")
            M = cls((data, indices, indptr), shape=shape, copy=False)
            M.indices, M.indptr = indices, indptr   # keep the stored index dtype (scipy may downcast)
            return SparseOperator(M)
        if enc == "chainlab-block":
            try:
                from .blocks import BlockOperator
            except ImportError as exc:
                raise ArchiveError(
                    f"{self.path}: {node.name} is a block operator but chainlab.blocks is not available: {exc}"
                ) from None
            parts = []
            for nm in "ABCD":
                op = self._read_matrix(node[nm])
                if f"bias_relevance_{nm}" in node:
                    op.bias_relevance = node[f"bias_relevance_{nm}"][()]
                parts.append(op)
            return BlockOperator(*parts)
        raise ValueError(f"{node.name}: unknown encoding-type {enc!r}")

    def load(self, key) -> Chain:
        """The whole chain ``key`` as a :class:`Chain` (bit-exact copy of what was written)."""
        g = self._group(key)
        with self._guard(key):
            a = {k: self._attr(g, k) for k in g.attrs}
            n = int(a["n_layers"])
            x, logits = g["x"][()], g["logits"][()]
            names, layer_rules = json.loads(a["names"]), json.loads(a["layer_rules"])
            shapes = [tuple(s) for s in json.loads(a["shapes"])]
            fields = dict(names=names, shapes=shapes, input_shape=tuple(json.loads(a["input_shape"])), x=x,
                          logits=logits, rule=a["rule"], options=json.loads(a["options"]), space=a["space"],
                          layer_rules=layer_rules, meta=json.loads(a["meta"]))
        ops = [self.load_layer(key, i) for i in range(n)]
        with self._guard(key):
            try:
                return Chain(ops, **fields)
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
