"""Run the tests marked ``heavy`` (left out of the suite: a minute or more each) and keep their outcome, time and memory.

    python scripts/run_heavy_tests.py [--output results/run_heavy_tests.txt] [-k EXPR]

Collects ``python -m pytest -m heavy`` (tests/test_verify_own_torchvision.py: torchvision's resnet18 and vgg11 at
64×64 through `chainlab verify --model`, untrained and with a state dict) and runs each test in its own pytest
process, so that its peak resident set is its own (``os.wait4``'s ru_maxrss).  Prints a markdown table — test,
outcome, seconds, peak RSS — and a summary line; exits 1 when a test did not pass.
"""
import argparse
import os
import subprocess
import sys
import time

import _bench


def collect(k=None) -> list:
    cmd = [sys.executable, "-m", "pytest", "-m", "heavy", "--collect-only", "-q", "-p", "no:cacheprovider"]
    res = subprocess.run(cmd + (["-k", k] if k else []), cwd=_bench.ROOT, capture_output=True, text=True)
    ids = [ln.strip() for ln in res.stdout.splitlines() if "::" in ln]
    if not ids:
        raise SystemExit(f"no heavy tests collected:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return ids


def run_one(test_id: str) -> tuple:
    """(outcome, seconds, peak RSS in GB, last lines of output) of one test in its own pytest process."""
    cmd = [sys.executable, "-m", "pytest", "-m", "heavy", "-q", "-p", "no:cacheprovider", test_id]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=_bench.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    return ("passed" if code == 0 else f"FAILED (exit {code})"), seconds, usage.ru_maxrss / 1024 ** 2, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--output", default=None, help="also write the output to FILE (e.g. results/run_heavy_tests.txt)")
    ap.add_argument("-k", default=None, help="pytest -k EXPR (a subset)")
    args = ap.parse_args(argv)
    ids = collect(args.k)
    failed = []
    with _bench.printed_to(args.output):
        print("table: each heavy test in its own pytest process on this machine: outcome, wall seconds (pytest's "
              "start-up included) and peak resident set")
        print("| test | outcome | seconds | peak RSS GB |")
        print("|---|---|---:|---:|")
        for test_id in ids:
            outcome, seconds, peak, out = run_one(test_id)
            print(f"| `{test_id.split('::', 1)[1]}` | {outcome} | {seconds:.0f} | {peak:.2f} |", flush=True)
            if outcome != "passed":
                failed.append((test_id, out))
        print(f"summary: {len(ids) - len(failed)} of {len(ids)} heavy tests passed (`python -m pytest -m heavy`, "
              f"{ids[0].split('::')[0]})")
    for test_id, out in failed:
        print(f"\n--- {test_id}\n{out[-4000:]}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
