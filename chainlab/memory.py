"""The memory this process uses (Linux /proc, with a getrusage fallback), in MiB.

rss_mib(): the current resident set size; peak_mib(): the peak resident set size (VmHWM) since the start or the last
reset_peak(), which resets the kernel's peak mark (/proc/self/clear_refs = 5).  The command line's reports and the
benchmark scripts use the same probes.
"""
from __future__ import annotations

import os
import resource

__all__ = ["rss_mib", "peak_mib", "reset_peak"]


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


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
