"""Guided backprop, deconvnet and RectGrad: rectified gradients, whose backward is not a matrix chain.

All three propagate the gradient through the linear maps of the net, r_in = Wᵀ ρ(r_out)
(Sixt et al. 2020 eq. 14), but replace the ReLU's mask by a rectification ρ of the signal at
the ReLU's output, which depends on the signal itself:

* ``guided-bp`` (Springenberg et al. 2014):  ρ(g) = 1[z > 0] ⊙ max(g, 0)
* ``deconv`` (Zeiler & Fergus 2014):          ρ(g) = max(g, 0)          (no forward mask)
* ``rectgrad`` (Kim et al. 2019), option q (percentile, default 98 as in Sixt et al.):
      ρ(g) = g ⊙ 1[h ⊙ g > τ],  τ = the q-th percentile (numpy's linear interpolation) of the
      values h ⊙ g over all units of the layer, h = ReLU(z) the layer's activation at x.

Max-pool is winner-take-all and average pools their gradient, as for the gradient.  The chain's
operators ``chain[i]`` are the *linear parts* only (Wᵀ of the layer, n_in × n_out, no mask); the
rectification sits between them, so ``chain.apply`` / ``chain.explain`` work (column by column,
since ρ is not linear) while ``to_dense()`` and products raise :class:`NotLinearError`
(``chain.linear`` is False).  The explanation is a gradient-space signal: the start vector is e_k.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..chain import Chain, _as_columns
from ..matrices import ConvGeometry, avgpool_column_weights, conv_matrix, maxpool_operator, window_operator
from ..operators import DenseOperator, SparseOperator

__all__ = ["NonLinearChain", "METHODS", "build_nonlinear"]

METHODS = {"guided-bp": (), "deconv": (), "rectgrad": ("q",)}


class NonLinearChain(Chain):
    """A chain whose backward signal is rectified between the layers (``linear = False``).

    ``rectifiers[i]`` = (kind, mask, activation) of the ReLU after stage i, or None.
    """

    linear = False

    def __init__(self, *args, rectifiers, q=None, **kw):
        super().__init__(*args, **kw)
        self.rectifiers = list(rectifiers)
        self.q = q
        self.not_linear_reason = (
            f"rule {self.rule!r} rectifies the backward signal at every ReLU "
            f"({_WHAT[self.rule]}), so its backward pass is not a product of matrices and has no dense "
            "matrix or products; use chain.apply()/chain.explain(), or extract with rule 'gradient' "
            "(or 'gradient-x-input') for the matrix chain of the plain gradient"
        )

    def product(self, *args, **kwargs):
        """Not available: raises NotLinearError (the backward is not a product of matrices)."""
        self.require_linear("product()")

    def prefix_products(self, *args, **kwargs):
        """Not available: raises NotLinearError (the backward is not a product of matrices)."""
        self.require_linear("prefix_products()")

    def rectify(self, i: int, R: np.ndarray) -> np.ndarray:
        """ρ_i applied to every column of R (n_out of stage i, k)."""
        spec = self.rectifiers[i]
        if spec is None:
            return R
        kind, mask, act = spec
        if kind == "guided-bp":
            return np.maximum(R, 0.0) * mask[:, None]
        if kind == "deconv":
            return np.maximum(R, 0.0)
        prod = act[:, None] * R
        tau = np.percentile(prod, self.q, axis=0)
        return np.where(prod > tau[None, :], R, 0.0)

    def apply(self, R, start: int = 0, stop: int | None = None):
        """ρ-rectified propagation: for i = stop−1 … start, R ← chain[i] @ ρ_i(R), column by column."""
        layers = self._signal_layers(R, start, stop)
        if not layers:
            return np.asarray(R)
        R2, vec = _as_columns(R)
        R2 = R2.astype(np.float64)
        for i in reversed(layers):
            R2 = self.operators[i].matmat(self.rectify(i, R2))
        return R2.reshape(-1) if vec else R2


_WHAT = {
    "guided-bp": "guided backprop: ρ(g) = 1[z>0]·max(g, 0)",
    "deconv": "deconvnet: ρ(g) = max(g, 0)",
    "rectgrad": "RectGrad: ρ(g) = g·1[h·g > q-th percentile]",
}


def _linear_part(st, rec, dtype):
    """Wᵀ (no mask) of a stage as an operator n_in × n_out; pools: their gradient."""
    n_in = int(np.prod(st.in_shape))
    n_out = int(np.prod(st.out_shape))
    if st.kind == "linear":
        return DenseOperator(st.weight.numpy().T.astype(dtype))
    if st.kind == "conv2d":
        geom = ConvGeometry.of_stage(st)
        return SparseOperator(conv_matrix(geom, np.ones((1, n_in)), st.weight.numpy()[None], np.ones((1, n_out)), dtype))
    if st.kind == "maxpool2d":
        return maxpool_operator(st, rec, np.ones(n_out), dtype)
    if st.kind in ("avgpool2d", "adaptiveavgpool2d"):
        return window_operator(st, np.ones(n_in), avgpool_column_weights(st), dtype)
    return SparseOperator(sp.identity(n_in, dtype=dtype, format="csc"))  # leading ReLU stage


def build_nonlinear(model, net, xt, records, options: dict, rule: str) -> NonLinearChain:
    from ..extract import COMMON_OPTIONS, DTYPES  # late import: extract imports the rules package

    own = METHODS[rule]
    unknown = sorted(set(options) - set(COMMON_OPTIONS) - set(own))
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(map(repr, unknown))} for rule {rule!r}; "
                        f"it takes {', '.join(own) or 'no options of its own'}; common options: {', '.join(COMMON_OPTIONS)}")
    q = None
    if rule == "rectgrad":
        q = options.get("q", 98)
        if not (isinstance(q, (int, float)) and 0 <= q <= 100):
            raise ValueError(f"rectgrad needs a percentile 0 <= q <= 100, got {q!r}")
        q = float(q)
    dtype = DTYPES[options.get("dtype", "float64")]
    ops, names, rects, layer_rules = [], [], [], []
    for st, rec in zip(net.stages, records):
        ops.append(_linear_part(st, rec, dtype))
        names.append(st.name)
        if st.kind == "relu":   # a leading ReLU: its input is the net input
            rects.append((rule, (rec.x.reshape(-1) > 0).double().numpy(), np.maximum(rec.x.reshape(-1).numpy(), 0)))
            layer_rules.append(f"{rule}:relu")
        elif st.relu:
            z = rec.z.reshape(-1).numpy()
            rects.append((rule, (z > 0).astype(np.float64), np.maximum(z, 0.0)))
            layer_rules.append(f"{rule}:{st.kind}+relu")
        else:
            rects.append(None)
            layer_rules.append(f"{rule}:{st.kind}")
    common = {k: options[k] for k in COMMON_OPTIONS if k in options}
    return NonLinearChain(
        ops, names=names, shapes=[net.stages[0].in_shape] + [s.out_shape for s in net.stages],
        input_shape=tuple(xt.shape), x=xt.reshape(-1).numpy(), logits=records[-1].out.reshape(-1).numpy(),
        rule=rule, options={**common, **({"q": q} if q is not None else {})}, space="gradient",
        layer_rules=layer_rules, meta={"model": net.source}, rectifiers=rects, q=q,
    )


def register():
    from ..extract import register_method

    def make(rule):
        def build(model, net, xt, records, options):
            return build_nonlinear(model, net, xt, records, options, rule)
        build.__name__ = f"build_{rule.replace('-', '_')}"
        return build

    for r in METHODS:
        register_method(r, make(r))
