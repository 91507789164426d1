"""ImageNet-scale architectures defined in chainlab (no torchvision): the VGG and ResNet families, and a tiny ResNet.

The definitions follow the published configurations and torchvision's module names, so a torchvision
state dict loads unchanged (``load_weights(model, "resnet50-….pth")``; :func:`torchvision` reads the class
count from the state dict):

* VGG (Simonyan & Zisserman 2014): configurations A/B/D/E = vgg11/13/16/19 — conv 3×3 pad 1 (+ReLU; with
  ``_bn``: conv → BatchNorm → ReLU, torchvision's ``vgg16_bn``) in five stages of 64, 128, 256, 512, 512
  channels, each followed by MaxPool2d(2); AdaptiveAvgPool2d(7) → Flatten → Linear 25088→4096 → ReLU →
  Dropout → Linear 4096→4096 → ReLU → Dropout → Linear 4096→num_classes.  VGG-16: 138,357,544 parameters.
* ResNet (He et al. 2016, torchvision's v1.5 with the stride in the 3×3 conv): conv 7×7/2 (64) → BN → ReLU →
  MaxPool 3×3/2 → four stages of widths 64, 128, 256, 512 → AdaptiveAvgPool2d(1) → Flatten → Linear →
  num_classes.  Basic blocks (two 3×3 convs): resnet18 [2, 2, 2, 2], resnet34 [3, 4, 6, 3]; bottleneck
  blocks (1×1, 3×3, 1×1 ×4): resnet50 [3, 4, 6, 3], resnet101 [3, 4, 23, 3], resnet152 [3, 8, 36, 3].  The
  first block of a stage that changes the shape has a 1×1 conv + BN shortcut.  ResNet-50: 25,557,032 parameters.
* ``resnet_tiny``: the same code with few channels, for tests and demos (basic or bottleneck).

Input (1, 3, 224, 224) (``model.input_shape``; the adaptive pools take any size ≥ 32).  Random init is
seeded and follows torchvision: Kaiming-normal (fan_out, ReLU) for convs, BN γ = 1, β = 0, VGG Linear
N(0, 0.01) with zero bias, ResNet's fc torch's default.  The global torch RNG is left untouched.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .storage import load_weights

__all__ = ["VGG", "VGG16_CONFIG", "VGG_CONFIGS", "RESNET_LAYERS", "BasicBlock", "Bottleneck", "ResNet", "vgg",
           "resnet", "vgg16", "resnet50", "resnet_tiny", "torchvision", "TORCHVISION", "ZOO"]

VGG_CONFIGS = {       # Simonyan & Zisserman 2014, Table 1: configurations A, B, D, E
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}
VGG16_CONFIG = VGG_CONFIGS["vgg16"]
RESNET_LAYERS = {      # He et al. 2016, Table 1: (block, blocks per stage)
    "resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)), "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}


def reset_batchnorm(m: nn.Module) -> None:
    """A BatchNorm layer as new: running mean 0, variance 1, γ = 1, β = 0."""
    m.reset_running_stats()
    nn.init.ones_(m.weight)
    nn.init.zeros_(m.bias)


def _init(model: nn.Module, linear_std: float | None):
    """Initialize every parameter and buffer (the model may come from ``to_empty``)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            reset_batchnorm(m)
        elif isinstance(m, nn.Linear):
            if linear_std is None:
                m.reset_parameters()
            else:
                nn.init.normal_(m.weight, 0.0, linear_std)
                nn.init.zeros_(m.bias)


