"""Chain archives on disk: an HDF5 index (the one entry point) plus one HDF5 file per chain.

Layout of an archive ``a.h5`` (schema version 2)::

    a.h5                         the index, HDF5 (latest format: checksummed superblock and object headers)
        attrs: encoding-type = "chainlab-archive", encoding-version = "2.0.0", schema_version = 2,
               chainlab_version, next_index, chains_dir = "a.h5.chains"
        chains/<key>             HDF5 external link → ("a.h5.chains/<file>", "/"): plain h5py follows it,
                                 ``h5py.File("a.h5")["chains/000003/layers/0000/matrix"]`` reads a layer
        catalog                  (n,) compound dataset key, file, size (fletcher32-checksummed): the
                                 truth the reader checks the links and the chain files against
    a.h5.chains/<key>-<token>.h5 one chain per file; its root group is the chain (encoded as
                                 :mod:`.encoding` describes) with attrs encoding-type = "chainlab-chain", key
    a.h5.lock                    the writers' lock (:mod:`.lock`); kept between runs

Why this design.  An append writes only the new chain's file plus a new index (one external link and
one catalog row per chain, ~100 bytes each: 36 kB for 360 chains), never the chains already there, so
its cost is O(new chain) in bytes written.  The index is rewritten, not edited in place, because HDF5
has no journal: a file modified in place (``r+``) and killed mid-write can be left unreadable, while
a new file renamed over the old one cannot.

Crash safety.  Every file is built in memory (HDF5's core driver), written to a temp name
``<name>.tmp-<pid>-<n>`` beside its target, fsynced, renamed onto the target and the directory
fsynced (:func:`chainlab.files.write_bytes`).  An append first lands the chain file, then replaces the
index: killed before the index rename, the archive is the previous one (plus an unreferenced file
that the next writer removes); after it, the new chain is in.  Either way no chain already in the
archive is touched.  Because the disk sees only plain ``write`` calls, a full disk (ENOSPC) or a file
size limit (EFBIG) is an :class:`ArchiveError` with the temp file removed and the archive unchanged,
and the exact size of each file is known before writing: a chain that does not fit in the free
space is refused up front (:func:`check_space` does the same for a whole run's estimate).

Writers.  :class:`Writer` (``archive.writer(path)``) holds the OS lock of :mod:`.lock` while it
changes the archive, so concurrent appenders from several processes all land (each waits for the
other, or fails after a timeout with a message naming the holder).  On taking the lock it removes
temp files of dead writers and chain files no index refers to.  ``replace=True`` builds a new
archive beside the old one and switches the index only when it is complete (``write``,
``--overwrite``): until then readers see the old archive, and a failed or killed run leaves it as
it was.  :func:`append`, :func:`write`, :func:`delete` are one-call writers.

Readers take no lock: the index they open is always complete (it is only ever renamed into
place).  A chain deleted or overwritten by a writer after the reader opened the index is reported as
missing.  A truncated, corrupt (checksum failure), foreign, inconsistent (a link, catalog row, file
size or chain key that disagree; a layer whose stored size differs from the chain's own metadata)
or newer-schema archive raises :class:`ArchiveError` naming the file and, where known, the chain and
the layer — before anything of the claimed size is allocated.  Schema-1 archives (all chains inside
one file) are still read; the first write to one converts it to this layout.
"""
from __future__ import annotations

import contextlib
import errno
import json
import re
import secrets
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np

from ..chain import Chain
from ..errors import ArchiveError, ChainlabError
from ..files import free_bytes, fsync_dir, stale_temps, stale_temps_in, write_bytes
from ..version import __version__
from .encoding import (CHAIN_ENCODING, LIBVER, attr, chain_fields, chain_file_image, chain_sizes,
                       check_archivable, read_matrix, set_str)
from .lock import ArchiveLock

__all__ = ["ArchiveReader", "SCHEMA_VERSION", "Writer", "append", "check_space", "delete", "open", "write",
           "writer"]

