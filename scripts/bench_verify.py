"""Speed of the Sixt protocol in one run: batched implicit CSC against one materialized chain per image, and
the stage (claim) timings of ``chainlab verify``.

    python scripts/bench_verify.py [--net sixt-cifar] [--images 50] [--baseline-images 4] [--threads 2]
                                   [--claims S1,S2,...] [--quick] [--skip-verify] [--against REF [--only-stages]] [--output FILE]

1. CSC as S1 measures it (5 N(0, I) vectors per image injected at the logits, 10 pairs, every boundary) for
   LRP-α1β0 and the gradient: images/s of
   * batched: ``chainlab.studies.sixt.sixt_pass`` (float32 and float64; one torch convolution per layer for
     all images × vectors, factors built per batch of 25 images), and
   * per image: ``chainlab.extract`` (materialized sparse/dense matrices) + ``measures.csc_values``,
   with the ratio.  The same signals → the same medians up to float rounding (printed).
2. The verify stage timings: seconds per claim of ``chainlab.app.verify.run`` (default: the Sixt claims).
A conv throughput probe (GFLOP/s of one 3×3 conv, float32) before and after says how busy the machine was.
3. ``--against REF`` (e.g. ``main``): the same claims of the chainlab at git ref REF (exported with ``git archive``
   into a temp dir) and of this working tree, each in a fresh process one after the other on the same machine:
   seconds per claim, the total, peak RSS and the ratio new / REF — the comparison that is meaningful on a busy
   machine; ``--workers N``: each run on N processes (``chainlab verify --workers``).  ``--only-stages`` skips
   part 1; ``--sixt-images N`` runs both trees' Sixt claims on N images per net (a smaller protocol for a
   quicker comparison; the per-image work scales with N, the fixed work does not).

``--model SPEC …``: the time and memory per claim of ``chainlab verify --model SPEC --images …`` on your own net —
the options of scripts/bench_verify_own.py, which it runs (e.g. ``--model torchvision:vgg16 --n-images 4``).

``--smoke``: digits-cnn, 2 images (1 per image in the baseline), claim S4 of ``verify --quick`` (seconds).
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import _bench
import chainlab
from chainlab import measures
from chainlab.app import verify
from chainlab.papers.sixt.protocol import NETS
from chainlab.measures.csc import csc_summary
from chainlab.studies.sixt import SIXT_METHODS, sixt_pass


def probe():
    W = torch.randn(128, 128, 3, 3)
    X = torch.randn(64, 128, 16, 16)
    torch.nn.functional.conv2d(X, W, padding=1)
    t = time.perf_counter()
    for _ in range(3):
        torch.nn.functional.conv2d(X, W, padding=1)
    dt = (time.perf_counter() - t) / 3
    return 2 * 128 * 128 * 9 * 256 * 64 / dt / 1e9


ROOT = Path(__file__).resolve().parent.parent
_CHILD = """
import dataclasses, json, resource, sys, time
from chainlab.app import verify
n = {images}
if n:                      # a reduced protocol (the same for both trees): n images per net instead of 200
    try:
        from chainlab.app.verify import sixt as old
        old._n_images = lambda ctx: n
    except ImportError:
        pass
    try:
        import chainlab.papers.sixt as new
        from chainlab.papers.sixt import protocol
        full = protocol.sizes
        small = lambda ctx: dataclasses.replace(full(ctx), images=n, chunk=min(n, 50), two_object=n)
        protocol.sizes = new.sizes = small
    except ImportError:
        pass
