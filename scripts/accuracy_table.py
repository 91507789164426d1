"""Print data/README.md's accuracy table of the shipped nets, measured on the weights as loaded.

    python scripts/accuracy_table.py

Digits nets: train/test accuracy on the shipped split (1437 / 360 digits).  Scene nets: the stored
training-time measurements (train: 10 000 fresh training-split scenes, test: ``load_scenes("test",
10000, seed=0)``) and the accuracy re-measured here on the 2000 held-out scenes of
``chainlab.data.test_set("scenes")`` — the column tests/test_models_data.py checks.
"""
import torch

import chainlab
from chainlab.nets import models


def accuracy(net, name, x, y, batch=500):
    with torch.no_grad():
        pred = torch.cat([net(chainlab.data.model_input(name, x[k:k + batch])).argmax(1)
                          for k in range(0, len(x), batch)])
    return float((pred.numpy() == y).mean())


def main():
    torch.set_num_threads(2)
    d = chainlab.data.load_digits()
    xs, ys = chainlab.data.test_set("scenes")
    print("| net | trained on | parameters | epochs | weight decay | train accuracy | test accuracy | "
          "test accuracy, 2000 scenes (re-measured) | file |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in models.NAMES:
        net = models.load(name)
        meta = net.meta
        params = sum(p.numel() for p in net.parameters())
        size = (models.data_dir() / f"{name}.npz").stat().st_size / 1e6
        if name.startswith("digits"):
            tr = accuracy(net, name, d.x_train, d.y_train)
            te = accuracy(net, name, d.x_test, d.y_test)
            cells = ["8×8 digits", f"{params:,}", str(meta.get("epochs", "")), "0", f"{tr * 100:.1f} %",
                     f"{te * 100:.1f} %", "—"]
        else:
            te2 = accuracy(net, name, xs, ys)
            cells = ["scenes", f"{params:,}", str(meta.get("epochs", "")), f"{meta.get('weight_decay', '')}",
                     f"{meta['train_accuracy'] * 100:.1f} %", f"{meta['test_accuracy'] * 100:.1f} %",
                     f"{te2 * 100:.1f} %"]
        print(f"| {name} | " + " | ".join(cells) + f" | {size:.2f} MB |", flush=True)
    total = sum(p.stat().st_size for p in models.data_dir().iterdir() if p.is_file()) / 2**20
    print(f"\ndata/ holds {total:.1f} MiB")


if __name__ == "__main__":
    main()