SCHEMA_VERSION = 2
ENCODING = "chainlab-archive"
INDEX_ROW_BYTES = 160           # upper bound of the index bytes per chain (link + catalog row), for space checks
SPACE_MARGIN = 1 << 20          # bytes kept free beyond what a write needs
# what h5py, the HDF5 library and the decoding raise on unreadable or inconsistent content
_READ_ERRORS = (OSError, KeyError, ValueError, RuntimeError, IndexError, TypeError, json.JSONDecodeError)
_FILE_NAME = re.compile(r"[^/\\]+\.chains/[A-Za-z0-9_][A-Za-z0-9_.-]*\.h5")
_KEEP_OPEN = 8                  # chain files a reader keeps open


def _list(keys, n=8):
    keys = list(keys)
    s = ", ".join(keys[:n])
    return (s + f", … ({len(keys)} in all)") if len(keys) > n else (s or "none")


def _check_key(key, path):
    key = str(key)
    if not key or "/" in key or key in (".", "..") or len(key) > 200:
        raise ArchiveError(f"{path}: bad chain key {key!r} (non-empty, at most 200 characters, no '/')")
    return key


def _mb(n) -> str:
    return f"{n / 1e6:.1f} MB"


def check_space(path, nbytes: int, what: str) -> None:
    """Raise ArchiveError unless ``nbytes`` (plus a 1 MB margin) fit in the free space beside archive ``path``."""
    path = Path(path)
    free = free_bytes(path.parent)
    if nbytes + SPACE_MARGIN > free:
        raise ArchiveError(f"{path}: not enough disk space for {what}: it needs about {_mb(nbytes)}, "
                           f"{_mb(free)} are free on the file system of {path.parent}")


def _os_error(path, exc, what):
    name = errno.errorcode.get(exc.errno, "") if exc.errno else ""
    reason = exc.strerror or str(exc)
    return ArchiveError(f"{path}: cannot write {what}: {reason}{f' ({name})' if name else ''}; "
                        "the archive is unchanged")


# -- index files -----------------------------------------------------------------------------------
def _index_image(entries: dict, next_index: int, chains_dir: str) -> bytes:
    """The bytes of an index file listing ``entries`` (key → (file, size)), see the module docstring."""
    with h5py.File("index.h5", "w", driver="core", backing_store=False, libver=LIBVER) as f:
        set_str(f.attrs, "encoding-type", ENCODING)
        set_str(f.attrs, "encoding-version", f"{SCHEMA_VERSION}.0.0")
        f.attrs["schema_version"] = SCHEMA_VERSION
        set_str(f.attrs, "chainlab_version", __version__)
        f.attrs["next_index"] = int(next_index)
        set_str(f.attrs, "chains_dir", chains_dir)
        g = f.create_group("chains")
        for key, (file, _) in entries.items():
            g[key] = h5py.ExternalLink(file, "/")
        kl = max([len(k.encode()) for k in entries] + [1])
        fl = max([len(v[0].encode()) for v in entries.values()] + [1])
        rows = np.array([(k.encode(), v[0].encode(), v[1]) for k, v in entries.items()],
                        dtype=[("key", f"S{kl}"), ("file", f"S{fl}"), ("size", "<i8")])
        f.create_dataset("catalog", data=rows, chunks=(max(len(rows), 1),), maxshape=(None,), fletcher32=True)
        f.flush()
        return f.id.get_file_image()


def _read_index(f, path):
    """(entries key → (file, size), next_index, chains_dir) of an open schema-2 index, checked: catalog rows,
    links and file names agree (ValueError / KeyError otherwise)."""
    cat = f["catalog"][()]
    entries = OrderedDict()
    for row in cat:
        key, file, size = row["key"].decode(), row["file"].decode(), int(row["size"])
        if key in entries or not _FILE_NAME.fullmatch(file) or size <= 0:
            raise ValueError(f"bad catalog row {key!r} → {file!r} ({size} bytes)")
        entries[key] = (file, size)
    links = set(f["chains"].keys())
    if links != set(entries):
        raise ValueError(f"the chains group ({len(links)} links) and the catalog ({len(entries)} rows) disagree: "
                         f"{_list(sorted(links ^ set(entries)))}")
    return entries, int(f.attrs["next_index"]), attr(f, "chains_dir") or f"{path.name}.chains"


