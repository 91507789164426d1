"""Benchmark: chains of many images, serial vs a dask LocalCluster, through chainlab.app.distributed.run.

Extracts one chain per test digit (default: digits-cnn, rule epsilon-plus, 40 images) with
``chainlab.app.distributed.run`` — serially in this process, then on a LocalCluster of N single-threaded
worker processes — and prints images/s of both, the ratio, the cluster start-up time (paid once
per job), and checks that the chains are bit-identical.  The obvious alternative is the serial
loop; on a machine with few, shared cores expect the cluster to win only for nets whose per-image
work outweighs pickling the chain back (sixt-cifar, ResNets), not for the tiny digits nets.

    python scripts/bench_distributed.py [--net digits-cnn] [--rule epsilon-plus] [--images 40] [--workers 2]
                                        [--output FILE]

``--smoke``: 4 images, one worker thread in this process (``LocalCluster(processes=False)``: the same
``distributed.run`` path without the start-up of worker processes; seconds).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import _bench
import chainlab
from chainlab.app import distributed
from chainlab.app.distributed import extract_image


def same(a, b) -> bool:
    return all(np.array_equal(p.to_sparse("csc").data, q.to_sparse("csc").data) for p, q in zip(a, b))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="digits-cnn")
    ap.add_argument("--rule", default="epsilon-plus")
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    _bench.add_options(ap)
    args = ap.parse_args(argv)
    if args.smoke:
        args.images, args.workers = 4, 1
    with _bench.printed_to(args.output):
        run(args)


def run(args):
    torch.set_num_threads(1)   # the same per-process threads as a worker: a fair per-core comparison

    digits = chainlab.data.load_digits()
    xs = chainlab.data.model_input(args.net, digits.x_test[: args.images]).numpy()
    tasks = {i: (extract_image, (args.net, xs[i:i + 1], args.rule, i)) for i in range(args.images)}
    extract_image(args.net, xs[:1], args.rule, 0)            # warm-up: model load, numba cache

    serial = {}
    rep_s = distributed.run(tasks, serial.__setitem__, progress=False)

    from distributed import Client, LocalCluster
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=not args.smoke,
                           dashboard_address=":0")
    client = Client(cluster)
    client.run(extract_image, args.net, xs[:1], args.rule, 0)   # warm-up on every worker
    startup = time.perf_counter() - t0
    par = {}
    try:
        rep_p = distributed.run(tasks, par.__setitem__, scheduler=client, progress=False)
    finally:
        client.close()
        cluster.close()

    identical = all(same(serial[i], par[i]) for i in serial)
    print(f"{args.net} / {args.rule}, {args.images} images")
    print(f"serial (1 thread):        {rep_s.rate:8.2f} images/s  ({rep_s.seconds:.1f} s)")
    print(f"LocalCluster {args.workers} {'workers' if not args.smoke else 'thread '}:  {rep_p.rate:8.2f} images/s  "
          f"({rep_p.seconds:.1f} s, "
          f"+{startup:.1f} s start-up and warm-up)")
    print(f"ratio cluster/serial: {rep_p.rate / rep_s.rate:.3g}x; chains bit-identical: {identical}")


if __name__ == "__main__":
    main()
