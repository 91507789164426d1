"""The measured chunks of a user-net run: computed here or on Dask workers, kept in the resumable store, handed to
the claims through the run's context.

The claims' measure functions are functions of (ctx, net, image range, …) that cache their result in
``ctx.cache`` and write records with ``ctx.record`` (:mod:`chainlab.papers`).  A :class:`Call` names one such
call on one chunk of images.  :func:`run_calls` makes sure every call's cache entries are in the run's context
before the claims run — so the claims find them and measure nothing twice:

* a call whose chunk is in the store (:class:`~.store.ChunkStore`) is loaded from it (``--resume``);
* the others are computed — serially in this process, or as one Dask task each (``--workers N`` /
  ``--scheduler ADDR``, :func:`chainlab.app.distributed.run`; each worker rebuilds the net and the images once
  from the :class:`Source` and keeps them) — and each result is stored as soon as it arrives (this process is
  the only writer), so a killed run loses at most the chunks being computed.  Between groups of chunks (claims) the
  context's transient helpers — traced float64 copies, derived models — are released (``Context.release_transient``).

What a call produced is captured as the cache entries it added and the records it wrote (:func:`capture`), so
the measure code needs no change to be resumed or farmed out.  Progress: one bar per (claim, net) group.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import sys
from dataclasses import dataclass, field

from tqdm import tqdm

from ...errors import InputError
from ...memory import keep_freed_memory, release_freed_memory
from ...nets.specs import ModelSpec
from ...papers.context import Chunk, Context, NetEntry, Settings, capture
from .. import distributed
from .prepare import prepare
from .store import encodable

__all__ = ["Source", "Call", "call_name", "run_calls", "capture", "context_for", "worker_call"]


@dataclass(frozen=True)
class Source:
    """What a worker needs to rebuild the run's context: the model spec, the images (path, preprocessing, number,
    labels file) and their digest (checked), the net's registered name, the settings (as items)."""

    spec: ModelSpec
    images: str
    preprocess: str
    n_images: int
    labels: str | None
    digest: str
    net: str
    settings: tuple = ()


Call = Chunk       # one measured chunk: chainlab.papers.context.Chunk


def call_name(call: Chunk) -> str:
    """Stable identity of a chunk across runs (the store's entry name): its function and arguments, as text."""
    text = f"{call.fn.__module__}:{call.fn.__qualname__}|{call.args!r}|{sorted(call.kwargs)!r}"
    if " at 0x" in text:
        raise TypeError(f"chunk {call.fn.__qualname__} has an argument without a stable text form: {text[:200]}")
    return hashlib.sha256(text.encode()).hexdigest()


def context_for(user, settings: Settings) -> Context:
    """A run context with the user's net registered under its name (untrained nets marked)."""
    ctx = Context(settings)
    imgs = user.images
    ctx.add_net(user.name, NetEntry(user.model, imgs.x, imgs.labels, trained=user.info.trained,
                                    description=user.info.description,
                                    extra={"n_classes": user.n_classes}))
    return ctx


@functools.lru_cache(maxsize=2)
def _worker_context(source: Source) -> Context:
    keep_freed_memory()
    user = prepare(source.spec.arg, source.images, weights=source.spec.weights,
                   preprocess=source.preprocess, n_images=source.n_images, labels=source.labels,
                   seed=source.spec.seed)
    if user.images.digest != source.digest:
        raise InputError(f"the worker read other images from {source.images} than the run (digest differs)")
    return context_for(user, Settings(**dict(source.settings), progress=False))


def worker_call(source: Source, call: Call, needed: dict):
    """A Dask task: the call on the worker's context, after the cache entries ``needed`` (what the chunks it comes
    after produced); (the entries it added that can be stored — derived models stay on the worker —, records,
    seconds)."""
    ctx = _worker_context(source)
    ctx.cache.update(needed)
    entries, records, dt = capture(ctx, call)
    release_freed_memory()
    return {k: v for k, v in entries.items() if encodable(v)}, records, dt


