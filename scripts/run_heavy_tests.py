"""Run the tests marked ``heavy`` (left out of the suite: minutes each) and keep their output.

    python scripts/run_heavy_tests.py [--output results/tests_heavy.txt]

Runs ``python -m pytest -m heavy -v --durations=0`` from the repository root (tests/test_verify_own_torchvision.py:
torchvision's resnet18 and vgg11 at 64×64 through `chainlab verify --model`, random init and a state dict), prints
pytest's output with the command, date, load average and the peak resident set of the pytest process tree, and exits
with pytest's status.
"""
import argparse
import os
import resource
import subprocess
import sys
import time

import _bench


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--output", default=None, help="also write the output to FILE (e.g. results/tests_heavy.txt)")
    ap.add_argument("-k", default=None, help="pytest -k EXPR (a subset)")
    args = ap.parse_args(argv)
    cmd = [sys.executable, "-m", "pytest", "-m", "heavy", "-v", "--durations=0", "-p", "no:cacheprovider"]
    if args.k:
        cmd += ["-k", args.k]
    with _bench.printed_to(args.output):
        t0 = time.perf_counter()
        res = subprocess.run(cmd, cwd=_bench.ROOT, capture_output=True, text=True,
                             env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        lines = [ln for ln in res.stdout.splitlines() if not ln.startswith("platform ") and "rootdir:" not in ln]
        print("\n".join(lines))
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2
        print(f"summary: `python -m pytest -m heavy` exit {res.returncode} in {time.perf_counter() - t0:.0f} s; peak "
              f"RSS of the pytest process {peak:.2f} GB (the largest of the runs it made in-process)")
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
