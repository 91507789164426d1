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

    python scripts/residual_methods_agreement.py            # about 1.5 CPU-minutes
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

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


def main():
    methods = ["guided-bp", "deconv", "rectgrad", "deeplift-rescale", "sum-rescale", "sum-revealcancel"]
    print("| net | " + " | ".join(methods) + " |")
    print("|---" * (len(methods) + 1) + "|")
    for name in ("basic", "bottleneck", "identity"):
        net, x = net_and_input(name)
        row(f"{name}", net, x, range(5), methods)
    net, x = resnet18(nn.MaxPool2d(2, 2))
    row("resnet18 (2×2/2 stem pool)", net, x, (0, 3), methods)
    net, x = resnet18()
    row("resnet18 (3×3/2 stem pool)", net, x, (0, 3), methods)
    # captum's own summation-to-delta with the overlapping pool
    cap = captum_copy(net)
    with torch.no_grad():
        d = float((net(x) - net(torch.zeros_like(x))).reshape(-1)[3])
    c = DeepLift(cap).attribute(x.clone(), baselines=torch.zeros_like(x), target=3).detach().numpy()
    print(f"captum DeepLift on resnet18 with the 3×3/2 pool: |ΣC − Δf|/|Δf| = {abs(c.sum() - d) / abs(d):.2e}")


if __name__ == "__main__":
    main()