import inspect
kw = {{"workers": {workers}}} if "workers" in inspect.signature(verify.run).parameters else {{}}   # older trees: serial
t = time.perf_counter()
verdicts, records = verify.run(quick={quick}, claims={claims!r}, progress=False, **kw)
peak = max(resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
out = {{"total": time.perf_counter() - t, "claims": {{v.claim: [v.label, v.seconds] for v in verdicts}},
        "rss_mb": peak / 1024, "records": len(records), "workers": kw.get("workers", 1)}}
sys.stdout.write("BENCH " + json.dumps(out))
"""


def _stages(path: Path, quick: bool, claims, threads: int, images: int = 0, workers: int = 1) -> dict:
    env = dict(os.environ, PYTHONPATH=str(path), CHAINLAB_DATA=str(ROOT / "data"), OMP_NUM_THREADS=str(threads),
               NUMBA_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    return _bench.child_json(_CHILD.format(quick=quick, claims=list(claims), images=int(images), workers=int(workers)),
                             tag="BENCH ", what=f"bench: the run at {path}", cwd=path, env=env)


def against(ref: str, quick: bool, claims, threads: int, images: int = 0, workers: int = 1) -> None:
    """Part 3 of the module docstring."""
    with tempfile.TemporaryDirectory(prefix="chainlab-bench-") as d:
        old = _stages(_bench.export_tree(ref, Path(d)), quick, claims, threads, images, workers)
    new = _stages(ROOT, quick, claims, threads, images, workers)
    size = f"the Sixt claims on {images} images per net" if images else ("--quick" if quick else "default run")
    print(f"\nverify stages, {ref} vs this tree ({size}; claims {','.join(claims)}; "
          f"{threads} threads; workers {old.get('workers', 1)} vs {new.get('workers', 1)}; run one after the other)")
    print(f"  {'claim':5s} {ref[:14]:>14s} {'this tree':>12s}   verdict here")
    for c in claims:
        a, b = old["claims"].get(c, [None, None]), new["claims"].get(c, [None, None])
        f = lambda x: "—" if x is None else f"{x:10.1f} s"  # noqa: E731
        print(f"  {c:5s} {f(a[1]):>14s} {f(b[1]):>12s}   {b[0]}")
    print(f"  total {old['total']:9.1f} s {new['total']:10.1f} s   ratio this tree / {ref}: "
          f"{new['total'] / old['total']:.2f}")
    print(f"  peak RSS {old['rss_mb']:.0f} MB vs {new['rss_mb']:.0f} MB (the largest of the run's process and its "
          f"workers); records {old['records']} vs {new['records']}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a == "--model" or a.startswith("--model=") for a in argv):
        import bench_verify_own
        return bench_verify_own.main(argv)
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", default="sixt-cifar")
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--baseline-images", type=int, default=4)
    ap.add_argument("--threads", type=int, default=_bench.threads())
    ap.add_argument("--claims", default="S1,S2,S3,S4,S5,S6,S7,S8")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-verify", action="store_true")
    ap.add_argument("--against", metavar="REF", help="compare the verify stages with git ref REF (e.g. main)")
    ap.add_argument("--only-stages", action="store_true", help="with --against: skip the CSC throughput part")
    ap.add_argument("--workers", type=int, default=1,
                    help="with --against: processes of the run (chainlab verify --workers; a tree without it: 1)")
    ap.add_argument("--sixt-images", type=int, default=0,
                    help="with --against: both trees run the Sixt claims on this many images per net (0: their own)")
    _bench.add_options(ap)
    a = ap.parse_args(argv)
    if a.smoke:
        a.net, a.images, a.baseline_images, a.claims, a.quick = "digits-cnn", 2, 1, "S4", True
    with _bench.printed_to(a.output):
        if a.against and a.only_stages:
            against(a.against, a.quick, a.claims.split(","), a.threads, a.sixt_images, a.workers)
        else:
            run(a)


def run(a):
    torch.set_num_threads(a.threads)
    print(f"threads {a.threads}; conv probe {probe():.1f} GFLOP/s (float32)")
    net = chainlab.models.load(a.net)
    xs, _ = chainlab.data.test_set("digits" if a.net.startswith("digits") else "scenes", a.images)
    X = chainlab.data.model_input(net, xs).double()
    P = NETS[a.net]
    with torch.no_grad():
        L = len(chainlab.extract(net, X[:1], "gradient"))
    M = {m.id: m for m in SIXT_METHODS}
    print(f"\n{a.net}: CSC, injection at the logits (k = {L}), 5 vectors, 10 pairs, every boundary")
    print(f"{'method':10s} {'path':28s} {'images':>6s} {'s':>8s} {'images/s':>9s} {'median CSC (conv1)':>20s}")
    for mid in ("lrp-a1b0", "gradient"):
        m = M[mid]
        rates = {}
        for dtype in ("float32", "float64"):
            t = time.perf_counter()
            r = sixt_pass(net, X, m, injections=[L], side=P.side, dtype=dtype)
            dt = time.perf_counter() - t
            c1 = csc_summary(r.gaps[(L, "tied")][1], r.d[1])["csc"]
            rates[dtype] = a.images / dt
            print(f"{mid:10s} {'batched implicit ' + dtype:28s} {a.images:6d} {dt:8.2f} {rates[dtype]:9.2f} {c1:20.10f}")
        t = time.perf_counter()
        vals = []
        for i in range(a.baseline_images):
            ch = chainlab.extract(net, X[i:i + 1], m.rule, **m.opts())
            out = measures.csc_values(ch, L, pairs=10, seed=i)
            vals.append(out[1][0])
        dt = time.perf_counter() - t
        c1 = float(np.median(np.concatenate(vals)))
        base = a.baseline_images / dt
        print(f"{mid:10s} {'one materialized chain/image':28s} {a.baseline_images:6d} {dt:8.2f} {base:9.2f} {c1:20.10f}")
        print(f"{'':10s} ratio batched/per-image: float32 ×{rates['float32'] / base:.3g}, float64 ×{rates['float64'] / base:.3g}"
              f"  (medians differ by sampling: other images/vectors in the baseline)")
    if a.skip_verify:
        return
    print(f"\nverify stage timings ({'--quick' if a.quick else 'full'}; claims {a.claims}; side per net: "
          + ", ".join(f"{n} {p.side}" for n, p in NETS.items()) + ")")
    t = time.perf_counter()
    verdicts, records = verify.run(quick=a.quick, claims=a.claims.split(","), progress=False)
    total = time.perf_counter() - t
    for v in verdicts:
        print(f"  {v.claim:3s} {v.label:15s} {v.seconds:8.1f} s")
    print(f"  total {total:.1f} s, {len(records)} records; conv probe after: {probe():.1f} GFLOP/s")
    if a.against:
        against(a.against, a.quick, a.claims.split(","), a.threads, a.sixt_images, a.workers)


if __name__ == "__main__":
    main()
