"""A model named on the command line (``chainlab verify --model SPEC [--weights FILE]``): the module and what a
report must say about it.

SPEC is one of

* a shipped net's name (``sixt-cifar``, …) or an architecture chainlab defines (``vgg16``, ``scenes-cnn``, …);
* ``torchvision:NAME`` — torchvision's architecture NAME (:data:`chainlab.nets.zoo.TORCHVISION`: vgg11/13/16/19
  with and without ``_bn``, resnet18/34/50/101/152) defined in chainlab with torchvision's module names, so a
  torchvision state dict given with ``--weights`` loads unchanged; its class count is read from the file;
* a chainlab model file (``.npz`` written by ``chainlab.models.save``);
* ``FILE.py:FUNCTION`` or ``package.module:FUNCTION`` — your own architecture: a function (or class) called with
  no arguments that returns the ``nn.Module`` (your code runs, as with ``python FILE.py``; the weights file is
  only ever read as data).

Weights (``.pt``/``.pth``/``.npz`` state dicts) load with ``torch.load(weights_only=True)`` and strictly (missing,
unexpected and mis-shaped keys are named).  An architecture without weights is initialized from a fixed seed
(``trained=False``: every verdict then says it is about the architecture only).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import MissingFileError, ModelFileError, OptionError
from . import models, zoo
from .architectures import ARCHITECTURES
from .storage import load_state, read_state_dict, state_fingerprint

__all__ = ["ModelSpec", "NetInfo", "parse_spec", "load_spec", "UNTRAINED"]

UNTRAINED = "untrained net: about the architecture only"
TORCHVISION_PREFIX = "torchvision:"


@dataclass(frozen=True)
class ModelSpec:
    """A parsed SPEC: ``kind`` in {"shipped", "architecture", "torchvision", "file", "callable"}, ``name`` (the
    architecture/net name, file path, or "module:function"), the weights file (or None) and the init seed."""

    kind: str
    name: str
    weights: str | None = None
    seed: int = 0

    @property
    def arg(self) -> str:
        """The ``--model`` argument that gives this spec."""
        return f"{TORCHVISION_PREFIX}{self.name}" if self.kind == "torchvision" else self.name

    @property
    def text(self) -> str:
        """The spec as the user wrote it (with the weights)."""
        return self.arg + (f" --weights {self.weights}" if self.weights else "")


@dataclass
class NetInfo:
    """What a report says about a loaded net: its name, whether it is trained, where the weights come from, the
    state-dict fingerprint."""

    name: str
    trained: bool
    description: str
    fingerprint: str


def parse_spec(spec: str, weights=None, seed: int = 0) -> ModelSpec:
    """The :class:`ModelSpec` of a SPEC string (module docstring); OptionError for a spec of no known form."""
    spec = str(spec).strip()
    w = None if weights is None else str(weights)
    if not spec:
        raise OptionError("--model is empty; give a shipped net's name, torchvision:NAME, a model file or FILE.py:FUNCTION")
    if spec.startswith(TORCHVISION_PREFIX):
        name = spec[len(TORCHVISION_PREFIX):]
        if name not in zoo.TORCHVISION:
            raise OptionError(f"--model {spec}: chainlab defines the torchvision architectures "
                              f"{', '.join(zoo.TORCHVISION)}; for another one write it as FILE.py:FUNCTION")
        return ModelSpec("torchvision", name, w, seed)
    if spec in models.NAMES and w is None:
        return ModelSpec("shipped", spec, None, seed)
    if spec in ARCHITECTURES or spec in zoo.ZOO:
        if spec in zoo.TORCHVISION:
            return ModelSpec("torchvision", spec, w, seed)
        return ModelSpec("architecture", spec, w, seed)
    path, sep, func = spec.rpartition(":")
    if sep and func.isidentifier() and path and (path.endswith(".py") or _dotted(path)):
        return ModelSpec("callable", spec, w, seed)
    if w is not None:
        raise OptionError(f"--weights needs an architecture for --model: a name ({', '.join(models.NAMES[:3])}, …), "
                          f"torchvision:NAME or FILE.py:FUNCTION, got {spec!r}")
    return ModelSpec("file", spec, None, seed)


def _dotted(s: str) -> bool:
    return all(part.isidentifier() for part in s.split("."))


def _seeded(seed: int, make):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return make()


def _callable(target: str):
    """The function ``FILE.py:FUNCTION`` or ``package.module:FUNCTION`` names."""
    path, _, func = target.rpartition(":")
    if path.endswith(".py"):
        p = Path(path)
        if not p.is_file():
            raise MissingFileError(f"--model {target}: no Python file {p}")
        name = "chainlab_user_model_" + hashlib.sha256(str(p.resolve()).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(name, p)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        before = sys.dont_write_bytecode
        sys.dont_write_bytecode = True          # nothing written beside the user's file (no __pycache__)
        try:
            spec.loader.exec_module(module)
        finally:
            sys.dont_write_bytecode = before
    else:
        # the user's module, found on sys.path and run like a file (never a module of chainlab's own)
        try:
            found = importlib.util.find_spec(path)
        except ModuleNotFoundError as exc:
            raise MissingFileError(f"--model {target}: cannot import {path!r} ({exc})") from None
        if found is None or found.loader is None or path.split(".")[0] == "chainlab":
            raise MissingFileError(f"--model {target}: cannot import {path!r} (no such module of yours)")
        module = sys.modules.get(found.name)
        if module is None:
            module = importlib.util.module_from_spec(found)
            sys.modules[found.name] = module
            found.loader.exec_module(module)
    fn = getattr(module, func, None)
    if fn is None or not callable(fn):
        raise OptionError(f"--model {target}: {path} has no function or class {func!r}")
    return fn


def load_spec(spec: ModelSpec) -> tuple[nn.Module, NetInfo]:
    """(eval-mode module, :class:`NetInfo`) of a parsed spec."""
    w = spec.weights
    if spec.kind == "shipped":
        net = models.load(spec.name)
        return net.eval(), NetInfo(spec.name, True, f"shipped net {spec.name}", state_fingerprint(net))
    if spec.kind == "file":
        net = models.load(spec.name)
        name = getattr(net, "name", None) or Path(spec.name).stem
        return net.eval(), NetInfo(name, True, f"model file {spec.name} (architecture {name})", state_fingerprint(net))
    if spec.kind == "torchvision":
        state = read_state_dict(w) if w is not None else None
        net = zoo.torchvision(spec.name, spec.seed, state)
        if state is not None:
            load_state(net, state, w)
        what = (f"torchvision {spec.name} with weights {w}" if w else
                f"torchvision {spec.name}, random init (seed {spec.seed})")
        return net.eval(), NetInfo(spec.name, w is not None, what, state_fingerprint(net))
    if spec.kind == "architecture":
        net = models.load(spec.name, seed=spec.seed, weights=w) if w else _seeded(spec.seed, lambda: models.build(
            spec.name, spec.seed))
        what = f"architecture {spec.name} with weights {w}" if w else f"architecture {spec.name}, random init (seed {spec.seed})"
        return net.eval(), NetInfo(spec.name, w is not None, what, state_fingerprint(net))
    # a function of the user's
    fn = _callable(spec.name)
    net = _seeded(spec.seed, fn)
    if not isinstance(net, nn.Module):
        raise ModelFileError(f"--model {spec.name} returned a {type(net).__name__}, not a torch.nn.Module")
    if w is not None:
        load_state(net, read_state_dict(w), w)
    name = spec.name.rpartition(":")[2]
    net.name = getattr(net, "name", None) or name
    what = (f"{spec.name} with weights {w}" if w else f"{spec.name}, its own init under torch.manual_seed({spec.seed})")
    return net.eval(), NetInfo(net.name, w is not None, what, state_fingerprint(net))
