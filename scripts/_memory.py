"""Memory probes shared by the benchmark scripts (Linux /proc, with a getrusage fallback).

rss_mib(): current resident set size;  reset_peak(): reset the kernel's peak mark VmHWM
(/proc/self/clear_refs = 5);  peak_mib(): VmHWM, the peak RSS since start or the last reset.
"""
import os
import resource


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak():
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