class _Index:
    """An open index file: validated root attributes, schema version, and (schema 2) the entries."""

    def __init__(self, path: Path):
        self.path = path
        if not path.exists():
            raise ArchiveError(f"{path}: no such archive file")
        if path.is_dir():
            raise ArchiveError(f"{path}: is a directory, not an archive file")
        try:
            self.file = h5py.File(path, "r")
        except _READ_ERRORS as exc:
            raise ArchiveError(
                f"{path}: not a readable HDF5 file (truncated, corrupt or not HDF5 at all): {exc}") from None
        try:
            enc = attr(self.file, "encoding-type")
            if enc != ENCODING:
                raise ArchiveError(f"{path}: an HDF5 file but not a chainlab archive (root encoding-type {enc!r}, "
                                   f"expected {ENCODING!r})")
            ver = int(self.file.attrs.get("schema_version", -1))
            if ver > SCHEMA_VERSION:
                raise ArchiveError(f"{path}: archive schema version {ver} is newer than this chainlab reads "
                                   f"(≤ {SCHEMA_VERSION}); upgrade chainlab")
            if ver < 1 or "chains" not in self.file or (ver >= 2 and "catalog" not in self.file):
                raise ArchiveError(f"{path}: damaged chainlab archive (schema version {ver}, chains group "
                                   f"{'present' if 'chains' in self.file else 'missing'})")
            self.version = ver
            if ver == 1:
                self.entries = None
                self.next_index = int(self.file.attrs.get("next_index", 0))
                self.chains_dir = f"{path.name}.chains"
            else:
                self.entries, self.next_index, self.chains_dir = _read_index(self.file, path)
        except ArchiveError:
            self.file.close()
            raise
        except _READ_ERRORS as exc:
            self.file.close()
            raise ArchiveError(f"{path}: corrupt archive index (root metadata or catalog unreadable): "
                               f"{type(exc).__name__}: {exc}") from None

    def close(self):
        self.file.close()


# -- reading ---------------------------------------------------------------------------------------
def open(path) -> "ArchiveReader":   # noqa: A001 — archive.open mirrors h5py.File / builtins.open
    """Open an archive for lazy reading (use as a context manager or call ``close()``)."""
    return ArchiveReader(path)


