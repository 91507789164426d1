"""Fit the ReLU patterns (Kindermans et al. 2018) of the shipped nets on the shipped digits training set.

    python scripts/fit_patterns.py [--only NAME] [--kind relu|linear|both]

Writes data/patterns-<net>.npz (one streaming pass in batches of 128, float64 sums).  Arrays with
more than one million entries (only sixt-cifar's fc1 pattern, 1024×8192) are stored as int8 with
one float32 scale per row (to keep data/ under 20 MB); the script prints the quantization error
of each stored array and of the PatternNet/PatternAttribution explanations of the first 3 test images.
"""
import argparse
import time

import numpy as np

import chainlab
from chainlab import patterns


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=chainlab.models.NAMES)
    ap.add_argument("--kind", default="relu", choices=("relu", "linear", "both"))
    args = ap.parse_args()
    digits = chainlab.data.load_digits()
    for name in ([args.only] if args.only else chainlab.models.NAMES):
        net = chainlab.models.load(name)
        X = chainlab.data.model_input(name, digits.x_train)
        t = time.time()
        P = patterns.fit(net, X, kind=args.kind, batch_size=128, net_name=name)
        path = chainlab.models.data_dir() / f"patterns-{name}.npz"
        P.save(path)
        Q = patterns.load(path)
        print(f"{name}: fitted on {P.n_samples} images in {time.time() - t:.1f} s -> {path} "
              f"({path.stat().st_size / 1e6:.2f} MB); dead units (pattern 0): {P.degenerate}")
        for kind in P.kinds:
            for layer, a in P.of_kind(kind).items():
                err = np.abs(Q.get(kind, layer) - a).max() / max(np.abs(a).max(), 1e-300)
                if err > 0:
                    print(f"  {kind}/{layer}: stored int8, max error {err:.2e} of max|a|")
        if name != "sixt-cifar":
            continue
        for rule in ("patternnet", "patternattribution"):
            errs = []
            for i in range(3):
                x = chainlab.data.model_input(name, digits.x_test[i:i + 1])
                e1 = chainlab.extract(net, x, rule, patterns=P).explain()
                e2 = chainlab.extract(net, x, rule, patterns=Q).explain()
                errs.append(np.abs(e1 - e2).max() / np.abs(e1).max())
            print(f"  {rule}: explanation error from quantization, max over 3 images {max(errs):.2e}")


if __name__ == "__main__":
    main()
