"""What every claim check shares during one run: the settings, each net loaded once, its images, a cache of
expensive passes, and the records the verdicts rest on.

The measure code of every paper takes a :class:`Context`; the app creates it (and writes what the run
recorded), the papers never touch files.  Nets are named: a shipped net (``chainlab.models.NAMES``) or a net the
user registered with :meth:`Context.add_net` (a model and its images) — the claims that can run on one net then
run on it with the same code.
"""
from __future__ import annotations

import contextlib
import functools
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import MissingFileError
from ..extraction import extract
from ..nets import data, models
from ..nets.architectures import INPUT_SHAPES

__all__ = ["Settings", "Context", "NetEntry", "Chunk", "capture", "progress", "fmt", "one_thread", "on_one_thread"]


@dataclass
class Settings:
    """How much work.  ``quick``: the CI-sized run (digits nets, few images); default: the main job;
    ``extended``: more of each paper's protocol (each addition says why it is not in the default)."""

    quick: bool = False
    extended: bool = False
    seed: int = 0
    progress: bool = True
    images: int | None = None     # a run on a user's net: at most this many images in any per-image measure
    chunk: int | None = None      # … measured in chunks of this many images (the unit of resuming and of Dask tasks)
    first_alone: bool = False     # … the first chunk image 0 alone (the run's probe, kept as its first chunk)
    claims: tuple | None = None   # … the claims it decides (None: every claim): a paper measures only what they read

    def cap(self, n: int) -> int:
        """A protocol's image count ``n`` capped at ``images`` (a user's run); ``n`` otherwise."""
        return n if self.images is None else min(int(n), int(self.images))

    def chunks(self, n: int, default: int | None = None) -> list:
        """The image ranges of ``n`` images in chunks of ``chunk`` (else ``default``; None: one chunk); with
        ``first_alone`` the first range is image 0 alone and the chunks follow from image 1."""
        size = self.chunk or default or max(n, 1)
        start = 1 if self.first_alone and n > 1 and size > 1 else 0
        return [range(0, 1)] * start + [range(lo, min(lo + size, n)) for lo in range(start, n, size)]


@dataclass(frozen=True)
class Chunk:
    """One per-image measurement of a claim on a chunk of images: ``fn(ctx, *args, **kwargs)``, a function of the
    measure code that caches its result in ``ctx.cache`` and writes its records — the unit a run on a user's net
    stores, resumes and farms out (``chainlab.app.own``).  ``group`` names the claim(s) and the net (a progress
    bar), ``images`` how many images it measures, ``after`` the chunks whose cached results it reads."""

    fn: object
    args: tuple = ()
    kwargs: tuple = ()
    group: str = ""
    images: int = 1
    after: tuple = ()

    def __call__(self, ctx):
        return self.fn(ctx, *self.args, **dict(self.kwargs))

    def __repr__(self):          # stable across processes (the chunk's identity in a run's store)
        return (f"Chunk({self.fn.__module__}:{self.fn.__qualname__}, {self.args!r}, {self.kwargs!r}, "
                f"{self.images})")


def capture(ctx, call: Chunk):
    """Run chunk ``call`` in ``ctx``: (the cache entries it added — not the transient helpers, not the images it
    read —; the records it wrote; seconds): what a run that stores, resumes or farms out chunks keeps of it."""
    before = set(ctx.cache)
    n = len(ctx.records)
    t0 = time.perf_counter()
    call(ctx)
    entries = {k: v for k, v in ctx.cache.items() if k not in before and k not in ctx.transient and k not in ctx.inputs}
    return entries, ctx.records[n:], time.perf_counter() - t0


@dataclass
class NetEntry:
    """A net registered for a run: the module, its images (float64, model-shaped), optional labels, and what the
    report must say about it (``trained``: False for a randomly initialized architecture)."""

    model: torch.nn.Module
    x: torch.Tensor
    y: np.ndarray | None = None
    trained: bool = True
    description: str = ""
    extra: dict = field(default_factory=dict)


