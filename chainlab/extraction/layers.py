"""The stage operator of one stage at B inputs: a rule's terms, or the fixed map of a pool or activation.

* Linear/Conv2d with a rule: M = Σ_t diag(a_t) φ_tᵀ diag(c_t) · diag(d) from ``rule.terms`` — a
  :class:`~chainlab.linalg.TermsOperator`, d the rule's mask as its ``act`` step.
* Max-pool: winner-take-all, M_ij = ρ'(z_j) if i is torch's argmax of window j (ρ' the derivative of an
  activation after the pool in gradient space, else 1).
* Average pools, in relevance space with ``avgpool="proportional"`` (zennit's Norm):
  M_ij = x_i w_j / s(z_j), w_j = 1/divisor_j — the split proportional to the inputs, which keeps
  LRP-0 = gradient × input and conservation; otherwise (gradient space, or ``avgpool="gradient"``) the
  gradient M_ij = w_j ρ'(z_j).
* A leading activation (before any linear map): diag(ρ'(x)) in gradient space, the identity in
  relevance space.

Every factor is per image (the record's batch); with ``materialize`` (one input) the explicit matrix is
returned.  :func:`stage_stats` gives what the a-priori value bounds need of a stage (``Chain.layer_stats``).
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ExtractionError
from ..linalg import DiagonalOperator, GatherOperator, Operator, PoolOperator, Scale, TermsOperator
from ..rules import LayerContext, stabilize
from ..trace import Record, Stage

__all__ = ["rule_operator", "fixed_operator", "fixed_rule_name", "stage_stats", "output_derivative",
           "winner_rows"]


def _finish(op: Operator, materialize: bool) -> Operator:
    return op.materialize() if materialize else op


def rule_operator(rule, ctx: LayerContext, dtype=np.float64, materialize: bool = False) -> Operator:
    """The operator of a Linear/Conv2d stage under ``rule`` at the inputs recorded in ``ctx``."""
    st, rec = ctx.stage, ctx.record
    op = TermsOperator(rule.terms(ctx), rec.in_shape, rec.out_shape, st.conv, dtype, st.name)
    return _finish(op, materialize)


def output_derivative(st: Stage, rec: Record, space: str, derivative=None) -> torch.Tensor | None:
    """ρ'(z) (B, n_out) of the activation after the stage in gradient space; None otherwise (no factor).

    ``derivative(stage, z) -> tensor`` replaces ρ' (a rule's :meth:`~chainlab.rules.Rule.activation_derivative`,
    e.g. smooth-gradient's soft mask); None: the activation's own derivative."""
    if space != "gradient" or st.activation is None or st.kind == "activation":
        return None
    B = rec.z.shape[0]
    d = st.activation.derivative(rec.z) if derivative is None else derivative(st, rec.z)
    return d.reshape(B, -1)


def winner_rows(rec: Record) -> torch.Tensor:
    """Flat input index (over (C, H, W)) of each max-pool window's winner, per image: (B, n_out) int64."""
    C, H, W = rec.in_shape
    B = rec.argmax.shape[0]
    off = (torch.arange(C, dtype=torch.int64) * (H * W)).reshape(1, C, 1)
    return (rec.argmax.reshape(B, C, -1).to(torch.int64) + off).reshape(B, -1)


def fixed_operator(st: Stage, rec: Record, space: str, avgpool: str, stabilizer: float, dtype=np.float64,
                   materialize: bool = False, derivative=None) -> Operator:
    """Operators of pooling stages and of a leading activation (no rule applies to them); ``derivative`` as in
    :func:`output_derivative`."""
    d = output_derivative(st, rec, space, derivative)
    in_shape, out_shape = rec.in_shape, rec.out_shape
    act = None if d is None else Scale(d, out_shape)
    B = rec.x.shape[0]
    if st.kind == "maxpool2d":
        op = GatherOperator(winner_rows(rec), in_shape, out_shape, dtype, st.name, act)
    elif st.kind in ("avgpool2d", "adaptiveavgpool2d"):
        if space == "relevance" and avgpool == "proportional":
            c = 1.0 / stabilize(rec.z.reshape(B, -1), stabilizer)
            op = PoolOperator(st.pool, rec.x.reshape(B, -1), c, in_shape, out_shape, dtype, st.name, act)
        else:
            op = PoolOperator(st.pool, None, None, in_shape, out_shape, dtype, st.name, act)
    elif st.kind == "activation":
        if space != "gradient":
            dx = None
        else:
            dx = (st.activation.derivative(rec.x) if derivative is None else derivative(st, rec.x)).reshape(B, -1)
        op = DiagonalOperator(dx, in_shape, dtype, st.name)
    else:
        raise ExtractionError(f"no fixed matrix for stage {st.describe()}")
    return _finish(op, materialize)


def fixed_rule_name(st: Stage, space: str, avgpool: str) -> str:
    """The name recorded in ``chain.layer_rules`` for a pooling stage or a leading activation."""
    if st.kind == "maxpool2d":
        return "winner-take-all"
    if st.kind == "activation":
        if space != "gradient":
            return "identity"
        return "relu-mask" if st.activation.is_relu else f"{st.activation.kind}-derivative"
    return "avgpool-proportional" if (space == "relevance" and avgpool == "proportional") else "avgpool-gradient"


def weight_norm_inf(st: Stage) -> float:
    """max_j Σ_i |W_ji| of a Linear/Conv2d stage's weight (conv: max over filters of Σ|K_o|), in float64."""
    W = st.weight.detach()
    return float(W.reshape(W.shape[0], -1).abs().sum(dim=1, dtype=torch.float64).max())


def stage_stats(st: Stage, rec: Record, net=None) -> dict:
    """{weight_norm_inf: max_j Σ_i |W_ji| (conv: max over filters of Σ|K_o|, an upper bound of the unrolled
    matrix's row sums), input_norm_inf: max |x|, derivative_bound: sup |ρ'| of the activation after the stage
    (1 without one)} of a Linear/Conv2d stage; {} for other stages.  ``net``: the traced net the stage belongs
    to (its weight norm is then computed once per net)."""
    if not st.is_parametric:
        return {}
    w = weight_norm_inf(st) if net is None else net.remember(("weight_norm_inf", id(st)), lambda: weight_norm_inf(st))
    return {"weight_norm_inf": w,
            "input_norm_inf": float(rec.x.abs().max()),
            "derivative_bound": st.activation.derivative_bound if st.activation is not None else 1.0}
