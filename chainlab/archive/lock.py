"""One writer at a time: an OS file lock (``fcntl.flock``) on ``<archive>.lock`` beside the archive.

Every write path (:func:`chainlab.archive.append`, ``write``, ``delete``, the :class:`~.store.Writer`)
holds the lock while it changes the archive; readers never take it (the index they read is replaced
atomically, see :mod:`.store`).  A second writer waits, polling every ``poll`` seconds, up to
``timeout`` seconds and then fails with an :class:`ArchiveError` naming the holder (pid and command
line, which the holder writes into the lock file).  The lock belongs to the open file description:
the kernel releases it when the holder exits for any reason, including ``kill -9``, so a dead writer
never blocks the next one.  The lock file itself is left in place (removing it would race with a
writer that has just opened it).  ``flock`` is advisory and local: it does not protect archives on
network file systems shared between machines.

The archive is its *real* path, resolved once (``os.path.realpath``): ``latest.h5 → c.h5`` and
``c.h5`` are one archive with one lock, ``c.h5.lock``.  The lock file is opened without following a
symlink (``O_NOFOLLOW``) and must be a regular file with one name: a lock file that is a link to
some other file (an unpacked tarball can carry one) is refused, never truncated or written.  Failing
to create or write the lock file (read-only folder, full disk) is an ArchiveError naming the archive
and the lock file.

Within one process the lock is not re-entrant: a second :class:`ArchiveLock` on the same archive
(under any name) while the first is held raises at once instead of waiting for itself.
"""
from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys
import time
from pathlib import Path

from ..errors import ArchiveError
from ..files import on_failure

__all__ = ["ArchiveLock", "LOCK_TIMEOUT", "lock_path"]

LOCK_TIMEOUT = 600.0          # seconds a writer waits for another one before giving up
_HELD: set[str] = set()        # real paths of the archives whose lock this process holds


def real_path(path) -> Path:
    """The archive's real path: every symlink of ``path`` resolved (also when the file does not exist yet)."""
    return Path(os.path.realpath(path))


def lock_path(path) -> Path:
    """``<archive>.lock`` beside the archive's real path."""
    real = real_path(path)
    return real.with_name(real.name + ".lock")


def _reason(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno, "") if exc.errno else ""
    return f"{exc.strerror or exc}{f' ({name})' if name else ''}"


class ArchiveLock:
    """``with ArchiveLock(path, timeout=…, on_wait=…):`` — hold the writers' lock of the archive ``path``.

    ``on_wait(message)`` is called once when the lock is busy and the writer starts waiting.
    """

    def __init__(self, path, *, timeout: float | None = None, poll: float = 0.05, on_wait=None):
        self.path = Path(path)                # as the caller spells it (messages)
        self.real = real_path(self.path)      # resolved once: the key, the lock file
        self.file = self.real.with_name(self.real.name + ".lock")
        self._key = str(self.real)
        self.timeout = LOCK_TIMEOUT if timeout is None else float(timeout)
        self.poll = poll
        self.on_wait = on_wait
        self._fd = None

    def _holder(self) -> str:
        try:
            text = self.file.read_text(errors="replace").strip()
        except OSError:
            text = ""
        return text or "another process"

    def _open(self) -> int:
        """The lock file's descriptor: created if missing, never through a symlink, a regular file of one name."""
        try:
            fd = os.open(self.file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ArchiveError(f"{self.path}: its lock file {self.file} is a symbolic link; chainlab never opens "
                                   "a lock through a link (remove the link: the lock file holds no data)") from None
            raise ArchiveError(f"{self.path}: cannot create the writers' lock file {self.file}: {_reason(exc)}; "
                               "the archive is unchanged") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            what = "not a regular file" if not stat.S_ISREG(st.st_mode) else f"a file with {st.st_nlink} names"
            raise ArchiveError(f"{self.path}: its lock file {self.file} is {what}; chainlab writes only a lock file "
                               "of its own (remove it: the lock file holds no data)")
        return fd

    def acquire(self):
        if self._key in _HELD:
            raise ArchiveError(f"{self.path}: this process is already writing the archive (nested writers)")
        fd = self._open()
        start = time.monotonic()
        waited = False
        with on_failure(lambda: os.close(fd)):
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() - start >= self.timeout:
                        raise ArchiveError(
                            f"{self.path}: another writer holds the archive ({self._holder()}); gave up after "
                            f"waiting {self.timeout:.0f} s — wait for it to finish or write to another file"
                        ) from None
                    if not waited and self.on_wait is not None:
                        self.on_wait(f"{self.path}: waiting for the writer that holds it ({self._holder()})")
                    waited = True
                    time.sleep(self.poll)
                except OSError as exc:          # ENOLCK and the like: no lock to be had here
                    raise ArchiveError(f"{self.path}: cannot lock {self.file}: {_reason(exc)}") from None
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}\n".encode(), 0)
            except OSError as exc:
                raise ArchiveError(f"{self.path}: cannot write the writers' lock file {self.file}: {_reason(exc)}; "
                                   "the archive is unchanged") from None
        self._fd = fd
        _HELD.add(self._key)
        return self

    def release(self):
        if self._fd is None:
            return
        _HELD.discard(self._key)
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
