"""How chains are encoded in HDF5: operators as datasets/groups, chains as groups with JSON attributes.

Layout of one chain (readable by any HDF5 ≥ 1.10 tool; sparse groups follow anndata's encoding so
``anndata.io.read_elem`` or a few lines of scipy read them)::

    <chain group>               attrs: net, fingerprint, input_hash, rule, space, linear, dtype, n_layers,
                                       options, meta, names, layer_rules, shapes, input_shape, layer_stats
                                       (JSON strings)
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
                (matrix-free operators — implicit, residual — are stored as the CSC matrix they apply,
                attribute ``materialized-from`` = their kind, and load back as sparse operators)
            bias_relevance      (n_out,) when the operator reports it
            mask                (n_out,) float64, ``Chain.masks[i]`` when the chain has one (M_i = L_i diag(mask))

The chain group is the root group of its own file (:func:`chain_file_image`, with root attributes
encoding-type = "chainlab-chain" and key), written with the latest HDF5 format, whose object headers
carry checksums.  Every dataset is gzip-compressed (with the shuffle filter) and carries a fletcher32
checksum; strings are fixed-length attributes kept in the (checksummed) object headers.  Values,
dtypes (float32/float64) and index dtypes (int32/int64) are stored as they are, so a round trip is
bit-exact.

Reading trusts nothing stored (an archive is untrusted input): :func:`check_self_contained` refuses a
file holding anything but hard links (no external or soft links) and datasets whose bytes live in the
file itself (no virtual datasets, no external raw storage) filtered only by deflate, shuffle and
fletcher32; :func:`chain_sizes` derives every layer's (n_in, n_out) from the chain's own metadata
(boundary shapes, input shape and the stored x and logits, which must agree); :func:`read_matrix`
and :func:`read_array` check each dataset's declared shape, dtype, nnz, indptr and index range
against it, and the bytes it claims against what its file can hold (``DEFLATE_MAX_RATIO`` × the
stored bytes) and against the memory available now (:func:`memory_bytes`) — all before anything is
read.  Every attribute is read through a typed accessor (:func:`text_attr`, :func:`json_attr`,
:func:`int_attr`).  Content that fails a check raises :class:`Corrupt`; :func:`is_corruption` says
which exceptions damaged content produces (the reader turns those into an ArchiveError naming file,
chain and layer, and lets every other exception — a bug — propagate).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import resource
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp

from ..chain import Chain
from ..errors import ArchiveError
from ..linalg import BlockOperator, DenseOperator, Operator, SparseOperator, as_operator

__all__ = ["CHAIN_ENCODING", "COMPRESSION", "Corrupt", "DEFLATE_MAX_RATIO", "LIBVER", "input_hash", "write_matrix",
           "read_matrix", "read_array", "write_chain", "chain_file_image", "chain_fields", "chain_sizes",
           "check_archivable", "check_claim", "check_self_contained", "attr", "text_attr", "json_attr", "int_attr",
           "int_vector_attr", "child", "set_str",
           "memory_bytes", "is_corruption"]

LIBVER = ("v110", "latest")
COMPRESSION = dict(compression="gzip", compression_opts=1, shuffle=True, fletcher32=True)   # level 1: ~3x faster than 4 on sixt-cifar, 4 % larger


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


def set_str(attrs, name, s: str):
    """A fixed-length UTF-8 string attribute: kept in the (checksummed) object header, not the global heap."""
    b = str(s).encode("utf-8")
    attrs.create(name, np.array(b, dtype=f"S{max(len(b), 1)}"), dtype=h5py.string_dtype("utf-8", max(len(b), 1)))


def _dataset(parent, name, array):
    a = np.ascontiguousarray(array)
    kw = dict(COMPRESSION)
    if a.size == 0:   # a chunked (filtered) dataset of size 0 needs an extendable shape
        kw["maxshape"] = (None,) * a.ndim
    return parent.create_dataset(name, data=a, chunks=True, **kw)


def write_matrix(parent, name, op, where):
    """Encode operator ``op`` as ``parent[name]`` (dataset or group); returns the stored kind."""
    if isinstance(op, BlockOperator):
        (A, B), (C, D) = op.blocks
        g = parent.create_group(name)
        set_str(g.attrs, "encoding-type", "chainlab-block")
        set_str(g.attrs, "encoding-version", "0.1.0")
        g.attrs["shape"] = np.asarray(op.shape, dtype=np.int64)
        for nm, blk in zip("ABCD", (A, B, C, D)):
            write_matrix(g, nm, blk, f"{where}, block {nm}")
            if getattr(blk, "bias_relevance", None) is not None:
                _dataset(g, f"bias_relevance_{nm}", np.asarray(blk.bias_relevance))
        return "block"
    if isinstance(op, np.ndarray) or sp.issparse(op):
        op = as_operator(op)
    if not isinstance(op, Operator):
        raise ArchiveError(f"{where}: cannot archive a {type(op).__name__}; archives store chainlab operators")
    M = op.stored()
    if M is None:
        # matrix-free operators (implicit, residual, products, …) are stored as the matrix they apply;
        # they load back as sparse operators, and the group records what they were
        out = write_matrix(parent, name, SparseOperator(op.to_csc()), where)
        set_str(parent[name].attrs, "materialized-from", op.kind)
        return out
    if not sp.issparse(M):
        arr = np.asarray(M)
        d = _dataset(parent, name, arr)
        set_str(d.attrs, "encoding-type", "array")
        set_str(d.attrs, "encoding-version", "0.2.0")
        # values are stored row-major; remember a Fortran layout so products on the loaded
        # array take the same BLAS path and give bit-identical results
        if arr.ndim == 2 and arr.flags.f_contiguous and not arr.flags.c_contiguous:
            set_str(d.attrs, "memory-order", "F")
        return "dense"
    if M.format not in ("csr", "csc"):
        M = M.tocsr()
    g = parent.create_group(name)
    set_str(g.attrs, "encoding-type", f"{M.format}_matrix")
    set_str(g.attrs, "encoding-version", "0.1.0")
    g.attrs["shape"] = np.asarray(M.shape, dtype=np.int64)
    _dataset(g, "data", M.data)
    _dataset(g, "indices", M.indices)
    _dataset(g, "indptr", M.indptr)
    return "sparse"


def check_archivable(chain, where):
    if not isinstance(chain, Chain):
        raise ArchiveError(f"{where}: expected a chainlab Chain, got {type(chain).__name__}")
    if not getattr(chain, "linear", True):
        raise ArchiveError(
            f"{where}: the chain of rule {chain.rule!r} is not linear (chain.linear is False): its backward pass "
            "is not a product of matrices, so it cannot be archived as matrices"
        )


def write_chain(g, chain, where):
    """Encode ``chain`` into the (empty) group ``g``: attributes, x, logits and layers (see the module docstring)."""
    check_archivable(chain, where)
    meta = dict(chain.meta)
    a = g.attrs
    set_str(a, "net", str(meta.get("net") or meta.get("model") or ""))
    set_str(a, "fingerprint", str(meta.get("fingerprint") or ""))
    set_str(a, "input_hash", input_hash(chain.x, chain.input_shape))
    set_str(a, "rule", str(chain.rule))
    set_str(a, "space", str(chain.space))
    a["linear"] = True
    set_str(a, "dtype", np.dtype(getattr(chain[0], "dtype", np.float64)).name if len(chain) else "")
    a["n_layers"] = len(chain)
    set_str(a, "options", _dumps(chain.options))
    set_str(a, "meta", _dumps(meta))
    set_str(a, "names", _dumps(chain.names))
    set_str(a, "layer_rules", _dumps(chain.layer_rules))
    set_str(a, "shapes", _dumps([list(s) for s in chain.shapes]))
    set_str(a, "input_shape", _dumps(list(chain.input_shape)))
    set_str(a, "layer_stats", _dumps(chain.layer_stats))
    _dataset(g, "x", chain.x)
    _dataset(g, "logits", chain.logits)
    layers = g.create_group("layers")
    for i, op in enumerate(chain):
        name = chain.names[i] if i < len(chain.names) else ""
        lw = f"{where}, layer {i} ({name!r})"
        lg = layers.create_group(f"{i:04d}")
        kind = write_matrix(lg, "matrix", op, lw)
        set_str(lg.attrs, "kind", kind)
        set_str(lg.attrs, "name", str(name))
        set_str(lg.attrs, "rule", str(chain.layer_rules[i]) if i < len(chain.layer_rules) else "")
        lg.attrs["shape"] = np.asarray(op.shape, dtype=np.int64)
        if getattr(op, "bias_relevance", None) is not None:
            _dataset(lg, "bias_relevance", np.asarray(op.bias_relevance))
        masks = getattr(chain, "masks", None)
        if masks is not None and masks[i] is not None:
            _dataset(lg, "mask", np.asarray(masks[i], dtype=np.float64))


CHAIN_ENCODING = "chainlab-chain"


def chain_file_image(chain, key: str, where: str) -> bytes:
    """The bytes of one chain file: an HDF5 file (latest format, checksummed) whose root group is the chain,
    with root attributes encoding-type = "chainlab-chain" and key.  Built in memory (HDF5's core driver), so
    the size is known before anything touches the disk and the disk sees only plain writes."""
    check_archivable(chain, where)
    with h5py.File(f"chain-{key}.h5", "w", driver="core", backing_store=False, block_size=1 << 20,
                   libver=LIBVER) as f:
        set_str(f.attrs, "encoding-type", CHAIN_ENCODING)
        set_str(f.attrs, "encoding-version", "1.0.0")
        set_str(f.attrs, "key", key)
        write_chain(f, chain, where)
        f.flush()
        return f.id.get_file_image()


def attr(obj, name, default=None):
    """An attribute as str (decoded) or as stored (for writers and tools; readers use the typed accessors)."""
    v = obj.attrs.get(name, default)
    return v.decode() if isinstance(v, bytes) else v


# -- reading untrusted files ---------------------------------------------------------------------
class Corrupt(ValueError):
    """Stored content that contradicts itself, chainlab's encoding or this machine's limits (the reader turns it
    into an ArchiveError naming the file, the chain and the layer)."""


def _raised_in_h5py(exc) -> bool:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and "h5py" in Path(tb.tb_frame.f_code.co_filename).parts


# the exception types a damaged or crafted file can produce while it is decoded; :func:`is_corruption` narrows them
READ_ERRORS = (OSError, KeyError, ValueError, RuntimeError)


def is_corruption(exc) -> bool:
    """Whether ``exc`` (one of ``READ_ERRORS``) is what damaged or crafted content produces, not a bug in chainlab.

    * OSError: the file system or HDF5 could not read the bytes (truncation, checksum failures, I/O errors);
    * :class:`Corrupt`: chainlab's own checks of the content; ``json.JSONDecodeError`` and
      ``UnicodeDecodeError``: an attribute that is not the JSON / UTF-8 it must be;
    * KeyError, ValueError, RuntimeError raised inside h5py (a missing or unreadable object or attribute,
      a damaged object header).

    Anything else — a TypeError, IndexError, AttributeError anywhere, or a KeyError/ValueError/RuntimeError
    raised by chainlab's own code — is a bug and must propagate (counting it as "corrupt archive" would let
    a reader bug pass the byte-flip tests as a detection).
    """
    if isinstance(exc, (OSError, Corrupt, json.JSONDecodeError, UnicodeDecodeError)):
        return True
    return isinstance(exc, (KeyError, ValueError, RuntimeError)) and _raised_in_h5py(exc)


def _attr_value(obj, name):
    try:
        return obj.attrs.get(name)
    except TypeError as exc:          # h5py: a stored type with no numpy equivalent (bitfield, opaque, …)
        raise Corrupt(f"attribute {name!r} of {obj.name} has a type chainlab does not store ({exc})") from None


def text_attr(obj, name) -> str:
    """A string attribute (fixed-length UTF-8 as :func:`set_str` writes, or variable-length); Corrupt otherwise."""
    v = _attr_value(obj, name)
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v).decode("utf-8")
    if isinstance(v, str):
        return v
    got = "missing" if v is None else f"a {type(v).__name__}"
    raise Corrupt(f"attribute {name!r} of {obj.name} is {got}, expected a string")


def _json(text, where):
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:   # bad JSON, an integer of > 4300 digits, nesting too deep
        raise Corrupt(f"{where} is not valid JSON ({type(exc).__name__}: {str(exc)[:100]})") from None


def json_attr(obj, name, kind):
    """A JSON string attribute whose value is of type ``kind`` (list, dict, …); Corrupt otherwise."""
    v = _json(text_attr(obj, name), f"attribute {name!r} of {obj.name}")
    if not isinstance(v, kind):
        raise Corrupt(f"attribute {name!r} of {obj.name} holds a JSON {type(v).__name__}, expected {kind}")
    return v


def int_attr(obj, name, default=None) -> int:
    """An integer scalar attribute (``default`` if missing); Corrupt otherwise."""
    v = _attr_value(obj, name)
    if v is None and default is not None:
        return default
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v[()]
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return int(v)
    raise Corrupt(f"attribute {name!r} of {obj.name} is {'missing' if v is None else repr(v)[:60]}, "
                  "expected an integer")


def int_vector_attr(obj, name) -> tuple:
    """An integer vector attribute (e.g. a shape) as a tuple; Corrupt otherwise."""
    v = _attr_value(obj, name)
    a = np.asarray(v) if v is not None else None
    if a is None or a.dtype.kind not in "iu" or a.ndim > 1:
        raise Corrupt(f"attribute {name!r} of {obj.name} is {'missing' if v is None else repr(v)[:60]}, "
                      "expected a vector of integers")
    return tuple(int(x) for x in a.reshape(-1))


def child(parent, name, kind):
    """``parent[name]`` if it is a ``kind`` (h5py.Group or h5py.Dataset); Corrupt if it is missing or another kind."""
    obj = parent.get(name)
    if not isinstance(obj, kind):
        got = "missing" if obj is None else f"a {type(obj).__name__}"
        raise Corrupt(f"{parent.name.rstrip('/')}/{name} is {got}, expected a {kind.__name__}")
    return obj


_FILTERS = {h5py.h5z.FILTER_DEFLATE: "deflate", h5py.h5z.FILTER_SHUFFLE: "shuffle",
            h5py.h5z.FILTER_FLETCHER32: "fletcher32"}     # the filters chainlab writes (COMPRESSION)
_LAYOUTS = {h5py.h5d.COMPACT, h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED}
_MAX_OBJECTS = 100_000        # far beyond any chain file (a few objects per layer)


def _check_dataset_storage(ds):
    """The bytes of ``ds`` live in its own file (no virtual layout, no external raw files) and pass only through
    chainlab's filters, each at most once (so DEFLATE_MAX_RATIO bounds what they expand to)."""
    plist = ds.id.get_create_plist()
    if plist.get_layout() not in _LAYOUTS:
        raise Corrupt(f"dataset {ds.name} is a virtual dataset (its values would be read from other files); "
                      "chainlab archives hold their values themselves")
    if plist.get_external_count():
        raise Corrupt(f"dataset {ds.name} keeps its values in external file(s) "
                      f"({plist.get_external(0)[0].decode(errors='replace')!r}, …); chainlab archives hold their "
                      "values themselves")
    codes = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    if any(c not in _FILTERS for c in codes) or len(set(codes)) != len(codes):
        raise Corrupt(f"dataset {ds.name} is filtered by {codes} (filter ids); chainlab writes only "
                      f"{', '.join(_FILTERS.values())}, each once")


