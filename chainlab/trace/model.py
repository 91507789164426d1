"""A torch model → a :class:`~.stages.Net`: its ops read, stages built, canonizers run, logits checked.

Passes (each testable on its own): :func:`~.graph.linearize` (the model's ops in forward order,
residual blocks nested), :func:`_items` (ops → stages and markers for BatchNorm, activations and
flattens), :func:`~.canonize.merge_batchnorm` (BatchNorm folded into the preceding Linear/Conv2d),
:func:`_attach` (activations set on the stage before them, flattens on the stage after them).
"""
from __future__ import annotations

import dataclasses
import warnings
from contextlib import contextmanager

import torch
import torch.nn as nn

from ..errors import ExtractionError, InputError, UnsupportedLayerError
from ..linalg import ConvSpec, PoolSpec
from .activations import RELU, Activation
from .canonize import merge_batchnorm
from .graph import SUPPORTED, ResidualSpec, linearize
from .stages import Net, Stage, conv_padding

__all__ = ["trace", "check_logits", "eval_mode"]

_PASS_MODULES = (nn.Dropout, nn.Identity)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
_ACTIVATIONS = (nn.ReLU, nn.Softplus, nn.SiLU)


@contextmanager
def eval_mode(model: nn.Module):
    """Run with the model in eval mode; warn and restore when it was in training mode."""
    was_training = model.training
    if was_training:
        warnings.warn(
            f"{type(model).__name__} is in training mode; chainlab extracts it in eval mode "
            "(Dropout off, BatchNorm running statistics) and restores training mode afterwards",
            stacklevel=3,
        )
        model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


def trace(model: nn.Module, *, copy: bool = True) -> Net:
    """Read ``model`` into a :class:`Net` of float64 stages with BatchNorm folded.  ``copy=False``: the stages hold
    the model's own tensors (its dtype; BatchNorm still folded into new ones) — for reading the structure (kinds,
    names, activations) without a float64 copy of every weight; never compute with or change them."""
    if not isinstance(model, nn.Module):
        raise InputError(f"chainlab needs a torch.nn.Module, got {type(model).__name__}")
    params = list(model.parameters())
    if params and any(p.dtype not in (torch.float32, torch.float64) for p in params):
        bad = sorted({str(p.dtype) for p in params} - {"torch.float32", "torch.float64"})
        raise InputError(f"{type(model).__name__} has parameters of dtype {', '.join(bad)}; chainlab reads float32 or "
                         "float64 models (convert with model.float())")
    stages = _stages(linearize(model), _f64 if copy else _own)
    if not stages:
        raise UnsupportedLayerError(f"{type(model).__name__} has no layers chainlab can extract")
    return Net(stages, getattr(model, "input_shape", None), type(model).__name__)


def _stages(ops, weights) -> list[Stage]:
    return _attach(merge_batchnorm(_items(ops, weights)))


def _items(ops, weights) -> list:
    """Stages (without activations) and markers ("batchnorm" | "activation" | "flatten", path, …) of an op list."""
    items = []
    for path, op in ops:
        if isinstance(op, ResidualSpec):
            branches = tuple(tuple(_stages(b, weights)) for b in op.branches)
            items.append(Stage(kind="residual", name=op.name, branches=branches))
        elif op == "relu" or isinstance(op, Activation) or isinstance(op, _ACTIVATIONS):
            act = RELU if op == "relu" else op if isinstance(op, Activation) else Activation.of_module(op)
            items.append(("activation", path, act, op if isinstance(op, nn.Module) else None))
        elif op == "flatten" or isinstance(op, nn.Flatten):
            items.append(("flatten", path))
        elif op == "identity" or isinstance(op, _PASS_MODULES):
            continue
        elif isinstance(op, (nn.BatchNorm1d, nn.BatchNorm2d)):
            items.append(("batchnorm", path, op))
        elif isinstance(op, nn.Linear):
            items.append(Stage("linear", path, op, weights(op.weight), weights(op.bias), members=(path,)))
        elif type(op) is nn.Conv2d:
            if op.padding_mode != "zeros":
                raise UnsupportedLayerError(
                    f"Conv2d '{path}' uses padding_mode={op.padding_mode!r}; only zero padding is supported")
            conv = ConvSpec(tuple(op.stride), conv_padding(op), tuple(op.dilation), int(op.groups))
            items.append(Stage("conv2d", path, op, weights(op.weight), weights(op.bias), members=(path,), conv=conv))
        elif type(op) in _POOLS:
            if getattr(op, "return_indices", False):
                raise UnsupportedLayerError(f"MaxPool2d '{path}' with return_indices=True is not supported")
            spec = PoolSpec.of_module(op)
            items.append(Stage(spec.kind, path, op, members=(path,), pool=spec))
        else:
            raise UnsupportedLayerError(
                f"module '{path}' of type {type(op).__name__} is not supported; supported: {SUPPORTED}")
    return items


