"""Benchmark: one explanation's constants (extract + chain.apply + measures.constants with Π‖M_l‖₁), as the
B1–B3 checks of ``chainlab verify`` run them, against the obvious alternatives, in one run.

For one net and a few test images, per rule (gradient, z⁺, LRP-ε):

* verify's way: implicit operators (``materialize=False``) on one thread (torch, numba, BLAS);
* materialized: explicit sparse matrices on one thread;
* default threads: implicit operators with the thread counts the process starts with (torch's default).

Prints seconds per explanation and the ratios to verify's way.  On a shared 2-core machine the default
threads can be far slower for these batch-1 convolutions (OpenMP threads spin while competing with other
processes); on an idle machine the three are closer.  Run:

    CHAINLAB_DATA=... python scripts/bench_binder.py [--net scenes-cnn-wd1e-4] [--images 4] [--output FILE]

``--smoke``: digits-cnn, one image (seconds).
"""
from __future__ import annotations

import argparse
import os
import time

import torch

import _bench
import chainlab
from chainlab.papers.binder.measure import model_input
from chainlab.papers.context import Context, Settings, one_thread


def per_explanation(model, xs, rule, kw, materialize) -> float:
    t0 = time.perf_counter()
    for x in xs:
        ch = chainlab.extract(model, x, rule, materialize=materialize, **kw)
        chainlab.measures.constants(ch, norms=True)
    return (time.perf_counter() - t0) / len(xs)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--net", default="scenes-cnn-wd1e-4")
    p.add_argument("--images", type=int, default=4)
    _bench.add_options(p)
    a = p.parse_args(argv)
    if a.smoke:
        a.net, a.images = "digits-cnn", 1
    with _bench.printed_to(a.output):
        run(a)


def run(a):
    ctx = Context(Settings(progress=False))
    model = ctx.model(a.net)
    X, _ = ctx.images(a.net, a.images)
    xs = [model_input(model, X, i) for i in range(a.images)]
    print(f"{a.net}, {a.images} images, load average {os.getloadavg()[0]:.1f}, torch threads "
          f"{torch.get_num_threads()} by default")
    print(f"{'rule':<14} {'1 thread, implicit':>20} {'1 thread, matrices':>20} {'default, implicit':>20}")
    for rule, kw in (("gradient", {}), ("zplus", {}), ("lrp-epsilon", {"epsilon": 0.01})):
        per_explanation(model, xs[:1], rule, kw, False)          # warm-up (numba, torch)
        with one_thread():
            ours = per_explanation(model, xs, rule, kw, False)
            mat = per_explanation(model, xs, rule, kw, True)
        dflt = per_explanation(model, xs, rule, kw, False)
        print(f"{rule:<14} {ours:>18.3f} s {mat:>11.3f} s (×{mat / ours:.3g}) {dflt:>11.3f} s (×{dflt / ours:.3g})")


if __name__ == "__main__":
    main()
