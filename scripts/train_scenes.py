"""Train the 32×32 RGB nets of chainlab.nets.architectures on glyph-on-scene images: data/<name>.npz.

Deterministic on CPU: seeded init (``--seed``), every epoch a fresh set of training scenes
``load_scenes("train", N_TRAIN, seed=EPOCH_SEED(seed, epoch))``, fixed order, 2 threads.
Optimizer: SGD (momentum 0.9, Nesterov), one epoch of linear warm-up, then cosine decay to 0,
batch 128, cross-entropy; coupled L2 weight decay (``weight_decay`` of torch.optim.SGD) on all
parameters.  The plain chains marked ``data_init`` start from a data-dependent init (see
:func:`data_init`); sixt-cifar (trained first) did not need it.

Accuracies printed and stored in the file's metadata are measured on the weights *as stored*
(reloaded with chainlab.nets.storage.read_state, i.e. after int8 storage of sixt-cifar's fc1):
``train_accuracy`` on TRAIN_EVAL = load_scenes("train", 10000, seed=10**6) (fresh training-split
scenes: training glyphs and background regions, images never trained on), ``test_accuracy`` on
TEST = load_scenes("test", 10000, seed=0) (held-out glyphs and background regions).  Also printed:
accuracy on load_scenes("test", 2000, seed=0), and on two-object test scenes the fraction whose top-2
classes are exactly {left, right}.  For the plain chains the product of per-layer operator norms
Π‖W_l‖ (conv/linear layers as linear maps at their input resolution, BN folded into the preceding
conv; spectral norm by power iteration, and the ∞-norm = max row sum) is printed and stored.

Seeds: ``--seed K`` trains net NAME from seed K (init from torch.manual_seed(K), training scenes of epoch e
from seed 100 000·K + e; the data-dependent init batch is the same for every seed) and writes
``data/<NAME>-seed<K>.npz`` (``data/<NAME>.npz`` for K = 0), the architecture stored as NAME.  Storage: the
files shipped before seeds were added (``FLOAT32_FILES``, seed 0) hold float32 weights; every other file
stores its weight tensors (≥ 2 axes) as float16 (data/README.md, "Size"; the accuracies are measured on
the stored weights either way).

Probes (``--probe-epochs N``): the first N epochs of a net's schedule (the learning rate follows the full
schedule, so the probe is the start of the real run), then the accuracy on load_scenes("test", 2000, seed=0);
nothing is written.  ``--set key=value`` overrides a recipe entry (lr, epochs, wd, opt, warmup) for a
probe.  The probes that chose the activation study's recipe are listed in data/README.md.

Run: python scripts/train_models.py --only NAME [--seed K | --seeds 0,1,2] (or this script directly: [--only
NAME] [--seed K] [--seeds ...] [--time-batches] [--probe-epochs N --set key=value ...]; TRAIN_THREADS=1 runs
two trainings side by side on 2 cores).
"""
import argparse
import os
import time
from pathlib import Path

# On a shared, oversubscribed machine OpenMP's default busy-waiting makes 2 threads ~3x slower than
# 1 (measured: 2.27 vs 0.75 s per scenes-cnn batch at load 10); passive waiting removes that.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from chainlab.nets import models, scenes
from chainlab.nets import manifest
from chainlab.nets.architectures import seed_name
from chainlab.nets.storage import read_state

DATA = Path(__file__).resolve().parent.parent / "data"
N_TRAIN = 20000
BATCH = 128
TRAIN_EVAL = ("train", 10000, 10 ** 6)
TEST = ("test", 10000, 0)
TEST_2000 = ("test", 2000, 0)
TWO_OBJECT = ("test", 2000, 0)

