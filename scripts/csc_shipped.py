"""CSC (Sixt et al. §3) of the shipped nets: median |cos| per lower boundary for an injection at the logits.

    python scripts/csc_shipped.py [--images 20] [--nets digits-mlp,digits-cnn,sixt-cifar] [--csv out.csv]

Prints one line per net and rule: CSC at every boundary j (input = j0) and the random baseline of
the same channel dimension.  Expectation from Sixt Fig. 5: z⁺ close to 1 in the lower layers,
gradient and LRP-ε clearly lower.
"""
import argparse
import time

import chainlab
from chainlab import measures as ms

RULES = [("zplus", {}), ("alpha-beta", dict(alpha=2, beta=1)), ("gradient", {}), ("lrp-epsilon", dict(epsilon=0.1)),
         ("lrp-cmp", dict(low=0.0, high=1.0))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--nets", default=",".join(chainlab.models.NAMES))
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--csv", default=None)
    a = ap.parse_args()
    d = chainlab.data.load_digits()
    allrecs = []
    for name in a.nets.split(","):
        net = chainlab.models.load(name).double()
        for rule, kw in RULES:
            t = time.time()
            chains = []
            for i in range(a.images):
                x = chainlab.data.model_input(name, d.x_test[i:i + 1]).double()
                ch = chainlab.extract(net, x, rule, **kw)
                ch.meta.update(net=name, image=i)
                chains.append(ch)
            L = len(chains[0])
            recs = ms.csc(chains, layers=[L], pairs=a.pairs)
            allrecs += recs
            c = {r["layer"]: r for r in recs if r["quantity"] == "csc"}
            b = {r["layer"]: r["value"] for r in recs if r["quantity"] == "baseline"}
            cells = " ".join(f"j{j}:{c[j]['value']:.6f}(b{b[j]:.3f})" if c[j]["value"] is not None else f"j{j}:-"
                             for j in sorted(c))
            print(f"{name:10s} {rule:11s} [{time.time() - t:5.1f}s] {cells}", flush=True)
    if a.csv:
        ms.write_csv(allrecs, a.csv)


if __name__ == "__main__":
    main()
