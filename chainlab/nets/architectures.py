"""The architectures of the nets chainlab ships (trained by ``scripts/train_models.py``).

* ``digits-mlp``: six Linear layers with ReLU, 64 → 128 → 128 → 64 → 64 → 32 → 10; input (1, 64).
* ``digits-cnn``: conv 3×3 pad 1 → BatchNorm2d → ReLU → conv 3×3 (no bias) → ReLU → MaxPool2d(2)
  → conv 3×3 stride 2 → ReLU → AdaptiveAvgPool2d(1) → Flatten → Linear → ReLU → Dropout → Linear;
  input (1, 1, 8, 8).
* ``sixt-cifar``: the CIFAR net of Sixt et al. 2020 (appendix D): conv3×3 3→32, 32→64, maxpool,
  64→128, 128→128, maxpool, fc 8192→1024, fc 1024→10 (ReLU after every conv and fc1, padding 1);
  input (1, 3, 32, 32).

Every builder returns a fresh, untrained module with ``input_shape`` set (torch's default init from
the global RNG).
"""
from __future__ import annotations

from collections import OrderedDict

import torch.nn as nn

__all__ = ["ARCHITECTURES"]


def _mlp() -> nn.Sequential:
    sizes = [64, 128, 128, 64, 64, 32, 10]
    layers = OrderedDict()
    for k in range(6):
        layers[f"fc{k + 1}"] = nn.Linear(sizes[k], sizes[k + 1])
        if k < 5:
            layers[f"relu{k + 1}"] = nn.ReLU()
    net = nn.Sequential(layers)
    net.input_shape = (1, 64)
    return net


def _cnn() -> nn.Sequential:
    net = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 16, 3, padding=1)),
        ("bn1", nn.BatchNorm2d(16)),
        ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(16, 32, 3, padding=1, bias=False)),
        ("relu2", nn.ReLU()),
        ("pool", nn.MaxPool2d(2)),
        ("conv3", nn.Conv2d(32, 64, 3, stride=2, padding=1)),
        ("relu3", nn.ReLU()),
        ("gap", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(64, 64)),
        ("relu4", nn.ReLU()),
        ("dropout", nn.Dropout(0.25)),
        ("fc2", nn.Linear(64, 10)),
    ]))
    net.input_shape = (1, 1, 8, 8)
    return net


def _sixt_cifar() -> nn.Sequential:
    net = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 32, 3, padding=1)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(32, 64, 3, padding=1)), ("relu2", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),
        ("conv3", nn.Conv2d(64, 128, 3, padding=1)), ("relu3", nn.ReLU()),
        ("conv4", nn.Conv2d(128, 128, 3, padding=1)), ("relu4", nn.ReLU()),
        ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(8192, 1024)), ("relu5", nn.ReLU()),
        ("fc2", nn.Linear(1024, 10)),
    ]))
    net.input_shape = (1, 3, 32, 32)
    return net


ARCHITECTURES = {"digits-mlp": _mlp, "digits-cnn": _cnn, "sixt-cifar": _sixt_cifar}
