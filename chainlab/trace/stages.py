"""Stages: one per chain operator, immutable after tracing; records: their forward quantities at one input.

A *stage* is one linear map of the forward pass together with what is folded into it:

* ``linear`` (nn.Linear) and ``conv2d`` (nn.Conv2d), BatchNorm folded in by :mod:`.canonize`;
* ``maxpool2d``, ``avgpool2d``, ``adaptiveavgpool2d`` (parameters in a :class:`~chainlab.linalg.PoolSpec`);
* ``activation``: an activation that comes before any linear map (its own stage);
* ``residual``: a sum of branches f_1(h) + f_2(h), holding each branch's stages in ``branches``
  (() for an identity shortcut).

An activation after a stage sets ``stage.activation`` (:class:`~.activations.Activation`): its
derivative ρ'(z) belongs to that stage's operator in gradient space, the identity in relevance
space.  Flatten, Dropout (eval) and Identity vanish (``flatten_before`` marks a flatten).

Stages never change once built: the signal shapes, which depend on the input, live in the
:class:`Record` of each stage (``in_shape``/``out_shape``), made by :meth:`Net.forward`.  The one
per-layer forward of the package is :meth:`Stage.linear_map` (Σ_i φ_ji a_i, with or without bias).
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ExtractionError, InputError, UnsupportedLayerError
from ..linalg import ConvSpec, PoolSpec
from .activations import Activation

__all__ = ["Stage", "Record", "Net", "conv_padding", "walk_records", "walk_stages", "weights_fingerprint"]

PARAMETRIC = ("linear", "conv2d")


@dataclass(frozen=True, eq=False)
class Stage:
    """One operator of the chain: a linear map of the forward pass and what is folded into it (immutable)."""

    kind: str
    name: str
    module: nn.Module | None = None            # the main module (type lookups of composites, messages)
    weight: torch.Tensor | None = None         # float64, BatchNorm folded
    bias: torch.Tensor | None = None
    activation: Activation | None = None       # the activation after the stage (None: none)
    members: tuple = ()                        # module paths folded into the stage
    flatten_before: bool = False
    conv: ConvSpec | None = None
    pool: PoolSpec | None = None
    branches: tuple | None = None              # kind "residual": one tuple of stages per summand (() = identity)

    @property
    def is_parametric(self) -> bool:
        return self.kind in PARAMETRIC

    @property
    def relu(self) -> bool:
        """A ReLU follows the stage."""
        return self.activation is not None and self.activation.is_relu

    def describe(self) -> str:
        mod = type(self.module).__name__ if self.module is not None else self.kind
        return f"'{self.name}' ({mod})"

    def linear_map(self, a: torch.Tensor, weight: torch.Tensor | None = None, bias: bool = False) -> torch.Tensor:
        """Σ_i φ_ji a_i (+ b_j with ``bias``) for a batch a of the stage's input shape; φ = ``weight`` or W."""
        w = self.weight if weight is None else weight
        b = self.bias if bias else None
        if self.kind == "linear":
            return F.linear(a.reshape(a.shape[0], -1), w, b)
        return F.conv2d(a, w, b, **self.conv.kwargs())

    def forward(self, h: torch.Tensor):
        """(z, argmax) of the stage's map before its activation (argmax: max-pool winners, else None)."""
        if self.kind == "linear":
            if h.shape[1] != self.weight.shape[1]:
                raise InputError(
                    f"layer {self.describe()} expects {self.weight.shape[1]} input features but receives {h.shape[1]} "
                    f"(activation of shape {tuple(h.shape)}); check the input's spatial size")
            return self.linear_map(h, bias=True), None
        if h.ndim != 4:
            raise InputError(f"layer {self.describe()} expects a 4-d input (B, C, H, W), got shape {tuple(h.shape)}")
        if self.kind == "conv2d":
            if h.shape[1] != self.weight.shape[1] * self.conv.groups:
                raise InputError(f"layer {self.describe()} expects {self.weight.shape[1] * self.conv.groups} input "
                                 f"channels, got shape {tuple(h.shape)}")
            return self.linear_map(h, bias=True), None
        if self.pool is not None:
            return self.pool.apply(h, return_indices=True)
        if self.kind == "activation":
            return self.activation(h), None     # a leading activation applies itself
        raise ExtractionError(f"unknown stage kind {self.kind!r}")


