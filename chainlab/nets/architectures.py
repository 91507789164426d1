"""The architectures of the nets chainlab ships (trained by ``scripts/train_models.py``).

* ``digits-mlp``: six Linear layers with ReLU, 64 → 128 → 128 → 64 → 64 → 32 → 10; input (1, 64).
* ``digits-cnn``: conv 3×3 pad 1 → BatchNorm2d → ReLU → conv 3×3 (no bias) → ReLU → MaxPool2d(2)
  → conv 3×3 stride 2 → ReLU → AdaptiveAvgPool2d(1) → Flatten → Linear → ReLU → Dropout → Linear;
  input (1, 1, 8, 8).
* ``sixt-cifar``: the CIFAR net of Sixt et al. 2020 (appendix D): conv3×3 3→32, 32→64, maxpool,
  64→128, 128→128, maxpool, fc 8192→1024, fc 1024→10 (ReLU after every conv and fc1, padding 1);
  input (1, 3, 32, 32).
* ``vgg-cifar``: VGG-16-style, narrower: conv3×3 [32, 32, M, 64, 64, M, 128, 128, M, 256, 256, M]
  → fc 1024→256 → fc 256→256 → fc 256→10 (ReLU after every conv and the first two fc);
  ``vgg-cifar-bn``: the same with BatchNorm2d after every conv.
* ``resnet-cifar``: ResNet-20 (He et al. 2016, CIFAR version): 3×3 conv stem (16) + BN, three stages of
  3 basic blocks of widths 16/32/64 (stride 2 at stages 2 and 3, 1×1 conv + BN projection shortcut
  where the shape changes), global average pool, fc 64→10 (:class:`~.zoo.ResNet`, torchvision names).
* ``scenes-cnn-*``: a small CNN, conv3×3 3→32, 32→32, maxpool, 32→64, 64→64, maxpool, 64→64, maxpool,
  flatten, fc 1024→128, fc 128→10, with the activation ReLU or Softplus(β) after every conv and fc1,
  optionally BatchNorm2d after every conv (``SCENES_CNN_VARIANTS``: the activation study — β = 0.1 … 0.9,
  1, 3, 10, 30 — and the weight-norm study).
* ``depth-cnn<d>-<activation>`` (d = 1 … 5): Mehrpanah et al.'s depth-ablation net (their ``SimpleConvNet``,
  src/models/simple_cnn.py) at 32×32: d blocks conv3×3 (no bias; 3→16, then 16·2^i → 16·2^(i+1)) →
  activation → maxpool 2, flatten, fc → 128 → activation → fc 128→10 (``DEPTH_CNN_VARIANTS``; their hidden
  width is 512, 128 here as in scenes-cnn).

Seeds: ``<name>-seed<k>`` (:func:`seed_name`, listed in ``SEEDS``) is net ``<name>``'s architecture trained
by the same recipe from seed k; the name without a suffix is seed 0.

The CIFAR-size nets (input (1, 3, 32, 32)) are trained on the glyph-on-scene images of
:mod:`.scenes` by ``scripts/train_models.py``; their seeded init (:func:`init_weights`, Kaiming-normal
fan_in for conv and linear weights, zero biases, BN γ = 1, β = 0) leaves the global torch RNG alone.
Every builder returns a fresh, untrained module with ``input_shape`` and ``name`` set; the digits
nets and ``sixt-cifar`` use torch's default init from the global RNG unless :func:`init_weights` is called.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from ..errors import InputError
from .zoo import BasicBlock, ResNet, reset_batchnorm

__all__ = ["ARCHITECTURES", "INPUT_SHAPES", "SCENES_CNN_VARIANTS", "DEPTH_CNN_VARIANTS", "SEEDS", "seed_name",
           "init_weights", "vgg_cifar", "resnet_cifar", "scenes_cnn", "depth_cnn"]

CIFAR_INPUT = (1, 3, 32, 32)


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


VGG_CIFAR_CONFIG = (32, 32, "M", 64, 64, "M", 128, 128, "M", 256, 256, "M")
SCENES_CNN_CONFIG = (32, 32, "M", 64, 64, "M", 64, "M")

# name -> keyword arguments of scenes_cnn (the two studies; see scripts/train_scenes.py)
SCENES_CNN_VARIANTS = {
    "scenes-cnn-relu": dict(activation="relu"),
    "scenes-cnn-softplus1": dict(activation=("softplus", 1.0)),
    "scenes-cnn-softplus3": dict(activation=("softplus", 3.0)),
    "scenes-cnn-softplus10": dict(activation=("softplus", 10.0)),
    "scenes-cnn-softplus30": dict(activation=("softplus", 30.0)),
    # the authors' small-β grid (Mehrpanah et al.'s ActivationSwitch SOFTPLUS_B_1 … SOFTPLUS_B_9 = β 0.1 … 0.9)
    **{f"scenes-cnn-softplus0.{k}": dict(activation=("softplus", k / 10)) for k in range(1, 10)},
    "scenes-cnn-wd0": dict(activation="relu"),
    "scenes-cnn-wd1e-4": dict(activation="relu"),
    "scenes-cnn-wd1e-3": dict(activation="relu"),
    "scenes-cnn-wd1e-2": dict(activation="relu"),
    "scenes-cnn-bn": dict(activation="relu", batchnorm=True),
}


def init_weights(net: nn.Module, seed: int) -> nn.Module:
    """Seeded Kaiming-normal (fan_in) init of conv/linear weights, zero biases, BN γ = 1, β = 0; returns net."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                reset_batchnorm(m)
    return net