# one schedule per study: the scenes-cnn variants share epochs and data init; the weight-norm study (Binder et al.)
# trains at lr 0.05, the activation study (Mehrpanah et al.: every Softplus β and its ReLU end point) at lr 0.01 —
# at 0.05 Softplus(β=1) stayed at chance level (loss 2.307 after 3 of 8 epochs, data-dependent init and all), and one
# recipe across the β sweep keeps the learning rate out of the EF-vs-β comparison (a probe of β = 3 at 0.01: 92.7 %
# on the 2000 held-out scenes, at 0.05: 96.0 %)
CNN = dict(epochs=8, lr=0.05, data_init=True)
ACTIVATION = dict(CNN, wd=1e-4, lr=0.01)
CONFIG = {
    "scenes-cnn-relu": ACTIVATION,
    "sixt-cifar": dict(epochs=15, lr=0.02, wd=1e-4),
    "resnet-cifar": dict(epochs=10, lr=0.1, wd=1e-4),
    "vgg-cifar": dict(epochs=10, lr=0.05, wd=1e-4, data_init=True),
    "vgg-cifar-bn": dict(epochs=8, lr=0.05, wd=1e-4, data_init=True),
    # the authors' small-β grid (their sweep reaches 0.1–0.9) is not trained: the probe of β = 0.5 on this schedule
    # (--only scenes-cnn-softplus0.5 with this entry: ACTIVATION) stayed at chance level, loss 2.306 and batch
    # accuracy 0.12 after 3 of 8 epochs (β = 1 by then: 1.43, 0.52); chainlab.papers.mehrpanah.protocol
    # .SMALL_BETA_PROBE says so in M1's notes
    "scenes-cnn-softplus1": ACTIVATION,
    "scenes-cnn-softplus3": ACTIVATION,
    "scenes-cnn-softplus10": ACTIVATION,
    "scenes-cnn-softplus30": ACTIVATION,
    "scenes-cnn-wd0": dict(CNN, wd=0.0),
    "scenes-cnn-wd1e-4": dict(CNN, wd=1e-4),
    "scenes-cnn-wd1e-3": dict(CNN, wd=1e-3),
    "scenes-cnn-wd1e-2": dict(CNN, wd=1e-2),     # added after wd 0…1e-3 spanned Π‖W_l‖_∞ only ×7 (B1–B3 need ×10)
    "scenes-cnn-bn": dict(CNN, wd=1e-4),
}
# the seed-0 files shipped before seeds were added, and not retrained since, keep their float32 weights (every
# other file: float16)
FLOAT32_FILES = ("sixt-cifar", "vgg-cifar", "resnet-cifar", "scenes-cnn-softplus1", "scenes-cnn-wd0",
                 "scenes-cnn-wd1e-4", "scenes-cnn-wd1e-3", "scenes-cnn-wd1e-2", "scenes-cnn-bn")
OVERRIDABLE = {"lr": float, "epochs": int, "wd": float, "opt": str, "warmup": int}


def float16_storage(name, seed):
    """Whether the file of net ``name`` trained from ``seed`` stores its weight tensors as float16."""
    return not (seed == 0 and name in FLOAT32_FILES)


def epoch_seed(seed, epoch):
    return 100_000 * seed + epoch


def tensors(s):
    return torch.from_numpy(s.x), torch.from_numpy(s.y)


def predict(net, x, batch=500):
    net.eval()
    with torch.no_grad():
        return torch.cat([net(x[k:k + batch]) for k in range(0, len(x), batch)])


def accuracy(net, x, y):
    return float((predict(net, x).argmax(1) == y).float().mean())


def two_object_accuracy(net, t):
    logits = predict(net, torch.from_numpy(t.x))
    top2 = logits.topk(2, 1).indices.numpy()
    both = np.mean([set(p) == {a, b} for p, a, b in zip(top2, t.y_left, t.y_right)])
    top1 = np.mean([(p[0] == a) or (p[0] == b) for p, a, b in zip(top2, t.y_left, t.y_right)])
    return float(both), float(top1)


# ---------------------------------------------------------------------------------------------
# weight norms of the linear layers of a plain chain


def linear_layers(net):
    """[(name, kind, weight, conv kwargs, input shape)] of the conv/linear layers, BN folded in."""
    shapes = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, tuple(i[0].shape[1:])))
             for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        net.eval()(torch.zeros(net.input_shape))
    for h in hooks:
        h.remove()
    mods = list(net.named_children())
    out = []
    for i, (n, m) in enumerate(mods):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight.detach().double()
            if i + 1 < len(mods) and isinstance(mods[i + 1][1], (nn.BatchNorm1d, nn.BatchNorm2d)):
                bn = mods[i + 1][1]
                g = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double()
                w = w * g.reshape((-1,) + (1,) * (w.ndim - 1))
            kw = dict(stride=m.stride, padding=m.padding) if isinstance(m, nn.Conv2d) else None
            out.append((n, w, kw, shapes[n]))
    return out


