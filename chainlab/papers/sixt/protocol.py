"""How Sixt et al.'s claims are measured here: which nets play which role, their training seeds, the images, the
sizes of each setting, the injection points and the cascading-randomization steps.

Roles are the paper's nets (``sixt-cifar`` its CIFAR net, ``vgg-cifar`` VGG-16, ``resnet-cifar`` ResNet-50); the
quick run plays them with the digits nets.  A role's training seeds: seed 0 is the role's own net, further seeds
come from ``chainlab.nets.models.seed_names`` (when the package ships them) or from nets registered in the
:class:`~chainlab.papers.context.Context` as ``<role>-seed<k>`` or with ``extra={"seed_of": role, "seed": k}``.  Any
other registered net is a role of its own (a user's net), measured with a protocol derived from its trace
(:func:`derived`): injection at the logits, cascading steps from the parametric layers top-down.

Settings (:func:`sizes`): the default run keeps the paper's 200 images × 5 vectors; what the default leaves to
``--extended`` is listed in :data:`EXTENDED` with the reason (the verdicts print it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np
import torch

from ...errors import OptionError
from ...measures.convergence import VGG16_SHAPES
from ...nets import models
from ...trace import eval_mode, trace

__all__ = ["NetProtocol", "NETS", "Sizes", "sizes", "derived", "net_protocol", "seed_nets", "roles", "EXTENDED", "SEED0_ONLY",
           "boundaries", "first_conv_step"]


@dataclass(frozen=True)
class NetProtocol:
    """How a net is measured: injection points (stage names; the first is Fig. 5's final layer, the rest
    App. F's), the paper's names for them, the side of the activation signals are injected and read at
    (the authors' keras CIFAR net has separate ReLU layers, so its "conv2" is pre-activation; VGG-16's and
    ResNet-50's named layers end in their ReLU), and the cascading-randomization steps (top down: (label,
    module names re-initialized at that step))."""

    name: str
    paper: str
    inject: tuple
    paper_inject: tuple
    side: str
    cascade: tuple


NETS = {
    "sixt-cifar": NetProtocol("sixt-cifar", "CIFAR net", ("fc2", "fc1", "conv4", "conv3", "conv2"),
                              ("fc6", "fc5", "conv4", "conv3", "conv2"), "pre",
                              tuple((n, (n,)) for n in ("fc2", "fc1", "conv4", "conv3", "conv2", "conv1"))),
    "vgg-cifar": NetProtocol("vgg-cifar", "VGG-16", ("fc3", "fc1", "conv6", "conv4", "conv2"),
                             ("fc3", "fc1", "conv4_3", "conv3_3", "conv2_2"), "post",
                             (("fc3", ("fc3",)), ("fc1", ("fc2", "fc1")), ("conv8", ("conv8",)), ("conv7", ("conv7",)),
                              ("conv6", ("conv6",)), ("conv5", ("conv5",)), ("conv3", ("conv4", "conv3")),
                              ("conv1", ("conv2", "conv1")))),
    "resnet-cifar": NetProtocol("resnet-cifar", "ResNet-50", ("fc", "layer3.0", "layer2.1", "layer1.2", "layer1.0"),
                                ("dense", "block5_1", "block4_2", "block3_4", "block2_2"), "post",
                                (("fc", ("fc",)), ("layer3.2", ("layer3.2",)), ("layer3.0", ("layer3.1", "layer3.0")),
                                 ("layer2.1", ("layer2.2", "layer2.1")), ("layer2.0", ("layer2.0",)),
                                 ("layer1.1", ("layer1.2", "layer1.1")), ("conv1", ("layer1.0", "conv1", "bn1")))),
    "digits-cnn": NetProtocol("digits-cnn", "(quick run)", ("fc2", "fc1", "conv3"), ("", "", ""), "pre",
                              (("fc2", ("fc2",)), ("fc1", ("fc1",)), ("conv3", ("conv3",)), ("conv2", ("conv2",)),
                               ("conv1", ("conv1", "bn1")))),
    "digits-mlp": NetProtocol("digits-mlp", "(quick run)", ("fc6", "fc5", "fc3"), ("", "", ""), "pre",
                              tuple((f"fc{i}", (f"fc{i}",)) for i in range(6, 0, -1))),
}

# what the default run leaves to --extended, and why (printed beside the verdicts)
EXTENDED = {
    "smoothgrad": "SmoothGrad (S5, S7): 50 noisy gradients per map — about as much work per net as the whole CSC "
                  "pass of the other methods",
    "independent": "DeepLIFT's ± rule (deeplift-*-pm, S3, beside) with tied and independent ± injections: a second "
                   "CSC pass of three DeepLIFT methods in float64 "
                   "that decides nothing",
    "app_f": "App. F's other injection points (S1, beside): one more CSC pass per injection point, no decision",
    "extras": "excitation BP, contrastive EBP and contrastive LRP (§5, beside) in the cascade: no decision rests on "
              "them (the shared CSC pass of S1/S3/S5 runs them in every run)",
    "cascade_all": "cascading steps after the first conv step (Fig. 4b's full curve): the decision is taken at the "
                   "first conv step",
    "app_e": "App. E (cascading randomization of resnet-cifar, S7) and the sixt-cifar cascade: a second and third "
             "cascade of every method",
    "s8_all": "S8's other methods and nets (beside): the decision rests on LRP-α1β0 and the gradient on vgg-cifar",
    "s4_chains": "S4's per-input chain version (σ1/σ2 of one image's T_l): an extra measure",
    "further_seeds": "the further training seeds in S1, S3, S5, S6 and S7 (these are decided on seed 0, the "
                     "paper's protocol on one net each; S2, S4 and S8 decide on every seed in every run): their CSC "
                     "pass, prefix products and cascade are a third of the default run's measuring, which has to "
                     "fit 5 minutes on 2 cores",
}
# the claims (by their roles() key) whose shipped further training seeds only --extended measures (EXTENDED
# "further_seeds")
SEED0_ONLY = ("csc", "theorem", "cascade")


@dataclass(frozen=True)
class Sizes:
    """Work per setting: ``images`` per net (the paper's 200; the quick run 10, the fewest for an order-statistic
    95 % interval with both ends finite is 6), ``chunk`` images per measured batch (results are per image, so a
    run can be split and resumed per chunk), ``vectors`` N(0, I) injections per image (the paper's five: 10 pairs),
    ``theorem_images`` images of S6's prefix products (each a unit of its interval), ``columns`` sampled columns
    of each P_k, ``draws`` of the App. B simulation on ``sim_shapes`` (VGG-16's centre-tap shapes; the quick run
    divides every dimension by 16), ``two_object`` scenes of S8, ``heatmaps`` images whose cascading maps are kept
    for Fig. 1a's grid, ``prefix_chunk`` images per chunk of S6's prefix products (each image is 64 columns: 4
    images keep a worker's batch at 256 signals)."""

    images: int
    chunk: int
    vectors: int
    theorem_images: int
    columns: int
    draws: int
    two_object: int
    sim_shapes: tuple = VGG16_SHAPES
    prefix_chunk: int = 4
    heatmaps: int = 1


def sizes(ctx) -> Sizes:
    """The sizes of the setting; a run on a user's net (``ctx.s.images``) caps every image count at its images and
    measures in its chunks."""
    if ctx.s.quick:
        small = tuple((max(a // 16, 3), max(b // 16, 3)) for a, b in VGG16_SHAPES)
        Z = Sizes(images=10, chunk=10, vectors=5, theorem_images=8, columns=32, draws=8, two_object=10,
                  sim_shapes=small)
    else:
        Z = Sizes(images=200, chunk=50, vectors=5, theorem_images=16, columns=64, draws=20, two_object=200)
    s = ctx.s
    if s.images is None:
        return Z
    return replace(Z, images=s.cap(Z.images), chunk=s.chunk or Z.chunk, theorem_images=s.cap(Z.theorem_images),
                   two_object=s.cap(Z.two_object))


def roles(ctx, claim: str) -> tuple:
    """The roles a claim is measured on in this setting (the spec decides which of them enter the verdict), and
    the user's registered nets."""
    q, x = ctx.s.quick, ctx.s.extended
    table = {
        "csc": ("digits-cnn",) if q else ("sixt-cifar", "vgg-cifar", "resnet-cifar"),
        "s2": ("sixt-cifar",),
        "patterns": ("digits-cnn",) if q else ("vgg-cifar", "sixt-cifar"),
        "theorem": ("digits-mlp", "digits-cnn") if q else ("sixt-cifar", "vgg-cifar"),
        "cascade": ("digits-cnn",) if q else (("vgg-cifar", "resnet-cifar", "sixt-cifar") if x else ("vgg-cifar",)),
        "two_object": ("vgg-cifar",) if q else (("vgg-cifar", "sixt-cifar", "resnet-cifar") if x else ("vgg-cifar",)),
    }[claim]
    mine = tuple(n for n, e in ctx.registered.items() if e.extra.get("seed_of") is None
                 and not re.fullmatch(r".+-seed[0-9]+", n))
    if mine and ctx.s.images is not None:     # a run on the user's nets (verify --model): those only
        return mine
    return table + tuple(n for n in mine if n not in table)


def seed_nets(ctx, role: str) -> dict:
    """{seed: net name} of a role: seed 0 is the role's net; more from the shipped seeds
    (``models.seed_names``, when this chainlab has it) and from registered nets with ``extra["seed_of"] == role``.
    Seeds whose weights are missing stay listed (the claims report them as not checked)."""
    out = {0: role}
    names = getattr(models, "seed_names", None)
    if names is not None and role in models.NAMES and role not in ctx.registered:   # a user's net: its own seeds only
        try:
            for k, n in enumerate(names(role)):
                out.setdefault(k, n)
        except OptionError:          # a role with no shipped seeds
            pass
    for n, e in ctx.registered.items():
        m = re.fullmatch(rf"{re.escape(role)}-seed([0-9]+)", n)
        if e.extra.get("seed_of") == role:
            out[int(e.extra.get("seed", len(out)))] = n
        elif m:                                  # the shipped naming, ``<role>-seed<k>``
            out[int(m.group(1))] = n
    return dict(sorted(out.items()))


def _traced(ctx, net):
    key = ("sixt-traced", net)
    if key not in ctx.cache:
        model = ctx.model(net)
        with eval_mode(model):
            ctx.cache[key] = trace(model)
        ctx.transient.add(key)
    return ctx.cache[key]


def derived(ctx, net) -> NetProtocol:
    """A protocol for a net the paper never saw, from its trace: injection at the logits (the last stage), signals
    after the activation, cascading steps = the parametric top-level stages from the top, one per step (a
    BatchNorm folded into its stage goes with it)."""
    t = _traced(ctx, net)
    stages = list(t.stages)
    steps = []
    for st in reversed(stages):
        if st.kind in ("linear", "conv2d", "residual"):
            steps.append((st.name, tuple(dict.fromkeys((st.name, *st.members)))))
    return NetProtocol(net, "(not in the paper)", (stages[-1].name,), ("",), "post", tuple(steps))


def net_protocol(ctx, net, role=None) -> NetProtocol:
    """The protocol of ``net`` (a seed of ``role`` has its role's)."""
    role = role or net
    return NETS[role] if role in NETS else derived(ctx, net)


def boundaries(ctx, net) -> dict:
    """{j: {"d": channels per location, "below_pool": the stage taking boundary j is a max-pool, "name": the stage
    whose output j is ("input" for 0)}} of the net's top-level boundaries."""
    t = _traced(ctx, net)
    x, _ = ctx.images(net, 1)
    with torch.no_grad():
        recs = t.forward(torch.zeros((1,) + tuple(x.shape[1:]), dtype=torch.float64))
    shapes = t.shapes(recs)
    out = {}
    for j, sh in enumerate(shapes):
        d = int(sh[0]) if len(sh) == 3 else int(np.prod(sh))
        nxt = t.stages[j] if j < len(t.stages) else None
        out[j] = {"d": d, "below_pool": nxt is not None and nxt.kind == "maxpool2d",
                  "name": "input" if j == 0 else t.stages[j - 1].name}
    return out


def first_conv_step(ctx, net, cascade) -> int:
    """Index (0-based) of the first cascading step that re-initializes a conv (or residual) stage."""
    kinds = {s.name: s.kind for s in _traced(ctx, net).stages}
    for i, (label, _) in enumerate(cascade):
        if kinds.get(label) not in ("linear", None):
            return i
    return len(cascade) - 1