@dataclass
class Record:
    """Forward quantities of one stage at B inputs (the net's dtype; one input: batch dimension 1)."""

    x: torch.Tensor          # stage input, shape (B, *in_shape)
    z: torch.Tensor          # output before the activation, shape (B, *out_shape)
    out: torch.Tensor        # output after the activation
    argmax: torch.Tensor | None = None   # max-pool winners (flat index per channel plane)
    branches: list | None = None         # kind "residual": the records of each branch's stages

    @property
    def in_shape(self) -> tuple:
        return tuple(self.x.shape[1:])

    @property
    def out_shape(self) -> tuple:
        return tuple(self.z.shape[1:])


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


def walk_stages(stages, top_index=None):
    """(top-level chain index, stage) of every non-residual stage in forward order, into residual branches."""
    for i, st in enumerate(stages):
        idx = i if top_index is None else top_index
        if st.kind == "residual":
            for b in st.branches:
                yield from walk_stages(b, idx)
        else:
            yield idx, st


def walk_records(stages, records):
    """(stage, record) of every non-residual stage in forward order, into residual branches."""
    for st, rec in zip(stages, records):
        if st.kind == "residual":
            for b_st, b_rec in zip(st.branches, rec.branches):
                yield from walk_records(b_st, b_rec)
        else:
            yield st, rec


def weights_fingerprint(stages) -> str:
    """sha256 (hex, 16 chars) of the stages' kinds, names, weight shapes and float64 weights and biases.

    What patterns are checked against (it sees the net after BatchNorm folding); compare
    :func:`chainlab.nets.storage.state_fingerprint`, the fingerprint of a module's state dict."""
    h = hashlib.sha256()
    for _, st in walk_stages(stages):
        h.update(f"{st.kind}|{st.name}|".encode())
        if st.is_parametric:
            h.update(str(tuple(st.weight.shape)).encode())
            h.update(np.ascontiguousarray(st.weight.numpy(), dtype=np.float64).tobytes())
            if st.bias is not None:
                h.update(np.ascontiguousarray(st.bias.numpy(), dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


class Net:
    """A traced model: its stages (float64, BatchNorm folded), the expected input shape, the model's class name."""

    def __init__(self, stages, input_shape: tuple | None, source: str):
        self.stages = tuple(stages)
        self.input_shape = input_shape
        self.source = source
        self.memo = {}          # values of the (immutable) stages computed once per net: key → value

    def remember(self, key, make):
        """``make()`` computed once per net under ``key`` (e.g. a stage's weight norm, shared by every rule
        extracted from this traced net)."""
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]

    def __len__(self):
        return len(self.stages)

    @property
    def fingerprint(self) -> str:
        return weights_fingerprint(self.stages)

    def _first(self):
        """(index, stage) of the first stage that is not a leading activation: it decides the input's layout."""
        return next(((i, s) for i, s in enumerate(self.stages) if s.kind != "activation"), (0, self.stages[0]))

    def prepare_input(self, x) -> torch.Tensor:
        """Validate one input and return it as float64 with batch dimension 1."""
        if x is None or not isinstance(x, (torch.Tensor, np.ndarray, list, tuple, float, int)):
            raise InputError(f"the input must be a tensor or an array, got {type(x).__name__}")
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach()
        if x.is_complex():
            raise InputError(f"the input must be real, got dtype {x.dtype}")
        x = x.to(torch.float64)
        first_i, first = self._first()
        expected = self.expected_shape()
        flat_first = first.kind == "linear" and any(s.flatten_before for s in self.stages[: first_i + 1])
        if flat_first:  # Flatten comes first: any layout with the right number of values
            n = first.weight.shape[1]
            if x.numel() != n:
                raise InputError(f"input of shape {tuple(x.shape)} has {x.numel()} values; layer {first.describe()} "
                                 f"expects {n} after flattening")
            if x.ndim == 1 or x.shape[0] != 1:
                x = x.unsqueeze(0)
        else:
            want_ndim = 2 if first.kind == "linear" else 4
            if x.ndim == want_ndim - 1:
                x = x.unsqueeze(0)
            if x.ndim != want_ndim:
                raise InputError(f"input of shape {tuple(x.shape)} does not fit the model; expected shape {expected}")
            if x.shape[0] != 1:
                raise InputError(
                    f"extract takes one input with batch dimension 1, got shape {tuple(x.shape)}; expected {expected}"
                )
        if self.input_shape is not None and tuple(x.shape) != tuple(self.input_shape):
            raise InputError(f"input of shape {tuple(x.shape)} does not fit the model; expected shape {expected}")
        if first.kind == "linear" and not flat_first and x.shape[1] != first.weight.shape[1]:
            raise InputError(f"input of shape {tuple(x.shape)} does not fit the model; expected shape {expected}")
        if first.kind == "conv2d" and x.shape[1] != first.weight.shape[1] * first.conv.groups:
            raise InputError(
                f"input of shape {tuple(x.shape)} does not fit the model: layer {first.describe()} expects "
                f"{first.weight.shape[1] * first.conv.groups} channels; expected shape {expected}"
            )
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x)).sum())
            raise InputError(f"input contains {bad} NaN or infinite value(s)")
        return x

    def expected_shape(self) -> str:
        if self.input_shape is not None:
            return str(tuple(self.input_shape))
        i, first = self._first()
        if not first.is_parametric:
            return "(1, C, H, W)"
        if first.kind == "linear":
            if any(s.flatten_before for s in self.stages[: i + 1]):
                return f"(1, ...) with {first.weight.shape[1]} values"
            return f"(1, {first.weight.shape[1]})"
        return f"(1, {first.weight.shape[1] * first.conv.groups}, H, W)"

    def forward(self, x: torch.Tensor) -> list[Record]:
        """Run the stages in float64 on a prepared input, checking each stage's input; one Record per stage."""
        return _run_stages(self.stages, x, x, self.expected_shape())

    def astype(self, dtype: torch.dtype) -> "Net":
        """The net with its weights and biases in the torch dtype ``dtype`` (the net itself if they are; made once
        per net and dtype: the batches of a pass share it)."""
        w = next((st.weight for _, st in walk_stages(self.stages) if st.weight is not None), None)
        if w is None or w.dtype == dtype:
            return self
        return self.remember(("astype", dtype), lambda: self._cast(dtype))

    def _cast(self, dtype) -> "Net":
        def cast(st):
            kw = {k: getattr(st, k).to(dtype) for k in ("weight", "bias") if getattr(st, k) is not None}
            if st.branches is not None:
                kw["branches"] = tuple(tuple(cast(b) for b in br) for br in st.branches)
            return dataclasses.replace(st, **kw)
        return Net([cast(s) for s in self.stages], self.input_shape, self.source)

    def shapes(self, records) -> list[tuple]:
        """Signal shape at every boundary: the input's, then each stage's output (without batch dimension)."""
        return [records[0].in_shape] + [r.out_shape for r in records]