def link_kind(link) -> str:
    """'a hard link', 'an external link', 'a soft link' or 'a user-defined link'."""
    return {h5py.HardLink: "a hard link", h5py.ExternalLink: "an external link",
            h5py.SoftLink: "a soft link"}.get(type(link), "a user-defined link")


def check_self_contained(root, external=None) -> int:
    """Walk every object of the HDF5 group ``root`` reachable by hard links: every link must be a hard link and
    every dataset must keep its bytes in the file (:func:`_check_dataset_storage`); Corrupt otherwise.

    ``external(group, name, link)``: called for each link that is not a hard link; when given, it decides (and
    raises) — the index uses it for its ``chains/<key>`` external links.  Soft links are refused too: chainlab
    never writes them, and a path that resolves elsewhere is a path the reader would follow.  Returns the number
    of objects visited."""
    groups, datasets = [root], []

    def visit(name, obj):
        if len(groups) + len(datasets) > _MAX_OBJECTS:
            raise Corrupt(f"{root.file.filename}: more than {_MAX_OBJECTS} objects; not a chainlab file")
        if isinstance(obj, h5py.Group):
            groups.append(obj)
        elif isinstance(obj, h5py.Dataset):
            datasets.append(obj)
        else:
            raise Corrupt(f"{obj.name} is a {type(obj).__name__}; chainlab files hold only groups and datasets")

    root.visititems(visit)            # HDF5 visits each object once and follows hard links only
    for g in groups:
        for name in g:
            link = g.get(name, getlink=True)
            if isinstance(link, h5py.HardLink):
                continue
            if external is not None:
                external(g, name, link)
                continue
            target = (f" → {link.filename}:{link.path}" if isinstance(link, h5py.ExternalLink) else
                      f" → {link.path}" if isinstance(link, h5py.SoftLink) else "")
            raise Corrupt(f"{g.name.rstrip('/')}/{name} is {link_kind(link)}{target}; chainlab files hold "
                          "only hard links (an archive is data, never paths to follow)")
    for ds in datasets:
        _check_dataset_storage(ds)
    return len(groups) + len(datasets)


