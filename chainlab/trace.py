"""From a torch model to a flat list of stages, one per chain operator.

A *stage* is one linear map of the forward pass together with what is folded
into it:

* ``linear`` (nn.Linear) and ``conv2d`` (nn.Conv2d) with any directly following
  BatchNorm folded in (W' = diag(s) W, b' = s⊙(b − μ) + β, s = γ/√(σ² + eps)),
* ``maxpool2d``, ``avgpool2d``, ``adaptiveavgpool2d``,
* ``relu`` only when a ReLU comes before any linear map,
* ``residual``: a sum of branches f_1(h) + f_2(h) (found by :mod:`chainlab.residual`), holding
  each branch's stages in ``stage.branches`` ([] for an identity shortcut) and its records in
  ``record.branches``.

A ReLU after a stage sets ``stage.relu``: its mask 1[z > 0] belongs to that
stage's operator in gradient space and is the identity in relevance space.
Flatten, Dropout (eval) and Identity are reshapes or identities and vanish.

The model is read with ``torch.fx`` so nested Sequentials and modules whose
``forward`` is a plain chain of submodules (plus functional relu/flatten/view)
and residual additions are accepted; anything else raises :class:`UnsupportedLayerError` naming the
module path and type.
"""
from __future__ import annotations

import operator
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ExtractionError, UnsupportedLayerError
from .residual import ResidualSpec, linearize_graph

SUPPORTED = (
    "Linear, Conv2d (zero padding), ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, "
    "Dropout (eval), Identity, BatchNorm1d/BatchNorm2d directly after a Linear/Conv2d (folded), "
    "and the functions relu, flatten, view, reshape, dropout (eval)"
)

_PASS_MODULES = (nn.Dropout, nn.Identity, nn.Flatten)
_POOL_KINDS = {nn.MaxPool2d: "maxpool2d", nn.AvgPool2d: "avgpool2d", nn.AdaptiveAvgPool2d: "adaptiveavgpool2d"}
_RELU_FUNCS = {torch.relu, torch.relu_, F.relu}
_FLATTEN_FUNCS = {torch.flatten, torch.reshape}
_DROPOUT_FUNCS = {F.dropout}
_FLATTEN_METHODS = {"flatten", "view", "reshape"}
_AUX_METHODS = {"size", "dim"}


@dataclass
class Stage:
    """One operator of the chain: a linear map of the forward pass and what is folded into it."""

    kind: str
    name: str
    module: nn.Module | None = None
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    relu: bool = False
    members: list = field(default_factory=list)
    flatten_before: bool = False
    in_shape: tuple | None = None
    out_shape: tuple | None = None
    branches: list | None = None   # kind "residual": one list of stages per summand ([] = identity)

    @property
    def is_parametric(self) -> bool:
        return self.kind in ("linear", "conv2d")

    def describe(self) -> str:
        mod = type(self.module).__name__ if self.module is not None else self.kind
        return f"'{self.name}' ({mod})"


@dataclass
class Record:
    """Forward quantities of one stage for one input (float64, batch dimension 1)."""

    x: torch.Tensor          # stage input, shape (1, *in_shape)
    z: torch.Tensor          # pre-activation output, shape (1, *out_shape)
    out: torch.Tensor        # post-activation output (ReLU applied if stage.relu)
    argmax: torch.Tensor | None = None   # max-pool winners (flat index per channel plane)
    branches: list | None = None         # kind "residual": the records of each branch's stages


