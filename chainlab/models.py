"""The nets chainlab ships (trained by ``scripts/train_models.py``) and their storage.

* ``digits-mlp``: six Linear layers with ReLU, 64 → 128 → 128 → 64 → 64 → 32 → 10; input (1, 64).
* ``digits-cnn``: conv 3×3 pad 1 → BatchNorm2d → ReLU → conv 3×3 (no bias) → ReLU → MaxPool2d(2)
  → conv 3×3 stride 2 → ReLU → AdaptiveAvgPool2d(1) → Flatten → Linear → ReLU → Dropout → Linear;
  input (1, 1, 8, 8).
* ``sixt-cifar``: the CIFAR net of Sixt et al. 2020 (appendix D): conv3×3 3→32, 32→64, maxpool,
  64→128, 128→128, maxpool, fc 8192→1024, fc 1024→10 (ReLU after every conv and fc1); input
  (1, 3, 32, 32): the digits upsampled ×4 and repeated over 3 channels.

Weights are stored as ``.npz`` (one array per state-dict entry).  Tensors with more than
one million entries (sixt-cifar's fc1) are stored as int8 with one float32 scale per row
(symmetric, scale = max|row|/127) to keep ``data/`` small; the shipped net *is* the
dequantized one, and its reported accuracy is measured on it.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

__all__ = ["NAMES", "ZOO_NAMES", "build", "load", "save", "data_dir"]

NAMES = ("digits-mlp", "digits-cnn", "sixt-cifar")
# architectures defined in chainlab.zoo (random init from a seed, or a user's weights file)
ZOO_NAMES = ("vgg16", "resnet50", "resnet-tiny")
QUANTIZE_ABOVE = 1_000_000


def data_dir() -> Path:
    """The folder of shipped data: $CHAINLAB_DATA, else ``data/`` beside the package."""
    env = os.environ.get("CHAINLAB_DATA")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "data"


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


_BUILDERS = {"digits-mlp": _mlp, "digits-cnn": _cnn, "sixt-cifar": _sixt_cifar}


def build(name: str, seed: int | None = None) -> nn.Module:
    """A freshly initialized (untrained) net of the named architecture.

    For the zoo architectures ("vgg16", "resnet50", "resnet-tiny", :mod:`chainlab.zoo`) the init
    is seeded (``seed``, default 0); the shipped architectures use torch's global RNG.
    """
    if name in ZOO_NAMES:
        from . import zoo
        return zoo.ZOO[name](seed=0 if seed is None else seed)
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; shipped models: {', '.join(NAMES)}; "
                         f"architectures: {', '.join(ZOO_NAMES)}")
    net = _BUILDERS[name]()
    net.name = name
    return net


def save(model: nn.Module, path, name: str, **meta) -> None:
    """Write ``model``'s state dict to ``path`` (.npz), quantizing tensors above one million entries."""
    arrays = {"__arch__": np.array(name)}
    for k, v in meta.items():
        arrays[f"__meta__{k}"] = np.array(v)
    for key, t in model.state_dict().items():
        a = t.detach().cpu().numpy()
        if a.dtype.kind == "f" and a.size > QUANTIZE_ABOVE:
            rows = a.reshape(a.shape[0], -1).astype(np.float64)
            scale = np.abs(rows).max(axis=1) / 127.0
            scale[scale == 0] = 1.0
            arrays[f"{key}::q"] = np.round(rows / scale[:, None]).astype(np.int8).reshape(a.shape)
            arrays[f"{key}::scale"] = scale.astype(np.float32)
        else:
            arrays[key] = a
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _read_state(path: Path) -> tuple[str, dict, dict]:
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read model file {path}: {exc}") from None
    with z:
        if "__arch__" not in z.files:
            raise ValueError(f"{path} is not a chainlab model file (no '__arch__' entry)")
        arch = str(z["__arch__"])
        meta = {k[len("__meta__"):]: z[k].item() for k in z.files if k.startswith("__meta__")}
        state = {}
        for k in z.files:
            if k.startswith("__"):
                continue
            if k.endswith("::q"):
                base = k[:-3]
                q = z[k].astype(np.float32)
                scale = z[base + "::scale"].reshape((-1,) + (1,) * (q.ndim - 1))
                state[base] = torch.from_numpy(q * scale)
            elif k.endswith("::scale"):
                continue
            else:
                state[k] = torch.from_numpy(z[k])
    return arch, state, meta


def load(name_or_path: str, *, seed: int = 0, weights=None) -> nn.Module:
    """The eval-mode torch module of a shipped net (by name) or of a model file written by :func:`save`.

    A path to a ``.pt``/``.pth`` file holding a pickled ``nn.Module`` is loaded with ``torch.load``.
    A zoo architecture ("vgg16", "resnet50", "resnet-tiny") is built with seeded random init
    (``seed``) and, when ``weights`` names a state-dict file (.pt/.pth/.npz), loaded from it.
    """
    if name_or_path in ZOO_NAMES:
        from . import zoo
        net = build(name_or_path, seed)
        return zoo.load_weights(net, weights) if weights is not None else net.eval()
    if weights is not None:
        raise ValueError(f"weights= is for the architectures {', '.join(ZOO_NAMES)}, not for {name_or_path!r}")
    p = Path(name_or_path)
    if name_or_path in _BUILDERS:
        p = data_dir() / f"{name_or_path}.npz"
        if not p.exists():
            raise FileNotFoundError(f"shipped model file {p} is missing; run scripts/train_models.py to make it")
    elif not p.exists():
        raise FileNotFoundError(f"no shipped model named {name_or_path!r} and no file {p}; shipped: {', '.join(NAMES)}")
    if p.suffix in (".pt", ".pth"):
        obj = torch.load(p, map_location="cpu", weights_only=False)
        if not isinstance(obj, nn.Module):
            raise ValueError(f"{p} holds a {type(obj).__name__}, not an nn.Module (a bare state dict needs its architecture)")
        return obj.eval()
    arch, state, meta = _read_state(p)
    net = build(arch)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{p}: weights do not fit architecture {arch!r}: {exc}") from None
    net.meta = meta
    return net.eval()
