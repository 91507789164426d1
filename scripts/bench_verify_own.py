"""Time and peak memory per claim of ``chainlab verify --model … --images …`` on your own net (e.g. VGG-16 at
224×224), beside the memory the obvious alternative — one image's chain materialized as sparse matrices — would take.

    python scripts/bench_verify_own.py --model torchvision:vgg16 --n-images 4 [--weights FILE] [--image-dir DIR]
                                       [--claims S1,B1,...] [--threads 2] [--output FILE]
    python scripts/bench_verify.py --model torchvision:vgg16 --n-images 4      (the same; the issue's command)

Each claim runs in its own process (``chainlab.app.own.verify_own`` with that claim only, so each peak resident set
is the claim's own) on ``--n-images`` images (default: smooth random 256×256 RGB images written to a temporary folder
and preprocessed as ImageNet's, or ``--image-dir``).  A markdown table, one row per claim: the a-priori estimate
(``chainlab.app.own.claims.seconds_per_image`` × images: what decides the default run), the probe's estimate (printed
by the run before the other images), the seconds the run took, its peak RSS (VmHWM) and the ratio of the materialized
chain (CSC: 12 bytes per stored entry + column pointers, computed from the layers' shapes, nothing is built) to that
peak.  ``summary:`` lines: the default run of the net (``--n-images``, the claims it checks and those "not checked at
this size", ``chainlab.app.own.claims.over_budget``) and the total (image 1 — the probe, with the one-time costs —,
each further image, start-up and deciding) with the load average at the end (the lead measures on an idle machine;
times on a busy one mean little).

``--default-run``: instead, the net's default run (no ``--claims``, no ``--n-images``: the claims and images that fit
the 15-minute budget) in one process, with its time and peak RSS against the issue's 15 min and 8 GB.

``--smoke``: the shipped digits-cnn (8×8 grey), 2 random images as .npy, claims S5 and M2 (seconds).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import _bench
from chainlab.app.own import claims as C
from chainlab.app.own import prepare

CHILD = """
import json, sys, time
import torch
from chainlab.app.own import verify_own
from chainlab.memory import peak_mib
a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"])
t = time.perf_counter()
default = a["claim"] is None         # the default run: no --claims, no --n-images
r = verify_own(model=a["model"], images=a["images"], weights=a["weights"], preprocess=a["preprocess"],
               n_images=None if default else a["n"], claims=None if default else [a["claim"]], output=a["output"],
               echo=lambda m: print(m, file=sys.stderr), progress=False)
hwm = peak_mib()
checked = [v.claim for v in r.verdicts if v.outcome.value != "not checked"]
outcome = f"{len(checked)} claims decided ({','.join(checked)})" if default else r.verdicts[0].outcome.value
print(json.dumps({"seconds": time.perf_counter() - t, "peak_mib": hwm, "outcome": outcome,
                  "n_images": len(r.user.images),
                  "estimate": r.estimate["seconds"] + r.estimate["probe_seconds"],
                  "probe": r.estimate["probe_seconds"], "measured": r.estimate["measured"]}))