class ArchiveReader:
    """Lazy reader of an archive: ``keys()``, ``info(key)``, ``load(key)``, ``load_layer(key, i)``.

    Opening reads the index only; ``info`` reads a chain's attributes, ``load_layer`` one layer's
    datasets (a few chain files stay open between calls).  ``len(reader)`` is the number of chains,
    iteration yields the keys, ``key in reader`` tests membership.
    """

    def __init__(self, path, *, _entries=None):
        self.path = Path(path)
        self._open = OrderedDict()          # key -> open h5py.File of its chain (schema 2)
        self._sizes = {}                    # key -> (n_layers, [(n_in, n_out)])
        if _entries is not None:            # a writer's view (entries not yet in an index)
            self._index, self.version, self._entries = None, SCHEMA_VERSION, _entries
            return
        self._index = _Index(self.path)
        self.version = self._index.version
        self._entries = self._index.entries

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
        if self._entries is not None:
            return sorted(self._entries)
        with self._guard():
            return sorted(self._index.file["chains"].keys())

    def __len__(self):
        return len(self.keys())

    def __iter__(self):
        return iter(self.keys())

    def __contains__(self, key):
        if self._entries is not None:
            return str(key) in self._entries
        with self._guard():
            return str(key) in self._index.file["chains"]

    def chain_file(self, key) -> Path | None:
        """The file holding chain ``key`` (None for a schema-1 archive, where it is the index itself)."""
        if self._entries is None:
            return None
        return self.path.parent / self._entries[str(key)][0]

    def _group(self, key):
        key = str(key)
        if key not in self:
            raise ArchiveError(f"{self.path}: no chain {key!r}; chains: {_list(self.keys())}")
        if self._entries is None:
            with self._guard(key):
                return self._index.file["chains"][key]
        if key in self._open:
            self._open.move_to_end(key)
            return self._open[key]["/"]
        file, size = self._entries[key]
        p = self.path.parent / file
        try:
            actual = p.stat().st_size
        except FileNotFoundError:
            raise ArchiveError(f"{self.path}: chain {key!r}: its file {p} is missing (deleted, or the archive "
                               "was changed by another process after this reader opened it)") from None
        if actual != size:
            raise ArchiveError(f"{self.path}: chain {key!r}: its file {p} has {actual} bytes, the index says {size} "
                               "(truncated or replaced)")
        with self._guard(key):
            try:
                f = h5py.File(p, "r")
            except _READ_ERRORS as exc:
                raise ArchiveError(f"{self.path}: chain {key!r}: its file {p} is not readable HDF5 (corrupt): "
                                   f"{exc}") from None
            try:
                if attr(f, "encoding-type") != CHAIN_ENCODING or attr(f, "key") != key:
                    raise ArchiveError(f"{self.path}: chain {key!r}: its file {p} holds chain "
                                       f"{attr(f, 'key')!r} of encoding {attr(f, 'encoding-type')!r}, not this one")
            except BaseException:
                f.close()
                raise
        self._open[key] = f
        while len(self._open) > _KEEP_OPEN:
            self._open.popitem(last=False)[1].close()
        return f["/"]

    def _layer_sizes(self, key, g):
        if key not in self._sizes:
            with self._guard(key):
                self._sizes[key] = chain_sizes(g)
        return self._sizes[key]

    def info(self, key) -> dict:
        """The chain's metadata without its matrices: net, fingerprint, input_hash, rule, options, space,
        meta, image, names, layer_rules, shapes, input_shape, n_layers, dtype, logits, predicted, kinds."""
        key = str(key)
        g = self._group(key)
        n, _ = self._layer_sizes(key, g)
        with self._guard(key):
            a = {k: attr(g, k) for k in g.attrs}
            meta = json.loads(a["meta"])
            logits = g["logits"][()]
            layers = g["layers"]
            kinds = [attr(layers[f"{i:04d}"], "kind") for i in range(n)]
            return {
                "key": key, "net": a["net"] or None, "fingerprint": a["fingerprint"] or None,
                "input_hash": a["input_hash"], "rule": a["rule"], "space": a["space"],
                "options": json.loads(a["options"]), "meta": meta, "image": meta.get("image"),
                "names": json.loads(a["names"]), "layer_rules": json.loads(a["layer_rules"]),
                "shapes": [tuple(s) for s in json.loads(a["shapes"])],
                "input_shape": tuple(json.loads(a["input_shape"])), "n_layers": n,
                "dtype": a["dtype"], "logits": logits, "predicted": int(np.argmax(logits)) if logits.size else None,
                "kinds": kinds,
            }

    def load_layer(self, key, i: int):
        """Operator M_i of chain ``key`` (reads only that layer; its sizes are checked against the chain's metadata)."""
        key = str(key)
        g = self._group(key)
        n, sizes = self._layer_sizes(key, g)
        i = int(i)
        if not -n <= i < n:
            raise ArchiveError(f"{self.path}: chain {key!r} has {n} layers; no layer {i}")
        i %= n
        with self._guard(key, i):
            lg = g["layers"][f"{i:04d}"]
            name = attr(lg, "name")
        with self._guard(key, i, name):
            kind = attr(lg, "kind")
            want = sizes[i] if kind != "block" else (2 * sizes[i][0], 2 * sizes[i][1])
            shape = tuple(int(v) for v in lg.attrs["shape"])
            if shape != want:
                raise ValueError(f"layer attribute says shape {shape}, the chain's metadata {want}")
            op = read_matrix(lg["matrix"], want)
            if "bias_relevance" in lg:
                br = lg["bias_relevance"]
                if br.shape != (want[1],):
                    raise ValueError(f"bias relevance of shape {br.shape}, expected {(want[1],)}")
                op.bias_relevance = br[()]
            if getattr(op, "kind", None) != kind:
                raise ValueError(f"stored matrix is of kind {getattr(op, 'kind', None)!r}, layer says {kind!r}")
            return op

    def load(self, key) -> Chain:
        """The whole chain ``key`` as a :class:`Chain` (bit-exact copy of what was written)."""
        key = str(key)
        g = self._group(key)
        self._layer_sizes(key, g)
        with self._guard(key):
            fields, n = chain_fields(g)
        ops = [self.load_layer(key, i) for i in range(n)]
        masks = []
        for i in range(n):
            with self._guard(key, i):
                lg = g["layers"][f"{i:04d}"]
                if "mask" not in lg:
                    masks.append(None)
                    continue
                if lg["mask"].shape != (ops[i].shape[1],):
                    raise ValueError(f"mask of shape {lg['mask'].shape}, expected {(ops[i].shape[1],)}")
                masks.append(lg["mask"][()])
        with self._guard(key):
            try:
                return Chain(ops, **fields, masks=masks)
            except ValueError as exc:
                raise ArchiveError(f"{self.path}: chain {key!r}: stored layers do not form a chain: {exc}") from None

    def __getitem__(self, key) -> Chain:
        return self.load(key)

    # -- lifetime ----------------------------------------------------------------------------------
    def close(self):
        for f in self._open.values():
            f.close()
        self._open.clear()
        if self._index is not None:
            self._index.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<ArchiveReader {self.path} ({len(self)} chains, schema {self.version})>"