def _finish(net: nn.Module, name: str, seed: int | None) -> nn.Module:
    if seed is not None:
        init_weights(net, seed)
    net.input_shape = CIFAR_INPUT
    net.name = name
    return net.eval()


DEPTH_CNN_HIDDEN = 128
DEPTH_CNN_VARIANTS = {f"depth-cnn{d}-{act}": dict(depth=d, activation=a)
                      for d in range(1, 6) for act, a in (("relu", "relu"), ("softplus1", ("softplus", 1.0)))}


def _activation(activation):
    if activation == "relu":
        return nn.ReLU()
    if isinstance(activation, (tuple, list)) and len(activation) == 2 and activation[0] == "softplus":
        return nn.Softplus(beta=float(activation[1]))
    raise InputError(f"activation must be 'relu' or ('softplus', beta), got {activation!r}")


def _conv_stack(config, activation, batchnorm, in_channels=3):
    """conv{k} [bn{k}] act{k} ... pool{j}, as (name, module) pairs; returns (pairs, channels, spatial)."""
    pairs, c, size, k, j = [], in_channels, 32, 0, 0
    for v in config:
        if v == "M":
            j += 1
            pairs.append((f"pool{j}", nn.MaxPool2d(2)))
            size //= 2
        else:
            k += 1
            pairs.append((f"conv{k}", nn.Conv2d(c, v, 3, padding=1)))
            if batchnorm:
                pairs.append((f"bn{k}", nn.BatchNorm2d(v)))
            pairs.append((f"act{k}", _activation(activation)))
            c = v
    return pairs, c, size, k


def vgg_cifar(seed: int | None = 0, batchnorm: bool = False) -> nn.Sequential:
    """VGG-style net: 8 conv 3×3 in four blocks separated by max-pools, then 1024 → 256 → 256 → 10."""
    pairs, c, size, k = _conv_stack(VGG_CIFAR_CONFIG, "relu", batchnorm)
    pairs += [("flatten", nn.Flatten()),
              ("fc1", nn.Linear(c * size * size, 256)), (f"act{k + 1}", nn.ReLU()),
              ("fc2", nn.Linear(256, 256)), (f"act{k + 2}", nn.ReLU()),
              ("fc3", nn.Linear(256, 10))]
    return _finish(nn.Sequential(OrderedDict(pairs)), "vgg-cifar-bn" if batchnorm else "vgg-cifar", seed)


def resnet_cifar(seed: int | None = 0) -> nn.Module:
    """ResNet-20: chainlab.zoo.ResNet(BasicBlock, [3, 3, 3], widths=(16, 32, 64), stem="small")."""
    net = ResNet(BasicBlock, [3, 3, 3], widths=(16, 32, 64), num_classes=10, stem="small")
    return _finish(net, "resnet-cifar", seed)