# Deflate (RFC 1951) cannot expand its input more than 1032:1: the longest match it can code is 258 bytes and
# the shortest code of a match takes 2 bits (258 × 8 / 2 = 1032; zlib's own FAQ states the same limit).  Shuffle
# permutes bytes and fletcher32 adds 4 bytes per chunk; chainlab allows no other filter and each filter once
# (_check_dataset_storage), so no honest dataset decodes to more than 1032 × the bytes its file holds for it.  A
# claim beyond that is a decompression bomb (or a dataset whose chunks were never written: HDF5 would invent
# its fill value) and is refused before anything is allocated.  (zlib level 9 on zeros reaches ~1027:1.)
DEFLATE_MAX_RATIO = 1032


def _proc_kb(path, field) -> int | None:
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _read_int(path) -> int | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@functools.lru_cache(maxsize=1)
def _cgroup_limit():
    """(memory limit, usage file, stat file, stat key of the inactive file cache) of this process's cgroup (v2, else
    v1), or None without a limit.  Looked up once per process: a cgroup's limit does not change under it."""
    rel = ""
    try:
        with open("/proc/self/cgroup") as fh:
            for line in fh:
                parts = line.strip().split(":", 2)
                if len(parts) == 3 and parts[0] == "0":
                    rel = parts[2].lstrip("/")
    except OSError:
        pass
    for base, limit, usage, stat_key in ((Path("/sys/fs/cgroup") / rel, "memory.max", "memory.current",
                                          "inactive_file"),
                                         (Path("/sys/fs/cgroup"), "memory.max", "memory.current", "inactive_file"),
                                         (Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes",
                                          "memory.usage_in_bytes", "total_inactive_file")):
        lim = _read_int(base / limit)
        if lim is None or not (base / usage).exists():
            continue
        return None if lim >= 1 << 60 else (lim, base / usage, base / "memory.stat", stat_key)
    return None


