"""Benchmark: chains of many images, serial vs a dask LocalCluster, through chainlab.app.distributed.run.

Extracts one chain per test digit (default: digits-cnn with 40 images and sixt-cifar with 4, rule epsilon-plus) with
``chainlab.app.distributed.run`` — serially in this process, then on a LocalCluster of N single-threaded
worker processes — and prints images/s of both, the ratio, the cluster start-up time (paid once
per job), and checks that the chains are bit-identical.  The obvious alternative is the serial
loop; on a machine with few, shared cores expect the cluster to win only for nets whose per-image
work outweighs pickling the chain back (sixt-cifar, ResNets), not for the tiny digits nets.

    python scripts/bench_distributed.py [--nets digits-cnn:40 sixt-cifar:4] [--rule epsilon-plus] [--workers 2]
                                        [--output results/bench_distributed.txt]

The writer's callback keeps a SHA-256 digest of each chain's values, not the chain (a sixt-cifar chain is about
0.7 GB), and the digests of both runs are compared.

``--smoke``: digits-cnn, 4 images, one worker thread in this process (``LocalCluster(processes=False)``: the same
``distributed.run`` path without the start-up of worker processes; seconds).
"""
from __future__ import annotations

import argparse
import hashlib
import time

import numpy as np
import torch

import _bench
import chainlab
from chainlab.app import distributed
from chainlab.app.distributed import extract_image


def digest(chain) -> str:
    """SHA-256 of every operator's CSC values: what "bit-identical" compares, without keeping the chains (a sixt-cifar
    chain is ~0.7 GB)."""
    h = hashlib.sha256()
    for op in chain:
        h.update(np.ascontiguousarray(op.to_sparse("csc").data).tobytes())
    return h.hexdigest()


def keep_digest(into):
    """The writer's callback: ``into[key] = digest(chain)`` (it touches every chain, as an archive append would)."""
    return lambda key, chain: into.__setitem__(key, digest(chain))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", default=["digits-cnn:40", "sixt-cifar:4"], metavar="NET:IMAGES",
                    help="shipped nets and how many test digits each (default digits-cnn:40 sixt-cifar:4)")
    ap.add_argument("--rule", default="epsilon-plus")
    ap.add_argument("--workers", type=int, default=2)
    _bench.add_options(ap)
    args = ap.parse_args(argv)
    if args.smoke:
        args.nets, args.workers = ["digits-cnn:4"], 1
    with _bench.printed_to(args.output):
        md = []
        for spec in args.nets:
            net, _, n = spec.partition(":")
            args.net, args.images = net, int(n or 40)
            md.append(run(args))
        print()
        _bench.table(["net / rule", "images", "serial images/s", f"LocalCluster({args.workers}) images/s",
                      "cluster / serial", "cluster start-up s", "chains bit-identical"], md)
        print(f"summary: one chain per test digit through chainlab.app.distributed.run, serially (1 torch thread) and "
              f"on a LocalCluster of {args.workers} single-threaded worker processes"
              f"{' (smoke: threads in this process)' if args.smoke else ''}; every chain goes back to the one "
              "writer process, so a net with large chains pays for the transfer")


def run(args):
    torch.set_num_threads(1)   # the same per-process threads as a worker: a fair per-core comparison

    digits = chainlab.data.load_digits()
    xs = chainlab.data.model_input(args.net, digits.x_test[: args.images]).numpy()
    tasks = {i: (extract_image, (args.net, xs[i:i + 1], args.rule, i)) for i in range(args.images)}
    extract_image(args.net, xs[:1], args.rule, 0)            # warm-up: model load, numba cache

    serial = {}
    rep_s = distributed.run(tasks, keep_digest(serial), progress=False)

    from distributed import Client, LocalCluster
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=not args.smoke,
                           dashboard_address=":0")
    client = Client(cluster)
    client.run(extract_image, args.net, xs[:1], args.rule, 0)   # warm-up on every worker
    startup = time.perf_counter() - t0
    par = {}
    try:
        rep_p = distributed.run(tasks, keep_digest(par), scheduler=client, progress=False)
    finally:
        client.close()
        cluster.close()

    identical = len(serial) == len(par) == args.images and all(serial[i] == par[i] for i in serial)
    print(f"{args.net} / {args.rule}, {args.images} images")
    print(f"serial (1 thread):        {rep_s.rate:8.2f} images/s  ({rep_s.seconds:.1f} s)")
    print(f"LocalCluster {args.workers} {'workers' if not args.smoke else 'thread '}:  {rep_p.rate:8.2f} images/s  "
          f"({rep_p.seconds:.1f} s, "
          f"+{startup:.1f} s start-up and warm-up)")
    print(f"ratio cluster/serial: {rep_p.rate / rep_s.rate:.3g}x; chains bit-identical: {identical}")
    return [f"{args.net} / {args.rule}", args.images, f"{rep_s.rate:.3g}", f"{rep_p.rate:.3g}",
            f"{rep_p.rate / rep_s.rate:.3g}×", f"{startup:.1f}", "yes" if identical else "**no**"]


if __name__ == "__main__":
    main()
