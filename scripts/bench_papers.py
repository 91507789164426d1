"""Budget check of Binder et al.'s and Mehrpanah et al.'s claims in ``chainlab verify``: seconds per claim and in
total, with the seeds the default protocol expects — simulated, until they ship, by copies of the shipped seed-0
nets with perturbed weights registered in the run's Context under the seed names (the same code paths, the same
sizes; only the numbers differ).

    python scripts/bench_papers.py [--seeds 3] [--small-betas] [--claims B1,B2,B3,M1,M2,M3] [--quick|--extended]
                                   [--output FILE]

``--smoke``: the quick protocol (digits nets and a few scenes), seconds.  A conv throughput probe (GFLOP/s of one 3×3 conv, one thread) before and after says how busy the machine was:
timings are only comparable within one run.  Peak memory: run under ``/usr/bin/time -v``.
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

import _bench
from chainlab.app import verify
from chainlab.papers.binder import protocol as BP
from chainlab.papers.context import Context, NetEntry, Settings, one_thread
from chainlab.papers.mehrpanah import protocol as MP


def probe() -> float:
    W = torch.randn(64, 64, 3, 3)
    X = torch.randn(16, 64, 32, 32)
    with one_thread():
        torch.nn.functional.conv2d(X, W, padding=1)
        t = time.perf_counter()
        for _ in range(3):
            torch.nn.functional.conv2d(X, W, padding=1)
        dt = (time.perf_counter() - t) / 3
    return 2 * 64 * 64 * 9 * 32 * 32 * 16 / dt / 1e9


def perturbed(model, seed: int, scale: float = 0.02):
    """A copy of ``model`` with every parameter × (1 + scale·N(0, 1)) — a stand-in for another training seed."""
    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            p.mul_(1 + scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return out


def simulated(ctx: Context, seeds: int, small_betas: bool) -> int:
    """Register every study net and its seeds 1 … seeds−1 (perturbed copies); returns the number of nets."""
    X, y = ctx.images(BP.STUDY[0], 2000)
    names = list(BP.STUDY) + [n for n, b in MP.BETAS.items() if b >= 1.0]
    n = 0
    for name in names:
        model = ctx.model(name)
        for k in range(seeds):
            ctx.add_net(name if k == 0 else f"{name}-seed{k}", NetEntry(model if k == 0 else perturbed(model, k), X, y))
            n += 1
    if small_betas:                                    # the small-β grid, not shipped yet: copies of the β = 1 net
        base = ctx.model("scenes-cnn-softplus1")
        for name, b in MP.BETAS.items():
            if b < 1.0:
                for k in range(seeds):
                    ctx.add_net(name if k == 0 else f"{name}-seed{k}", NetEntry(perturbed(base, 100 + k), X, y))
                    n += 1
    return n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--small-betas", action="store_true", help="simulate the authors' β = 0.1 … 0.9 nets too")
    ap.add_argument("--claims", default="B1,B2,B3,M1,M2,M3,M4,M5")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--extended", action="store_true")
    _bench.add_options(ap)
    a = ap.parse_args(argv)
    if a.smoke:
        a.quick, a.extended, a.claims = True, False, "B1,M1,M3"
    with _bench.printed_to(a.output):
        run(a)


def run(a):
    print(f"conv probe before: {probe():.1f} GFLOP/s (one thread)")
    ctx = Context(Settings(quick=a.quick, extended=a.extended, progress=False))
    if not a.quick:
        print(f"registered {simulated(ctx, a.seeds, a.small_betas)} nets ({a.seeds} seed(s) each)")
    t0 = time.perf_counter()
    verdicts, records = verify.run(claims=a.claims.split(","), ctx=ctx, progress=False)
    total = time.perf_counter() - t0
    for v in verdicts:
        print(f"{v.claim:3s} {v.label:15s} {v.seconds:7.1f} s")
    by = {}
    for v in verdicts:
        by[v.claim[0]] = by.get(v.claim[0], 0.0) + v.seconds
    print("per paper: " + ", ".join(f"{k} {s:.1f} s" for k, s in by.items()) + f"; total {total:.1f} s, "
          f"{len(records)} records")
    print(f"conv probe after: {probe():.1f} GFLOP/s (one thread)")


if __name__ == "__main__":
    main()
