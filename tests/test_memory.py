"""chainlab.memory: the RSS probes and keep_freed_memory (freed blocks reused instead of fresh zero-filled pages)."""
import subprocess
import sys

import numpy as np

from chainlab import memory

ALLOC = """
import resource, sys
import numpy as np
from chainlab import memory
if sys.argv[1] == "keep":
    assert memory.keep_freed_memory()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    a = np.ones(8_000_000)       # 64 MB, above glibc's default mmap threshold
    del a
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


def _faults(mode):
    p = subprocess.run([sys.executable, "-c", ALLOC, mode], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-800:]
    return int(p.stdout.split()[-1])


def test_keep_freed_memory_reuses_freed_blocks():
    """20 allocations of 64 MB: by default each maps fresh pages (page faults for every block: how many per block
    depends on the kernel's page sizes); with keep_freed_memory the first block's pages are reused, so the faults
    are about one block's — measured here 5920 against 283."""
    default, kept = _faults("default"), _faults("keep")
    assert kept * 5 < default


def test_rss_probes_see_an_allocation_and_a_missing_process():
    before = memory.rss_mib()
    a = np.ones(50_000_000)                  # 400 MB touched
    assert memory.rss_mib() - before > 300 and memory.peak_mib() >= memory.rss_mib() - 1
    del a
    assert memory.rss_mib(2 ** 22 + 12345) == 0.0      # no such pid (above Linux's pid_max default)


def test_release_freed_memory_hands_freed_heap_pages_back():
    """Mid-sized blocks (heap memory under keep_freed_memory) freed in between live ones leave holes the allocator
    keeps resident; release_freed_memory() hands their pages back: RSS falls by most of what was freed (glibc), or
    nothing is claimed where the C library is another."""
    from chainlab.memory import keep_freed_memory, release_freed_memory, rss_mib
    if not keep_freed_memory():             # not glibc: nothing to hand back
        assert release_freed_memory() is False
        return
    import numpy as np
    base = rss_mib()
    blocks = [np.ones(1 << 20) for _ in range(160)]         # 160 × 8 MiB, touched
    assert rss_mib() - base > 1000
    del blocks[::2]                                         # 80 holes of 8 MiB between live blocks
    kept = rss_mib()
    assert kept - base > 1000                               # freed, but resident (kept for reuse)
    assert release_freed_memory() is True
    assert kept - rss_mib() > 0.8 * 640                     # the holes' pages are gone
    del blocks
