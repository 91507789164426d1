"""DeepLIFT in float32 against float64, before and after (issue 24 §1): maps, CSC per boundary, summation-to-delta.

For each net (default vgg-cifar and resnet-cifar, N test scenes, zero reference) and each DeepLIFT variant it
prints

* the cosine between the float32 and the float64 map of the predicted logit (min and median over images);
* the CSC per boundary (5 N(0, I) vectors per image injected at the logits, 10 pairs, median |cos| per boundary)
  in float32 and float64: the largest |difference| over the boundaries and where;
* summation-to-delta in float32: max over images of |Σ C − Δf| and of |Σ C − Δf| / Σ|C| (Δf = f(x) − f(x⁰) of the
  model in float64); for the package's rule on nets with max-pools also after removing the max-pool rule's
  own defect Σ_j m_j (y⁰_j − x⁰_a(j)) (its gradient rule conserves only where the reference is equal in a
  window), computed in float64 from the multipliers at the pools.

"before" is the tree of ``--old`` (default e5adcf4, the last commit whose ``deeplift-*`` carried the ± parts in the
batch's dtype — the state issue 24 §1 measured; from 0cd7a7d on the ± rule computes in float64), run in a child
process on an export of that ref; "after" is this tree: the package's rule
(``deeplift-*``) and the ± rule computed in float64 (``deeplift-*-pm``).  The last lines sum this tree up: the
smallest map cosine and the largest |ΔCSC| over every variant, and the largest relative summation-to-delta error
of the conservative variants (Rescale, RevealCancel) in float32: the package's rule (after removing its max-pool
defect) and the ± rule (computed in float64: on resnet-cifar its parts reach 1e15, so even float64 keeps only ~5e-4
of Σ|C| for RevealCancel).
``-o DIR`` writes what is printed to DIR/deeplift_precision.txt and the numbers to DIR/deeplift_precision.json.
Run:

    python scripts/verify_deeplift_precision.py [--images 8] [--nets vgg-cifar,resnet-cifar] [--old REF | --no-old]
    python scripts/verify_deeplift_precision.py --smoke        # digits-cnn, 2 images, this tree only: seconds
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MEASURE = r'''
import numpy as np, torch
import chainlab
try:
    from chainlab import extract_batch
except ImportError:                      # a tree before the lazy facade exported it
    from chainlab.extraction.batch import extract_batch
from chainlab.measures.csc import cosine_gaps, csc_summary, pair_list


def images(net_name, n):
    net = chainlab.models.load(net_name)
    if net_name.startswith("digits"):
        x = chainlab.data.load_digits().x_test[:n]
    else:
        x = chainlab.data.load_scenes("test", n, seed=0).x
    return net, chainlab.data.model_input(net, x).double()


def csc_curve(bc, seed=0):
    L = len(bc)
    V = torch.as_tensor(np.random.default_rng(seed).standard_normal((bc.x.shape[0], 5) + tuple(bc.shapes[L])))
    out = {}
    for j, S in bc.signals(bc.inject(V), L):
        shape = bc.shapes[j]
        g = cosine_gaps(S.to(torch.float64).numpy(), shape, pair_list(5, 10))
        d = int(shape[0]) if len(shape) == 3 else int(np.prod(shape))
        out[j] = csc_summary([g.astype(np.float32)], d)["csc"]
    return out


def pool_defect(net, X, bc, t):
    """Σ over max-pool stages of Σ_j m_j (y⁰_j − x⁰_a(j)) per image (the package's rule; float64)."""
    from chainlab.linalg import GatherOperator
    from chainlab.trace import trace
    tnet = trace(net)
    recs, recs0 = tnet.forward(X), tnet.forward(torch.zeros_like(X))
    Y = bc.start(t).to(torch.float64)
    out = torch.zeros(X.shape[0], dtype=torch.float64)
    for j in range(len(bc) - 1, -1, -1):
        st = bc.stages[j]
        if isinstance(st, GatherOperator) and tnet.stages[j].kind == "maxpool2d":
            m = st.act(Y).reshape(X.shape[0], -1)
            rows = st.rows.reshape(st.rows.shape[0], -1).expand(X.shape[0], -1)
            x0a = recs0[j].x.reshape(X.shape[0], -1).gather(1, rows)
            out += (m * (recs0[j].z.reshape(X.shape[0], -1) - x0a)).sum(1)
        Y = st.back(Y.reshape((Y.shape[0], Y.shape[1]) + tuple(st.out_shape)))
    return out.numpy()


def measure(net_name, n, rules):
    net, X = images(net_name, n)
    with torch.no_grad():
        f = net.double()(X) - net.double()(torch.zeros_like(X))
    net = net.float()
    res = {}
    for rule in rules:
        bcs = {dt: extract_batch(net, X, rule, dtype=dt) for dt in ("float32", "float64")}
        t = bcs["float64"].predicted
        maps = {dt: bc.explain(t).to(torch.float64).reshape(len(t), -1) for dt, bc in bcs.items()}
        cos = torch.nn.functional.cosine_similarity(maps["float32"], maps["float64"], dim=1).numpy()
        c32, c64 = csc_curve(bcs["float32"]), csc_curve(bcs["float64"])
        diffs = {j: abs(c32[j] - c64[j]) for j in c32 if c32[j] is not None and c64[j] is not None}
        jmax = max(diffs, key=diffs.get) if diffs else None
        delta = f[np.arange(len(t)), t].numpy()
        s = maps["float32"].sum(1).numpy()
        a = maps["float32"].abs().sum(1).numpy()
        row = {"cos_min": float(cos.min()), "cos_median": float(np.median(cos)),
               "csc_maxdiff": float(diffs[jmax]) if diffs else None, "csc_at": jmax,
               "csc32": {str(j): c32[j] for j in c32}, "csc64": {str(j): c64[j] for j in c64},
               "std_err": float(np.abs(s - delta).max()), "std_rel": float((np.abs(s - delta) / a).max())}
        if not getattr(bcs["float32"], "paired", True) and rule.startswith("deeplift-"):
            dfc = pool_defect(net.double(), X, bcs["float64"], t)
            if np.abs(dfc).max() > 0:
                row["std_err_pools"] = float(np.abs(s - delta - dfc).max())
                row["std_rel_pools"] = float((np.abs(s - delta - dfc) / a).max())
                row["pool_defect"] = float(np.abs(dfc).max())
        res[rule] = row
    return res
'''

NEW_RULES = ("deeplift-rescale", "deeplift-revealcancel", "deeplift-ablation", "deeplift-rescale-pm",
             "deeplift-revealcancel-pm", "deeplift-ablation-pm")
OLD_RULES = ("deeplift-rescale", "deeplift-revealcancel", "deeplift-ablation")


def run_old(ref: str, nets, n) -> dict:
    """The measurement in a child process importing chainlab from an export of ``ref``."""
    with tempfile.TemporaryDirectory(prefix="chainlab-old-") as tmp:
        sys.path.insert(0, str(ROOT / "scripts"))
        import _bench
        tree = _bench.export_tree(ref, Path(tmp))
        code = MEASURE + "\nimport json\nprint('RESULT ' + json.dumps({n: measure(n, %d, %r) for n in %r}))\n" % (
            n, OLD_RULES, tuple(nets))
        return _bench.child_json(code, tag="RESULT ", what="the old tree's child", cwd=tree,
                                 env={**os.environ, "PYTHONPATH": str(tree)})


def show(title, res):
    print(f"\n{title}")
    print(f"  {'rule':26s} {'cos min':>9s} {'cos med':>9s} {'max|ΔCSC|':>10s} {'at j':>5s} {'|ΣC−Δf|':>10s} "
          f"{'/Σ|C|':>9s} {'pool-corrected':>15s}")
    for rule, r in res.items():
        dcsc = "—" if r["csc_maxdiff"] is None else f"{r['csc_maxdiff']:.2e}"
        pools = f"{r['std_err_pools']:.2e} ({r['std_rel_pools']:.1e})" if "std_err_pools" in r else ""
        print(f"  {rule:26s} {r['cos_min']:9.5f} {r['cos_median']:9.5f} {dcsc:>10s} {str(r['csc_at']):>5s} "
              f"{r['std_err']:10.2e} {r['std_rel']:9.1e} {pools:>15s}")
    for rule, r in res.items():
        if "revealcancel" in rule:
            js = sorted(r["csc64"], key=int, reverse=True)
            fmt = lambda v: "  nan " if v is None else f"{v:.3f}"      # noqa: E731
            print(f"  CSC per boundary {rule}: float32 " + " ".join(fmt(r["csc32"][j]) for j in js))
            print(f"  {'':{len('CSC per boundary ' + rule)}s}  float64 " + " ".join(fmt(r["csc64"][j]) for j in js))


def summary(new: dict) -> None:
    """The last lines: this tree's worst float32-vs-float64 numbers over every net and variant."""
    rs = [r for res in new.values() for r in res.values()]
    cos = min(r["cos_min"] for r in rs)
    dcsc = max((r["csc_maxdiff"] for r in rs if r["csc_maxdiff"] is not None), default=float("nan"))
    def worst(pm):
        return max(r.get("std_rel_pools", r["std_rel"]) for res in new.values() for rule, r in res.items()
                   if "ablation" not in rule and rule.endswith("-pm") == pm)
    print(f"\nthis tree, every DeepLIFT variant: min map cosine float32/float64 {cos:.6f}, max |ΔCSC| {dcsc:.3g} "
          f"(criterion ≤ 0.01)")
    print(f"this tree, package rule Rescale and RevealCancel: max |ΣC − Δf| / Σ|C| in float32 {worst(False):.3g} "
          f"(max-pool defect removed)")
    print(f"this tree, ± rule Rescale-pm and RevealCancel-pm: max |ΣC − Δf| / Σ|C| {worst(True):.3g} (float64)")


def main():
    sys.path.insert(0, str(ROOT / "scripts"))
    from _bench import printed_to, threads
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--nets", default="vgg-cifar,resnet-cifar")
    ap.add_argument("--old", default="e5adcf4", help="git ref of the tree before (default e5adcf4: the ± rule as "
                                                    "deeplift-*, in the batch's dtype)")
    ap.add_argument("--no-old", action="store_true", help="measure this tree only")
    ap.add_argument("--threads", type=int, default=threads())
    ap.add_argument("--smoke", action="store_true", help="digits-cnn, 2 images, this tree only: seconds")
    ap.add_argument("-o", "--output", type=Path, metavar="DIR", default=None,
                    help="write the printed tables to DIR/deeplift_precision.txt, the numbers to "
                         "DIR/deeplift_precision.json")
    a = ap.parse_args()
    nets = a.nets.split(",")
    if a.smoke:
        nets, a.images, a.no_old = ["digits-cnn"], 2, True
    import torch
    torch.set_num_threads(a.threads)
    ns = {}
    exec(compile(MEASURE, "measure", "exec"), ns)
    with printed_to(None if a.output is None else a.output / "deeplift_precision.txt"):
        print(f"{a.images} test images per net, zero reference, injection at the logits (5 vectors, 10 pairs)")
        old = None if a.no_old else run_old(a.old, nets, a.images)
        new = {}
        for n in nets:
            if old is not None:
                show(f"{n} — before ({a.old}: ± parts carried in the batch's dtype)", old[n])
            new[n] = ns["measure"](n, a.images, NEW_RULES)
            show(f"{n} — after (this tree)", new[n])
        summary(new)
    if a.output is not None:
        (a.output / "deeplift_precision.json").write_text(json.dumps({"before": old, "after": new}, indent=1))


if __name__ == "__main__":
    main()
