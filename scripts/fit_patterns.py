"""Fit the ReLU patterns (Kindermans et al. 2018) of the shipped nets on their training data.

    python scripts/fit_patterns.py [--only NAME] [--kind relu|linear|both]

The digits nets are fitted on the shipped digits training set (1437 images); the 32×32 RGB nets on
N_SCENES[net] training scenes ``load_scenes("train", n, seed=SCENES_SEED)`` (training glyphs and
background regions, a seed no training epoch used; fewer images for VGG, whose conv layers see 1024
locations per image and whose fit is the slowest).  Writes data/patterns-<net>.npz (one streaming
pass in batches of 128, float64 sums).  Arrays with more than one million entries (sixt-cifar's fc1
pattern, 1024×8192; for vgg-cifar every array above 100 000 entries) are stored as int8 with one float32
scale per row (to keep data/ small); the
script prints the quantization error of each stored array and of the PatternNet/PatternAttribution
explanations of the first 3 test images.
"""
import argparse
import time

import numpy as np

import chainlab
from chainlab import patterns
from chainlab.nets import manifest
from chainlab.nets.architectures import INPUT_SHAPES

PATTERN_NETS = ("digits-mlp", "digits-cnn", "sixt-cifar", "vgg-cifar", "resnet-cifar")
# a further training seed of a pattern net (``<net>-seed<k>``) is fitted exactly as its net: same scenes, same storage
SEEDED = tuple(n for base in PATTERN_NETS for n in chainlab.models.seed_names(base)[1:])
N_SCENES = {"sixt-cifar": 5000, "vgg-cifar": 2000, "resnet-cifar": 2000}
# arrays stored as int8 (one float32 scale per row) above this many entries; VGG's conv5–8 and fc1
# patterns too, to keep data/ under its 40 MB budget (the script prints the resulting errors)
QUANTIZE_ABOVE = {"vgg-cifar": 100_000}
SCENES_SEED = 123457


def _base(name):
    return chainlab.models.seed_names(name)[0]


def training_inputs(name):
    if INPUT_SHAPES[name] == (1, 3, 32, 32):
        return chainlab.data.model_input(name, chainlab.data.load_scenes("train", N_SCENES[_base(name)],
                                                                         seed=SCENES_SEED).x)
    return chainlab.data.model_input(name, chainlab.data.load_digits().x_train)


def test_inputs(name, n):
    dataset = "scenes" if INPUT_SHAPES[name] == (1, 3, 32, 32) else "digits"
    return chainlab.data.model_input(name, chainlab.data.test_set(dataset, n)[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=PATTERN_NETS + SEEDED)
    ap.add_argument("--kind", default="relu", choices=("relu", "linear", "both"))
    args = ap.parse_args()
    for name in ([args.only] if args.only else PATTERN_NETS):
        net = chainlab.models.load(name)
        X = training_inputs(name)
        t = time.time()
        P = patterns.fit(net, X, kind=args.kind, batch_size=128, net_name=name)
        path = chainlab.models.data_dir() / f"patterns-{name}.npz"
        P.save(path, quantize_above=QUANTIZE_ABOVE.get(_base(name), patterns.QUANTIZE_ABOVE))
        manifest.record(path)                  # data/SHA256SUMS: patterns.load checks the file against it
        Q = patterns.load(path)
        print(f"{name}: fitted on {P.n_samples} images in {time.time() - t:.1f} s -> {path} "
              f"({path.stat().st_size / 1e6:.2f} MB); dead units (pattern 0): {P.degenerate}")
        for kind in P.kinds:
            for layer, a in P.of_kind(kind).items():
                err = np.abs(Q.get(kind, layer) - a).max() / max(np.abs(a).max(), 1e-300)
                if err > 0:
                    print(f"  {kind}/{layer}: stored int8, max error {err:.2e} of max|a|")
        if all(np.array_equal(Q.get(k, layer), a) for k in P.kinds for layer, a in P.of_kind(k).items()):
            continue
        xs = test_inputs(name, 3)
        for rule in ("patternnet", "patternattribution"):
            errs = []
            for i in range(3):
                x = xs[i:i + 1]
                e1 = chainlab.extract(net, x, rule, patterns=P).explain()
                e2 = chainlab.extract(net, x, rule, patterns=Q).explain()
                errs.append(np.abs(e1 - e2).max() / np.abs(e1).max())
            print(f"  {rule}: explanation error from quantization, max over 3 images {max(errs):.2e}")


if __name__ == "__main__":
    main()
