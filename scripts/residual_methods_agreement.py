"""Agreement of guided BP, deconv, RectGrad and DeepLIFT on residual nets with their oracles (the README numbers).

For every net (resnet_tiny basic and bottleneck, the hand-made identity-shortcut net of
tests/test_residual_methods.py, a torchvision-style ResNet-18 at 32×32) and every method it prints the largest
relative error max|ours − theirs| / max|theirs| over the logits it checks:

* guided-bp, deconv: captum's GuidedBackprop / Deconvolution (on the captum copy: one nn.ReLU per call);
* rectgrad: the direct RectGrad of tests/test_nonlinear.py (Kim et al.'s rectifier as an autograd function);
* deeplift-rescale (the ± rule, ``deeplift-rescale-pm``, whose max-pool rule is captum's): captum's DeepLift
  (ResNet-18: with the stem pool made MaxPool2d(2, 2), since captum's DeepLift
  un-pools overlapping windows wrongly — the row "resnet18 (3×3/2 pool)" shows captum's own summation error);
* sum-to-delta: |Σ C − (f_k(x) − f_k(0))| / |f_k(x) − f_k(0)| for Rescale and RevealCancel (± rule).

    python scripts/residual_methods_agreement.py [--output results/residual_methods_agreement.txt]   # ~1.5 CPU-minutes

The README's oracle-agreement table is generated from the committed output (scripts/readme_numbers.py).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import _bench  # noqa: E402
import chainlab  # noqa: E402
from captum.attr import Deconvolution, DeepLift, GuidedBackprop  # noqa: E402
from chainlab.nets.zoo import BasicBlock, ResNet  # noqa: E402
from conftest import randomize_bn, rel_err  # noqa: E402
from test_nonlinear import rectgrad_direct  # noqa: E402
from test_residual_methods import captum_copy, net_and_input  # noqa: E402


def resnet18(stem_pool=None):
    torch.manual_seed(0)
    net = randomize_bn(ResNet(BasicBlock, [2, 2, 2, 2], num_classes=10), 0).double().eval()
    if stem_pool is not None:
        net.maxpool = stem_pool
    return net, torch.randn(1, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(2))


def row(label, net, x, ks, methods):
    cap = captum_copy(net)
    out = {}
    for m in methods:
        t = time.perf_counter()
        rule = "deeplift-rescale-pm" if m in ("deeplift-rescale", "sum-rescale") else m
        if m == "sum-revealcancel":
            rule = "deeplift-revealcancel-pm"
        ch = chainlab.extract(net, x, rule)
        errs = []
        for k in ks:
            if m.startswith("sum-"):
                with torch.no_grad():
                    d = float((net(x) - net(torch.zeros_like(x))).reshape(-1)[k])
                errs.append(abs(ch.explain(k).sum() - d) / abs(d))
                continue
            if m == "rectgrad":
                theirs = rectgrad_direct(net, x, k)
            else:
                cls = {"guided-bp": GuidedBackprop, "deconv": Deconvolution, "deeplift-rescale": DeepLift}[m]
                kw = {"baselines": torch.zeros_like(x)} if m == "deeplift-rescale" else {}
                theirs = cls(cap).attribute(x.clone(), target=k, **kw).detach().numpy()
            errs.append(rel_err(ch.explain(k), theirs))
        out[m] = (max(errs), time.perf_counter() - t)
    print(f"| {label} | " + " | ".join(f"{out[m][0]:.1e}" for m in methods) + " |", flush=True)


HEADER = {"guided-bp": "guided-bp vs captum", "deconv": "deconv vs captum",
          "rectgrad": "rectgrad vs direct (Kim et al.)", "deeplift-rescale": "deeplift-rescale-pm vs captum",
          "sum-rescale": "Σ C − Δf, Rescale-pm", "sum-revealcancel": "Σ C − Δf, RevealCancel-pm"}
LABEL = {"basic": "resnet_tiny basic (2+1 blocks, 1×1 conv+BN shortcut)", "bottleneck": "resnet_tiny bottleneck",
         "identity": "hand-made, identity shortcut, ReLU→max-pool, BN, no-bias conv, stride 2"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, metavar="FILE", default=None, help="also write everything printed to FILE")
    a = ap.parse_args(argv)
    methods = ["guided-bp", "deconv", "rectgrad", "deeplift-rescale", "sum-rescale", "sum-revealcancel"]
    with _bench.printed_to(a.output):
        print("table: largest relative error max|ours − oracle| / max|oracle| over the logits checked (5 for the "
              "small nets, 2 for ResNet-18), float64")
        print("| net | " + " | ".join(HEADER[m] for m in methods) + " |")
        print("|---" * (len(methods) + 1) + "|")
        for name in ("basic", "bottleneck", "identity"):
            net, x = net_and_input(name)
            row(LABEL[name], net, x, range(5), methods)
        net, x = resnet18(nn.MaxPool2d(2, 2))
        row("torchvision-style ResNet-18, random init, 32×32, stem pool 2×2/2", net, x, (0, 3), methods)
        net, x = resnet18()
        row("same ResNet-18 with its 3×3/2 stem pool", net, x, (0, 3), methods)
        # captum's own summation-to-delta with the overlapping pool
        cap = captum_copy(net)
        with torch.no_grad():
            d = float((net(x) - net(torch.zeros_like(x))).reshape(-1)[3])
        c = DeepLift(cap).attribute(x.clone(), baselines=torch.zeros_like(x), target=3).detach().numpy()
        print(f"summary: captum's own DeepLift on the ResNet-18 with the 3×3/2 stem pool misses summation-to-delta: "
              f"|ΣC − Δf|/|Δf| = {abs(c.sum() - d) / abs(d):.2e} (its max-pool rule un-pools overlapping windows with "
              f"max_unpool2d, which overwrites where windows share a winner), so deeplift-rescale-pm vs captum is large "
              f"there by captum's error")


if __name__ == "__main__":
    main()
