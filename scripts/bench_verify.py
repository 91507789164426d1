"""Speed of the Sixt protocol in one run: batched implicit CSC against one materialized chain per image, and
the stage (claim) timings of ``chainlab verify``; with ``--model``, time and peak memory per claim of
``chainlab verify --model … --images …`` on your own net (e.g. VGG-16 at 224×224).

    python scripts/bench_verify.py [--net sixt-cifar] [--images 50] [--baseline-images 4] [--threads 2]
                                   [--claims S1,S2,...] [--quick] [--skip-verify]
    python scripts/bench_verify.py --model torchvision:vgg16 --n-images 4 [--image-dir DIR] [--claims S1,B1]

The ``--model`` mode runs each claim in its own process (``chainlab.app.own.verify_own`` with that claim only, so
each peak resident set is the claim's own) on ``--n-images`` images (default: 224×224 photographs-like random
images written to a temporary folder, or ``--image-dir``), and prints per claim the probe's estimate, the seconds
the run took, the peak RSS, and — the obvious alternative — the memory the materialized (sparse CSC, 12 bytes per
stored entry) chain of one image would take, computed from the layers' shapes (nothing is materialized).

1. CSC as S1 measures it (5 N(0, I) vectors per image injected at the logits, 10 pairs, every boundary) for
   LRP-α1β0 and the gradient: images/s of
   * batched: ``chainlab.studies.sixt.sixt_pass`` (float32 and float64; one torch convolution per layer for
     all images × vectors, factors built per batch of 25 images), and
   * per image: ``chainlab.extract`` (materialized sparse/dense matrices) + ``measures.csc_values``,
   with the ratio.  The same signals → the same medians up to float rounding (printed).
2. The verify stage timings: seconds per claim of ``chainlab.app.verify.run`` (default: the Sixt claims).
A conv throughput probe (GFLOP/s of one 3×3 conv, float32) before and after says how busy the machine was.
"""
import argparse
import time

import numpy as np
import torch

import chainlab
from chainlab import measures
from chainlab.app import verify
from chainlab.app.verify.sixt import NETS
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


OWN_CHILD = """
import json, sys, time
from chainlab.app.own import verify_own
a = json.loads(sys.argv[1])
t = time.perf_counter()
r = verify_own(model=a["model"], images=a["images"], weights=a.get("weights"), n_images=a["n"], claims=[a["claim"]],
               output=a["output"], echo=lambda m: print(m, file=sys.stderr), progress=False)
with open("/proc/self/status") as f:
    hwm = next(int(ln.split()[1]) / 1024 for ln in f if ln.startswith("VmHWM:"))
v = r.verdicts[0]
print(json.dumps({"seconds": time.perf_counter() - t, "measuring": r.estimate.get("measured", None), "peak_mib": hwm,
                  "estimate": r.estimate["seconds"] + r.estimate["probe_seconds"], "outcome": v.outcome.value,
                  "probe_peak_mib": r.estimate["peak_mib"]}))
"""


def sparse_chain_bytes(model, shape) -> int:
    """Bytes of one image's chain stored as CSC matrices: Σ over Conv2d/Linear layers of nnz × 12 (8-byte value +
    4-byte index) + the column pointers, nnz = output elements × (C_in/groups)·k_h·k_w (a conv's unrolled matrix;
    padding taps counted, an upper bound) or in·out (dense layer)."""
    total = [0]

    def hook(m, inp, out):
        if isinstance(m, torch.nn.Conv2d):
            nnz = out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            nnz = m.in_features * m.out_features
        total[0] += nnz * 12 + (out.numel() + 1) * 8

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(torch.zeros((1,) + tuple(shape)))
    for h in hs:
        h.remove()
    return total[0]


def own_main(a):
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from PIL import Image

    from chainlab.app.own import claims as C
    from chainlab.app.own import prepare

    tmp = Path(tempfile.mkdtemp(prefix="bench_verify_"))
    images = a.image_dir
    if images is None:
        images = tmp / "images"
        images.mkdir()
        rng = np.random.default_rng(0)
        for i in range(a.n_images):      # smooth random images (low-pass noise), 256×256 → centre crop 224
            z = rng.standard_normal((16, 16, 3))
            im = Image.fromarray(np.uint8(np.clip(128 + 40 * z, 0, 255))).resize((256, 256), Image.BICUBIC)
            im.save(images / f"{i:03d}.png")
    user = prepare(a.model, str(images), weights=a.weights, n_images=a.n_images)
    shape = tuple(user.model.input_shape[1:])
    sparse = sparse_chain_bytes(user.model, shape)
    wanted = [c.strip().upper() for c in a.claims.split(",")] if a.claims else list(C.ORDER)
    print(f"{user.info.description}: input {shape}, {user.macs / 1e9:.3g} G multiply-adds per image, "
          f"{a.n_images} images; threads {torch.get_num_threads()}; conv probe {probe():.1f} GFLOP/s (float32)")
    print(f"one image's chain materialized as CSC would take {sparse / 2**30:.1f} GB (computed, not built)")
    print(f"{'claim':5s} {'outcome':15s} {'estimate s':>10s} {'run s':>8s} {'peak RSS GB':>11s} "
          f"{'materialized/peak':>17s}")
    rows = []
    for claim in wanted:
        if C.not_applicable(claim, user):
            print(f"{claim:5s} not checked     ({C.not_applicable(claim, user)})")
            continue
        arg = json.dumps({"model": a.model, "weights": a.weights, "images": str(images), "n": a.n_images,
                          "claim": claim, "output": str(tmp / f"out-{claim}")})
        res = subprocess.run([sys.executable, "-c", OWN_CHILD, arg], capture_output=True, text=True)
        if res.returncode != 0:
            print(f"{claim:5s} failed: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else '?'}")
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append((claim, r))
        print(f"{claim:5s} {r['outcome']:15s} {r['estimate']:10.0f} {r['seconds']:8.0f} {r['peak_mib'] / 1024:11.2f} "
              f"{sparse / (r['peak_mib'] * 2**20):17.1f}", flush=True)
    if rows:
        print(f"total {sum(r['seconds'] for _, r in rows):.0f} s (each claim in its own process, start-up included); "
              f"max peak RSS {max(r['peak_mib'] for _, r in rows) / 1024:.2f} GB; conv probe after: {probe():.1f} GFLOP/s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="your net (chainlab verify --model SPEC): time and memory per claim")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--n-images", type=int, default=4)
    ap.add_argument("--image-dir", default=None)
    ap.add_argument("--net", default="sixt-cifar")
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--baseline-images", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--claims", default="S1,S2,S3,S4,S5,S6,S7,S8")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-verify", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.model is not None:
        if a.claims == ap.get_default("claims"):
            a.claims = None
        return own_main(a)
    print(f"threads {a.threads}; conv probe {probe():.1f} GFLOP/s (float32)")
    net = chainlab.models.load(a.net)
    sc = chainlab.data.load_scenes("test", a.images, seed=0)
    X = chainlab.data.model_input(net, sc.x).double()
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
        print(f"{'':10s} ratio batched/per-image: float32 ×{rates['float32'] / base:.1f}, float64 ×{rates['float64'] / base:.1f}"
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


if __name__ == "__main__":
    main()
