"""The main job's measured chunks on a pool of single-threaded worker processes.

The claims' per-image measurements are :class:`~chainlab.papers.context.Chunk` s (``plan(ctx, claims)`` of a paper
lists them): a function of (ctx, net, image range, …) that caches its result in ``ctx.cache``.  :func:`measure`
computes every chunk of a plan on ``workers`` processes (this one among them) and merges each chunk's new cache
entries into the run's context, and its records **in plan order** — so the claims then find their passes
measured, and what they record does not depend on which process measured what or in which order the results came
back.

Each worker (a ``spawn`` ed process: no forked OpenMP or BLAS state) builds its own :class:`Context` from the run's
settings, loads the nets it is asked about once, and measures on one thread (torch, numba, BLAS): two such
processes keep 2 cores busy with no thread waiting for another (a torch convolution backward on 2 threads
synchronizes per call), and the results equal a one-thread serial run bit for bit (tests/test_verify_pool.py).
A chunk that reads the results of others (``after``) is sent once those arrived, with their entries.
Helpers the measure code marks transient (traced float64 copies) stay in the worker.

Memory: each worker holds the nets and images it measured; the run's peak is at most the main process's plus the
workers' peaks (:func:`measure` returns the latter).
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from tqdm import tqdm

from ...errors import RunError
from ...memory import keep_freed_memory, peak_mib, rss_mib
from ...papers.context import Context, Settings, capture, one_thread

__all__ = ["measure"]

_WORKER: dict = {}
_SAMPLE = 0.5              # seconds between two samples of the processes' memory


def _start(settings: dict) -> None:
    """Worker initializer: freed memory kept for reuse (:func:`~chainlab.memory.keep_freed_memory`), the worker's
    context (no progress bars: the main process shows one)."""
    keep_freed_memory()
    _WORKER["ctx"] = Context(Settings(**{**settings, "progress": False}))


def _task(call, needed: dict):
    """One chunk in the worker: (entries, records, seconds, (the worker's pid, its peak RSS in MiB)).  The worker
    keeps only its nets, images and the helpers of the current group (claim and net): what it sends back lives in
    the main process."""
    ctx = _WORKER["ctx"]
    ctx.cache.update(needed)
    entries, records, dt = _measure(ctx, call, _WORKER)
    for k in list(entries) + list(needed):
        ctx.cache.pop(k, None)
    return entries, records, dt, (os.getpid(), peak_mib())


def _measure(ctx, call, state):
    """Chunk ``call`` measured in ``ctx`` as every process of the pool measures it — on one thread, with only the
    helpers of the current group (``state["group"]``: claim and net) kept: (entries, records, seconds); the records
    are taken out of ``ctx.records`` (they join the run's in plan order)."""
    if state.get("group") != call.group:
        ctx.release_transient()
        state["group"] = call.group
    n = len(ctx.records)
    with one_thread():
        entries, records, dt = capture(ctx, call)
    records = list(records)
    del ctx.records[n:]
    return entries, records, dt


def _settings(s: Settings) -> dict:
    return {k: getattr(s, k) for k in s.__dataclass_fields__}


def measure(ctx: Context, chunks, workers: int = 2, *, desc: str = "measuring", meanwhile=None) -> dict:
    """Every chunk of ``chunks`` (a plan) measured by ``workers`` processes — this one and ``workers`` − 1 worker
    processes — and merged into ``ctx`` in plan order; {"chunks": n, "seconds": [s per chunk, plan order],
    "worker_peak_mib": [peak RSS of each worker process], "seconds_wall": s, "seconds_by_group": {chunk group: s of
    its chunks}, "peak_bound_mib": this process's peak plus the workers' (an upper bound on the run's memory so
    far), "peak_sampled_mib": the largest sum of this process's and the workers' RSS seen (sampled after every
    chunk of this process and every 0.5 s while it waits)}.  This process measures too (on one thread, like the
    workers): one process fewer holds torch, the nets and the images; ``meanwhile()`` (work that needs none of the
    chunks, e.g. the claims of a paper without a plan) runs here, on one thread, once the workers have theirs.
    A worker's exception is raised here unchanged; a worker that dies (out of memory, killed) is a RunError naming
    the chunk."""
    chunks = list(dict.fromkeys(chunks))
    planned = set(chunks)
    for c in chunks:
        for a in c.after:
            if a not in planned:
                raise ValueError(f"chunk {c!r} comes after {a!r}, which is not in the plan")
    t0 = time.perf_counter()
    results: dict = {}
    peaks: dict = {}
    state = {"sampled": 0.0, "group": None}
    waiting = list(chunks)
    running: dict = {}
    helpers = max(int(workers) - 1, 0)
    bar = tqdm(total=len(chunks), desc=desc, unit="chunk", file=sys.stderr, leave=False, disable=not ctx.s.progress)
    pool = (ProcessPoolExecutor(max_workers=helpers, mp_context=multiprocessing.get_context("spawn"),
                                initializer=_start, initargs=(_settings(ctx.s),)) if helpers else None)

    def sample():
        procs = list(getattr(pool, "_processes", None) or {}) if pool is not None else []
        state["sampled"] = max(state["sampled"], rss_mib() + sum(rss_mib(p) for p in procs))

    def collect(done):
        for f in done:
            c = running.pop(f)
            try:
                entries, records, dt, (pid, peak) = f.result()
            except BrokenProcessPool as exc:
                raise RunError(f"a worker process died while measuring {c.group} (images {_images(c)}): {exc}; "
                               "rerun with --workers 1 to measure in this process") from None
            results[c] = (entries, records, dt)
            ctx.cache.update(entries)        # at once: a chunk measured here may come after it
            peaks[pid] = max(peaks.get(pid, 0.0), peak)
            bar.update(1)

    try:
        while waiting or running:
            ready = [c for c in waiting if all(a in results for a in c.after)]
            # at most one chunk queued per worker beyond the one it measures: a chunk that becomes ready (its
            # ``after`` done) is not stuck behind the whole plan, and this process finds work too
            for c in ready[:max(0, 2 * helpers - len(running))]:
                needed = {}
                for a in c.after:
                    needed.update(results[a][0])
                running[pool.submit(_task, c, needed)] = c
                waiting.remove(c)
            if meanwhile is not None:
                with one_thread():
                    meanwhile()
                meanwhile = None
                sample()
                continue
            mine = next((c for c in waiting if all(a in results for a in c.after)), None)
            if mine is not None:
                waiting.remove(mine)
                results[mine] = _measure(ctx, mine, state)
                bar.update(1)
                sample()
                collect([f for f in list(running) if f.done()])
            elif running:
                done, _ = wait(running, timeout=_SAMPLE, return_when=FIRST_COMPLETED)
                sample()
                collect(done)
            elif waiting:
                raise ValueError("chunks that wait for each other")
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    ctx.release_transient()
    for c in chunks:                         # plan order: the records as a serial run writes them
        ctx.records.extend(results[c][1])
    by_group: dict = {}
    for c in chunks:
        by_group[c.group] = by_group.get(c.group, 0.0) + results[c][2]
    return {"chunks": len(chunks), "seconds": [results[c][2] for c in chunks], "worker_peak_mib": list(peaks.values()),
            "seconds_wall": time.perf_counter() - t0, "seconds_by_group": by_group,
            "peak_bound_mib": peak_mib() + sum(peaks.values()), "peak_sampled_mib": state["sampled"]}


def _images(c) -> str:
    r = next((a for a in c.args if isinstance(a, range)), None)
    return f"{r.start}–{r.stop - 1}" if r is not None else "—"