def _cgroup_headroom() -> int | None:
    """memory limit − (usage − inactive file cache) of this process's cgroup, None without a limit."""
    found = _cgroup_limit()
    if found is None:
        return None
    lim, usage, stat_file, stat_key = found
    used = _read_int(usage)
    if used is None:
        return None
    cache = 0
    try:
        with open(stat_file) as fh:
            for line in fh:
                k, _, v = line.partition(" ")
                if k == stat_key and v.strip().isdigit():
                    cache = int(v)
    except OSError:
        pass
    return max(lim - max(used - cache, 0), 0)


def memory_bytes() -> int:
    """The bytes one decoded array may take now: the least of the memory the kernel reports available
    (``MemAvailable``), the headroom under this process's address-space and data limits (RLIMIT_AS − VmSize,
    RLIMIT_DATA − VmData) and under its cgroup's memory limit — not the machine's total RAM, which a loaded
    machine or a memory-limited process cannot give.  Physical memory where none of these can be read."""
    try:
        phys = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        phys = 1 << 62
    bounds = [phys]
    avail = _proc_kb("/proc/meminfo", "MemAvailable")
    if avail is not None:
        bounds.append(avail)
    for res, field in ((resource.RLIMIT_AS, "VmSize"), (resource.RLIMIT_DATA, "VmData")):
        soft = resource.getrlimit(res)[0]
        if soft != resource.RLIM_INFINITY:
            bounds.append(max(soft - (_proc_kb("/proc/self/status", field) or 0), 0))
    cg = _cgroup_headroom()
    if cg is not None:
        bounds.append(cg)
    return min(bounds)