def operator_norms(w, kw, in_shape, iters=300):
    """(spectral norm, ∞-norm) of the layer as a linear map on inputs of shape in_shape."""
    if kw is None:
        return float(torch.linalg.matrix_norm(w, 2)), float(w.abs().sum(1).max())
    g = torch.Generator().manual_seed(0)
    v = torch.randn((1,) + tuple(in_shape), generator=g, dtype=torch.float64)
    v /= v.norm()
    s = 0.0
    for _ in range(iters):
        u = F.conv2d(v, w, **kw)
        v = F.conv_transpose2d(u, w, **kw)
        if v.shape != (1,) + tuple(in_shape):
            raise ValueError("conv adjoint shape mismatch")
        s = float(v.norm()) ** 0.5
        v /= v.norm()
    # ∞-norm: max row sum; an interior output pixel sees every tap of its filter
    return s, float(w.abs().sum((1, 2, 3)).max())


def weight_norms(net):
    rows = []
    for n, w, kw, shape in linear_layers(net):
        spec, inf = operator_norms(w, kw, shape)
        rows.append((n, spec, inf))
    return rows


# ---------------------------------------------------------------------------------------------


def build(name, seed):
    return models.build(name, seed=seed)


INIT_BATCH = ("train", 512, 999_999)


def data_init(net):
    """Data-dependent init of a plain chain (LSUV-style, Mishkin & Matas 2016; mean-only part as in
    Salimans & Kingma 2016): layer by layer, scale each conv/linear output channel to unit standard
    deviation and shift its bias to zero mean on one fixed batch of training scenes (INIT_BATCH).
    Without it the positive mean of ReLU/Softplus outputs grows through the plain chains and the
    Softplus(β=1) net stays at chance level under SGD.  A BN after a conv makes this a no-op for it."""
    x = torch.from_numpy(scenes.load_scenes(*INIT_BATCH[:2], seed=INIT_BATCH[2]).x)
    with torch.no_grad():
        h = x
        for m in net.children():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                dims = (0, 2, 3) if isinstance(m, nn.Conv2d) else (0,)
                shape = (-1,) + (1,) * (m.weight.ndim - 1)
                out = m(h)
                m.weight /= out.std(dims).clamp_min(1e-8).reshape(shape)
                if m.bias is not None:
                    m.bias /= out.std(dims).clamp_min(1e-8)
                    m.bias -= m(h).mean(dims)
            h = m(h)


def optimizer(net, cfg):
    """SGD (momentum 0.9, Nesterov) or Adam (betas 0.9/0.999), coupled L2 weight decay ``wd`` in either."""
    if cfg.get("opt", "sgd") == "sgd":
        return torch.optim.SGD(net.parameters(), lr=cfg["lr"], momentum=0.9, nesterov=True, weight_decay=cfg["wd"])
    if cfg["opt"] == "adam":
        return torch.optim.Adam(net.parameters(), lr=cfg["lr"], weight_decay=cfg["wd"])
    raise ValueError(f"unknown optimizer {cfg['opt']!r}")


def recipe(cfg):
    """The recipe as stored in a file's metadata and printed."""
    opt = ("SGD momentum 0.9 nesterov" if cfg.get("opt", "sgd") == "sgd" else "Adam betas (0.9, 0.999)")
    w = cfg.get("warmup", 1)
    return f"{opt}, warmup {w} epoch{'s' if w != 1 else ''} + cosine"


