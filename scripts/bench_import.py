"""Import time: what ``import chainlab`` adds to ``import torch``, in fresh interpreters, in one run.

Each statement runs in a fresh ``python -c`` process that times it with ``time.perf_counter`` (interpreter
start-up excluded); the rounds alternate the statements, so a busy machine slows them alike, and the median
over ``--repeat`` rounds is printed.  Statements:

* ``import torch`` — the floor (chainlab needs torch for anything it computes);
* ``import chainlab`` — the facade alone (PEP 562: it loads no layer);
* ``import torch, chainlab`` — the target of issue 26: at most 0.3 s more than ``import torch``;
* ``from chainlab import *`` — every exported layer, i.e. what ``import chainlab`` loaded before the lazy facade;
* ``import chainlab; chainlab.extract`` — the first use of extraction (linalg, numba, scipy.sparse, rules).

``--tree DIR`` times the same statements for another checkout in the same run (its ``chainlab/`` first on the
path; e.g. ``--tree /work/main``), for an old-vs-new comparison.  Run:

    python scripts/bench_import.py [--repeat 7] [--tree DIR] [--output results/bench_import.txt]

``--smoke``: one round of the first three statements.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

import _bench

ROOT = Path(__file__).resolve().parent.parent
STATEMENTS = [
    "import torch",
    "import chainlab",
    "import torch, chainlab",
    "from chainlab import *",
    "import chainlab; chainlab.extract",
]
SMOKE = STATEMENTS[:3]
TARGET = 0.3           # seconds more than import torch (issue 26)


def seconds(statement: str, tree: Path) -> float:
    """Wall seconds of ``statement`` in a fresh interpreter whose first path entry is ``tree``."""
    code = f"import time\nt = time.perf_counter()\n{statement}\nprint(time.perf_counter() - t)"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7, help="fresh processes per statement (the median is printed)")
    ap.add_argument("--tree", type=Path, action="append", default=[], help="another checkout to time as well")
    _bench.add_options(ap)
    a = ap.parse_args(argv)
    if a.smoke:
        a.repeat = 1
    statements = SMOKE if a.smoke else STATEMENTS
    trees = [ROOT] + [t.resolve() for t in a.tree]
    with _bench.printed_to(a.output):
        print(f"{sys.executable}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
              f"median of {a.repeat} fresh processes per statement")
        times = {(t, s): [] for t in trees for s in statements}
        for _ in range(a.repeat):
            for t in trees:
                for s in statements:
                    times[(t, s)].append(seconds(s, t))
        for t in trees:
            med = {s: statistics.median(times[(t, s)]) for s in statements}
            torch_s = med["import torch"]
            print(f"\ntree {t}")
            print(f"  {'statement':36s} {'median s':>9s} {'min s':>7s} {'max s':>7s} {'- import torch':>15s} "
                  f"{'/ import torch':>15s}")
            for s in statements:
                v = times[(t, s)]
                print(f"  {s:36s} {med[s]:9.3f} {min(v):7.3f} {max(v):7.3f} {med[s] - torch_s:+15.3f} "
                      f"{med[s] / torch_s:15.3g}")
            extra = med["import torch, chainlab"] - torch_s
            print(f"summary: {'this tree' if t == ROOT else t.name}: import chainlab adds {extra:.3f} s to import torch "
                  f"({med['import torch']:.2f} s; target ≤ {TARGET} s: "
                  f"{'met' if extra <= TARGET else 'NOT met'})"
                  + (f"; all layers add {med['from chainlab import *'] - torch_s:.3f} s" if not a.smoke else ""))
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