def _numel(shape) -> int:
    n = 1
    for v in shape:
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise Corrupt(f"bad dimension {v!r} in shape {shape!r}")
        n *= v
    return n


def _stored_dtype(ds) -> np.dtype:
    try:
        return ds.dtype
    except TypeError as exc:          # h5py: a stored type with no numpy equivalent
        raise Corrupt(f"dataset {ds.name} has a type chainlab does not store ({exc})") from None


def _check_array(ds, shape, what, kinds="fiu"):
    """A stored dataset before reading: its declared shape and dtype are as expected, and the bytes it claims fit
    both in what its file can hold (DEFLATE_MAX_RATIO × its stored bytes) and in the memory available now."""
    if not isinstance(ds, h5py.Dataset):
        raise Corrupt(f"{what} {getattr(ds, 'name', ds)} is a {type(ds).__name__}, expected a dataset")
    if ds.shape != tuple(shape):
        raise Corrupt(f"{what} {ds.name} is stored with shape {ds.shape}, the chain's metadata says {tuple(shape)}")
    dt = _stored_dtype(ds)
    if dt.kind not in kinds or dt.itemsize not in (4, 8) or not dt.isnative:
        raise Corrupt(f"{what} {ds.name} has dtype {dt}, expected native {'floats' if kinds == 'f' else 'numbers'} "
                      "of 4 or 8 bytes")
    check_claim(ds, int(np.prod(shape, dtype=np.float64)) * dt.itemsize, what)