def _run_stages(stages, h, x, expected) -> list[Record]:
    records = []
    for st in stages:
        if st.flatten_before or (st.kind == "linear" and h.ndim > 2):
            if st.kind == "linear" and not st.flatten_before:
                raise UnsupportedLayerError(
                    f"layer {st.describe()} receives an input of shape {tuple(h.shape)}; chainlab supports "
                    "Linear layers on flattened (1, n) inputs (add nn.Flatten before it)"
                )
            h = h.reshape(h.shape[0], -1)
        branch_records = None
        if st.kind == "residual":  # z = Σ_t f_t(h); each branch runs its own stages
            branch_records = [_run_stages(b, h, x, expected) for b in st.branches]
            outs = [br[-1].out if br else h for br in branch_records]
            if len({tuple(o.shape) for o in outs}) != 1:
                raise InputError(f"residual block {st.describe()} adds branches of shapes "
                                 f"{', '.join(str(tuple(o.shape)) for o in outs)}")
            z, argmax = sum(outs[1:], outs[0]), None
        else:
            try:
                z, argmax = st.forward(h)
            except RuntimeError as exc:
                raise InputError(
                    f"layer {st.describe()} cannot take its input of shape {tuple(h.shape)} "
                    f"(model input {tuple(x.shape)}; expected {expected}): {exc}"
                ) from None
        out = st.activation(z) if (st.activation is not None and st.kind != "activation") else z
        records.append(Record(x=h, z=z, out=out, argmax=argmax, branches=branch_records))
        h = out
    return records