def train(name, seed, time_only=False, probe_epochs=None, overrides=None):
    cfg = dict(CONFIG[name], **(overrides or {}))
    out_name = seed_name(name, seed)
    torch.manual_seed(seed)
    net = build(name, seed)
    if cfg.get("data_init"):
        data_init(net)
    net = net.to(memory_format=torch.channels_last)
    opt = optimizer(net, cfg)
    steps_per_epoch = -(-N_TRAIN // BATCH)
    total = cfg["epochs"] * steps_per_epoch
    warm = cfg.get("warmup", 1) * steps_per_epoch

    def lr_at(step):
        if step < warm:
            return cfg["lr"] * (step + 1) / warm
        t = (step - warm) / max(1, total - warm)
        return cfg["lr"] * 0.5 * (1 + np.cos(np.pi * t))

    if probe_epochs:
        test = scenes.load_scenes(*TEST_2000[:2], seed=TEST_2000[2])
    else:
        test = scenes.load_scenes(*TEST[:2], seed=TEST[2])
    xte, yte = tensors(test)
    t_start = time.time()
    t_data = 0.0
    step = 0
    loads = []
    for epoch in range(probe_epochs or cfg["epochs"]):
        t0 = time.time()
        x, y = tensors(scenes.load_scenes("train", N_TRAIN, seed=epoch_seed(seed, epoch)))
        t_data += time.time() - t0
        net.train()
        tot, correct, n_seen = 0.0, 0, 0
        for k in range(0, N_TRAIN, BATCH):
            for gr in opt.param_groups:
                gr["lr"] = lr_at(step)
            xb = x[k:k + BATCH].contiguous(memory_format=torch.channels_last)
            yb = y[k:k + BATCH]
            opt.zero_grad(set_to_none=True)
            out = net(xb)
            loss = F.cross_entropy(out, yb)
            loss.backward()
            opt.step()
            step += 1
            tot += loss.item() * len(yb)
            correct += int((out.argmax(1) == yb).sum())
            n_seen += len(yb)
            if time_only and step == 20:
                dt = time.time() - t_start - t_data
                per_epoch = dt / 20 * steps_per_epoch
                print(f"{name}: {dt / 20 * 1000:.0f} ms/batch of {BATCH} -> {per_epoch:.0f} s/epoch of {N_TRAIN}, "
                      f"{cfg['epochs']} epochs ≈ {cfg['epochs'] * (per_epoch + t_data) / 60:.1f} min", flush=True)
                return
        loads.append(os.getloadavg()[0])
        if not np.isfinite(tot):
            if probe_epochs:
                print(f"PROBE {out_name} {cfg_text(cfg)}: loss diverged in epoch {epoch + 1}", flush=True)
                return
            raise RuntimeError(f"{name}: loss diverged in epoch {epoch + 1}")
        msg = (f"  {out_name} epoch {epoch + 1}/{cfg['epochs']}: loss {tot / n_seen:.4f} "
               f"batch-acc {correct / n_seen:.4f}")
        if (epoch + 1) % 5 == 0 or epoch == cfg["epochs"] - 1 or probe_epochs:
            msg += f" test acc {accuracy(net.to(memory_format=torch.contiguous_format), xte, yte):.4f}"
            net.to(memory_format=torch.channels_last)
        print(msg + f" ({time.time() - t_start:.0f}s, load {loads[-1]:.1f})", flush=True)
    train_time = time.time() - t_start
    net = net.to(memory_format=torch.contiguous_format).eval()
    if probe_epochs:
        print(f"PROBE {out_name} {cfg_text(cfg)}: after {probe_epochs} of {cfg['epochs']} epochs loss {tot / n_seen:.4f}"
              f", test acc (2000) {accuracy(net, xte, yte):.4f} ({train_time:.0f}s, mean load {np.mean(loads):.1f})",
              flush=True)
        return
    finish(net, name, seed, cfg, train_time, xte, yte, float(np.mean(loads)))


def save(net, out, name, *, float16=False, **meta):
    """Write a shipped net and record its checksum in data/SHA256SUMS (read_state checks it)."""
    models.save(net, out, name, float16=float16, **meta)
    manifest.record(out)


def cfg_text(cfg):
    return " ".join(f"{k}={cfg[k]}" for k in ("opt", "lr", "epochs", "warmup", "wd") if k in cfg)


def finish(net, name, seed, cfg, train_time, xte, yte, load):
    out_name = seed_name(name, seed)
    out = DATA / f"{out_name}.npz"
    half = float16_storage(name, seed)
    save(net, out, name, float16=half)
    # the shipped net is the stored one: rebuild and load what was written
    _, state, _ = read_state(out)
    shipped = build(name, seed)
    shipped.load_state_dict(state)
    shipped.eval()
    xtr, ytr = tensors(scenes.load_scenes(*TRAIN_EVAL[:2], seed=TRAIN_EVAL[2]))
    acc_train, acc_test = accuracy(shipped, xtr, ytr), accuracy(shipped, xte, yte)
    x2, y2 = tensors(scenes.load_scenes(*TEST_2000[:2], seed=TEST_2000[2]))
    acc_2000 = accuracy(shipped, x2, y2)
    both, top1 = two_object_accuracy(shipped, scenes.load_two_object_scenes(*TWO_OBJECT[:2], seed=TWO_OBJECT[2]))
    meta = dict(seed=seed, epochs=cfg["epochs"], train_accuracy=acc_train, test_accuracy=acc_test,
                weight_decay=cfg["wd"], lr=cfg["lr"], optimizer=recipe(cfg),
                batch_size=BATCH, train_images_per_epoch=N_TRAIN, train_time_s=round(train_time, 1),
                train_load_average=round(load, 2), storage="float16" if half else "float32",
                train_set=f"load_scenes{TRAIN_EVAL}", test_set=f"load_scenes{TEST}",
                data_init=bool(cfg.get("data_init")), torch_version=torch.__version__)
    norms = None
    if isinstance(shipped, nn.Sequential):
        norms = weight_norms(shipped)
        meta["weight_norm_product_spectral"] = float(np.prod([r[1] for r in norms]))
        meta["weight_norm_product_inf"] = float(np.prod([r[2] for r in norms]))
    save(net, out, name, float16=half, **meta)
    n_params = sum(p.numel() for p in net.parameters())
    print(f"{out_name}: {out} ({out.stat().st_size / 1e6:.2f} MB, {n_params} params), trained {train_time / 60:.1f} min; "
          f"mean load {load:.1f}; stored weights: train acc {acc_train:.4f}, test acc {acc_test:.4f} (10000), {acc_2000:.4f} (2000); "
          f"two-object top-2 = {{L, R}} {both:.4f}, top-1 in {{L, R}} {top1:.4f}", flush=True)
    if norms:
        print("  per-layer operator norms (spectral, inf): " + ", ".join(f"{n} {s:.3g}/{i:.3g}" for n, s, i in norms))
        print(f"  product: spectral {meta['weight_norm_product_spectral']:.4g}, inf {meta['weight_norm_product_inf']:.4g}",
              flush=True)
    return meta


TRAINED = list(CONFIG)     # the nets a training run makes


def seeds_arg(args):
    return [int(k) for k in args.seeds.split(",")] if args.seeds else [args.seed]


def set_output(folder):
    global DATA
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        DATA = folder


def parse_overrides(items):
    out = {}
    for item in items or ():
        key, _, value = item.partition("=")
        if key not in OVERRIDABLE:
            raise SystemExit(f"--set {item}: key must be one of {', '.join(OVERRIDABLE)}")
        out[key] = OVERRIDABLE[key](value)
    return out


def add_arguments(ap, names):
    ap.add_argument("--only", choices=names, help="one net (default: all)")
    ap.add_argument("--seed", type=int, default=0, help="training seed (writes <name>-seed<K> for K > 0)")
    ap.add_argument("--seeds", help="comma-separated training seeds, trained one after the other (e.g. 1,2)")
    ap.add_argument("--probe-epochs", type=int, help="train only the first N epochs of the schedule, print the "
                    "held-out accuracy, write nothing")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help=f"probe only: override a recipe entry "
                    f"({', '.join(OVERRIDABLE)})")
    ap.add_argument("--out", type=Path, help="write the scene nets' files here instead of data/ (e.g. to check that "
                    "a shipped file is reproduced)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap, TRAINED)
    ap.add_argument("--time-batches", action="store_true", help="time 20 batches per net and exit")
    args = ap.parse_args()
    overrides = parse_overrides(args.set)
    if overrides and not args.probe_epochs:
        raise SystemExit("--set is for probes (--probe-epochs N): a shipped net is made by its CONFIG recipe")
    set_output(args.out)
    torch.set_num_threads(int(os.environ.get("TRAIN_THREADS", "2")))
    for name in [args.only] if args.only else TRAINED:
        for seed in seeds_arg(args):
            train(name, seed, time_only=args.time_batches, probe_epochs=args.probe_epochs, overrides=overrides)


if __name__ == "__main__":
    main()