def check_claim(ds, need: int, what):
    """``need`` bytes claimed by dataset ``ds`` fit in what its file can hold (DEFLATE_MAX_RATIO × the bytes stored
    for it) and in the memory available now; Corrupt otherwise (before anything is read)."""
    if need == 0:
        return
    _check_dataset_storage(ds)
    stored = ds.id.get_storage_size()
    if need > DEFLATE_MAX_RATIO * stored:
        raise Corrupt(f"{what} {ds.name} claims {_size(need)} but its file holds {_size(stored)} of it, and deflate "
                      f"expands at most {DEFLATE_MAX_RATIO}:1: the file can hold at most "
                      f"{_size(DEFLATE_MAX_RATIO * stored)} (a decompression bomb, or chunks never written)")
    avail = memory_bytes()
    if need > avail:
        raise Corrupt(f"{what} {ds.name} claims {_size(need)}, more than this machine's memory available now "
                      f"({_size(avail)})")


def _size(n) -> str:
    return f"{n / 1e9:.3g} GB" if n >= 1e8 else f"{n / 1e6:.3g} MB" if n >= 1e5 else f"{n} bytes"


def read_array(ds, shape, what, kinds="f") -> np.ndarray:
    """The values of dataset ``ds`` after :func:`_check_array` (shape, dtype, claimed bytes) — never before."""
    _check_array(ds, shape, what, kinds)
    return ds[()]


def chain_sizes(g) -> tuple[int, list[tuple[int, int]]]:
    """(n_layers, [(n_in, n_out) of every layer]) from the chain's own metadata — the boundary shapes, the input
    shape and the stored x and logits must agree — read without touching any layer (Corrupt otherwise)."""
    n = int_attr(g, "n_layers")
    shapes = [tuple(s) if isinstance(s, list) else s for s in json_attr(g, "shapes", list)]
    input_shape = json_attr(g, "input_shape", list)
    if n < 0 or len(shapes) != n + 1:
        raise Corrupt(f"chain metadata: {n} layers but {len(shapes)} boundary shapes (expected {n + 1})")
    for s in shapes:
        if not isinstance(s, tuple):
            raise Corrupt(f"chain metadata: boundary shape {s!r} is not a list")
    sizes = [_numel(s) for s in shapes]
    n_x = _numel(input_shape)
    x, logits = child(g, "x", h5py.Dataset), child(g, "logits", h5py.Dataset)
    if x.shape != (n_x,) or (n and sizes[0] != n_x):
        raise Corrupt(f"chain metadata: input shape {tuple(input_shape)}, first boundary {shapes[0] if n else None}, "
                      f"stored x {x.shape} do not agree")
    if n and logits.shape != (sizes[-1],):
        raise Corrupt(f"chain metadata: last boundary {shapes[-1]} but {logits.shape} stored logits")
    return n, [(sizes[i], sizes[i + 1]) for i in range(n)]


def _str_list(g, name):
    v = json_attr(g, name, list)
    if not all(isinstance(s, str) for s in v):
        raise Corrupt(f"attribute {name!r} of {g.name} must be a JSON list of strings")
    return v


