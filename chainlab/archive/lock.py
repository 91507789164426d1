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

Within one process the lock is not re-entrant: a second :class:`ArchiveLock` on the same archive
while the first is held raises at once instead of waiting for itself.
"""
from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path

from ..errors import ArchiveError

__all__ = ["ArchiveLock", "LOCK_TIMEOUT", "lock_path"]

LOCK_TIMEOUT = 600.0          # seconds a writer waits for another one before giving up
_HELD: set[str] = set()        # archives whose lock this process holds


def lock_path(path) -> Path:
    """``<archive>.lock`` beside the archive."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


class ArchiveLock:
    """``with ArchiveLock(path, timeout=…, on_wait=…):`` — hold the writers' lock of the archive ``path``.

    ``on_wait(message)`` is called once when the lock is busy and the writer starts waiting.
    """

    def __init__(self, path, *, timeout: float | None = None, poll: float = 0.05, on_wait=None):
        self.path = Path(path)
        self.file = lock_path(self.path)
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

    def acquire(self):
        key = str(self.path.resolve())
        if key in _HELD:
            raise ArchiveError(f"{self.path}: this process is already writing the archive (nested writers)")
        fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
        start = time.monotonic()
        waited = False
        try:
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
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        _HELD.add(key)
        return self

    def release(self):
        if self._fd is None:
            return
        _HELD.discard(str(self.path.resolve()))
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
