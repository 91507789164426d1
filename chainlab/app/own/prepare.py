"""A user's net and images made ready for the claims, every check done before anything is written.

:func:`prepare` loads the model of a SPEC (:mod:`chainlab.nets.specs`) and the images (:mod:`chainlab.nets.images`),
then checks, each failure one user error naming what is wrong:

* the images fit the model: the channel count of its first convolution (or the input width of its first Linear
  layer), and a forward pass of one image runs;
* the model is a classifier: one image gives 2-D logits (1, K) with K ≥ 2;
* chainlab can read its layers (:func:`chainlab.trace.trace`); a layer it cannot is named together with the claims
  that cannot run without it (all of them: every claim measures the backward chain);
* labels, when given, are class indices < K.

The model's ``input_shape`` is set to (1, C, H, W) of the images (the adaptive pools of torchvision's nets take
any size; a net with a fixed input takes only its own).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ...errors import InputError, UnsupportedLayerError
from ...nets.images import Images, load_images
from ...nets.specs import ModelSpec, NetInfo, load_spec, parse_spec
from ...trace import eval_mode, trace

__all__ = ["UserNet", "prepare", "first_layer", "check_classifier", "forward_macs", "NormBlock", "residual_norm_blocks"]


@dataclass(frozen=True)
class NormBlock:
    """A residual block's matrix M (n_in × n_out) multiplied out, as B1–B3's exact ‖M‖₁ needs it: ``entries`` its
    stored entries (estimated, :func:`residual_norm_blocks`), ``bytes`` its memory (CSC 12 bytes per entry, or
    dense 8·n_in·n_out when denser than a quarter, as :mod:`chainlab.linalg.products` stores it)."""

    name: str
    n_in: int
    n_out: int
    entries: int

    @property
    def bytes(self) -> int:
        dense = self.entries > 0.25 * self.n_in * self.n_out
        return 8 * self.n_in * self.n_out if dense else 12 * self.entries


def residual_norm_blocks(traced, input_shape) -> tuple:
    """:class:`NormBlock` of every residual block of a traced net at input shape (1, C, H, W): entries ≈ n_out ·
    C_in · min(r, H_in) · min(r, W_in) — each output unit reaches the block input's C_in channels over the receptive
    field r × r of its longest branch, r = 1 + Σ_i (k_i − 1) · Π_{j<i} s_j (kernel k_i, stride s_i of the branch's
    convolutions in forward order), clipped to the input.  Empty for a net without residual blocks."""
    idx = [i for i, st in enumerate(traced.stages) if st.kind == "residual"]
    if not idx:
        return ()
    with torch.no_grad():
        shapes = traced.shapes(traced.forward(torch.zeros(tuple(input_shape), dtype=torch.float64)))
    out = []
    for i in idx:
        st, s_in, s_out = traced.stages[i], shapes[i], shapes[i + 1]
        r = 1
        for branch in st.branches:
            rb, jump = 1, 1
            for s in branch:
                if s.conv is not None and s.weight is not None:
                    rb += (int(s.weight.shape[-1]) - 1) * jump
                    jump *= int(s.conv.stride[-1])
            r = max(r, rb)
        n_in, n_out = int(np.prod(s_in)), int(np.prod(s_out))
        area = min(r, s_in[-2]) * min(r, s_in[-1]) if len(s_in) == 3 else s_in[-1]
        out.append(NormBlock(st.name, n_in, n_out, min(n_in * n_out, n_out * int(s_in[0]) * int(area))))
    return tuple(out)


@dataclass
class UserNet:
    """A prepared user net: its spec, module, what the report says about it, the images, the traced net (for the
    claims' applicability; :func:`chainlab.app.own.verify_own` releases it afterwards) and the class count K."""

    spec: ModelSpec
    model: nn.Module
    info: NetInfo
    images: Images
    traced: object
    n_classes: int
    macs: int = 0
    norm_blocks: tuple = ()         # NormBlock per residual block (B1–B3's cost and memory)

    @property
    def norm_entries(self) -> int:
        """Σ entries of the residual blocks multiplied out (:class:`NormBlock`): B1–B3's cost per chain."""
        return sum(b.entries for b in self.norm_blocks)

    @property
    def name(self) -> str:
        return self.info.name


def forward_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of one forward pass of ``x`` (1, …) through the model's Conv2d and Linear layers:
    Σ conv out_elements · (C_in/groups)·k_h·k_w + Σ linear in·out."""
    total = [0]

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            total[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            total[0] += m.in_features * m.out_features * (out.numel() // m.out_features)

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad(), eval_mode(model):
            model(x[:1].to(next(model.parameters()).dtype))
    finally:
        for h in hs:
            h.remove()
    return int(total[0])



def first_layer(model: nn.Module):
    """(module path, module) of the first Conv2d or Linear layer in registration order, or (None, None)."""
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            return name, m
    return None, None


def _check_fit(model, images: Images, source: str):
    name, layer = first_layer(model)
    c, h, w = images.shape
    if isinstance(layer, nn.Conv2d):
        want = layer.in_channels
        if c != want:
            raise InputError(f"the images in {source} have {c} channel(s), the model's first layer {name!r} "
                             f"(Conv2d) takes {want}")
    shape = getattr(model, "input_shape", None)
    fixed = shape is not None and len(shape) == 4 and not _adaptive(model)
    if fixed and tuple(shape[1:]) != (c, h, w):
        raise InputError(f"the images in {source} are {c}×{h}×{w} (C×H×W), the model takes {tuple(shape[1:])}")


def _adaptive(model) -> bool:
    return any(isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) for m in model.modules())


def check_classifier(model, x: torch.Tensor, what: str) -> int:
    """K of a model whose output for one image x (1, …) is (1, K) with K ≥ 2; InputError otherwise."""
    dtype = next(model.parameters()).dtype if any(True for _ in model.parameters()) else torch.float32
    try:
        with torch.no_grad(), eval_mode(model):
            out = model(x.to(dtype))
    except RuntimeError as exc:
        raise InputError(f"{what} does not run on the images ({tuple(x.shape)}): "
                         f"{str(exc).splitlines()[0][:200]}") from None
    if isinstance(out, (tuple, list)) or not isinstance(out, torch.Tensor):
        raise InputError(f"{what} returns a {type(out).__name__}, not a tensor of logits; chainlab checks classifiers "
                         "whose forward returns (batch, classes) logits")
    if out.ndim != 2 or out.shape[0] != x.shape[0] or out.shape[1] < 2:
        raise InputError(f"{what} is not a classifier: its output for one image has shape {tuple(out.shape)}, "
                         "chainlab needs 2-D logits (batch, classes) with at least 2 classes")
    return int(out.shape[1])


def prepare(model: str, images: str, *, weights=None, preprocess: str | None = None, n_images: int | None = None,
            labels=None, seed: int = 0, claims=("the claims",), default_images=None) -> UserNet:
    """Load and check a user's net and images (module docstring).  ``preprocess`` None: imagenet for torchvision
    architectures and an image folder, none for a .npy array, unit otherwise.  ``n_images`` None: all images, or
    ``default_images(multiply-adds per image, Σ NormBlock.entries)`` of them when that function is given."""
    spec = parse_spec(model, weights, seed)
    if preprocess is None:
        npy = Path(images).suffix.lower() == ".npy"
        preprocess = "none" if npy else ("imagenet" if spec.kind == "torchvision" else "unit")
    first = n_images if n_images is not None else (1 if default_images is not None else None)
    imgs = load_images(images, preprocess, first, labels)       # the images first: cheap, and no model is built
    if n_images is not None and len(imgs) < n_images:
        raise InputError(f"--n-images {n_images}: {images} holds {len(imgs)} image(s)")
    net, info = load_spec(spec)
    if any(p.dtype not in (torch.float32, torch.float64) for p in net.parameters()):
        net = net.float()
    what = f"model {spec.text}"
    _check_fit(net, imgs, images)
    K = check_classifier(net, imgs.x[:1], what)
    macs = forward_macs(net, imgs.x[:1])
    net.input_shape = (1,) + imgs.shape
    try:
        with eval_mode(net):
            traced = trace(net)
    except UnsupportedLayerError as exc:
        layer = str(exc).splitlines()[0].split("; supported")[0]
        raise UnsupportedLayerError(f"{what}: {layer} by chainlab; claims that cannot run: "
                                    f"{', '.join(claims)} (every claim measures the model's backward chain)") from None
    blocks = residual_norm_blocks(traced, net.input_shape)
    if n_images is None and default_images is not None:
        imgs = load_images(images, preprocess, default_images(macs, sum(b.entries for b in blocks)), labels)
    if imgs.labels is not None and (imgs.labels >= K).any():
        bad = int(np.argmax(imgs.labels >= K))
        raise InputError(f"label {int(imgs.labels[bad])} of image {imgs.names[bad]} is not a class of the model "
                         f"({K} classes: 0…{K - 1})")
    return UserNet(spec, net, info, imgs, traced, K, macs, blocks)