class Net:
    """A traced model: its stages (float64, BatchNorm folded) and the expected input shape."""

    def __init__(self, stages: list[Stage], input_shape: tuple | None, source: str):
        self.stages = stages
        self.input_shape = input_shape
        self.source = source

    def __len__(self):
        return len(self.stages)

    def prepare_input(self, x) -> torch.Tensor:
        """Validate one input and return it as float64 with batch dimension 1."""
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach()
        if not torch.is_floating_point(x):
            x = x.to(torch.float64)
        x = x.to(torch.float64)
        # the first stage that is not an elementwise ReLU decides the input's layout
        first_i, first = next(((i, s) for i, s in enumerate(self.stages) if s.kind != "relu"), (0, self.stages[0]))
        expected = self.expected_shape()
        flat_first = first.kind == "linear" and any(s.flatten_before for s in self.stages[: first_i + 1])
        if flat_first:  # Flatten comes first: any layout with the right number of values
            n = first.weight.shape[1]
            if x.numel() != n:
                raise ValueError(f"input of shape {tuple(x.shape)} has {x.numel()} values; layer {first.describe()} "
                                 f"expects {n} after flattening")
            if x.ndim == 1 or x.shape[0] != 1:
                x = x.unsqueeze(0)
        else:
            want_ndim = 2 if first.kind == "linear" else 4
            if x.ndim == want_ndim - 1:
                x = x.unsqueeze(0)
            if x.ndim != want_ndim:
                raise ValueError(f"input of shape {tuple(x.shape)} does not fit the model; expected shape {expected}")
            if x.shape[0] != 1:
                raise ValueError(
                    f"extract takes one input with batch dimension 1, got shape {tuple(x.shape)}; expected {expected}"
                )
        if self.input_shape is not None and tuple(x.shape) != tuple(self.input_shape):
            raise ValueError(f"input of shape {tuple(x.shape)} does not fit the model; expected shape {expected}")
        if first.kind == "linear" and not flat_first and x.shape[1] != first.weight.shape[1]:
            raise ValueError(f"input of shape {tuple(x.shape)} does not fit the model; expected shape {expected}")
        if first.kind == "conv2d" and x.shape[1] != first.weight.shape[1] * first.module.groups:
            raise ValueError(
                f"input of shape {tuple(x.shape)} does not fit the model: layer {first.describe()} expects "
                f"{first.weight.shape[1] * first.module.groups} channels; expected shape {expected}"
            )
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x)).sum())
            raise ValueError(f"input contains {bad} NaN or infinite value(s)")
        return x

    def expected_shape(self) -> str:
        if self.input_shape is not None:
            return str(tuple(self.input_shape))
        first = next((s for s in self.stages if s.kind != "relu"), None)
        if first is None or not first.is_parametric:
            return "(1, C, H, W)"
        if first.kind == "linear":
            if any(s.flatten_before for s in self.stages[: self.stages.index(first) + 1]):
                return f"(1, ...) with {first.weight.shape[1]} values"
            return f"(1, {first.weight.shape[1]})"
        return f"(1, {first.weight.shape[1] * first.module.groups}, H, W)"

    def forward(self, x: torch.Tensor) -> list[Record]:
        """Run the stages in float64, checking each stage's input shape; one Record per stage."""
        return _run_stages(self.stages, x, x, self.expected_shape())


def _run_stages(stages, h, x, expected) -> list[Record]:
    records = []
    for st in stages:
        if st.flatten_before or (st.kind == "linear" and h.ndim > 2):
            if st.kind == "linear" and not st.flatten_before:
                raise UnsupportedLayerError(
                    f"layer {st.describe()} receives an input of shape {tuple(h.shape)}; chainlab supports "
                    "Linear layers on flattened (1, n) inputs (add nn.Flatten before it)"
                )
            h = h.reshape(1, -1)
        branch_records = None
        if st.kind == "residual":  # z = Σ_t f_t(h); each branch runs its own stages
            branch_records = [_run_stages(b, h, x, expected) for b in st.branches]
            outs = [br[-1].out if br else h for br in branch_records]
            if len({tuple(o.shape) for o in outs}) != 1:
                raise ValueError(f"residual block {st.describe()} adds branches of shapes "
                                 f"{', '.join(str(tuple(o.shape)) for o in outs)}")
            z, argmax = sum(outs[1:], outs[0]), None
        else:
            try:
                z, argmax = _stage_forward(st, h)
            except RuntimeError as exc:
                raise ValueError(
                    f"layer {st.describe()} cannot take its input of shape {tuple(h.shape)} "
                    f"(model input {tuple(x.shape)}; expected {expected}): {exc}"
                ) from None
        out = torch.relu(z) if st.relu else z
        st.in_shape = tuple(h.shape[1:])
        st.out_shape = tuple(z.shape[1:])
        records.append(Record(x=h, z=z, out=out, argmax=argmax, branches=branch_records))
        h = out
    return records