def scenes_cnn(seed: int | None = 0, activation="relu", batchnorm: bool = False, name: str | None = None) -> nn.Sequential:
    """The small CNN of the activation and weight-norm studies (≈ 0.23 M parameters)."""
    pairs, c, size, k = _conv_stack(SCENES_CNN_CONFIG, activation, batchnorm)
    pairs += [("flatten", nn.Flatten()),
              ("fc1", nn.Linear(c * size * size, 128)), (f"act{k + 1}", _activation(activation)),
              ("fc2", nn.Linear(128, 10))]
    return _finish(nn.Sequential(OrderedDict(pairs)), name or "scenes-cnn", seed)

def seed_name(name: str, seed: int) -> str:
    """The name of net ``name`` trained from ``seed``: ``name`` itself for seed 0, else ``<name>-seed<seed>``."""
    seed = int(seed)
    if seed < 0:
        raise InputError(f"a training seed is ≥ 0, got {seed}")
    return name if seed == 0 else f"{name}-seed{seed}"


# the seeds > 0 trained of a net (scripts/train_models.py --only NAME --seed K; data/README.md)
BINDER_STUDY = ("scenes-cnn-wd0", "scenes-cnn-wd1e-4", "scenes-cnn-wd1e-3", "scenes-cnn-wd1e-2", "scenes-cnn-bn")
SEEDS = {**{name: (1, 2) for name in BINDER_STUDY}, "vgg-cifar": (1,), "sixt-cifar": (1,),
         **{f"scenes-cnn-softplus{b}": (1, 2) for b in (1, 3, 10, 30)}, "scenes-cnn-relu": (1, 2)}

def depth_cnn(seed: int | None = 0, depth: int = 3, activation="relu", name: str | None = None) -> nn.Sequential:
    """Mehrpanah et al.'s SimpleConvNet with ``depth`` conv blocks (conv without bias → activation → maxpool 2;
    16·2^i channels), then fc → DEPTH_CNN_HIDDEN → activation → fc → 10; input 32×32, so depth ≤ 5."""
    if not 1 <= int(depth) <= 5:
        raise InputError(f"depth-cnn: depth must be 1 … 5 at 32×32 (one max-pool per block), got {depth}")
    pairs, c, size = [], 3, 32
    for i in range(int(depth)):
        width = 16 * 2 ** i
        pairs += [(f"conv{i + 1}", nn.Conv2d(c, width, 3, padding=1, bias=False)),
                  (f"act{i + 1}", _activation(activation)), (f"pool{i + 1}", nn.MaxPool2d(2))]
        c, size = width, size // 2
    pairs += [("flatten", nn.Flatten()),
              ("fc1", nn.Linear(c * size * size, DEPTH_CNN_HIDDEN)), (f"act{depth + 1}", _activation(activation)),
              ("fc2", nn.Linear(DEPTH_CNN_HIDDEN, 10))]
    return _finish(nn.Sequential(OrderedDict(pairs)), name or f"depth-cnn{depth}", seed)


ARCHITECTURES = {
    "digits-mlp": _mlp,
    "digits-cnn": _cnn,
    "sixt-cifar": _sixt_cifar,
    "vgg-cifar": lambda: vgg_cifar(None),
    "vgg-cifar-bn": lambda: vgg_cifar(None, batchnorm=True),
    "resnet-cifar": lambda: resnet_cifar(None),
    **{name: (lambda kw, nm: (lambda: scenes_cnn(None, name=nm, **kw)))(kw, name)
       for name, kw in SCENES_CNN_VARIANTS.items()},
    **{name: (lambda kw, nm: (lambda: depth_cnn(None, name=nm, **kw)))(kw, name)
       for name, kw in DEPTH_CNN_VARIANTS.items()},
}
ARCHITECTURES.update({seed_name(name, k): ARCHITECTURES[name] for name, seeds in SEEDS.items() for k in seeds})
INPUT_SHAPES = {"digits-mlp": (1, 64), "digits-cnn": (1, 1, 8, 8),
                **{name: CIFAR_INPUT for name in ARCHITECTURES if name not in ("digits-mlp", "digits-cnn")}}
