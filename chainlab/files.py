"""Writing files so that a crash never leaves a half-written one: the one atomic-write helper.

``with atomic_path(target) as tmp:`` yields a temporary path beside ``target`` (same directory, so
the final rename is atomic; same suffix, so writers that append one — ``np.savez`` — keep it); the
caller writes ``tmp``.  On success the temp file is fsynced, ``os.replace``d onto the target and
the directory is fsynced; on any exception the temp file is removed and the target is untouched.

Temp names are ``<target name>.tmp-<pid>-<n><suffix>``; :func:`stale_temps` (beside one target) and
:func:`stale_temps_in` (anywhere in a directory) find those of processes that no longer run (a writer
killed with SIGKILL cannot clean up after itself).

:func:`write_bytes` writes a byte string through :func:`atomic_path`: the disk sees only Python's
``write``/``fsync`` calls, so a full disk (ENOSPC) or a file-size limit (EFBIG) is an ``OSError`` here,
the temp file is removed and the target is untouched.  :func:`free_bytes` is the space left for an
unprivileged user on the file system of a path.

``with on_failure(undo):`` runs ``undo()`` when the block exits by any exception (KeyboardInterrupt included) and
lets the exception go on — the one way chainlab cleans up after a failure without catching anything.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import re
from pathlib import Path

__all__ = ["atomic_path", "free_bytes", "fsync_file", "fsync_dir", "on_failure", "stale_temps", "stale_temps_in",
           "temp_path", "write_bytes"]

_counter = itertools.count()


def temp_path(target) -> Path:
    """A fresh temp path beside ``target``: ``<name>.tmp-<pid>-<n><suffix>``."""
    target = Path(target)
    return target.with_name(f"{target.name}.tmp-{os.getpid()}-{next(_counter)}{target.suffix}")


def fsync_file(path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def fsync_dir(d) -> None:
    """fsync a directory (makes a rename durable); silently skipped where the OS does not allow it."""
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def on_failure(undo):
    """Run ``undo()`` if the block raises (any exception, which then propagates unchanged); nothing on success."""
    done = False
    try:
        yield
        done = True
    finally:
        if not done:
            undo()


def _remove(path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_path(target):
    """Yield a temp path beside ``target``; on success fsync it and rename it onto ``target`` (see module doc)."""
    target = Path(target)
    tmp = temp_path(target)
    with on_failure(lambda: _remove(tmp)):
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, target)
        fsync_dir(target.parent)


def write_bytes(target, data, *, block: int = 64 << 20) -> None:
    """Write ``data`` (bytes or a buffer) to ``target`` atomically (temp file, fsync, rename, fsync the directory)."""
    view = memoryview(data).cast("B")
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            for start in range(0, len(view), block):
                fh.write(view[start:start + block])
            fh.flush()
            os.fsync(fh.fileno())


def free_bytes(path) -> int:
    """Bytes an unprivileged user may still write on the file system holding ``path`` (its parent if missing)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    st = os.statvfs(p)
    return st.f_bavail * st.f_frsize


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_temps(target) -> list[Path]:
    """Temp files of ``target`` (``<name>.tmp-<pid>-<n>…``) whose writing process is gone."""
    target = Path(target)
    pattern = re.compile(re.escape(target.name) + r"\.tmp-(\d+)-\d+")
    out = []
    if not target.parent.is_dir():
        return out
    for p in target.parent.iterdir():
        m = pattern.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            out.append(p)
    return sorted(out)


_TEMP = re.compile(r".+\.tmp-(\d+)-\d+")


def stale_temps_in(directory) -> list[Path]:
    """Every temp file in ``directory`` (``*.tmp-<pid>-<n>…``, see :func:`temp_path`) whose writing process is gone."""
    d = Path(directory)
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        m = _TEMP.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            out.append(p)
    return sorted(out)
