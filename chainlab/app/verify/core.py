"""What every claim check shares: the verdict, the run's settings, and a context that loads each net once.

A :class:`Verdict` is a result, not an error: a claim that is not reproduced is reported with the
numbers it rests on, beside the paper's.
"""
from __future__ import annotations

import contextlib
import functools
import math
import sys
from dataclasses import dataclass

import numba
import torch
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from ...errors import MissingFileError
from ...extraction import extract
from ...nets import data, models
from ...nets.architectures import INPUT_SHAPES

__all__ = ["Verdict", "Settings", "Context", "progress", "fmt", "RULE_OPTIONS", "LABELS"]

RULE_OPTIONS = {"alpha-beta": {"alpha": 2.0, "beta": 1.0}}
LABELS = {"zplus": "LRP-α1β0 (z⁺)", "alpha-beta": "LRP-α2β1", "lrp-0": "LRP-z", "gradient": "gradient"}


@dataclass
class Verdict:
    claim: str
    statement: str
    paper: str
    observed: str
    reproduced: bool | None
    seconds: float = 0.0
    protocol: str = ""            # how it was measured, in one line (shown beside the paper's statement)
    figures: tuple = ()           # PNG names of the report that show it

    @property
    def label(self) -> str:
        return {True: "reproduced", False: "not reproduced", None: "not checked"}[self.reproduced]


@dataclass
class Settings:
    """How much work.  ``quick``: the CI-sized run (digits nets only, few images);  default: the main
    job (< 10 min on 2 cores);  ``extended``: more of each paper's protocol (Sixt: the other injection points
    of App. F, cascading randomization and two-object scenes on every net)."""
    quick: bool = False
    extended: bool = False
    seed: int = 0
    progress: bool = True


class Context:
    """Shared state of one verify run: models, inputs and extracted chains (each extracted once)."""

    def __init__(self, settings: Settings):
        self.s = settings
        self.digits = data.load_digits()
        self._models = {}
        self.missing: dict = {}           # net → why its weights could not be loaded (see :meth:`shipped`)
        self.cache: dict = {}             # per-paper memo of expensive passes
        self.records: list[dict] = []

    def model(self, net):
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

    def x(self, net, i):
        """Test image ``i`` of the net's own dataset (32×32 RGB nets: the held-out scenes), shaped for it."""
        if INPUT_SHAPES.get(net) == (1, 3, 32, 32):
            if "scenes_test" not in self.cache:
                self.cache["scenes_test"] = data.test_set("scenes")[0]
            return data.model_input(net, self.cache["scenes_test"][i:i + 1])
        return data.model_input(net, self.digits.x_test[i:i + 1])

    def stream(self, net, rule, n=None, **opts):
        """Chains of the first ``n`` test images, extracted one at a time and not kept (large nets)."""
        n = self.s.images(net) if n is None else n
        for i in progress(range(n), f"{net} · {rule}", self.s.progress):
            ch = extract(self.model(net), self.x(net, i), rule, **{**RULE_OPTIONS.get(rule, {}), **opts})
            ch.meta.update(net=net, image=i)
            yield ch


def progress(it, desc, on):
    if not on:
        return it
    return tqdm(it, desc=desc, unit="image", file=sys.stderr, leave=False)


def fmt(v, digits=4):
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
