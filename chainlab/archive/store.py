"""Chain archives on disk: an HDF5 index (the one entry point) plus one HDF5 file per chain.

Layout of an archive ``a.h5`` (schema version 2)::

    a.h5                         the index, HDF5 (latest format: checksummed superblock and object headers)
        attrs: encoding-type = "chainlab-archive", encoding-version = "2.0.0", schema_version = 2,
               chainlab_version, next_index, chains_dir = "a.h5.chains" (informative: never read)
        chains/<key>             HDF5 external link → ("a.h5.chains/<file>", "/"): plain h5py follows it,
                                 ``h5py.File("a.h5")["chains/000003/layers/0000/matrix"]`` reads a layer
        catalog                  (n,) compound dataset key, file, size (fletcher32-checksummed): the
                                 truth the reader checks the links and the chain files against
    a.h5.chains/<key>-<token>.h5 one chain per file; its root group is the chain (encoded as
                                 :mod:`.encoding` describes) with attrs encoding-type = "chainlab-chain", key
    a.h5.lock                    the writers' lock (:mod:`.lock`); kept between runs

An archive is untrusted input: data, never paths to follow.  ``a.h5`` is resolved to its real path
once (so ``latest.h5 → c.h5`` is the archive c.h5: its lock, its index — replaced in place, the
symlink kept — and its chain folder); the chain folder is ``<real name>.chains`` beside the real
index, derived from the name and never read from the file.  Every catalog row must name
``<that folder>/<plain file name>`` (no other folder, no separator, no ``..``, no absolute path; no
two rows one file), every link ``chains/<key>`` must point exactly at its row's file and ``/``, and
the index must hold nothing else that points outside it.  The folder and the chain files must not
be symlinks (opened with ``O_NOFOLLOW`` and checked to be the file h5py then reads).  A chain file
may hold only hard links and datasets whose bytes it holds itself; every claimed size is checked
against the chain's metadata, the file's bytes and the memory available before anything is read
(:mod:`.encoding`).  A writer removes only names of chainlab's own patterns for *this* archive
(``<key>-<8 hex>.h5`` and temp names of dead processes in its folder, the index's temp names beside
it) that no catalog row names.  An index that breaks any of these rules is refused — by readers and
by the next writer, which neither follows nor silently rewrites it; ``--overwrite`` may replace it
(deleting nothing it names).

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
or newer-schema archive raises :class:`ArchiveError` naming the index and, where known, the chain,
the layer and the chain file — before anything of the claimed size is allocated.  Only the errors
damaged content produces count (:func:`.encoding.is_corruption`); any other exception is a bug and
propagates.  Schema-1 archives (all chains inside
one file) are still read; the first write to one converts it to this layout.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np

from ..chain import Chain
from ..errors import ArchiveError, ChainlabError
from ..files import free_bytes, fsync_dir, on_failure, write_bytes
from ..version import __version__
from .encoding import (CHAIN_ENCODING, LIBVER, READ_ERRORS, Corrupt, chain_fields, chain_file_image, chain_sizes,
                       check_archivable, check_claim, check_self_contained, child, int_attr, int_vector_attr,
                       is_corruption, json_attr, link_kind, read_array, read_matrix, set_str, text_attr)
from .lock import ArchiveLock, real_path

__all__ = ["ArchiveReader", "SCHEMA_VERSION", "Writer", "append", "check_space", "delete", "open", "write",
           "writer"]

SCHEMA_VERSION = 2
ENCODING = "chainlab-archive"
INDEX_ROW_BYTES = 160           # upper bound of the index bytes per chain (link + catalog row), for space checks
SPACE_MARGIN = 1 << 20          # bytes kept free beyond what a write needs
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,250}\.h5")       # a chain file a catalog row may name
_OWN_CHAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}-[0-9a-f]{8}\.h5")   # the names Writer._land gives
_OWN_CHAIN_TEMP = re.compile(r"(?P<target>.+)\.tmp-(?P<pid>\d+)-\d+\.h5")     # files.temp_path of such a name
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
    free = free_bytes(real_path(path).parent)
    if nbytes + SPACE_MARGIN > free:
        raise ArchiveError(f"{path}: not enough disk space for {what}: it needs about {_mb(nbytes)}, "
                           f"{_mb(free)} are free on the file system of {path.parent}")


def _os_error(path, exc, what):
    name = errno.errorcode.get(exc.errno, "") if exc.errno else ""
    reason = exc.strerror or str(exc)
    return ArchiveError(f"{path}: cannot write {what}: {reason}{f' ({name})' if name else ''}; "
                        "the archive is unchanged")


# -- where an archive's files are (derived from the index's real path, never read from a file) -------
def chains_folder(real: Path) -> Path:
    """The chain folder of the archive whose index is at the real path ``real``: ``<name>.chains`` beside it."""
    return real.with_name(real.name + ".chains")


def _folder_exists(shown, folder: Path) -> bool:
    """Whether the chain folder exists; ArchiveError if it is a symlink or not a folder."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise ArchiveError(f"{shown}: its chain folder {folder} is a symbolic link (→ {os.readlink(folder)}); "
                           "chainlab reads and writes chain files only in a real folder beside the index — replace "
                           "the link by the folder itself")
    if not stat.S_ISDIR(st.st_mode):
        raise ArchiveError(f"{shown}: {folder} should be the archive's chain folder but is not a folder")
    return True


