"""What storing a net's weights compactly changes: int8 per row (chainlab.nets.storage.quantize_rows on every
weight tensor with ≥ 2 axes) and float16, against the float32 weights, on shipped nets.

For each net and storage: the largest relative weight error max|w − w̃| / max|row|, the held-out accuracy
on the 2000 scenes of ``test_set("scenes")``, Π‖W_l‖_∞ (train_scenes.weight_norms), and on the first N of
those scenes the vanilla gradient of log p_k (k = the label): its cosine to the float32 gradient and the
mean expected frequency, ours (DC excluded) and the authors' EF_code (chainlab.measures.spectral), with
the mean |ΔEF| per image relative to EF.  data/README.md's size decision quotes this output.

Run: python scripts/storage_error.py [--nets a,b] [--n 200]
"""
import argparse

import numpy as np
import torch
import torch.nn.functional as F

import chainlab
from chainlab.measures.spectral import channel_maps, ef_code, expected_frequency, radial_spectrum
from chainlab.nets import models
from chainlab.nets.storage import dequantize_rows, quantize_rows

import train_scenes


def stored(net, how):
    """A copy of ``net`` whose weight tensors (≥ 2 axes) are what ``how`` ('int8' | 'float16') stores."""
    out = models.build(net.name)
    state = {}
    for k, t in net.state_dict().items():
        a = t.detach().numpy()
        if a.dtype.kind == "f" and a.ndim >= 2:
            if how == "int8":
                a = dequantize_rows(*quantize_rows(a), np.float32)
            else:
                a = a.astype(np.float16).astype(np.float32)
        state[k] = torch.from_numpy(np.ascontiguousarray(a))
    out.load_state_dict(state)
    return out.eval()


def weight_error(net, other):
    worst = 0.0
    for (k, a), b in zip(net.state_dict().items(), other.state_dict().values()):
        if a.ndim >= 2:
            rows = a.reshape(a.shape[0], -1).double()
            err = (rows - b.reshape(b.shape[0], -1).double()).abs().max(1).values
            worst = max(worst, float((err / rows.abs().max(1).values.clamp_min(1e-30)).max()))
    return worst


def gradients(net, x, y):
    x = x.clone().requires_grad_(True)
    logp = F.log_softmax(net(x), 1)
    logp.gather(1, y[:, None]).sum().backward()
    return x.grad.detach().double().numpy()


def ef(g):
    maps = channel_maps(g, "sum")
    P_dc = radial_spectrum(maps, dc="include")
    P = P_dc.copy()
    P[..., 0] = 0
    return expected_frequency(P), ef_code(P_dc)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", default="scenes-cnn-wd1e-4,scenes-cnn-softplus1,scenes-cnn-softplus30,scenes-cnn-wd1e-2,"
                                      "scenes-cnn-bn,vgg-cifar")
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(2)
    xs, ys = chainlab.data.test_set("scenes")
    x, y = torch.from_numpy(xs), torch.from_numpy(ys).long()
    print("| net | storage | max weight error / max|row| | accuracy (2000) | Π‖W‖_∞ | gradient cosine (min / median) "
          "| EF | mean |ΔEF|/EF | EF_code ×1e5 | mean |ΔEF_code|/EF_code |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.nets.split(","):
        net = models.load(name)
        g32 = gradients(net, x[:args.n], y[:args.n])
        e32, c32 = ef(g32)
        for how in ("float32", "float16", "int8"):
            m = net if how == "float32" else stored(net, how)
            with torch.no_grad():
                acc = float((torch.cat([m(x[k:k + 500]) for k in range(0, len(x), 500)]).argmax(1) == y)
                            .float().mean())
            norm = (float(np.prod([r[2] for r in train_scenes.weight_norms(m)]))
                    if isinstance(m, torch.nn.Sequential) else float("nan"))
            g = g32 if how == "float32" else gradients(m, x[:args.n], y[:args.n])
            a, b = g.reshape(len(g), -1), g32.reshape(len(g), -1)
            cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            e, c = ef(g)
            print(f"| {name} | {how} | {weight_error(net, m):.2g} | {acc * 100:.2f} % | {norm:.5g} | "
                  f"{cos.min():.6f} / {np.median(cos):.6f} | {e.mean():.5f} | {np.mean(np.abs(e - e32) / e32):.2g} | "
                  f"{c.mean() * 1e5:.4f} | {np.mean(np.abs(c - c32) / c32):.2g} |", flush=True)


if __name__ == "__main__":
    main()