def chain_fields(g) -> tuple[dict, int]:
    """(the keyword fields of Chain except the operators, n_layers) of a chain group, every one type-checked."""
    n, _ = chain_sizes(g)
    shapes = [tuple(s) for s in json_attr(g, "shapes", list)]
    input_shape = tuple(json_attr(g, "input_shape", list))
    layer_stats = None
    if "layer_stats" in g.attrs:
        layer_stats = _json(text_attr(g, "layer_stats"), f"attribute 'layer_stats' of {g.name}")
        if layer_stats is not None and not (isinstance(layer_stats, list)
                                            and all(isinstance(s, dict) for s in layer_stats)):
            raise Corrupt(f"attribute 'layer_stats' of {g.name} must be a JSON list of objects")
    logits_n = child(g, "logits", h5py.Dataset).shape
    fields = dict(names=_str_list(g, "names"), shapes=shapes, input_shape=input_shape,
                  x=read_array(g["x"], (_numel(input_shape),), "x"),
                  logits=read_array(g["logits"], logits_n, "logits"),
                  rule=text_attr(g, "rule"), options=json_attr(g, "options", dict), space=text_attr(g, "space"),
                  layer_rules=_str_list(g, "layer_rules"), meta=json_attr(g, "meta", dict), layer_stats=layer_stats)
    return fields, n


def read_matrix(node, shape):
    """Decode the dataset or group written by :func:`write_matrix` into an operator of shape ``shape``
    (n_in, n_out) — the chain's own metadata — checking every declared size before anything is read
    (Corrupt if inconsistent)."""
    shape = tuple(int(v) for v in shape)
    if isinstance(node, h5py.Dataset):
        enc = text_attr(node, "encoding-type")
        if enc != "array":
            raise Corrupt(f"dataset {node.name} has encoding-type {enc!r}, expected 'array'")
        arr = read_array(node, shape, "dense matrix")
        if "memory-order" in node.attrs and text_attr(node, "memory-order") == "F":
            arr = np.asfortranarray(arr)
        return DenseOperator(arr)
    if not isinstance(node, h5py.Group):
        raise Corrupt(f"{node.name} is a {type(node).__name__}, expected a matrix (dataset or group)")
    enc = text_attr(node, "encoding-type")
    if enc in ("csr_matrix", "csc_matrix"):
        stored = int_vector_attr(node, "shape")
        if stored != shape:
            raise Corrupt(f"sparse group {node.name} claims shape {stored}, the chain's metadata says {shape}")
        major, minor = (shape[0], shape[1]) if enc == "csr_matrix" else (shape[1], shape[0])
        d, ix, ip = (child(node, k, h5py.Dataset) for k in ("data", "indices", "indptr"))
        _check_array(ip, (major + 1,), "indptr", kinds="i")
        nnz = d.shape[0] if d.ndim == 1 else -1
        if nnz < 0 or nnz > shape[0] * shape[1]:
            raise Corrupt(f"sparse group {node.name}: {d.shape} stored values for a {shape} matrix")
        _check_array(d, (nnz,), "data", kinds="f")
        _check_array(ix, (nnz,), "indices", kinds="i")
        indptr = ip[()]
        if indptr[0] != 0 or indptr[-1] != nnz or np.any(np.diff(indptr) < 0):
            raise Corrupt(f"inconsistent {enc} group {node.name}: indptr does not run from 0 to nnz = {nnz}")
        indices = ix[()]
        if nnz and (indices.min() < 0 or indices.max() >= minor):
            raise Corrupt(f"inconsistent {enc} group {node.name}: indices outside 0..{minor - 1}")
        data = d[()]
        cls = sp.csr_matrix if enc == "csr_matrix" else sp.csc_matrix
        M = cls((data, indices, indptr), shape=shape, copy=False)
        M.indices, M.indptr = indices, indptr   # keep the stored index dtype (scipy may downcast)
        return SparseOperator(M)
    if enc == "chainlab-block":
        stored = int_vector_attr(node, "shape")
        if stored != shape or shape[0] % 2 or shape[1] % 2:
            raise Corrupt(f"block group {node.name} claims shape {stored}, the chain's metadata says {shape}")
        half = (shape[0] // 2, shape[1] // 2)
        parts = []
        for nm in "ABCD":
            if nm not in node:
                raise Corrupt(f"block group {node.name} has no block {nm}")
            op = read_matrix(node[nm], half)
            if f"bias_relevance_{nm}" in node:
                op.bias_relevance = read_array(node[f"bias_relevance_{nm}"], (half[1],), "bias relevance")
            parts.append(op)
        return BlockOperator(*parts)
    raise Corrupt(f"{node.name}: unknown encoding-type {enc!r}")