def _open_plain(shown, where, folder: Path, name: str):
    """``os.stat_result`` of the regular file ``folder/name``, opened without following a symlink in the folder
    or the file; ArchiveError (naming the path) if either is a symlink, or the file is missing or not regular."""
    p = folder / name
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        dfd = os.open(folder, flags | os.O_DIRECTORY)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            _folder_exists(shown, folder)           # names the symlink / the non-folder
        if exc.errno == errno.ENOENT:
            raise ArchiveError(f"{where}: its file {p} is missing (its folder {folder} does not exist)") from None
        raise ArchiveError(f"{where}: cannot open the chain folder {folder}: {exc.strerror or exc}") from None
    try:
        fd = os.open(name, flags, dir_fd=dfd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ArchiveError(f"{where}: its file {p} is a symbolic link (→ {os.readlink(p)}); chainlab reads only "
                               "chain files inside the archive's folder, never through a link") from None
        if exc.errno == errno.ENOENT:
            raise ArchiveError(f"{where}: its file {p} is missing (deleted, or the archive was changed by another "
                               "process after this reader opened it)") from None
        raise ArchiveError(f"{where}: cannot open its file {p}: {exc.strerror or exc}") from None
    finally:
        os.close(dfd)
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode):
        raise ArchiveError(f"{where}: its file {p} is not a regular file")
    return st


# -- index files -----------------------------------------------------------------------------------
def index_image(entries: dict, next_index: int, chains_dir: str) -> bytes:
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


def _read_index(f, shown, folder_name: str):
    """(entries key → (file, size), next_index) of an open schema-2 index, checked (ArchiveError / Corrupt
    otherwise): nothing in the index is a link but ``chains/<key>``, each an external link to exactly its catalog
    row's file and ``/``; every catalog row names ``<folder_name>/<plain file name>``, no two rows one file.
    Nothing is followed: the links are read as links, before any object is opened by name."""
    links = {}

    def external(g, name, link):
        if g.name != "/chains":
            raise ArchiveError(f"{shown}: link {g.name.rstrip('/')}/{name} is {link_kind(link)} "
                               f"{_target(link)}; an index holds no links but chains/<key> (an archive is data, "
                               "never paths to follow)")
        if not isinstance(link, h5py.ExternalLink):
            raise ArchiveError(f"{shown}: link chains/{name} is {link_kind(link)} {_target(link)}, expected an "
                               "external link to its chain file")
        links[name] = (link.filename, link.path)

    check_self_contained(f, external=external)
    chains = child(f, "chains", h5py.Group)
    cat = child(f, "catalog", h5py.Dataset)
    dt = cat.dtype
    if cat.ndim != 1 or dt.names is None or set(dt.names) != {"key", "file", "size"} or \
            dt["key"].kind != "S" or dt["file"].kind != "S" or dt["size"].kind not in "iu":
        raise Corrupt(f"catalog has shape {cat.shape} and dtype {dt}, expected (n,) rows of (key, file, size)")
    check_claim(cat, cat.shape[0] * dt.itemsize, "catalog")
    entries, by_file = OrderedDict(), {}
    for row in cat[()]:
        key = _check_key(row["key"].decode("utf-8"), shown)
        file, size = row["file"].decode("utf-8"), int(row["size"])
        folder, sep, name = file.partition("/")
        if folder != folder_name or not _PLAIN_NAME.fullmatch(name):
            raise ArchiveError(f"{shown}: catalog row {key!r} names {file!r}; every chain file must be a plain file "
                               f"name in the archive's own folder, {folder_name}/<name>.h5 (no other folder, no "
                               "separator, no '..', no absolute path) — the index was edited or belongs to "
                               "another archive")
        if key in entries:
            raise ArchiveError(f"{shown}: catalog has two rows for chain {key!r}")
        if name in by_file:
            raise ArchiveError(f"{shown}: catalog rows {by_file[name]!r} and {key!r} name the same file {file!r}")
        if size <= 0:
            raise ArchiveError(f"{shown}: catalog row {key!r} says its file has {size} bytes")
        entries[key], by_file[name] = (file, size), key
    for name in sorted(links):
        if name not in entries:
            raise ArchiveError(f"{shown}: link chains/{name} has no catalog row")
        got, want = links[name], (entries[name][0], "/")
        if got != want:
            raise ArchiveError(f"{shown}: link chains/{name} points to {got[0]}:{got[1]} but its catalog row to "
                               f"{want[0]}:{want[1]}; the index was edited — chainlab follows neither (rebuild the "
                               "archive, e.g. extract --overwrite)")
    if set(links) != set(entries) or set(chains) != set(entries):
        raise ArchiveError(f"{shown}: the links of chains/ and the catalog disagree: "
                           f"{_list(sorted((set(links) | set(chains)) ^ set(entries)))}")
    next_index = int_attr(f, "next_index")
    if next_index < 0:
        raise Corrupt(f"next_index is {next_index}")
    return entries, next_index


