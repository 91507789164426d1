"""The memory this process uses (Linux /proc, with a getrusage fallback), in MiB.

rss_mib(): the current resident set size (of this or another process); peak_mib(): the peak resident set size
(VmHWM) since the start or the last reset_peak(), which resets the kernel's peak mark (/proc/self/clear_refs = 5).
The command line's reports and the benchmark scripts use the same probes.

keep_freed_memory(): glibc's allocator keeps freed blocks up to 1 GiB for reuse instead of handing every block above
its mmap threshold back to the kernel, which then zero-fills fresh pages on the next allocation of the same size.
The batched backward passes allocate and free tensors of 10–300 MB per layer; with the default settings a third of
their time went to page faults (an S6 chunk of vgg-cifar on one thread: 33.7 s → 17.5 s, an S1 pass chunk and an
S6 chunk: 36.0 → 30.3 s with 2.2 M → 0.15 M minor faults, peak RSS 1586 → 1581 MiB; /tmp probes of this change).

release_freed_memory(): between the chunks of a run on a user's net, the freed blocks go back to the kernel (gc, then
glibc's malloc_trim): on VGG-16 at 224×224, B1 alone on 2 images through the command line peaked at 8.4 GB without
it (the second image's chunks on top of the first's freed, fragmented blocks) and 7.4 GB with it.
"""
from __future__ import annotations

import os
import resource

__all__ = ["rss_mib", "peak_mib", "reset_peak", "keep_freed_memory", "release_freed_memory"]

_GIB = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3          # mallopt parameters (malloc.h)


def _glibc(name: str):
    """The C library's function ``name`` (glibc's allocator controls), or None where there is none."""
    import ctypes
    import ctypes.util

    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def keep_freed_memory(limit: int = _GIB) -> bool:
    """Blocks below ``limit`` bytes come from the heap and freed memory stays there up to ``limit`` (glibc's
    ``mallopt(M_MMAP_THRESHOLD)`` and ``M_TRIM_THRESHOLD``); False where the C library is not glibc (a no-op)."""
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, int(limit))) and bool(mallopt(_M_TRIM_THRESHOLD, int(limit)))


def release_freed_memory() -> bool:
    """Collect reference cycles, then hand the allocator's free pages back to the kernel (glibc's ``malloc_trim(0)``,
    every arena): between two chunks of a run on a large net, so that one chunk's freed tensors (hundreds of MB each
    on a VGG-16) do not stay resident under the next one's.  False where the C library is not glibc (then only the
    collection)."""
    import gc

    gc.collect()
    trim = _glibc("malloc_trim")
    if trim is None:
        return False
    trim(0)
    return True


def rss_mib(pid: int | str = "self") -> float:
    """The resident set size of this process (or of process ``pid``; 0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def reset_peak() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process (Linux)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_mib() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