def _stage_forward(st: Stage, h: torch.Tensor):
    m = st.module
    if st.kind == "linear":
        if h.shape[1] != st.weight.shape[1]:
            raise ValueError(
                f"layer {st.describe()} expects {st.weight.shape[1]} input features but receives {h.shape[1]} "
                f"(activation of shape {tuple(h.shape)}); check the input's spatial size"
            )
        return F.linear(h, st.weight, st.bias), None
    if h.ndim != 4:
        raise ValueError(f"layer {st.describe()} expects a 4-d input (1, C, H, W), got shape {tuple(h.shape)}")
    if st.kind == "conv2d":
        if h.shape[1] != st.weight.shape[1] * m.groups:
            raise ValueError(
                f"layer {st.describe()} expects {st.weight.shape[1] * m.groups} input channels, got shape {tuple(h.shape)}"
            )
        return F.conv2d(h, st.weight, st.bias, m.stride, conv_padding(m), m.dilation, m.groups), None
    if st.kind == "maxpool2d":
        z, idx = F.max_pool2d(h, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, return_indices=True)
        return z, idx
    if st.kind == "avgpool2d":
        return F.avg_pool2d(h, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                            m.divisor_override), None
    if st.kind == "adaptiveavgpool2d":
        return F.adaptive_avg_pool2d(h, m.output_size), None
    if st.kind == "relu":
        return torch.relu(h), None  # a leading ReLU stage applies the ReLU itself (relu flag stays False)
    raise ExtractionError(f"unknown stage kind {st.kind!r}")


