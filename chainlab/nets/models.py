"""The nets chainlab ships and the architectures it knows, by name.

* shipped nets (``NAMES``): an architecture of :mod:`.architectures` with weights in
  ``data/<name>.npz`` (made by ``scripts/train_models.py``; see data/README.md); a net trained from
  several seeds ships as ``<name>`` (seed 0) and ``<name>-seed<k>`` (:func:`seed_names`);
* zoo architectures (``ZOO_NAMES``, :mod:`.zoo`): torchvision's VGG (11/13/16/19, ± BN) and ResNet
  (18/34/50/101/152) with torchvision's module names, a tiny ResNet — seeded random init, or a state-dict
  file of your own (``weights=``; a torchvision net takes its class count from the file).

:func:`load` returns the eval-mode module with ``name`` (and ``meta`` for shipped nets) set;
:func:`save` writes a model file (:func:`chainlab.nets.storage.save_state`).  Model files are
data: ``.pt``/``.pth`` files are read as state dicts (``torch.load(weights_only=True)``), never as
pickled modules.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch.nn as nn

from ..errors import MissingFileError, ModelFileError, OptionError
from . import zoo
from .architectures import ARCHITECTURES, SEEDS, seed_name
from .storage import load_state, load_weights, read_state, read_state_dict, save_state

__all__ = ["NAMES", "ZOO_NAMES", "build", "load", "save", "data_dir", "seed_names"]

# the nets whose trained weights data/ ships (data/README.md says how each was made); every other name of
# ARCHITECTURES can be built, trained (scripts/train_models.py) and loaded from a model file
_SEED0 = ("digits-mlp", "digits-cnn",                    # 8×8 digits
          "sixt-cifar", "vgg-cifar", "resnet-cifar",       # 32×32 glyph-on-scene images
          "scenes-cnn-relu", "scenes-cnn-softplus1", "scenes-cnn-softplus3", "scenes-cnn-softplus10",
          "scenes-cnn-softplus30",                         # the activation study (Mehrpanah et al.)
          "scenes-cnn-wd0", "scenes-cnn-wd1e-4", "scenes-cnn-wd1e-3", "scenes-cnn-wd1e-2",
          "scenes-cnn-bn")                                 # the weight-norm study (Binder et al.)
# seeds > 0 after all seed-0 names (architectures.SEEDS lists them)
NAMES = _SEED0 + tuple(seed_name(name, k) for name in _SEED0 for k in SEEDS.get(name, ()))
ZOO_NAMES = tuple(zoo.ZOO)


def seed_names(name: str) -> tuple[str, ...]:
    """The shipped names of every trained seed of net ``name`` (seed 0 first: ``name``, ``name-seed1``, …).

    ``name`` is a shipped net, by its seed-0 name or by any of its seed names."""
    for base in _SEED0:
        names = (base,) + tuple(seed_name(base, k) for k in SEEDS.get(base, ()))
        if name in names:
            return names
    raise OptionError(f"no shipped net named {name!r}; shipped: {', '.join(NAMES)}")


def data_dir() -> Path:
    """The folder of shipped data: $CHAINLAB_DATA; else ``chainlab/shipped/`` inside an installed package (a
    wheel carries ``data/`` there, setup.cfg maps it); else ``data/`` beside the package (the source tree, an
    editable install).  Its files are checked against their checksums when read (:mod:`.manifest`)."""
    env = os.environ.get("CHAINLAB_DATA")
    if env:
        return Path(env)
    package = Path(__file__).resolve().parent.parent
    installed = package / "shipped"
    return installed if installed.is_dir() else package.parent / "data"


def build(name: str, seed: int | None = None) -> nn.Module:
    """A freshly initialized (untrained) net of the named architecture, ``name`` set.

    Zoo architectures are initialized from ``seed`` (default 0); shipped architectures use torch's
    global RNG.
    """
    if name in zoo.ZOO:
        return zoo.ZOO[name](seed=0 if seed is None else seed)
    if name not in ARCHITECTURES:
        raise OptionError(f"unknown model {name!r}; shipped models: {', '.join(NAMES)}; "
                          f"architectures: {', '.join(sorted(set(ARCHITECTURES) - set(NAMES)) + list(ZOO_NAMES))}")
    net = ARCHITECTURES[name]()
    net.name = name
    return net


def save(model: nn.Module, path, name: str, *, float16: bool = False, **meta) -> None:
    """Write ``model``'s state dict to ``path`` (.npz) under architecture ``name`` (big tensors as int8; with
    ``float16`` the other weight tensors as float16: :func:`chainlab.nets.storage.save_state`)."""
    save_state(model, path, name, float16=float16, **meta)


def _from_file(p: Path) -> nn.Module:
    if p.suffix in (".pt", ".pth"):
        raise ModelFileError(
            f"{p} is a torch file; chainlab reads state dicts only into a known architecture: "
            f"chainlab.models.load(<architecture>, weights='{p}') with one of "
            f"{', '.join(tuple(ARCHITECTURES) + ZOO_NAMES)}, "
            "or write a chainlab model file with chainlab.models.save(model, path, name)")
    arch, state, meta = read_state(p)
    if arch is None:
        raise ModelFileError(f"{p} is not a chainlab model file (no '__arch__' entry); load a bare state dict with "
                             "chainlab.models.load(<architecture>, weights=path)")
    if arch not in ARCHITECTURES:
        raise ModelFileError(f"{p} names the architecture {arch!r}, which this chainlab does not know "
                             f"(known: {', '.join(ARCHITECTURES)})")
    net = build(arch)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        details = "; ".join(line.strip() for line in str(exc).splitlines()[1:] if line.strip())
        raise ModelFileError(f"{p}: weights do not fit architecture {arch!r}: {details or exc}") from None
    net.meta = meta
    return net


def load(name_or_path, *, seed: int = 0, weights=None) -> nn.Module:
    """The eval-mode torch module of a shipped net (by name), of a model file written by :func:`save`, or of an
    architecture (shipped or zoo) with a state-dict file ``weights`` (.pt/.pth/.npz; zoo nets: seeded init
    from ``seed`` without one)."""
    name = str(name_or_path)
    if weights is not None:
        if name not in ARCHITECTURES and name not in zoo.ZOO:
            raise OptionError(f"weights= needs an architecture name ({', '.join(NAMES + ZOO_NAMES)}), got {name!r}")
        if name in zoo.TORCHVISION:           # the class count comes from the file
            state = read_state_dict(weights)
            return load_state(zoo.torchvision(name, seed, state), state, weights)
        return load_weights(build(name, seed), weights)
    if name in zoo.ZOO:
        return build(name, seed).eval()
    if name in ARCHITECTURES:
        p = data_dir() / f"{name}.npz"
        if not p.exists():
            raise MissingFileError(f"shipped model file {p} is missing; run scripts/train_models.py to make it")
    else:
        p = Path(name)
        if not p.exists():
            raise MissingFileError(f"no shipped model named {name!r} and no file {p}; shipped: {', '.join(NAMES)}")
        if p.is_dir():
            raise ModelFileError(f"model {p} is a directory, not a model file")
    net = _from_file(p)
    if name in ARCHITECTURES:
        net.name = name
    return net.eval()