def _target(link) -> str:
    if isinstance(link, h5py.ExternalLink):
        return f"→ {link.filename}:{link.path}"
    if isinstance(link, h5py.SoftLink):
        return f"→ {link.path}"
    return ""


class _Index:
    """An open index file: validated root attributes, schema version, and (schema 2) the entries.

    ``real`` is the index's real path (every read goes there), ``shown`` the path as the caller spelled it."""

    def __init__(self, real: Path, shown=None):
        self.path = real
        shown = real if shown is None else shown
        self.folder = chains_folder(real)
        if not real.exists():
            raise ArchiveError(f"{shown}: no such archive file")
        if real.is_dir():
            raise ArchiveError(f"{shown}: is a directory, not an archive file")
        try:
            self.file = h5py.File(real, "r")
        except READ_ERRORS as exc:
            if not is_corruption(exc):
                raise
            raise ArchiveError(
                f"{shown}: not a readable HDF5 file (truncated, corrupt or not HDF5 at all): {exc}") from None
        try:
            enc = text_attr(self.file, "encoding-type") if "encoding-type" in self.file.attrs else None
            if enc != ENCODING:
                raise ArchiveError(f"{shown}: an HDF5 file but not a chainlab archive (root encoding-type {enc!r}, "
                                   f"expected {ENCODING!r})")
            ver = int_attr(self.file, "schema_version", -1)
            if ver > SCHEMA_VERSION:
                raise ArchiveError(f"{shown}: archive schema version {ver} is newer than this chainlab reads "
                                   f"(≤ {SCHEMA_VERSION}); upgrade chainlab")
            if ver < 1 or "chains" not in self.file or (ver >= 2 and "catalog" not in self.file):
                raise ArchiveError(f"{shown}: damaged chainlab archive (schema version {ver}, chains group "
                                   f"{'present' if 'chains' in self.file else 'missing'})")
            self.version = ver
            if ver == 1:
                check_self_contained(self.file)       # every chain is inside the index: hard links only
                child(self.file, "chains", h5py.Group)
                self.entries = None
                self.next_index = max(int_attr(self.file, "next_index", 0), 0)
            else:
                _folder_exists(shown, self.folder)
                self.entries, self.next_index = _read_index(self.file, shown, self.folder.name)
        except ArchiveError:
            self.file.close()
            raise
        except READ_ERRORS as exc:
            self.file.close()
            if not is_corruption(exc):
                raise
            raise ArchiveError(f"{shown}: corrupt archive index (root metadata or catalog unreadable): "
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
        self.path = Path(path)                # as the caller spells it (messages)
        self.real = real_path(self.path)      # where everything is read
        self.folder = chains_folder(self.real)
        self._open = OrderedDict()          # key -> open h5py.File of its chain (schema 2)
        self._sizes = {}                    # key -> (n_layers, [(n_in, n_out)])
        if _entries is not None:            # a writer's view (entries not yet in an index)
            self._index, self.version, self._entries = None, SCHEMA_VERSION, _entries
            return
        self._index = _Index(self.real, self.path)
        self.version = self._index.version
        self._entries = self._index.entries

    def _where(self, key=None, layer=None, name=None) -> str:
        where = f"{self.path}"
        if key is not None:
            where += f": chain {key!r}"
        if layer is not None:
            where += f", layer {layer}" + (f" ({name!r})" if name else "")
        return where

    @contextlib.contextmanager
    def _guard(self, key=None, layer=None, name=None):
        """Turn what damaged content raises (:func:`.encoding.is_corruption`) into an ArchiveError naming the index,
        chain, layer and chain file; let everything else (a bug) propagate."""
        try:
            yield
        except ChainlabError:
            raise
        except READ_ERRORS as exc:
            if not is_corruption(exc):
                raise
            what = str(exc) if isinstance(exc, Corrupt) else f"corrupt or unreadable: {type(exc).__name__}: {exc}"
            file = self.chain_file(key) if key is not None else None
            raise ArchiveError(f"{self._where(key, layer, name)}: {what}"
                               + (f"; file {file}" if file is not None else "")) from exc

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
        return self.folder / self._entries[str(key)][0].split("/", 1)[1]

    def _group(self, key):
        key = str(key)
        if key not in self:
            raise ArchiveError(f"{self.path}: no chain {key!r}; chains: {_list(self.keys())}")
        if self._entries is None:
            with self._guard(key):
                return child(child(self._index.file, "chains", h5py.Group), key, h5py.Group)
        if key in self._open:
            self._open.move_to_end(key)
            return self._open[key]["/"]
        f = self._open_chain(key)
        self._open[key] = f
        while len(self._open) > _KEEP_OPEN:
            self._open.popitem(last=False)[1].close()
        return f["/"]

    def _open_chain(self, key) -> h5py.File:
        """The chain file of ``key``, opened after checking that it is a regular file inside the folder (no
        symlink), of the size the catalog says, that h5py opened that very file, that it holds nothing that
        points elsewhere, and that it is this chain's."""
        file, size = self._entries[key]
        name = file.split("/", 1)[1]
        p = self.folder / name
        where = self._where(key)
        st = _open_plain(self.path, where, self.folder, name)
        if st.st_size != size:
            raise ArchiveError(f"{where}: its file {p} has {st.st_size} bytes, the index says {size} "
                               "(truncated or replaced)")
        with self._guard(key):
            try:
                f = h5py.File(p, "r")
            except READ_ERRORS as exc:
                if not is_corruption(exc):
                    raise
                raise ArchiveError(f"{where}: its file {p} is not readable HDF5 (corrupt): {exc}") from None
            with on_failure(f.close):
                opened = os.fstat(f.id.get_vfd_handle())
                if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
                    raise ArchiveError(f"{where}: its file {p} was replaced while it was being opened")
                check_self_contained(f)
                enc = text_attr(f, "encoding-type") if "encoding-type" in f.attrs else None
                got = text_attr(f, "key") if "key" in f.attrs else None
                if enc != CHAIN_ENCODING or got != key:
                    raise ArchiveError(f"{where}: its file {p} holds chain {got!r} of encoding {enc!r}, not this one")
        return f

    def _layer_sizes(self, key, g):
        if key not in self._sizes:
            with self._guard(key):
                self._sizes[key] = chain_sizes(g)
        return self._sizes[key]

    def _layer(self, g, i):
        return child(child(g, "layers", h5py.Group), f"{i:04d}", h5py.Group)

    def info(self, key) -> dict:
        """The chain's metadata without its matrices: net, fingerprint, input_hash, rule, options, space,
        meta, image, names, layer_rules, shapes, input_shape, n_layers, dtype, logits, predicted, kinds."""
        key = str(key)
        g = self._group(key)
        n, sizes = self._layer_sizes(key, g)
        with self._guard(key):
            meta = json_attr(g, "meta", dict)
            logits = read_array(g["logits"], g["logits"].shape, "logits")
            kinds = [text_attr(self._layer(g, i), "kind") for i in range(n)]
            shapes = [tuple(s) for s in json_attr(g, "shapes", list)]
            return {
                "key": key, "net": text_attr(g, "net") or None, "fingerprint": text_attr(g, "fingerprint") or None,
                "input_hash": text_attr(g, "input_hash"), "rule": text_attr(g, "rule"),
                "space": text_attr(g, "space"), "options": json_attr(g, "options", dict), "meta": meta,
                "image": meta.get("image"), "names": json_attr(g, "names", list),
                "layer_rules": json_attr(g, "layer_rules", list), "shapes": shapes,
                "input_shape": tuple(json_attr(g, "input_shape", list)), "n_layers": n,
                "dtype": text_attr(g, "dtype"), "logits": logits,
                "predicted": int(np.argmax(logits)) if logits.size else None, "kinds": kinds,
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
            lg = self._layer(g, i)
            name = text_attr(lg, "name")
        with self._guard(key, i, name):
            kind = text_attr(lg, "kind")
            want = sizes[i] if kind != "block" else (2 * sizes[i][0], 2 * sizes[i][1])
            shape = int_vector_attr(lg, "shape")
            if shape != want:
                raise Corrupt(f"layer attribute says shape {shape}, the chain's metadata {want}")
            if "matrix" not in lg:
                raise Corrupt(f"{lg.name}/matrix is missing")
            op = read_matrix(lg["matrix"], want)
            if "bias_relevance" in lg:
                op.bias_relevance = read_array(lg["bias_relevance"], (want[1],), "bias relevance")
            if getattr(op, "kind", None) != kind:
                raise Corrupt(f"stored matrix is of kind {getattr(op, 'kind', None)!r}, layer says {kind!r}")
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
                lg = self._layer(g, i)
                masks.append(read_array(lg["mask"], (ops[i].shape[1],), "mask") if "mask" in lg else None)
        try:
            return Chain(ops, **fields, masks=masks)
        except ValueError as exc:
            file = self.chain_file(key)
            raise ArchiveError(f"{self.path}: chain {key!r}: stored layers do not form a chain: {exc}"
                               + (f"; file {file}" if file is not None else "")) from None

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

    The archive is the real path of ``path``, resolved once by the lock: the index is replaced there (a
    symlink ``path`` stays a symlink), the chain folder is beside it (see the module docstring).
    """

    def __init__(self, path, *, replace: bool = False, timeout: float | None = None, on_wait=None):
        self.path = Path(path)
        self.replace = bool(replace)
        self._lock = ArchiveLock(self.path, timeout=timeout, on_wait=on_wait).acquire()
        self.real = self._lock.real
        self.chains_path = chains_folder(self.real)
        self.chains_dir = self.chains_path.name
        self._written = []          # files this writer landed (removed again if a replace is abandoned)
        self._closed = False
        with on_failure(self._lock.release):
            self._start()

    # -- state -------------------------------------------------------------------------------------
    def _start(self):
        _folder_exists(self.path, self.chains_path)          # a symlinked folder is refused, whatever the index
        on_disk = None
        if self.real.exists() and self.replace:
            try:                      # replacing a damaged or foreign file is allowed; nothing of it is cleaned
                _Index(self.real, self.path).close()
            except ArchiveError:
                self._committed, self._old = {}, {}
                self.entries, self.next_index = OrderedDict(), 0
                return
        if self.real.exists():
            idx = _Index(self.real, self.path)
            try:
                if idx.version == 1 and not self.replace:
                    self._migrate(idx)
                    idx.close()
                    idx = _Index(self.real, self.path)
                on_disk = idx
                entries = OrderedDict(idx.entries or {})
                next_index = idx.next_index
            finally:
                idx.close()
        else:
            entries, next_index = OrderedDict(), 0
        self._check_files(entries)
        self._committed = dict(entries)            # what the index on disk lists
        self._clean({v[0].split("/", 1)[1] for v in entries.values()} if on_disk is not None else set())
        if self.replace:
            self._old = dict(entries)
            entries, next_index = OrderedDict(), 0
        else:
            self._old = {}
        self.entries, self.next_index = entries, next_index

    def _check_files(self, entries):
        """Refuse an archive whose chain files are symlinks (the index itself was validated by _Index)."""
        for key, (file, _) in entries.items():
            p = self.chains_path / file.split("/", 1)[1]
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISLNK(os.lstat(p).st_mode):
                    raise ArchiveError(f"{self.path}: chain {key!r}: its file {p} is a symbolic link "
                                       f"(→ {os.readlink(p)}); chainlab writes only archives whose chain files are "
                                       "inside their folder")

    def _clean(self, referenced: set):
        """Remove what dead writers left of *this* archive (we hold the lock): the index's temp files beside it and,
        in its chain folder, temps of ``*.h5`` files of dead processes and chain files (named as :meth:`_land`
        names them) that no catalog row names.  Nothing else is touched: no other name, no symlink, no folder."""
        own_temp = re.compile(re.escape(self.real.name) + r"\.tmp-(\d+)-\d+(?:" + re.escape(self.real.suffix) + ")?")
        for entry in _scan(self.real.parent):
            m = own_temp.fullmatch(entry.name)
            if m and entry.is_file(follow_symlinks=False) and _dead(int(m.group(1))):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
        if not _folder_exists(self.path, self.chains_path):
            return
        for entry in _scan(self.chains_path):
            if not entry.is_file(follow_symlinks=False):
                continue
            t = _OWN_CHAIN_TEMP.fullmatch(entry.name)
            if t:
                stale = _PLAIN_NAME.fullmatch(t.group("target")) and _dead(int(t.group("pid")))
            else:
                stale = _OWN_CHAIN.fullmatch(entry.name) and entry.name not in referenced
            if stale:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)

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
            except READ_ERRORS as exc:
                if not is_corruption(exc):
                    raise
                raise ArchiveError(f"{self.path}: chain {key!r}: cannot convert the schema-1 archive: {exc}") from None
            entries[_check_key(key, self.path)] = self._land(key, image)
        self._write_index(entries, idx.next_index)

    def _land(self, key, image) -> tuple[str, int]:
        """Write one chain file (atomically) into the chains directory; returns its (file, size) entry."""
        check_space(self.path, len(image) + INDEX_ROW_BYTES * (len(getattr(self, "entries", ())) + 1),
                    f"chain {key!r}")
        d = self.chains_path
        if not _folder_exists(self.path, d):
            try:
                d.mkdir()
            except OSError as exc:
                raise _os_error(self.path, exc, f"the chain folder {d}") from None
            fsync_dir(d.parent)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:64].lstrip(".-") or "chain"
        name = f"{safe}-{secrets.token_hex(4)}.h5"
        try:
            write_bytes(d / name, image)
        except OSError as exc:
            raise _os_error(self.path, exc, f"chain {key!r}") from None
        self._written.append(d / name)
        return f"{d.name}/{name}", len(image)

    def _write_index(self, entries, next_index):
        image = index_image(entries, next_index, self.chains_dir)
        check_space(self.path, len(image), "the archive index")
        try:
            write_bytes(self.real, image)
        except OSError as exc:
            raise _os_error(self.path, exc, "the archive index") from None
        self._committed = dict(entries)

    def _publish(self):
        if not self.replace:
            self._write_index(self.entries, self.next_index)

    def _unlink(self, file):
        with contextlib.suppress(OSError):
            os.unlink(self.chains_path / file.split("/", 1)[1])

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
        def undo():
            self.entries.pop(key)
            self._unlink(file)

        with on_failure(undo):
            self._publish()
        return key

    def delete(self, key: str) -> None:
        """Remove chain ``key`` (the index first, then its file)."""
        self._check_open()
        key = str(key)
        if key not in self.entries:
            raise ArchiveError(f"{self.path}: no chain {key!r} to delete; chains: {_list(self.keys())}")
        file, _ = self.entries.pop(key)
        with on_failure(lambda: self.entries.__setitem__(key, (file, _))):
            self._publish()
        self._unlink(file)

    def close(self, commit: bool = True) -> None:
        """Release the lock; with ``replace=True`` commit the new archive first (``commit=False``: abandon it)."""
        if self._closed:
            return
        try:
            if self.replace:
                done = False
                try:
                    if commit:
                        self._write_index(self.entries, self.next_index)
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
                            self._unlink(file)
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


def _scan(folder: Path):
    try:
        with os.scandir(folder) as it:
            return list(it)
    except OSError:
        return []


def _dead(pid: int) -> bool:
    """Whether ``pid`` is another process that no longer runs (its temp files are stale)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


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
