"""Weight scaling (Binder et al.): W_l → c_l W_l, and the function-preserving rescaling of consecutive layers.

``scale_weights(model, c)`` returns a deep copy in which the l-th Linear/Conv2d (in forward order,
BatchNorm folded as in :func:`chainlab.trace.trace`) has weight c_l·W_l and bias C_l·b_l with
C_l = c_1⋯c_l, so every pre-activation is z'_l = C_l z_l, ReLU masks are unchanged and the logits
are C_L·f(x): the decision is the same.  A following BatchNorm gets running_mean·C_l,
running_var·C_l², eps·C_l², weight·C_l and bias·C_l, which makes it exactly equivariant too.

With Π_l c_l = 1 (``preserving_scales``: c, 1/c, c, 1/c, … on consecutive Linear/Conv2d layers) C_L = 1
and the net computes the same function: ReLU is positively homogeneous, ρ(c z) = c ρ(z) for c > 0, and
max-pools commute with positive scaling, so every activation after layer l is C_l times the original and
the logits are unchanged.  Π_l ‖W_l‖_∞ does not change either (Π c_l = 1), but the per-layer norms do;
the measured gradient and z⁺/α-β constants stay the same, LRP-ε sees ε/C_l in layer l.  This is the
"function-preserving rescaling" point of the weight-norm study (:func:`rescale_consecutive`).

IDENTITIES (algebra, not measurements — :func:`weight_scaling` is a regression check of the
extraction, never a claim): z⁺/α-β/w²/flat layer matrices are invariant under the scaling (numerators
and denominators scale alike, up to the stabilizer), so their constants Π‖M_l‖₁ and normalized maps
stay the same; gradient matrices scale by c_l, so the gradient constant scales with Π c_l exactly;
LRP-ε changes because ε does not scale.  Records (``measure="scaling"``): ``constant`` (before), ``constant_scaled``,
``constant_ratio``, ``prod_c`` (Π c_l), ``map_ratio`` (‖R'‖_∞/‖R‖_∞) and ``map_change``
(‖R'/‖R'‖_∞ − R/‖R‖_∞‖_∞, 0 = same map up to scale), ``logit_ratio`` (f'(x)_k/f(x)_k = C_L).
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn as nn

from ..errors import InputError, OptionError
from ..extraction import extract as _extract
from ..measures._common import record
from ..measures.bounds import norm1
from ..trace import trace

__all__ = ["scale_weights", "weight_scaling", "preserving_scales", "rescale_consecutive", "rescaling_runs"]


def scale_weights(model: nn.Module, c, *, equivariant: bool = True) -> tuple[nn.Module, list[float]]:
    """A deep copy with the l-th parametric layer scaled by c_l (scalar c: the same for all); returns (copy, c_l).

    ``equivariant=False``: only the Linear/Conv2d weights are multiplied (W_l → c_l W_l; biases and BatchNorm
    left as they are) — the weight norms change and nothing else is touched, so the function changes too
    (the controlled experiment of Binder et al.'s claim; not an identity)."""
    net = trace(model, copy=False)           # the structure only
    stages = [s for s in net.stages if s.is_parametric]
    cs = [float(c)] * len(stages) if np.isscalar(c) else [float(v) for v in c]
    if len(cs) != len(stages):
        raise OptionError(f"{len(cs)} scale factors for {len(stages)} Linear/Conv2d layers "
                         f"({', '.join(s.name for s in stages)})")
    if any(not (v > 0 and math.isfinite(v)) for v in cs):
        raise OptionError(f"scale factors must be positive and finite, got {cs}")
    out = copy.deepcopy(model)
    C = 1.0
    with torch.no_grad():
        for st, cl in zip(stages, cs):
            C *= cl
            main = out.get_submodule(st.members[0])
            main.weight.mul_(cl)
            if not equivariant:
                continue
            if main.bias is not None:
                main.bias.mul_(C)
            for path in st.members[1:]:
                m = out.get_submodule(path)
                if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    m.running_mean.mul_(C)
                    m.running_var.mul_(C * C)
                    m.eps = m.eps * C * C
                    if m.weight is not None:
                        m.weight.mul_(C)
                        m.bias.mul_(C)
    return out, cs


def preserving_scales(n_layers: int, c: float) -> list[float]:
    """[c, 1/c, c, 1/c, …] for ``n_layers`` layers (the last one 1 when n is odd): Π c_l = 1."""
    if not (c > 0 and math.isfinite(c)):
        raise OptionError(f"the rescaling factor must be positive and finite, got {c}")
    cs = [c if i % 2 == 0 else 1.0 / c for i in range(n_layers)]
    if n_layers % 2:
        cs[-1] = 1.0
    return cs


def _passes_scaling(st) -> bool:
    """Whether positive scaling passes through stage ``st`` unchanged in kind: f(c·h) = c·f(h) for c > 0 once the
    stage's own weights are scaled along (a Linear/Conv2d with bias and BatchNorm scaled equivariantly, ReLU, max and
    average pools).  Not: softplus/SiLU (not homogeneous) and residual blocks (their BatchNorms and biases are not
    scaled along, and a sum needs both summands scaled alike)."""
    if st.kind == "residual":
        return False
    return st.activation is None or st.activation.is_relu


def rescaling_runs(model: nn.Module) -> list[list[int]]:
    """The Linear/Conv2d layers (indices among the parametric stages, forward order) in runs along which positive
    scaling passes (:func:`_passes_scaling`): within a run, (c, 1/c) on consecutive layers keeps the function."""
    runs, cur, k = [], [], 0
    for st in trace(model, copy=False).stages:
        if st.is_parametric:
            cur.append(k)
            k += 1
        if not _passes_scaling(st):
            if cur:
                runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    return runs


def rescale_consecutive(model: nn.Module, c: float = 4.0) -> tuple[nn.Module, list[float]]:
    """A copy of ``model`` computing the same function with (c, 1/c) on consecutive Linear/Conv2d layers
    (module docstring) — within each run of layers that positive scaling passes along (:func:`rescaling_runs`;
    a residual block or a softplus ends a run, an odd run's last layer keeps c_l = 1); returns (copy, c_l).
    OptionError when no run has two layers (nothing to rescale without changing the function, e.g. a torchvision
    ResNet: conv1, the residual blocks, fc)."""
    runs = rescaling_runs(model)
    cs = [1.0] * sum(len(r) for r in runs)
    for run in runs:
        for i, c_l in zip(run, preserving_scales(len(run), c)):
            cs[i] = c_l
    if all(v == 1.0 for v in cs):
        raise OptionError("no two consecutive Linear/Conv2d layers that positive scaling passes between (residual "
                          "blocks and non-ReLU activations do not): no function-preserving (c, 1/c) rescaling")
    return scale_weights(model, cs)


def weight_scaling(model, x, rules=("gradient", "zplus", "alpha-beta", "lrp-epsilon"), c=2.0, *,
                   extract=_extract, target=None, **extract_options) -> list[dict]:
    """Records of each rule's constant and map before and after scaling the weights (see module docstring).

    An identity check (regression test of the extraction): its outcomes follow from homogeneity.

    ``rules``: names, or (name, options) pairs; ``extract``: the extraction callable (default chainlab.extract).
    """
    scaled, cs = scale_weights(model, c)
    prod_c = math.prod(cs)
    rows = []
    for rule in rules:
        name, ropts = (rule, {}) if isinstance(rule, str) else (rule[0], dict(rule[1]))
        ch0 = extract(model, x, name, **extract_options, **ropts)
        ch1 = extract(scaled, x, name, **extract_options, **ropts)
        if ch1.predicted != ch0.predicted:
            raise InputError(f"scaling changed the decision ({ch0.predicted} → {ch1.predicted}); scaling bug")
        t = ch0.predicted if target is None else int(target)
        K0 = math.prod(norm1(op) for op in ch0)
        K1 = math.prod(norm1(op) for op in ch1)
        R0, R1 = ch0.explain(t).reshape(-1), ch1.explain(t).reshape(-1)
        m0, m1 = float(np.abs(R0).max()), float(np.abs(R1).max())
        change = float(np.abs(R1 / m1 - R0 / m0).max()) if m0 > 0 and m1 > 0 else None
        extra = dict(c=c if np.isscalar(c) else None)
        src = ch0
        rows += [record(src, "scaling", "constant", None, None, K0, **extra),
                 record(src, "scaling", "constant_scaled", None, None, K1, **extra),
                 record(src, "scaling", "constant_ratio", None, None, K1 / K0 if K0 > 0 else None, **extra),
                 record(src, "scaling", "prod_c", None, None, prod_c, **extra),
                 record(src, "scaling", "map_ratio", None, None, m1 / m0 if m0 > 0 else None, **extra),
                 record(src, "scaling", "map_change", None, None, change, **extra),
                 record(src, "scaling", "logit_ratio", None, None,
                        float(ch1.logits[t] / ch0.logits[t]) if ch0.logits[t] != 0 else None, **extra)]
    return rows
