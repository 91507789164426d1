"""Benchmark: the batched Sixt pass of the old tree against this one, in one run (seconds and peak RSS).

The same workload runs in two fresh child processes — one importing chainlab from an export of a git ref
(default ``main``: the tree before this one), one from this checkout: for each method, Sixt's CSC pass
(``chainlab.studies.sixt.sixt_pass``: 5 N(0, I) vectors per image injected at the logits, read at every
lower boundary, plus the explanation of the predicted logit) on N test scenes in batches of 25, in float32.
Per method it prints the seconds in each tree and the ratio old/new; per tree the peak RSS of its child.
Both trees give the same CSC (printed: the median |cos| at the input boundary) except for DeepLIFT, whose
rule changed with the package's (``deeplift-*``; the old tree's ± rule is ``deeplift-*-pm`` here, computed
in float64).  Timings need an idle machine.  Run:

    python scripts/bench_batch.py [--old main] [--net sixt-cifar] [--images 50] [--threads 2] [--methods ...]
    python scripts/bench_batch.py --smoke          # digits-cnn, 4 images, 3 methods: seconds
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import _bench

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_METHODS = ("gradient", "lrp-a1b0", "guided-bp", "rectgrad", "deeplift-rescale", "deeplift-revealcancel",
                   "deeplift-revealcancel-pm", "contrastive-lrp")

CHILD = r'''
import json, sys, time
import numpy as np, torch
sys.path.insert(0, {scripts!r})
from _memory import peak_mib
torch.set_num_threads({threads})
import chainlab
from chainlab.measures.csc import csc_summary
from chainlab.studies.sixt import SIXT_METHODS, sixt_pass
net = chainlab.models.load({net!r})
if {net!r}.startswith("digits"):
    X = chainlab.data.model_input(net, chainlab.data.load_digits().x_test[:{images}]).double()
else:
    X = chainlab.data.model_input(net, chainlab.data.load_scenes("test", {images}, seed=0).x).double()
L = len(chainlab.extract(net, X[:1], "gradient"))
from chainlab.studies.sixt import SixtMethod
M = {{m.id: m for m in SIXT_METHODS}}
known = set(chainlab.extraction.method_names())
for mid in {methods!r}:      # the ± DeepLIFT rule: "-pm" here, the plain name in a tree before the package's rule
    if mid not in M and mid.endswith("-pm"):
        M[mid] = SixtMethod(mid, mid, mid if mid in known else mid[:-len("-pm")], group="excepted")
out = {{"chainlab": chainlab.__file__, "methods": {{}}}}
with torch.no_grad():
    t = torch.as_tensor(net(X.float()).argmax(1).numpy())
for mid in {methods!r}:
    if mid not in M:
        out["methods"][mid] = None
        continue
    t0 = time.perf_counter()
    r = sixt_pass(net, X, M[mid], injections=[L], side="post", dtype="float32", batch=25,
                  targets={{"t": t.numpy()}})
    secs = time.perf_counter() - t0
    c = csc_summary(r.gaps[(L, "tied")][0], r.d[0])["csc"]
    out["methods"][mid] = {{"seconds": secs, "csc_input": c, "batched": bool(r.batched)}}
out["peak_mib"] = peak_mib()
print("RESULT " + json.dumps(out))
'''


def run_child(tree: Path, args, methods) -> dict:
    code = CHILD.format(scripts=str(ROOT / "scripts"), threads=args.threads, net=args.net, images=args.images,
                        methods=tuple(methods))
    res = _bench.child_json(code, tag="RESULT ", what=f"the child for {tree}", cwd=tree,
                            env={**os.environ, "PYTHONPATH": str(tree)})
    if not Path(res["chainlab"]).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"the child for {tree} imported chainlab from {res['chainlab']}")
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", default="main", help="git ref of the old tree (default main)")
    ap.add_argument("--net", default="sixt-cifar")
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    _bench.add_options(ap)
    a = ap.parse_args()
    methods = a.methods.split(",")
    if a.smoke:   # HEAD against the work tree: a fresh clone has HEAD whatever its branches are called
        a.old, a.net, a.images, methods = "HEAD", "digits-cnn", 4, ["lrp-a1b0", "rectgrad", "deeplift-revealcancel"]
    with _bench.printed_to(a.output):
        compare(a, methods)


def compare(a, methods):
    with tempfile.TemporaryDirectory(prefix="chainlab-old-") as tmp:
        old = run_child(_bench.export_tree(a.old, Path(tmp)), a, methods)
        new = run_child(ROOT, a, methods)
    print(f"{a.net}, {a.images} images, batches of 25, float32, {a.threads} threads; old = {a.old}, new = this tree")
    print(f"{'method':24s} {'old s':>8s} {'new s':>8s} {'old/new':>8s} {'CSC input old':>16s} {'new':>16s}")
    for mid in methods:
        o, n = old["methods"].get(mid), new["methods"].get(mid)
        if o is None or n is None:
            print(f"{mid:24s} (not in both trees)")
            continue
        note = "" if o["batched"] else "  (old: one chain per image)"
        print(f"{mid:24s} {o['seconds']:8.2f} {n['seconds']:8.2f} {o['seconds'] / n['seconds']:7.2f}× "
              f"{o['csc_input']:16.10f} {n['csc_input']:16.10f}{note}")
    print(f"peak RSS: old {old['peak_mib']:.0f} MiB, new {new['peak_mib']:.0f} MiB "
          f"(ratio new/old {new['peak_mib'] / old['peak_mib']:.2f})")


if __name__ == "__main__":
    main()