def _attach(items) -> list[Stage]:
    """Activation markers onto the stage before them (or a leading activation stage), flattens onto the next."""
    stages: list[Stage] = []
    flatten = False
    for item in items:
        if isinstance(item, Stage):
            stages.append(dataclasses.replace(item, flatten_before=flatten) if flatten else item)
            flatten = False
        elif item[0] == "flatten":
            flatten = True
        else:   # ("activation", path, act, module)
            _, path, act, module = item
            last = stages[-1] if stages else None
            if last is not None and last.activation is None and last.kind != "activation":   # (commutes with a flatten)
                stages[-1] = dataclasses.replace(last, activation=act, members=last.members + (path,))
            elif last is None:
                stages.append(Stage("activation", path, module, activation=act, members=(path,),
                                    flatten_before=flatten))
                flatten = False
            elif last.activation is not None and last.activation == act and act.is_relu:
                stages[-1] = dataclasses.replace(last, members=last.members + (path,))   # ReLU twice = ReLU
            else:
                raise UnsupportedLayerError(
                    f"activation '{path}' ({act.describe()}) follows {last.describe()}, which already ends in "
                    f"{last.activation.describe()}; chainlab supports one "
                    "activation directly after a Linear, Conv2d, pooling layer or residual sum")
    return stages


def _own(t):
    return None if t is None else t.detach()


def _f64(t):
    """A float64 copy of a parameter (one copy: never the model's own tensor, so nothing here can change it)."""
    return None if t is None else t.detach().to(torch.float64, copy=True)


def check_logits(model: nn.Module, x: torch.Tensor, logits: torch.Tensor):
    """The traced stage forward must reproduce the model's own output at the inputs x (one or a batch); raise
    otherwise.  Tolerance 1e-4·(1 + max|f|) when the model or x is float32, 1e-9·(1 + max|f|) in float64."""
    try:
        p = next(model.parameters())
        dtype, device = p.dtype, p.device
    except StopIteration:
        dtype, device = torch.float32, torch.device("cpu")
    with torch.no_grad():
        ref = model(x.to(dtype=dtype, device=device))
    if not isinstance(ref, torch.Tensor):
        raise UnsupportedLayerError(f"the model returns {type(ref).__name__}, not a tensor of logits")
    ref = ref.detach().to(torch.float64).cpu().reshape(-1)
    ours = logits.to(torch.float64).reshape(-1)
    if ref.shape != ours.shape:
        raise ExtractionError(f"the traced stages give {ours.numel()} outputs, the model {ref.numel()}")
    coarse = torch.float32 in (dtype, x.dtype, logits.dtype)
    tol = (1e-4 if coarse else 1e-9) * (1.0 + float(ours.abs().max()))
    err = float((ref - ours).abs().max())
    if not err <= tol:
        raise ExtractionError(
            f"the traced {'float32' if x.dtype == torch.float32 else 'float64'} stages do not reproduce the model's "
            f"output (max difference {err:.3g} > {tol:.3g}); the forward may contain operations chainlab does not see"
        )
