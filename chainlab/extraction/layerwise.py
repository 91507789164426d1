"""The layer-rule method: a rule (or composite) per Linear/Conv2d stage, fixed matrices elsewhere, at B inputs.

Every Linear/Conv2d stage (also those inside residual blocks) gets the rule its composite maps it
to (:class:`~chainlab.rules.Composite`); pooling stages and a leading activation get the fixed
matrices of :mod:`.layers`; a residual block becomes one operator (:mod:`.residual`).  All rules
of one chain must propagate the same kind of signal (gradient or relevance space).  Gradient × input
(``multiply_input``) scales the rows of the first operator by x.

``Chain.masks``: for a Linear/Conv2d stage the rule's :meth:`~chainlab.rules.Rule.mask` (gradient-type rules:
ρ'(z) of the activation after it, or a soft mask), for pools, residual sums and a leading activation in
gradient space the derivative of their activation.  An activation after a stage without a rule (a pool,
a residual sum, a leading activation) is propagated by the chain's rules'
:meth:`~chainlab.rules.Rule.activation_derivative`; when rules of one chain replace it differently (e.g.
smooth-gradient mixed with gradient), such a stage is refused (OptionError).

The result is a :class:`~chainlab.chain.BatchChain` of stage operators; ``extract`` asks it for the chain of its
one input, ``extract_batch`` propagates batches through it.
"""
from __future__ import annotations

import numpy as np
import torch

from ..chain import BatchChain
from ..errors import ExtractionError, OptionError
from ..rules import LayerContext, Rule
from ..trace import walk_stages
from .layers import fixed_operator, fixed_rule_name, rule_operator, stage_stats
from .options import COMMON
from .residual import alpha_beta_of, authors_bn_operator, block_operator

__all__ = ["build_layerwise"]


def build_layerwise(model, net, xt, records, opts, composite, used: dict, *, kind: str = "layerwise",
                    clip=None, name=None) -> BatchChain:
    """The stage operators of ``composite``'s rules on the traced ``net`` at the inputs ``xt`` (B, …) with
    ``records`` = net.forward(xt).  ``kind``/``clip``/``name``: the contrastive view (:mod:`.contrastive`)."""
    stages = net.stages
    bad = composite.explicit_keys_for_pools(stages)
    if bad:
        raise OptionError(
            f"composite maps pooling layers to rules ({'; '.join(bad)}); pooling layers take no rule "
            "(max-pool is winner-take-all, average pools follow the avgpool option)"
        )
    leaves = list(walk_stages(stages))   # (chain index, stage), into residual blocks
    first = next((s for _, s in leaves if s.is_parametric), None)
    last = next((s for _, s in reversed(leaves) if s.is_parametric), None)
    rules = {}                           # id(stage) -> rule, for every Linear/Conv2d stage
    for i, st in leaves:
        if not st.is_parametric:
            continue
        r = composite.lookup(i, len(stages), st, st is first, st is last)
        if r is None:
            raise OptionError(
                f"composite {composite.name!r} has no rule for layer {st.describe()} (chain index {i}) and no default"
            )
        rules[id(st)] = r
    for r in {id(r): r for r in rules.values()}.values():
        if getattr(r, "table", None) is None:       # pattern rules passed already prepared keep their table
            r.prepare(net, model)
    spaces = {r.space for r in rules.values()}
    if len(spaces) > 1:
        desc = "; ".join(f"{s.describe()}: {rules[id(s)].name} ({rules[id(s)].space})" for _, s in leaves
                         if id(s) in rules)
        raise OptionError(f"composite {composite.name!r} mixes gradient-space and relevance-space rules: {desc}")
    space = spaces.pop() if spaces else "gradient"
    index_of = {id(s): i for i, s in leaves}
    derivative = _activation_derivative(rules, composite.name)
    authors = opts.residual == "authors" and space == "relevance" and any(s.kind == "residual" for s in stages)
    masks = {}                           # id(stage) -> its output-side factor (top-level stages), (B|1, n)
    dtype = np.float32 if records[-1].out.dtype == torch.float32 else np.float64

    def build(st, rec):
        r = rules.get(id(st))
        if r is not None:
            ctx = LayerContext(st, rec, index_of[id(st)], st is first, bias_policy=opts.bias,
                               stabilizer=opts.stabilizer)
            op = authors_bn_operator(r, ctx, model, dtype) if authors else None       # Sixt et al.'s ResNet rule
            op = rule_operator(r, ctx, dtype) if op is None else op
            masks[id(st)] = None if op.act_step is None else op.act_step.d
            return op
        if st.kind == "residual":
            op = block_operator(st, rec, space=space, build=build, split=opts.residual,
                                stabilizer=opts.stabilizer, dtype=dtype, rule_name=rule_name, derivative=derivative,
                                alpha_beta=lambda s: alpha_beta_of(rules[id(s)], f"layer {s.describe()}"))
        else:
            op = fixed_operator(st, rec, space, opts.avgpool, opts.stabilizer, dtype, False, derivative)
        if space == "gradient":   # the output-side factor: ρ'(z) after a pool or sum; diag(ρ'(x)) of a leading one
            masks[id(st)] = op.d if st.kind == "activation" else (None if op.act_step is None else op.act_step.d)
        return op

    def rule_name(st) -> str:
        r = rules.get(id(st))
        if r is not None:
            return r.name
        if st.kind == "residual":
            return "residual-gradient" if space == "gradient" else f"residual-{opts.residual}"
        return fixed_rule_name(st, space, opts.avgpool)

    ops = [build(st, rec) for st, rec in zip(stages, records)]
    logits = records[-1].out.reshape(xt.shape[0], -1).to(torch.float64)
    if not bool(torch.isfinite(logits).all()):
        raise ExtractionError("the model's logits at this input are not finite")
    has_blocks = any(s.kind == "residual" for s in stages)
    recorded = [k for k in COMMON if k != "materialize" and (k != "residual" or has_blocks)]
    per_layer = {s.name: rules[id(s)].options() for _, s in leaves if id(s) in rules and rules[id(s)].options()}
    rule_options = {k: v for r in rules.values() for k, v in r.options().items()}   # as the rules hold them
    options = {**opts.record(recorded), **{k: rule_options.get(k, used[k]) for k in sorted(used)},
               "layer_options": per_layer}
    scale = xt if any(r.multiply_input for r in rules.values()) else None
    return BatchChain(
        ops, names=[st.name for st in stages], shapes=net.shapes(records), x=xt, logits=logits,
        rule=composite.name if name is None else name, kind=kind, space=space, dtype=records[-1].out.dtype,
        options=options, layer_rules=[rule_name(st) for st in stages], masks=[masks.get(id(st)) for st in stages],
        input_scale=scale, layer_stats=[stage_stats(st, rec, net) for st, rec in zip(stages, records)], clip=clip,
        meta={"model": net.source})


def _activation_derivative(rules: dict, name: str):
    """The ``derivative(stage, z)`` of activations after stages without a rule: None (ρ' itself) unless the rules
    replace it; one rule object replacing it for the whole chain → its method; several → refuse such stages."""
    distinct = {id(r): r for r in rules.values()}
    replacing = [r for r in distinct.values() if type(r).activation_derivative is not Rule.activation_derivative]
    if not replacing:
        return None
    if len(distinct) == 1:
        return replacing[0].activation_derivative

    def refuse(stage, z):
        raise OptionError(
            f"composite {name!r} mixes rules that propagate activations differently "
            f"({', '.join(sorted({r.name for r in distinct.values()}))}); the activation after {stage.describe()} "
            "has no rule of its own to decide (use one rule for the whole chain)")
    return refuse
