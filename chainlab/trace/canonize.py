"""Canonizers: passes that rewrite a stage list into an equivalent one the rules can take.

:func:`merge_batchnorm` folds every BatchNorm into the Linear/Conv2d stage directly before it
(as zennit's ``MergeBatchNorm``): with s = γ/√(σ² + eps),

    W' = diag(s) W,    b' = s ⊙ (b − μ) + β,

so z' = W'x + b' equals BN(Wx + b) exactly (eval mode: running statistics).  A BatchNorm anywhere
else (first layer, after a pool or an activation) cannot be folded and raises
:class:`~chainlab.errors.UnsupportedLayerError`.  (zennit 0.5.1's MergeBatchNorm leaves the BN
layer in place with eps = 1e-5 instead of 0, i.e. an extra 1/√(1 + eps) scaling; fixed upstream in
zennit#240.  chainlab removes the layer.)
"""
from __future__ import annotations

import dataclasses

import torch

from ..errors import UnsupportedLayerError
from .stages import Stage

__all__ = ["merge_batchnorm", "fold_batchnorm"]


def fold_batchnorm(st: Stage, bn, path: str) -> Stage:
    """The stage ``st`` (Linear/Conv2d) with the BatchNorm module ``bn`` folded in (a new Stage)."""
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
    b = st.bias if st.bias is not None else torch.zeros_like(mean)
    return dataclasses.replace(st, weight=st.weight * s.reshape(shape), bias=(b - mean) * s + beta,
                               members=st.members + (path,))


def merge_batchnorm(items) -> list:
    """Fold the ``("batchnorm", path, module)`` markers of a list of stages and markers (see module doc).

    Returns the list without the BatchNorm markers (other markers pass through); a BatchNorm must
    directly follow a Linear/Conv2d stage."""
    out = []
    for item in items:
        if isinstance(item, tuple) and item[0] == "batchnorm":
            _, path, bn = item
            prev = out[-1] if out else None
            if not (isinstance(prev, Stage) and prev.is_parametric):
                prev = (f"after {prev.describe()}" if isinstance(prev, Stage) else f"after {prev[1]!r}" if prev
                        else "as the first layer")
                raise UnsupportedLayerError(
                    f"BatchNorm '{path}' ({type(bn).__name__}) comes {prev}; chainlab folds BatchNorm only into a "
                    "directly preceding Linear or Conv2d"
                )
            out[-1] = fold_batchnorm(out[-1], bn, path)
        else:
            out.append(item)
    return out
