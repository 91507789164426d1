"""Print data/README.md's accuracy table of the shipped nets, measured on the weights as loaded.

    python scripts/accuracy_table.py [--nets a,b]

Digits nets: train/test accuracy on the shipped split (1437 / 360 digits).  Scene nets: the stored
training-time measurements (train: 10 000 fresh training-split scenes, test: ``load_scenes("test",
10000, seed=0)``) and the accuracy re-measured here on the 2000 held-out scenes of
``chainlab.data.test_set("scenes")`` — the column tests/test_models_data.py checks.  Beside them: the seed,
the recipe (optimizer, peak learning rate, weight decay; data/README.md has the schedule), Π‖W_l‖_∞ of the
plain chains, the training time with the mean 1-min load average of the machine while it ran (both
stored at training time; the older files have no load), and how the weights are stored.
"""
import argparse

import numpy as np
import torch

import chainlab
from chainlab.nets import models

import train_models


def accuracy(net, name, x, y, batch=500):
    with torch.no_grad():
        pred = torch.cat([net(chainlab.data.model_input(name, x[k:k + batch])).argmax(1)
                          for k in range(0, len(x), batch)])
    return float((pred.numpy() == y).mean())


def recipe(meta):
    opt = str(meta.get("optimizer", "Adam"))
    return f"{'Adam' if opt.startswith('Adam') else 'SGD'} {meta.get('lr', '')}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", help="comma-separated names (default: every shipped net)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    d = chainlab.data.load_digits()
    xs, ys = chainlab.data.test_set("scenes")
    print("| net | seed | trained on | parameters | epochs | optimizer, lr | weight decay | train accuracy | "
          "test accuracy | test accuracy, 2000 scenes (re-measured) | Π‖W_l‖_∞ | training time (mean load) | "
          "weights stored as | file |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.nets.split(",") if args.nets else models.NAMES:
        net = models.load(name)
        meta = net.meta
        params = sum(p.numel() for p in net.parameters())
        size = (models.data_dir() / f"{name}.npz").stat().st_size / 1e6
        if name.startswith("digits"):
            tr = accuracy(net, name, d.x_train, d.y_train)
            te = accuracy(net, name, d.x_test, d.y_test)
            cells = ["0", "8×8 digits", f"{params:,}", str(meta.get("epochs", "")), f"Adam {train_models.LR[name]}", "0",
                     f"{tr * 100:.1f} %", f"{te * 100:.1f} %", "—", "—", "—"]
        else:
            te2 = accuracy(net, name, xs, ys)
            norm = meta.get("weight_norm_product_inf")
            load = meta.get("train_load_average")
            t = f"{meta['train_time_s'] / 60:.0f} min" + (f" ({load:.1f})" if load is not None else "")
            cells = [str(meta.get("seed", 0)), "scenes", f"{params:,}", str(meta.get("epochs", "")), recipe(meta),
                     f"{meta.get('weight_decay', '')}", f"{meta['train_accuracy'] * 100:.1f} %",
                     f"{meta['test_accuracy'] * 100:.1f} %", f"{te2 * 100:.1f} %",
                     f"{norm:.3g}" if norm is not None else "—", t]
        storage = meta.get("storage", "float32")
        with np.load(models.data_dir() / f"{name}.npz") as z:
            if any(k.endswith("::q") for k in z.files):
                storage += " (int8: " + ", ".join(k[:-len(".weight::q")] for k in z.files if k.endswith("::q")) + ")"
        print(f"| {name} | " + " | ".join(cells) + f" | {storage} | {size:.2f} MB |", flush=True)
    total = sum(p.stat().st_size for p in models.data_dir().iterdir() if p.is_file()) / 2**20
    print(f"\ndata/ holds {total:.1f} MiB")


if __name__ == "__main__":
    main()