def _make(make, seed: int, linear_std: float | None, device=None) -> nn.Module:
    """Build on the meta device (no memory, no default init), then allocate and initialize once from ``seed``.

    ``device="meta"`` returns the unallocated model: shapes and parameter counts without memory.
    """
    with torch.device("meta"):
        net = make()
    if device is not None and torch.device(device).type == "meta":
        return net
    net = net.to_empty(device=device or "cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        _init(net, linear_std)
    return net


class VGG(nn.Module):
    """VGG with torchvision's module names: ``features``, ``avgpool``, ``classifier``."""

    def __init__(self, config=VGG16_CONFIG, num_classes: int = 1000, in_channels: int = 3, pool_size: int = 7,
                 hidden: int = 4096, dropout: float = 0.5, batch_norm: bool = False):
        super().__init__()
        layers, c = [], in_channels
        for v in config:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers.append(nn.Conv2d(c, v, kernel_size=3, padding=1))
                layers += [nn.BatchNorm2d(v), nn.ReLU(inplace=True)] if batch_norm else [nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((pool_size, pool_size))
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(c * pool_size * pool_size, hidden), nn.ReLU(True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), two 3×3 convs (expansion 1)."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (stride here, v1.5) → 1×1 expand ×4, plus shortcut, ReLU after the add."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """ResNet with torchvision's module names (conv1, bn1, relu, maxpool, layer1–4, avgpool, fc).

    ``widths`` are the stage widths (planes); ``stem`` is "imagenet" (7×7/2 conv + 3×3/2 max-pool)
    or "small" (3×3/1 conv, no pool; for tiny inputs).
    """

    def __init__(self, block, layers, widths=(64, 128, 256, 512), num_classes=1000, in_channels=3,
                 stem="imagenet"):
        super().__init__()
        if len(layers) != len(widths):
            raise ValueError(f"ResNet needs one width per stage: layers={layers}, widths={widths}")
        self.inplanes = widths[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        elif stem == "small":
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, 3, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            raise ValueError(f"stem must be 'imagenet' or 'small', got {stem!r}")
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        for i, (n, w) in enumerate(zip(layers, widths)):
            setattr(self, f"layer{i + 1}", self._make_layer(block, w, n, stride=1 if i == 0 else 2))
        self.n_stages = len(layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(widths[-1] * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(self.flatten(self.avgpool(x)))


_KINDS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def vgg(name: str = "vgg16", seed: int = 0, num_classes: int = 1000, weights=None, device=None) -> VGG:
    """A VGG of the family (``vgg11``/``vgg13``/``vgg16``/``vgg19``, ``_bn`` for BatchNorm after every conv),
    seeded init; ``weights``: a state-dict file (.pt/.pth/.npz) to load; ``device="meta"``: the architecture
    without memory (shapes, parameter counts)."""
    base, bn = (name[:-3], True) if name.endswith("_bn") else (name, False)
    if base not in VGG_CONFIGS:
        raise ValueError(f"unknown VGG {name!r}; known: {', '.join(n + s for n in VGG_CONFIGS for s in ('', '_bn'))}")
    net = _make(lambda: VGG(VGG_CONFIGS[base], num_classes, batch_norm=bn), seed, 0.01, device)
    net.input_shape = (1, 3, 224, 224)
    net.name = name
    return net.eval() if weights is None else load_weights(net, weights)


def resnet(name: str = "resnet50", seed: int = 0, num_classes: int = 1000, weights=None, device=None) -> ResNet:
    """A ResNet of the family (``resnet18``/``34``/``50``/``101``/``152``), seeded init; ``weights``: a state-dict
    file to load; ``device="meta"``: the architecture without memory."""
    if name not in RESNET_LAYERS:
        raise ValueError(f"unknown ResNet {name!r}; known: {', '.join(RESNET_LAYERS)}")
    block, layers = RESNET_LAYERS[name]
    net = _make(lambda: ResNet(_KINDS[block], list(layers), num_classes=num_classes), seed, None, device)
    net.input_shape = (1, 3, 224, 224)
    net.name = name
    return net.eval() if weights is None else load_weights(net, weights)


def vgg16(seed: int = 0, num_classes: int = 1000, weights=None, device=None) -> VGG:
    """VGG-16 (configuration D): :func:`vgg` ("vgg16")."""
    return vgg("vgg16", seed, num_classes, weights, device)


def resnet50(seed: int = 0, num_classes: int = 1000, weights=None, device=None) -> ResNet:
    """ResNet-50 (bottleneck [3, 4, 6, 3]): :func:`resnet` ("resnet50")."""
    return resnet("resnet50", seed, num_classes, weights, device)


def resnet_tiny(seed: int = 0, block: str = "basic", num_classes: int = 10, size: int = 8,
                layers=(1, 1), widths=(4, 8), in_channels: int = 3) -> ResNet:
    """A tiny ResNet (small stem, ``layers`` blocks per stage; the second stage downsamples through a
    1×1 conv + BN shortcut), input (1, in_channels, size, size).  ``block``: "basic" or "bottleneck"."""
    if block not in _KINDS:
        raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}")
    net = _make(lambda: ResNet(_KINDS[block], list(layers), tuple(widths), num_classes, in_channels, stem="small"),
                seed, None)
    net.input_shape = (1, in_channels, size, size)
    net.name = "resnet-tiny"
    return net.eval()


TORCHVISION = tuple(n + s for n in VGG_CONFIGS for s in ("", "_bn")) + tuple(RESNET_LAYERS)
"""The torchvision architectures chainlab defines (``torchvision:NAME``), with torchvision's module names."""

# the last layer of each family: its weight's first dimension is the class count of a state dict
_HEADS = {"vgg": "classifier.6.weight", "resnet": "fc.weight"}


def torchvision(name: str, seed: int = 0, state: dict | None = None, device=None) -> nn.Module:
    """The torchvision architecture ``name`` (:data:`TORCHVISION`) with ``num_classes`` read from ``state`` (a state
    dict: its last layer's weight is (num_classes, features)), else 1000 and a seeded random init.  The state dict
    is not loaded here (:func:`chainlab.nets.storage.load_state` does, strictly, naming missing and unexpected keys)."""
    if name not in TORCHVISION:
        raise ValueError(f"unknown torchvision architecture {name!r}; chainlab defines {', '.join(TORCHVISION)}")
    family = "vgg" if name.startswith("vgg") else "resnet"
    num_classes = 1000
    head = _HEADS[family]
    if state is not None and head in state and getattr(state[head], "ndim", 0) == 2:
        num_classes = int(state[head].shape[0])
    make = vgg if family == "vgg" else resnet
    return make(name, seed=seed, num_classes=num_classes, device=device)


ZOO = {**{n: (lambda n: lambda seed=0, **kw: torchvision(n, seed, **kw))(n) for n in TORCHVISION},
       "resnet-tiny": resnet_tiny}
