"""Benchmark: ``chainlab verify --quick`` on an idle machine and beside a competing 2-thread CPU load, with
OpenMP's threads spinning while they wait (``OMP_WAIT_POLICY=ACTIVE``, what torch did before) and sleeping
(``PASSIVE``, what the command line sets now).

Each configuration runs ``verify.run(quick=True)`` in a fresh child process (2 torch threads); the competing load
is two busy-looping processes started before the child and stopped after it.  Printed: seconds per
configuration and the slow-down under load (the issue's target: at most ~2.5× with the 2 cores oversubscribed
twice).  Needs an otherwise idle machine.

    python scripts/bench_load.py [--claims S1,...] [--output results/bench_load.txt]
    python scripts/bench_load.py --smoke     # claim S4 only: seconds
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
from pathlib import Path

import _bench

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import json, sys, time
from chainlab.app import verify
t = time.perf_counter()
verify.run(quick=True, claims={claims!r}, progress=False)
sys.stdout.write("BENCH " + json.dumps({{"seconds": time.perf_counter() - t}}))
"""


def _spin(stop):
    while not stop.is_set():
        for _ in range(100000):
            pass


def run_child(policy: str, claims) -> float:
    env = dict(os.environ, OMP_WAIT_POLICY=policy, OMP_NUM_THREADS="2", PYTHONWARNINGS="ignore")
    return _bench.child_json(CHILD.format(claims=claims), tag="BENCH ", what=f"bench_load: verify --quick ({policy})",
                             cwd=ROOT, env=env)["seconds"]


def timed(policy: str, claims, load: int) -> float:
    stop = mp.Event()
    spinners = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(load)]
    for s in spinners:
        s.start()
    try:
        return run_child(policy, claims)
    finally:
        stop.set()
        for s in spinners:
            s.join()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--claims", default=None, help="comma-separated claims (default: every claim of --quick)")
    ap.add_argument("--load", type=int, default=2, help="busy-looping processes beside the run (default 2)")
    _bench.add_options(ap)
    a = ap.parse_args(argv)
    claims = ["S4"] if a.smoke else (a.claims.split(",") if a.claims else None)
    with _bench.printed_to(a.output):
        print(f"verify --quick ({'claims ' + ','.join(claims) if claims else 'every claim'}), 2 torch threads, "
              f"{os.cpu_count()} cores; competing load: {a.load} busy processes")
        print("| OMP_WAIT_POLICY | idle s | under load s | slow-down |")
        print("|---|---:|---:|---:|")
        slow = {}
        for policy in ("ACTIVE", "PASSIVE"):
            idle = timed(policy, claims, 0)
            busy = timed(policy, claims, a.load)
            slow[policy] = busy / idle
            print(f"| {policy} | {idle:.4f} | {busy:.4f} | {slow[policy]:.2f}× |")
        print(f"summary: under a competing {a.load}-process load verify --quick slows {slow['PASSIVE']:.2f}× with "
              f"sleeping OpenMP threads (the command line's setting) and {slow['ACTIVE']:.2f}× with spinning ones")


if __name__ == "__main__":
    main()
