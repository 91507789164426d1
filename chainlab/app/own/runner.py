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
  the only writer), so a killed run loses at most the chunks being computed.

What a call produced is captured as the cache entries it added and the records it wrote (:func:`capture`), so
the measure code needs no change to be resumed or farmed out.  Progress: one bar per (claim, net) group.
"""
from __future__ import annotations

import functools
import hashlib
import sys
import time
from dataclasses import dataclass, field

from tqdm import tqdm

from ...errors import InputError
from ...nets.specs import ModelSpec
from ...papers.context import Context, NetEntry, Settings
from .. import distributed
from .prepare import prepare

__all__ = ["Source", "Call", "run_calls", "capture", "context_for", "worker_call"]


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


@dataclass(frozen=True)
class Call:
    """One measure call ``fn(ctx, *args, **kwargs)`` on a chunk of ``images`` images; ``group`` labels its
    progress bar (claim and net)."""

    fn: object
    args: tuple = ()
    kwargs: tuple = ()
    group: str = ""
    images: int = 1

    @property
    def name(self) -> str:
        """Stable identity of the call (the store's entry name)."""
        text = f"{self.fn.__module__}:{self.fn.__qualname__}|{self.args!r}|{sorted(self.kwargs)!r}"
        return hashlib.sha256(text.encode()).hexdigest()

    def __call__(self, ctx):
        return self.fn(ctx, *self.args, **dict(self.kwargs))


def capture(ctx: Context, call: Call):
    """Run ``call`` in ``ctx``; (cache entries it added, records it wrote, seconds)."""
    before = set(ctx.cache)
    n = len(ctx.records)
    t0 = time.perf_counter()
    call(ctx)
    entries = {k: v for k, v in ctx.cache.items() if k not in before}
    return entries, ctx.records[n:], time.perf_counter() - t0


def context_for(user, settings: Settings) -> Context:
    """A run context with the user's net registered under its name (untrained nets marked)."""
    ctx = Context(settings)
    imgs = user.images
    ctx.add_net(user.name, NetEntry(user.model, imgs.x, imgs.labels, trained=user.info.trained,
                                    description=user.info.description,
                                    extra={"traced": user.traced, "n_classes": user.n_classes}))
    return ctx


@functools.lru_cache(maxsize=2)
def _worker_context(source: Source) -> Context:
    user = prepare(source.spec.arg, source.images, weights=source.spec.weights,
                   preprocess=source.preprocess, n_images=source.n_images, labels=source.labels,
                   seed=source.spec.seed)
    if user.images.digest != source.digest:
        raise InputError(f"the worker read other images from {source.images} than the run (digest differs)")
    return context_for(user, Settings(**dict(source.settings), progress=False))


def worker_call(source: Source, call: Call):
    """A Dask task: the call on the worker's context; (entries, records, seconds)."""
    return capture(_worker_context(source), call)


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


def run_calls(ctx: Context, calls, store, *, source: Source | None = None, workers: int = 1, scheduler=None,
              progress: bool = True) -> dict:
    """Every call's results in ``ctx`` (module docstring); {"stored": n loaded, "computed": n, "seconds": {call name:
    s computed now}, "stored_seconds": {call name: s it took when stored}}."""
    calls = list(dict.fromkeys(calls))
    totals = {}
    for c in calls:
        totals[c.group] = totals.get(c.group, 0) + c.images
    bars = _Bars(totals, progress)
    seconds, loaded, todo, stored_seconds = {}, 0, [], {}
    try:
        for c in calls:
            got = store.get(c.name) if store is not None else None
            if got is not None:
                _merge(ctx, got[0], got[1])
                stored_seconds[c.name] = got[2]
                loaded += 1
                bars.tick(c)
            else:
                todo.append(c)
        if workers == 1 and scheduler is None:
            for c in todo:
                entries, records, dt = capture(ctx, c)
                if store is not None:
                    store.put(c.name, entries, records, dt)
                seconds[c.name] = dt
                bars.tick(c)
        elif todo:
            by_name = {c.name: c for c in todo}

            def done(name, result):
                entries, records, dt = result
                if store is not None:
                    store.put(name, entries, records, dt)
                _merge(ctx, entries, records)
                c = by_name[name]
                seconds[c.name] = dt
                bars.tick(c)

            tasks = {c.name: (worker_call, (source, c)) for c in todo}
            distributed.run(tasks, done, workers=workers, scheduler=scheduler, progress=False)
    finally:
        bars.close()
    return {"stored": loaded, "computed": len(todo), "seconds": seconds, "stored_seconds": stored_seconds}