def conv_padding(m: nn.Conv2d) -> tuple[int, int]:
    """Numeric (ph, pw) zero padding of a Conv2d ('valid' → 0, 'same' → symmetric half kernel)."""
    if isinstance(m.padding, str):
        if m.padding == "valid":
            return (0, 0)
        pads = []
        for k, d in zip(m.kernel_size, m.dilation):
            total = d * (k - 1)
            if total % 2:
                raise UnsupportedLayerError(
                    "Conv2d with padding='same' and an even effective kernel pads asymmetrically; not supported"
                )
            pads.append(total // 2)
        return tuple(pads)
    return tuple(m.padding)


# ---------------------------------------------------------------------------------------------
# model -> ordered list of (path, module or function tag)


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


def _linearize(model: nn.Module) -> list[tuple[str, object]]:
    """The model's operations in forward order as (path, module) or (path, 'relu'|'flatten'|'identity')."""
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as exc:  # tracing failures come in many types
        if isinstance(model, nn.Sequential):
            return _walk_sequential(model, "")
        raise UnsupportedLayerError(
            f"cannot read the forward of {type(model).__name__} with torch.fx ({type(exc).__name__}: {exc}); "
            f"chainlab needs a forward that is a plain chain of: {SUPPORTED}"
        ) from None
    ops: list[tuple[str, object]] = []
    current = None
    aux = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if current is not None:
                raise UnsupportedLayerError(f"{type(model).__name__}.forward takes more than one input; not supported")
            current = node
            continue
        if node.op == "output":
            if node.args[0] is not current:
                raise UnsupportedLayerError(
                    f"{type(model).__name__}.forward does not return the result of its last layer; not supported"
                )
            continue
        if node.op == "get_attr":
            aux.add(node)
            continue
        if _is_aux(node, aux):
            aux.add(node)
            continue
        data_args = [a for a in node.args if isinstance(a, torch.fx.Node) and a not in aux]
        if not data_args or data_args[0] is not current or len(data_args) > 1 or len(_data_users(current, aux)) > 1:
            # branches: residual blocks (sums of branches) are found by chainlab.residual
            return linearize_graph(gm, model, _node_op, _is_aux)
        ops.append(_node_op(node, gm))
        current = node
    return ops


def _data_users(node, aux) -> list:
    return [u for u in node.users if u not in aux]


def _node_op(node, gm) -> tuple[str, object]:
    """(path, module) or (path, 'relu'|'flatten'|'identity') of one single-input fx node."""
    if node.op == "call_module":
        return (str(node.target), gm.get_submodule(node.target))
    if node.op == "call_function" and node.target in _RELU_FUNCS:
        return (node.name, "relu")
    if node.op == "call_function" and node.target in _FLATTEN_FUNCS:
        return (node.name, "flatten")
    if node.op == "call_function" and node.target in _DROPOUT_FUNCS:
        if node.kwargs.get("training", False):
            raise UnsupportedLayerError(f"functional dropout '{node.name}' in training mode is not supported")
        return (node.name, "identity")
    if node.op == "call_method" and node.target == "relu":
        return (node.name, "relu")
    if node.op == "call_method" and node.target in _FLATTEN_METHODS:
        return (node.name, "flatten")
    raise UnsupportedLayerError(
        f"operation '{node.name}' ({_describe_node(node, gm)}) is not supported; supported: {SUPPORTED}"
    )


def _is_aux(node, aux) -> bool:
    """Size/shape bookkeeping (x.size(0), x.shape[0]) that only feeds reshape arguments."""
    if node.op == "call_method" and node.target in _AUX_METHODS:
        return True
    if node.op == "call_function" and node.target is getattr:
        return True
    if node.op == "call_function" and node.target is operator.getitem:
        return all(a in aux for a in node.args if isinstance(a, torch.fx.Node))
    return False


def _describe_node(node, gm) -> str:
    if node.op == "call_module":
        return f"module '{node.target}' of type {type(gm.get_submodule(node.target)).__name__}"
    if node.op == "call_function":
        return f"function {getattr(node.target, '__name__', node.target)}"
    return f"method .{node.target}()"


def _walk_sequential(seq: nn.Sequential, prefix: str):
    ops = []
    for name, child in seq.named_children():
        path = f"{prefix}{name}"
        if isinstance(child, nn.Sequential):
            ops.extend(_walk_sequential(child, path + "."))
        else:
            ops.append((path, child))
    return ops


def trace(model: nn.Module) -> Net:
    """Read ``model`` into a :class:`Net` of float64 stages with BatchNorm folded."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"extract needs a torch.nn.Module, got {type(model).__name__}")
    stages = _build_stages(_linearize(model))
    if not stages:
        raise UnsupportedLayerError(f"{type(model).__name__} has no layers chainlab can extract")
    return Net(stages, getattr(model, "input_shape", None), type(model).__name__)


def _build_stages(ops) -> list[Stage]:
    """Stages of a list of (path, op); a :class:`~chainlab.residual.ResidualSpec` becomes a "residual" stage."""
    stages: list[Stage] = []
    pending_flatten = False
    last_was_linear = False  # the previous op (ignoring Dropout/Identity) is a Linear/Conv2d
    for path, op in ops:
        if op == "relu" or isinstance(op, nn.ReLU):
            if stages and not stages[-1].relu:
                stages[-1].relu = True
                stages[-1].members.append(path)
            elif not stages:
                stages.append(Stage(kind="relu", name=path, module=op if isinstance(op, nn.Module) else None,
                                    relu=False, members=[path], flatten_before=pending_flatten))
                pending_flatten = False
            last_was_linear = False
            continue
        if isinstance(op, ResidualSpec):  # a sum of branches: one stage holding each branch's stages
            branches = [_build_stages(b) for b in op.branches]
            st = Stage(kind="residual", name=op.name, branches=branches,
                       members=[m for b in branches for s in b for m in s.members])
            st.flatten_before = pending_flatten
            pending_flatten = False
            stages.append(st)
            last_was_linear = False
            continue
        if op in ("flatten", "identity") or isinstance(op, _PASS_MODULES):
            if op == "flatten" or isinstance(op, nn.Flatten):
                pending_flatten = True
            continue
        if isinstance(op, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if not (stages and last_was_linear):
                prev = f"after {stages[-1].describe()}" if stages else "as the first layer"
                raise UnsupportedLayerError(
                    f"BatchNorm '{path}' ({type(op).__name__}) comes {prev}; chainlab folds BatchNorm only into a "
                    "directly preceding Linear or Conv2d"
                )
            _fold_batchnorm(stages[-1], op, path)
            continue
        if isinstance(op, nn.Linear):
            st = Stage(kind="linear", name=path, module=op, weight=op.weight.detach().to(torch.float64).clone(),
                       bias=None if op.bias is None else op.bias.detach().to(torch.float64).clone())
        elif isinstance(op, nn.Conv2d) and type(op) is nn.Conv2d:
            if op.padding_mode != "zeros":
                raise UnsupportedLayerError(
                    f"Conv2d '{path}' uses padding_mode={op.padding_mode!r}; only zero padding is supported"
                )
            conv_padding(op)
            st = Stage(kind="conv2d", name=path, module=op, weight=op.weight.detach().to(torch.float64).clone(),
                       bias=None if op.bias is None else op.bias.detach().to(torch.float64).clone())
        elif type(op) in _POOL_KINDS:
            if getattr(op, "return_indices", False):
                raise UnsupportedLayerError(f"MaxPool2d '{path}' with return_indices=True is not supported")
            st = Stage(kind=_POOL_KINDS[type(op)], name=path, module=op)
        else:
            raise UnsupportedLayerError(
                f"module '{path}' of type {type(op).__name__} is not supported; supported: {SUPPORTED}"
            )
        st.members.append(path)
        st.flatten_before = pending_flatten
        pending_flatten = False
        stages.append(st)
        last_was_linear = st.is_parametric
    return stages


def _fold_batchnorm(st: Stage, bn: nn.Module, path: str):
    n_out = st.weight.shape[0]
    if bn.num_features != n_out:
        raise UnsupportedLayerError(
            f"BatchNorm '{path}' has {bn.num_features} features but {st.describe()} has {n_out} outputs"
        )
    if bn.running_mean is None or bn.running_var is None:
        raise UnsupportedLayerError(
            f"BatchNorm '{path}' has no running statistics (track_running_stats=False); it cannot be folded"
        )
    mean = bn.running_mean.detach().to(torch.float64)
    var = bn.running_var.detach().to(torch.float64)
    gamma = bn.weight.detach().to(torch.float64) if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach().to(torch.float64) if bn.bias is not None else torch.zeros_like(mean)
    s = gamma / torch.sqrt(var + bn.eps)
    shape = (-1,) + (1,) * (st.weight.ndim - 1)
    st.weight = st.weight * s.reshape(shape)
    b = st.bias if st.bias is not None else torch.zeros_like(mean)
    st.bias = (b - mean) * s + beta
    st.members.append(path)


def check_logits(model: nn.Module, x: torch.Tensor, logits: torch.Tensor):
    """The float64 stage forward must reproduce the model's own output; raise otherwise."""
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
    ours = logits.reshape(-1)
    if ref.shape != ours.shape:
        raise ExtractionError(f"the traced stages give {ours.numel()} outputs, the model {ref.numel()}")
    tol = (1e-4 if dtype == torch.float32 else 1e-9) * (1.0 + float(ours.abs().max()))
    err = float((ref - ours).abs().max())
    if not err <= tol:
        raise ExtractionError(
            f"the traced float64 stages do not reproduce the model's output (max difference {err:.3g} > {tol:.3g}); "
            "the forward may contain operations chainlab does not see"
        )