# -- writing ---------------------------------------------------------------------------------------
def writer(path, *, replace: bool = False, timeout: float | None = None, on_wait=None) -> "Writer":
    """A :class:`Writer` of the archive at ``path`` (takes the writers' lock; use as a context manager)."""
    return Writer(path, replace=replace, timeout=timeout, on_wait=on_wait)


class Writer:
    """The one writer of an archive (holds its lock from construction to :meth:`close`).

    * ``append(chain, key=None)`` lands one chain (its file, then the index), returns its key;
    * ``reserve(n)`` reserves the next ``n`` automatic keys (so results arriving in any order can be
      stored under keys that follow a requested order);
    * ``delete(key)``; ``keys()``; ``reader()`` — an :class:`ArchiveReader` of the current content.

    ``replace=False``: every call is durable on return (the index is replaced after each).
    ``replace=True``: starts from an empty archive; nothing is visible until :meth:`close` without an
    error commits the new index, which then replaces the old archive in one rename (the old chain files
    are removed after it).  Closing after an error (or being killed) leaves the old archive as it was.
    ``timeout``/``on_wait``: see :class:`.lock.ArchiveLock`.
    """

    def __init__(self, path, *, replace: bool = False, timeout: float | None = None, on_wait=None):
        self.path = Path(path)
        self.replace = bool(replace)
        self._lock = ArchiveLock(self.path, timeout=timeout, on_wait=on_wait).acquire()
        self._written = []          # files this writer landed (removed again if a replace is abandoned)
        self._closed = False
        try:
            self._start()
        except BaseException:
            self._lock.release()
            raise

    # -- state -------------------------------------------------------------------------------------
    def _start(self):
        on_disk = None
        if self.path.exists() and self.replace:
            try:                      # replacing a damaged or foreign file is allowed; nothing of it is cleaned
                _Index(self.path).close()
            except ArchiveError:
                self.chains_dir = f"{self.path.name}.chains"
                self._committed, self._old = {}, {}
                self.entries, self.next_index = OrderedDict(), 0
                return
        if self.path.exists():
            idx = _Index(self.path)
            try:
                if idx.version == 1 and not self.replace:
                    self._migrate(idx)
                    idx.close()
                    idx = _Index(self.path)
                on_disk = idx
                self.chains_dir = idx.chains_dir
                entries = OrderedDict(idx.entries or {})
                next_index = idx.next_index
            finally:
                idx.close()
        else:
            self.chains_dir = f"{self.path.name}.chains"
            entries, next_index = OrderedDict(), 0
        self._committed = dict(entries)            # what the index on disk lists
        self._clean(set(v[0] for v in entries.values()) if on_disk is not None else set())
        if self.replace:
            self._old = dict(entries)
            self.chains_dir = f"{self.path.name}.chains"
            entries, next_index = OrderedDict(), 0
        else:
            self._old = {}
        self.entries, self.next_index = entries, next_index

    @property
    def chains_path(self) -> Path:
        return self.path.parent / self.chains_dir

    def _clean(self, referenced: set):
        """Remove temp files of dead writers and chain files that no index refers to (we hold the lock)."""
        for p in stale_temps(self.path):
            with contextlib.suppress(OSError):
                p.unlink()
        d = self.chains_path
        if not d.is_dir():
            return
        stale = set(stale_temps_in(d))
        for p in d.iterdir():
            rel = f"{self.chains_dir}/{p.name}"
            temp = ".tmp-" in p.name
            if (temp and p in stale) or (not temp and p.suffix == ".h5" and rel not in referenced):
                with contextlib.suppress(OSError):
                    p.unlink()

    def _migrate(self, idx):
        """Convert a schema-1 archive (all chains in one file) to this layout: one file per chain, then the index."""
        src = idx.file["chains"]
        entries = OrderedDict()
        for key in sorted(src.keys()):
            g = src[key]
            try:
                with h5py.File(f"chain-{key}.h5", "w", driver="core", backing_store=False, block_size=1 << 20,
                               libver=LIBVER) as f:
                    set_str(f.attrs, "encoding-type", CHAIN_ENCODING)
                    set_str(f.attrs, "encoding-version", "1.0.0")
                    set_str(f.attrs, "key", key)
                    for k, v in g.attrs.items():
                        if isinstance(v, (bytes, np.bytes_)):
                            set_str(f.attrs, k, bytes(v).decode("utf-8"))
                        else:
                            f.attrs[k] = v
                    for name in g:
                        g.copy(g[name], f, name=name)
                    f.flush()
                    image = f.id.get_file_image()
            except _READ_ERRORS as exc:
                raise ArchiveError(f"{self.path}: chain {key!r}: cannot convert the schema-1 archive: {exc}") from None
            entries[key] = self._land(key, image)
        self._write_index(entries, idx.next_index, f"{self.path.name}.chains")

    def _land(self, key, image) -> tuple[str, int]:
        """Write one chain file (atomically) into the chains directory; returns its (file, size) entry."""
        check_space(self.path, len(image) + INDEX_ROW_BYTES * (len(getattr(self, "entries", ())) + 1),
                    f"chain {key!r}")
        d = self.path.parent / (getattr(self, "chains_dir", None) or f"{self.path.name}.chains")
        if not d.is_dir():
            d.mkdir()
            fsync_dir(d.parent)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:64].lstrip(".") or "chain"
        name = f"{safe}-{secrets.token_hex(4)}.h5"
        try:
            write_bytes(d / name, image)
        except OSError as exc:
            raise _os_error(self.path, exc, f"chain {key!r}") from None
        self._written.append(d / name)
        return f"{d.name}/{name}", len(image)

    def _write_index(self, entries, next_index, chains_dir):
        image = _index_image(entries, next_index, chains_dir)
        check_space(self.path, len(image), "the archive index")
        try:
            write_bytes(self.path, image)
        except OSError as exc:
            raise _os_error(self.path, exc, "the archive index") from None
        self._committed = dict(entries)

    def _publish(self):
        if not self.replace:
            self._write_index(self.entries, self.next_index, self.chains_dir)

    # -- operations --------------------------------------------------------------------------------
    def _check_open(self):
        if self._closed:
            raise ArchiveError(f"{self.path}: this writer is closed")

    def keys(self) -> list[str]:
        return sorted(self.entries)

    def __contains__(self, key):
        return str(key) in self.entries

    def reader(self) -> ArchiveReader:
        """An :class:`ArchiveReader` of what this writer holds now (including a replace's uncommitted chains)."""
        return ArchiveReader(self.path, _entries=dict(self.entries))

    def _next_key(self) -> str:
        while f"{self.next_index:06d}" in self.entries:
            self.next_index += 1
        self.next_index += 1
        return f"{self.next_index - 1:06d}"

    def reserve(self, n: int) -> list[str]:
        """The next ``n`` automatic keys, reserved (they are never handed out again)."""
        self._check_open()
        keys = [self._next_key() for _ in range(int(n))]
        self._publish()
        return keys

    def append(self, chain, key: str | None = None) -> str:
        """Add one chain (its file, then the index); returns its key.  Chains already stored are never rewritten."""
        self._check_open()
        check_archivable(chain, f"{self.path}: new chain")
        if key is None:
            key = self._next_key()
        else:
            key = _check_key(key, self.path)
            if key in self.entries:
                raise ArchiveError(f"{self.path}: chain {key!r} already exists in the archive")
        where = f"{self.path}: chain {key!r}"
        image = chain_file_image(chain, key, where)
        file, size = self._land(key, image)
        self.entries[key] = (file, size)
        try:
            self._publish()
        except BaseException:
            self.entries.pop(key)
            with contextlib.suppress(OSError):
                (self.path.parent / file).unlink()
            raise
        return key

    def delete(self, key: str) -> None:
        """Remove chain ``key`` (the index first, then its file)."""
        self._check_open()
        key = str(key)
        if key not in self.entries:
            raise ArchiveError(f"{self.path}: no chain {key!r} to delete; chains: {_list(self.keys())}")
        file, _ = self.entries.pop(key)
        try:
            self._publish()
        except BaseException:
            self.entries[key] = (file, _)
            raise
        with contextlib.suppress(OSError):
            (self.path.parent / file).unlink()

    def close(self, commit: bool = True) -> None:
        """Release the lock; with ``replace=True`` commit the new archive first (``commit=False``: abandon it)."""
        if self._closed:
            return
        try:
            if self.replace:
                done = False
                try:
                    if commit:
                        self._write_index(self.entries, self.next_index, self.chains_dir)
                        done = True
                finally:
                    if not done:        # abandoned or failed: remove what this writer landed
                        for p in self._written:
                            with contextlib.suppress(OSError):
                                p.unlink()
                if done:                # committed: the old archive's files are no longer referenced
                    keep = {v[0] for v in self.entries.values()}
                    for file, _ in self._old.values():
                        if file not in keep:
                            with contextlib.suppress(OSError):
                                (self.path.parent / file).unlink()
        finally:
            self._closed = True
            self._lock.release()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and self.replace:
            self.close(commit=False)
        else:
            self.close()


