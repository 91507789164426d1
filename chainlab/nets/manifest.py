"""Checksums of the shipped data files: ``SHA256SUMS`` beside them, checked whenever one is read.

The folder of shipped data (``data/`` in the source tree, ``chainlab/shipped/`` in an installed wheel;
:func:`chainlab.models.data_dir`) holds a manifest ``SHA256SUMS`` in the format of coreutils'
``sha256sum`` (one ``<64 hex digits>  <file name>`` line per file, sorted by name; ``sha256sum -c
SHA256SUMS`` checks it from a shell).  Every file the scripts make there (nets, patterns, digits, the
example image; data/README.md says which script makes which) is listed.

:func:`checked` is called by the readers of model, digits and pattern files: a file listed in the manifest of
its folder is read only if its bytes hash to the recorded value (a damaged or truncated copy, or a file
remade without recording it, is a :class:`~chainlab.errors.ChecksumError` naming both); a file that is not
listed, or a folder without a manifest (your own models, ``$CHAINLAB_DATA`` pointing elsewhere), is read as
it is.  Each file is hashed once per process (while its size and mtime stay the same).  Scripts that write a
shipped file call :func:`record` after writing it.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..errors import ChecksumError, InputError
from ..files import write_bytes

__all__ = ["MANIFEST", "sha256", "read", "record", "checked", "problems"]

MANIFEST = "SHA256SUMS"
_LINE = re.compile(r"^([0-9a-f]{64}) [ *](\S(?:.*\S)?)$")
_verified: dict = {}          # resolved path → (size, mtime_ns, digest) of a file found intact


def sha256(path) -> str:
    """Hex SHA-256 digest of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read(folder) -> dict | None:
    """{file name: hex digest} of ``folder/SHA256SUMS``, or None when the folder has no manifest."""
    path = Path(folder) / MANIFEST
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        m = _LINE.match(line)
        if not m:
            raise ChecksumError(f"{path}:{n} is not a sha256sum line ('<64 hex digits>  <name>'): {line!r}")
        out[m.group(2)] = m.group(1)
    return out


def record(path) -> str:
    """Put the digest of ``path`` into the manifest of its folder (made if missing); returns the digest."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"cannot record a checksum of {path}: not a file")
    if path.name == MANIFEST:
        raise InputError(f"the manifest {path} does not list itself")
    entries = read(path.parent) or {}
    entries[path.name] = digest = sha256(path)
    write_bytes(path.parent / MANIFEST, "".join(f"{entries[k]}  {k}\n" for k in sorted(entries)).encode())
    return digest


def checked(path) -> Path:
    """``path``, after checking it against the manifest of its folder if that lists it (see module doc)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return path                                          # the caller reports a missing file its own way
    key = path.resolve()
    if _verified.get(key, (None, None))[:2] == (st.st_size, st.st_mtime_ns):
        return path
    expected = (read(path.parent) or {}).get(path.name)
    if expected is None:
        return path
    got = sha256(path)
    if got != expected:
        raise ChecksumError(
            f"{path} does not match its checksum in {path.parent / MANIFEST} (sha256 {got[:16]}…, recorded "
            f"{expected[:16]}…): the copy is damaged or was remade without recording it; reinstall chainlab or "
            f"restore the file (a script that remakes it records it with chainlab.nets.manifest.record)")
    _verified[key] = (st.st_size, st.st_mtime_ns, got)
    return path


def problems(folder) -> list[str]:
    """What is wrong with a data folder against its manifest: missing manifest, listed files that are missing
    or differ, files not listed (README.md aside).  An empty list: every file is there and intact."""
    folder = Path(folder)
    entries = read(folder)
    if entries is None:
        return [f"{folder} has no {MANIFEST}"]
    out = []
    for name, expected in sorted(entries.items()):
        p = folder / name
        if not p.is_file():
            out.append(f"{name}: listed in {MANIFEST}, missing")
        elif sha256(p) != expected:
            out.append(f"{name}: sha256 differs from {MANIFEST}")
    unlisted = sorted(p.name for p in folder.iterdir()
                      if p.is_file() and p.name not in entries and p.name not in (MANIFEST, "README.md"))
    out += [f"{name}: not listed in {MANIFEST}" for name in unlisted]
    return out
