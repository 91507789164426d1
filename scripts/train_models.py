"""Train every shipped net and write data/<name>.npz.

* digits-mlp, digits-cnn: on the shipped 8×8 digits (deterministic: fixed seed, fixed data order, Adam);
* the 32×32 RGB nets (sixt-cifar, vgg-cifar, resnet-cifar, the scenes-cnn study nets): on glyph-on-scene
  images, by :mod:`train_scenes` (its docstring gives the schedule of each net).

The accuracy printed (and stored in the file's metadata) is measured on the stored weights as shipped,
i.e. after the int8 storage of large matrices (see chainlab.nets.storage).

Run: python scripts/train_models.py [--only NAME] [--seed K | --seeds 0,1,2] (a seed K > 0 writes
data/<NAME>-seed<K>.npz; ``--probe-epochs`` / ``--set``: see train_scenes)
"""
import argparse
import time

import numpy as np
import torch
import torch.nn as nn

from chainlab import data, models
from chainlab.nets import manifest

import train_scenes

EPOCHS = {"digits-mlp": 60, "digits-cnn": 60}
LR = {"digits-mlp": 1e-3, "digits-cnn": 2e-3}
SCENE_NETS = train_scenes.TRAINED


def accuracy(net, x, y):
    net.eval()
    with torch.no_grad():
        return float((net(x).argmax(1) == y).float().mean())


def train(name, seed):
    torch.manual_seed(seed)
    np.random.seed(seed)
    d = data.load_digits()
    xtr, xte = data.model_input(name, d.x_train), data.model_input(name, d.x_test)
    ytr, yte = torch.as_tensor(d.y_train), torch.as_tensor(d.y_test)
    net = models.build(name)
    opt = torch.optim.Adam(net.parameters(), lr=LR[name])
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for epoch in range(EPOCHS[name]):
        net.train()
        perm = torch.randperm(len(ytr), generator=g)
        for k in range(0, len(ytr), 64):
            b = perm[k:k + 64]
            opt.zero_grad()
            loss = loss_fn(net(xtr[b]), ytr[b])
            loss.backward()
            opt.step()
        if (epoch + 1) % 10 == 0 or epoch == EPOCHS[name] - 1:
            print(f"  {name} epoch {epoch + 1}: loss {loss.item():.4f} test acc {accuracy(net, xte, yte):.4f}"
                  f" ({time.time() - t0:.0f}s)", flush=True)
    out = models.data_dir() / f"{name}.npz"
    models.save(net.eval(), out, name)
    manifest.record(out)                       # data/SHA256SUMS: models.load checks the file against it
    shipped = models.load(name)
    acc_train, acc_test = accuracy(shipped, xtr, ytr), accuracy(shipped, xte, yte)
    models.save(net.eval(), out, name, seed=seed, epochs=EPOCHS[name], train_accuracy=acc_train,
                test_accuracy=acc_test, torch_version=torch.__version__)
    manifest.record(out)
    print(f"{name}: shipped weights in {out}: train accuracy {acc_train:.4f}, test accuracy {acc_test:.4f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    train_scenes.add_arguments(ap, list(EPOCHS) + SCENE_NETS)
    args = ap.parse_args()
    overrides = train_scenes.parse_overrides(args.set)
    if overrides and not args.probe_epochs:
        raise SystemExit("--set is for probes (--probe-epochs N): a shipped net is made by its CONFIG recipe")
    train_scenes.set_output(args.out)
    torch.set_num_threads(2)
    for name in [args.only] if args.only else list(EPOCHS) + SCENE_NETS:
        for seed in train_scenes.seeds_arg(args):
            if name in EPOCHS:
                if seed != 0 or args.probe_epochs:
                    raise SystemExit(f"{name}: only seed 0 is trained, without probes")
                train(name, seed)
            else:
                train_scenes.train(name, seed, probe_epochs=args.probe_epochs, overrides=overrides)


if __name__ == "__main__":
    main()