@dataclass
class _Bars:
    totals: dict
    on: bool
    bars: dict = field(default_factory=dict)

    def tick(self, call: Call):
        if not self.on:
            return
        if call.group not in self.bars:
            self.bars[call.group] = tqdm(total=self.totals[call.group], desc=call.group, unit="image",
                                         file=sys.stderr, leave=True)
        self.bars[call.group].update(call.images)

    def close(self):
        for b in self.bars.values():
            b.close()


def _merge(ctx, entries, records):
    ctx.cache.update(entries)
    ctx.records.extend(records)


def _waves(calls) -> list:
    """The calls in waves: each call after every call of its ``after`` (which must be among ``calls``)."""
    names = {call_name(c) for c in calls}
    done, waves, left = set(), [], list(calls)
    while left:
        wave = [c for c in left if all(call_name(a) in done or call_name(a) not in names for a in c.after)]
        if not wave:
            raise ValueError("chunks that wait for each other")
        waves.append(wave)
        done |= {call_name(c) for c in wave}
        left = [c for c in left if c not in wave]
    return waves


def run_calls(ctx: Context, calls, store, *, source: Source | None = None, workers: int = 1, scheduler=None,
              progress: bool = True) -> dict:
    """Every call's results in ``ctx`` (module docstring); {"stored": n loaded, "computed": n, "seconds": {call name:
    s computed now}, "stored_seconds": {call name: s it took when stored}}."""
    calls = list(dict.fromkeys(calls))
    totals = {}
    for c in calls:
        totals[c.group] = totals.get(c.group, 0) + c.images
    bars = _Bars(totals, progress)
    seconds, loaded, todo, stored_seconds, made = {}, 0, [], {}, {}
    try:
        for c in calls:
            got = store.get(call_name(c)) if store is not None else None
            if got is not None:
                _merge(ctx, got[0], got[1])
                made[call_name(c)] = got[0]
                stored_seconds[call_name(c)] = got[2]
                loaded += 1
                bars.tick(c)
            else:
                todo.append(c)
        if workers == 1 and scheduler is None:
            group = None
            for c in todo:
                if c.group != group:     # a traced copy or derived model of the last group: GBs for a VGG-16
                    ctx.release_transient()
                    group = c.group
                entries, records, dt = capture(ctx, c)
                if store is not None:
                    store.put(call_name(c), entries, records, dt)
                seconds[call_name(c)] = dt
                bars.tick(c)
                release_freed_memory()      # a VGG-16 chunk frees GBs: not resident under the next chunk
        elif todo:
            with _cluster(workers, scheduler) as client:
                _run_waves(ctx, todo, store, source, client, made, seconds, bars)
    finally:
        bars.close()
        ctx.release_transient()
    return {"stored": loaded, "computed": len(todo), "seconds": seconds, "stored_seconds": stored_seconds}


@contextlib.contextmanager
def _cluster(workers: int, scheduler):
    """One Dask client for the whole run (the workers keep the net between waves): a LocalCluster of ``workers``
    single-threaded processes, or the scheduler at ``scheduler``."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot connect to the dask scheduler at {scheduler!r}: {exc}") from None
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _run_waves(ctx, todo, store, source, client, made, seconds, bars):
    """The chunks ``todo`` on the Dask ``client``, wave after wave (a chunk after the chunks it reads); each result
    stored and merged into ``ctx`` as it arrives."""
    for wave in _waves(todo):
        by_name = {call_name(c): c for c in wave}

        def done(name, result):
            entries, records, dt = result
            if store is not None:
                store.put(name, entries, records, dt)
            _merge(ctx, entries, records)
            made[name] = entries
            seconds[name] = dt
            bars.tick(by_name[name])

        tasks = {}
        for name, c in by_name.items():
            needed = {}
            for a in c.after:
                needed.update(made.get(call_name(a), {}))
            tasks[name] = (worker_call, (source, c, needed))
        distributed.run(tasks, done, scheduler=client, progress=False)
