"""Writing files so that a crash never leaves a half-written one: the one atomic-write helper.

``with atomic_path(target) as tmp:`` yields a temporary path beside ``target`` (same directory, so
the final rename is atomic; same suffix, so writers that append one — ``np.savez`` — keep it); the
caller writes ``tmp``.  On success the temp file is fsynced, ``os.replace``d onto the target and
the directory is fsynced; on any exception the temp file is removed and the target is untouched.

Temp names are ``<target name>.tmp-<pid>-<n><suffix>``; :func:`stale_temps` finds those of
processes that no longer run (a writer killed with SIGKILL cannot clean up after itself).
"""
from __future__ import annotations

import contextlib
import itertools
import os
import re
from pathlib import Path

__all__ = ["atomic_path", "fsync_file", "fsync_dir", "stale_temps", "temp_path"]

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
def atomic_path(target):
    """Yield a temp path beside ``target``; on success fsync it and rename it onto ``target`` (see module doc)."""
    target = Path(target)
    tmp = temp_path(target)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