class Context:
    """Shared state of one verify run (module docstring)."""

    def __init__(self, settings: Settings | None = None):
        self.s = settings or Settings()
        self._models: dict = {}
        self.registered: dict = {}        # name → NetEntry (nets given by the user)
        self.missing: dict = {}           # net → why its weights could not be loaded
        self.cache: dict = {}             # per-paper memo of expensive passes
        self.transient: set = set()       # cache keys of helpers (traced nets, derived models) recomputed on demand
        self.inputs: set = set()          # cache keys of the images read (every process makes its own)
        self.records: list[dict] = []

    def release_transient(self) -> None:
        """Drop the cached helpers marked transient (a traced float64 copy of a net, a derived model: GBs for a
        VGG-16) — a run on a user's net does so between claim groups; whoever needs one again recomputes it."""
        for key in self.transient:
            self.cache.pop(key, None)
        self.transient.clear()

    # -- nets ----------------------------------------------------------------------------------
    def add_net(self, name: str, entry: NetEntry) -> None:
        """Register a user's net: claims asked for ``name`` measure ``entry.model`` on ``entry.x``."""
        self.registered[name] = entry
        self._models[name] = entry.model

    def model(self, net):
        """The net's module (loaded once); MissingFileError when a shipped net's weights are missing."""
        if net not in self._models:
            self._models[net] = models.load(net)
        return self._models[net]

    def shipped(self, net):
        """The net, or None when its weights are missing (the reason kept in ``missing[net]``): the claims report
        missing nets in their verdicts instead of failing."""
        if net not in self._models and net not in self.missing:
            try:
                self.model(net)
            except MissingFileError as e:
                self.missing[net] = str(e)
        return self._models.get(net)

    def trained(self, net) -> bool:
        return self.registered[net].trained if net in self.registered else True

    def images(self, net, n: int):
        """(X, y): the first ``n`` held-out images of the net's data, float64 and shaped for it — a registered net's
        own images; 32×32 RGB nets: ``data.test_set("scenes")`` (2000 held-out scenes, so every claim and every
        n reads a prefix of one fixed set); the digits nets: the 360 test digits.  y is None when unknown."""
        if net in self.registered:
            e = self.registered[net]
            return e.x[:n], (None if e.y is None else np.asarray(e.y[:n]))
        scenes = INPUT_SHAPES.get(net) == (1, 3, 32, 32)
        key = ("images", "32×32 scenes" if scenes else net)     # every scenes net reads the same tensor (49 MB)
        if key not in self.cache:
            if scenes:
                if "scenes" not in self.cache:          # made once per run, shared by every 32×32 net
                    self.cache["scenes"] = data.test_set("scenes")
                    self.inputs.add("scenes")
                x, y = self.cache["scenes"]
            else:
                x, y = self.digits.x_test, self.digits.y_test
            self.cache[key] = (data.model_input(net, x).to(torch.float64), np.asarray(y, dtype=np.int64))
            self.inputs.add(key)
        X, y = self.cache[key]
        if n > len(X):
            raise ValueError(f"{net}: {n} images asked, the held-out set has {len(X)}")
        return X[:n], y[:n]

    def image_range(self, net, images: range) -> range:
        """``images`` cut to the images the net has (a registered net may bring fewer than a setting asks for)."""
        if net in self.registered:
            return range(images.start, min(images.stop, len(self.registered[net].x)))
        return images

    @property
    def digits(self):
        """The shipped 8×8 digits (``data.load_digits()``), loaded once."""
        if "digits" not in self.cache:
            self.cache["digits"] = data.load_digits()
            self.inputs.add("digits")
        return self.cache["digits"]

    def stream(self, net, rule, n: int, **opts):
        """Chains of the first ``n`` images of the net, extracted one at a time and not kept (large nets)."""
        X, _ = self.images(net, n)
        model = self.model(net)
        for i in progress(range(n), f"{net} · {rule}", self.s.progress):
            ch = extract(model, X[i:i + 1].to(next(model.parameters()).dtype), rule, **opts)
            ch.meta.update(net=net, image=i)
            yield ch

    def record(self, measure: str, **row) -> dict:
        """Append one tidy record (``measure`` names its table) and return it."""
        r = {"measure": measure, **row}
        self.records.append(r)
        return r


def progress(it, desc, on):
    """``it`` wrapped in a progress bar on stderr when ``on``."""
    if not on:
        return it
    from tqdm import tqdm
    return tqdm(it, desc=desc, unit="image", file=sys.stderr, leave=False)


def fmt(v, digits=4):
    """A number for a verdict's text: 4 significant digits, scientific for very small or large values."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float) and (abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3)):
        return f"{v:.3g}"
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


@contextlib.contextmanager
def one_thread():
    """torch, numba and BLAS on one thread while measuring (results then do not depend on the thread settings:
    torch's reductions are not bit-identical across thread counts); batch-1 extractions of small nets gain nothing from
    more, and on a shared machine spinning OpenMP threads make them 10–40× slower (measured: scenes-cnn
    z⁺ extraction + explanation 0.05 s on one thread, 2.0 s on two, under load)."""
    import numba
    from threadpoolctl import threadpool_limits

    n, nb = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(n)
        numba.set_num_threads(nb)


def on_one_thread(claim):
    """The claim run inside :func:`one_thread`, so its records do not depend on the thread settings
    (``run.__wrapped__`` is the claim)."""
    @functools.wraps(claim)
    def run(ctx):
        with one_thread():
            return claim(ctx)
    return run