def write(path, chains, *, timeout: float | None = None) -> list[str]:
    """Write ``chains`` (a list of Chains, or a mapping key -> Chain) as a new archive at ``path``.

    An existing archive at ``path`` is replaced only after the new one is complete (one rename of the
    index); if anything fails the old archive stays as it was.  Returns the keys, in order ('000000',
    '000001', … for a list).
    """
    items = list(chains.items()) if isinstance(chains, dict) else [(None, c) for c in chains]
    with Writer(path, replace=True, timeout=timeout) as w:
        return [w.append(chain, key) for key, chain in items]


def append(path, chain, key: str | None = None, *, timeout: float | None = None) -> str:
    """Add one chain to the archive at ``path`` (created if missing); returns its key.

    Writes the chain's own file and a new index (O(new chain), see the module docstring); chains
    already in the archive are never touched.  Waits for another writer up to ``timeout`` seconds.
    """
    check_archivable(chain, f"{path}: new chain")
    with Writer(path, timeout=timeout) as w:
        return w.append(chain, key)


def delete(path, key: str, *, timeout: float | None = None) -> None:
    """Remove chain ``key`` from the archive (a new index without it, then its file)."""
    path = Path(path)
    if not path.exists():
        raise ArchiveError(f"{path}: no such archive file")
    with Writer(path, timeout=timeout) as w:
        w.delete(key)