"""


def probe() -> float:
    """GFLOP/s of one 3×3 conv (float32): how busy the machine is."""
    x = torch.randn(2, 64, 128, 128)
    w = torch.randn(256, 64, 3, 3)
    torch.nn.functional.conv2d(x, w, padding=1)
    t = time.perf_counter()
    torch.nn.functional.conv2d(x, w, padding=1)
    dt = time.perf_counter() - t
    return 2 * 2 * 128 * 128 * 9 * 256 * 64 / dt / 1e9


def sparse_chain_bytes(model, shape) -> int:
    """Bytes of one image's chain stored as CSC matrices: Σ over Conv2d/Linear layers of nnz × 12 (8-byte value +
    4-byte index) + 8 bytes per column pointer, nnz = output elements × (C_in/groups)·k_h·k_w (a conv's unrolled
    matrix; padding taps counted: an upper bound) or in·out (a dense layer)."""
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


def make_images(folder: Path, n: int, smoke: bool) -> tuple[str, str]:
    """(path, preprocess) of n test images: smooth random RGB PNGs (low-pass noise, 256×256 → ImageNet's centre crop
    224) or, in smoke mode, an (n, 1, 8, 8) .npy in [0, 1]."""
    rng = np.random.default_rng(0)
    if smoke:
        p = folder / "digits.npy"
        np.save(p, rng.random((n, 1, 8, 8)).astype(np.float32))
        return str(p), "none"
    from PIL import Image
    folder = folder / "images"
    folder.mkdir()
    for i in range(n):
        z = rng.standard_normal((16, 16, 3))
        im = Image.fromarray(np.uint8(np.clip(128 + 40 * z, 0, 255))).resize((256, 256), Image.BICUBIC)
        im.save(folder / f"{i:03d}.png")
    return str(folder), "imagenet"


def child(a, images, preprocess, claim, output) -> tuple[dict | None, str]:
    """(the child's JSON line, or None; the last line of its stderr) of one verify_own run in its own process."""
    arg = json.dumps({"model": a.model, "weights": a.weights, "images": images, "preprocess": preprocess,
                      "n": a.n_images, "claim": claim, "output": output, "threads": a.threads})
    res = subprocess.run([sys.executable, "-c", CHILD, arg], capture_output=True, text=True)
    last = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "?"
    if res.returncode != 0:
        return None, last
    return json.loads(res.stdout.strip().splitlines()[-1]), last


def default_run(a, user, images, preprocess, tmp):
    """The net's default run in one process: its images, claims, time and peak RSS beside the issue's targets."""
    shape = tuple(user.model.input_shape[1:])
    print(f"{user.info.description}: input {shape}, {user.macs / 1e9:.3g} G multiply-adds per image; threads "
          f"{a.threads}; conv probe {probe():.1f} GFLOP/s (float32); load average {os.getloadavg()[0]:.1f} at start")
    print("| run | outcome | images | seconds | peak RSS GB | target |")
    print("|---|---|---:|---:|---:|---|")
    r, last = child(a, images, preprocess, None, str(tmp / "out-default"))
    if r is None:
        print(f"| default | failed: {last[:120]} | | | | |")
        return
    print(f"| default (no --claims, no --n-images), one process | {r['outcome']} | {r['n_images']} | "
          f"{r['seconds']:.0f} | {r['peak_mib'] / 1024:.2f} | ≤ {C.BUDGET_SECONDS / 60:.0f} min, ≤ 8 GB |")
    print(f"summary: the default run took {r['seconds'] / 60:.1f} min (target {C.BUDGET_SECONDS / 60:.0f} min) and "
          f"peaked at {r['peak_mib'] / 1024:.2f} GB (target 8 GB); load average {os.getloadavg()[0]:.1f} at the end")


def run(a):
    torch.set_num_threads(a.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_verify_own_"))
    if a.image_dir is None:
        images, preprocess = make_images(tmp, a.n_images, a.smoke)
    else:
        images, preprocess = a.image_dir, a.preprocess
    user = prepare(a.model, images, weights=a.weights, preprocess=preprocess, n_images=a.n_images)
    if a.default_run:
        user.traced = None
        return default_run(a, user, images, preprocess, tmp)
    shape = tuple(user.model.input_shape[1:])
    sparse = sparse_chain_bytes(user.model, shape)
    wanted = [c.strip().upper() for c in a.claims.split(",")] if a.claims else list(C.ORDER)
    print(f"{user.info.description}: input {shape}, {user.macs / 1e9:.3g} G multiply-adds per image, "
          f"{len(user.images)} images; threads {a.threads}; conv probe {probe():.1f} GFLOP/s (float32)")
    print(f"one image's chain materialized as CSC would take {sparse / 2**30:.3g} GB (computed, not built)")
    print("| claim | outcome | a-priori estimate s | probe estimate s | run s | peak RSS GB | materialized chain / peak |")
    print("|---|---|---:|---:|---:|---:|---:|")
    done, skipped = [], []
    for claim in wanted:
        why = C.not_applicable(claim, user)
        if why:
            skipped.append(claim)
            continue
        a_priori = C.seconds_per_image(user.macs, [claim], user.norm_entries) * len(user.images)
        r, last = child(a, images, preprocess, claim, str(tmp / f"out-{claim}"))
        if r is None:
            print(f"| {claim} | failed: {last[:120]} | {a_priori:.3g} | | | | |")
            continue
        done.append(r)
        print(f"| {claim} | {r['outcome']} | {a_priori:.3g} | {r['estimate']:.3g} | {r['seconds']:.3g} | "
              f"{r['peak_mib'] / 1024:.2f} | {sparse / (r['peak_mib'] * 2**20):.3g} |", flush=True)
    if skipped:
        print(f"summary: not checked on one net (their reasons in verify.md): {', '.join(skipped)}")
    every = [c for c in C.ORDER if C.not_applicable(c, user) is None]
    cut = C.over_budget(user.macs, every, user.norm_entries)
    kept = [c for c in every if c not in cut]
    default = C.default_images(user.macs, kept, user.norm_entries)
    print(f"summary: the default run of {user.info.description.split(',')[0]} at {shape[1]}×{shape[2]} "
          f"(no --claims, no --n-images): --n-images {default}, claims {','.join(kept) or 'none'}"
          + (f"; not checked at this size: {', '.join(cut)}" if cut else "")
          + f" — a-priori {C.seconds_per_image(user.macs, kept, user.norm_entries) * default / 60:.1f} min "
          f"(budget {C.BUDGET_SECONDS / 60:.0f} min on 2 idle cores at {C.ASSUMED_GFLOPS:g} G multiply-adds/s)")
    if not done:
        return
    n = len(user.images)
    total = sum(r["seconds"] for r in done)
    first = sum(r["probe"] for r in done)                       # image 1 of every claim (one-time costs in it)
    later = sum(r["measured"] for r in done) / (n - 1) if n > 1 else first      # each further image
    fixed = total - first - (n - 1) * later                     # start-up, loading, deciding, writing
    print(f"summary: {total:.0f} s for {n} image(s) over the claims above, each in its own process (image 1 "
          f"{first:.0f} s, each further image {later:.0f} s, start-up and deciding {fixed:.0f} s); max peak RSS "
          f"{max(r['peak_mib'] for r in done) / 1024:.2f} GB; load average {os.getloadavg()[0]:.1f} at the end, "
          f"conv probe after {probe():.1f} GFLOP/s (times on a loaded machine mean little: rerun idle)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="torchvision:vgg16", help="chainlab verify --model SPEC")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--n-images", type=int, default=4)
    ap.add_argument("--image-dir", default=None, help="your images (default: random ones written to a temp folder)")
    ap.add_argument("--preprocess", default="imagenet", help="with --image-dir")
    ap.add_argument("--claims", default=None, help="default: every claim")
    ap.add_argument("--threads", type=int, default=_bench.threads())
    ap.add_argument("--default-run", action="store_true", help="the net's default run in one process instead")
    _bench.add_options(ap)
    a = ap.parse_args(argv)
    if a.smoke:
        a.model, a.weights, a.n_images, a.image_dir, a.claims = "digits-cnn", None, 2, None, "S5,M2"
    with _bench.printed_to(a.output):
        run(a)


if __name__ == "__main__":
    main()
