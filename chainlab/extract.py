"""``extract(model, x, rule)``: the backward pass of one input as a :class:`Chain` of operators.

Steps: read the model into stages (:mod:`chainlab.trace`, BatchNorm folded), run
them in float64 on x and check that they reproduce the model's logits, pick a
rule for every Linear/Conv2d stage (:mod:`chainlab.rules`), and build each
stage's matrix (:mod:`chainlab.matrices`).  Pooling stages get fixed matrices:
max-pool winner-take-all; average pools, in relevance space, the proportional
split M_ij = x_i w_j / s(z_j) (zennit's Norm, ``avgpool="proportional"``) or the
gradient w_j (``avgpool="gradient"``); in gradient space always the gradient.
A standalone leading ReLU is diag(1[x > 0]) in gradient space, I in relevance space.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from . import implicit as _implicit
from .chain import Chain
from .errors import ExtractionError, UnsupportedLayerError
from .matrices import avgpool_column_weights, maxpool_operator, stabilize, window_operator
from .matrices import materialize as _materialize
from .operators import DenseOperator, Operator, SparseOperator
from .residual import SPLITS, block_operator, walk_stages
from .rules import BIAS_POLICIES, LayerContext, resolve
from .trace import check_logits, eval_mode, trace

__all__ = ["extract", "register_method", "COMMON_OPTIONS"]

COMMON_OPTIONS = ("bias", "stabilizer", "dtype", "avgpool")
AVGPOOL_MODES = ("proportional", "gradient")
DTYPES = {"float64": np.float64, "float32": np.float32}

# rules whose backward is not built layer by layer from terms (DeepLIFT, non-linear methods, …):
# name -> callable(model, net, x, records, options) -> Chain
METHODS: dict = {}


def register_method(name: str, builder):
    """Register a whole-chain extraction method under a rule name."""
    METHODS[name] = builder


def extract(model, x, rule, *, bias: str = "zennit", stabilizer: float = 1e-6, dtype="float64",
            avgpool: str = "proportional", materialize: bool = True, residual: str = "proportional",
            **options) -> Chain:
    """Extract the chain of per-layer backward matrices of ``model`` at input ``x`` under ``rule``.

    Parameters
    ----------
    model : torch.nn.Module
        A plain chain of supported layers (see :data:`chainlab.trace.SUPPORTED`).  A model in
        training mode is extracted in eval mode and restored, with a warning.
    x : tensor or array
        One input with batch dimension 1; an unbatched input gets the batch dimension added.
    rule : str | Rule | Composite | dict
        A rule name ("gradient", "gradient-x-input", "lrp-0", "lrp-epsilon", "zplus", "alpha-beta",
        "gamma", "zbox", "wsquare", "flat"), a composite name ("epsilon-plus", "lrp-cmp", "dtd"), a
        Rule object, or a composite mapping layer index / module path / "first" / layer type to rules.
    bias : "zennit" | "none" | "full"
        Biases in the rules' denominators as zennit (default), ignored, or also reported as the
        relevance of an extra input neuron (``operator.bias_relevance``).
    stabilizer : float
        ε of s(z) = z + ε·sign0(z) in every denominator (default 1e-6 as zennit).
    dtype : "float64" (default) | "float32"
        Storage type of the operators (extraction itself runs in float64).
    avgpool : "proportional" (default) | "gradient"
        Relevance-space matrix of average pools.
    materialize : bool
        True (default): explicit dense/sparse matrices.  False: implicit operators (kind "implicit",
        :mod:`chainlab.implicit`) applied through torch conv2d / conv_transpose2d / masks / pooling.
    residual : "proportional" (default) | "equal"
        Relevance-space split of the sum of a residual block between its branches
        (z_t / s(z), or 1/T); see :mod:`chainlab.residual`.  A residual block is one operator;
        a composite's chain-index key for a block applies to every layer inside it.
    **options
        The rules' own parameters: epsilon, alpha, beta, gamma, low, high, ….
    """
    if bias not in BIAS_POLICIES:
        raise ValueError(f"bias must be one of {', '.join(BIAS_POLICIES)}; got {bias!r}")
    if not (isinstance(stabilizer, (int, float)) and stabilizer > 0):
        raise ValueError(f"stabilizer must be a positive number, got {stabilizer!r}")
    dtype_name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if dtype_name not in DTYPES:
        raise ValueError(f"dtype must be float64 or float32, got {dtype!r}")
    if avgpool not in AVGPOOL_MODES:
        raise ValueError(f"avgpool must be one of {', '.join(AVGPOOL_MODES)}; got {avgpool!r}")
    if not isinstance(materialize, bool):
        raise TypeError(f"materialize must be True or False, got {materialize!r}")
    if residual not in SPLITS:
        raise ValueError(f"residual must be one of {', '.join(SPLITS)}; got {residual!r}")
    common = dict(bias=bias, stabilizer=float(stabilizer), dtype=dtype_name, avgpool=avgpool)

    with eval_mode(model):
        net = trace(model)
        has_blocks = any(s.kind == "residual" for s in net.stages)
        if has_blocks:
            common["residual"] = residual
        xt = net.prepare_input(x)
        records = net.forward(xt)
        check_logits(model, xt, records[-1].out)
        if isinstance(rule, str) and rule in METHODS:
            if not materialize:
                raise ValueError(f"materialize=False is not available for the whole-chain method {rule!r}")
            if has_blocks and not getattr(METHODS[rule], "supports_residual", False):
                blocks = ", ".join(s.name for s in net.stages if s.kind == "residual")
                raise UnsupportedLayerError(
                    f"rule {rule!r} does not support residual blocks ({blocks}); layer-wise rules do "
                    "(set builder.supports_residual = True once a whole-chain method handles stage kind 'residual')"
                )
            return METHODS[rule](model, net, xt, records, {**common, **options})

    composite, used = resolve(rule, options)
    unknown = sorted(set(options) - used)
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for rule {getattr(composite, 'name', rule)!r}; "
            f"it takes {', '.join(sorted(used)) or 'no options of its own'}; common options: {', '.join(COMMON_OPTIONS)}"
        )
    bad = composite.explicit_keys_for_pools(net.stages)
    if bad:
        raise ValueError(
            f"composite maps pooling layers to rules ({'; '.join(bad)}); pooling layers take no rule "
            "(max-pool is winner-take-all, average pools follow the avgpool option)"
        )

    stages = net.stages
    leaves = list(walk_stages(stages))   # (chain index, stage), into residual blocks
    first = next((s for _, s in leaves if s.is_parametric), None)
    rules = {}                           # id(stage) -> rule, for every Linear/Conv2d stage
    for i, st in leaves:
        if not st.is_parametric:
            continue
        r = composite.lookup(i, len(stages), st, st is first)
        if r is None:
            raise ValueError(
                f"composite {composite.name!r} has no rule for layer {st.describe()} (chain index {i}) and no default"
            )
        rules[id(st)] = r
    spaces = {r.space for r in rules.values()}
    if len(spaces) > 1:
        desc = "; ".join(f"{s.describe()}: {rules[id(s)].name} ({rules[id(s)].space})" for _, s in leaves
                         if id(s) in rules)
        raise ValueError(f"composite {composite.name!r} mixes gradient-space and relevance-space rules: {desc}")
    space = spaces.pop() if spaces else "gradient"

    np_dtype = DTYPES[dtype_name]
    index_of = {id(s): i for i, s in leaves}

    def build(st, rec) -> Operator:
        r = rules.get(id(st))
        if r is not None:
            ctx = LayerContext(st, rec, index_of[id(st)], st is first, bias_policy=bias, stabilizer=float(stabilizer))
            return (_materialize if materialize else _implicit.from_terms)(r.terms(ctx), np_dtype)
        if st.kind == "residual":
            return block_operator(st, rec, space=space, build=build, split=residual, stabilizer=float(stabilizer),
                                  dtype=np_dtype, rule_name=lambda s: rule_name(s))
        fixed = _fixed_operator if materialize else _implicit.fixed_operator
        return fixed(st, rec, space, avgpool, float(stabilizer), np_dtype)

    def rule_name(st) -> str:
        r = rules.get(id(st))
        if r is not None:
            return r.name
        if st.kind == "residual":
            return "residual-gradient" if space == "gradient" else f"residual-{residual}"
        return _fixed_rule_name(st, space, avgpool)

    ops = [build(st, rec) for st, rec in zip(stages, records)]
    names = [st.name for st in stages]

    if any(getattr(r, "multiply_input", False) for r in rules.values()):
        ops[0] = scale_rows(ops[0], xt.reshape(-1).numpy())

    layer_rule_names = [rule_name(st) for st in stages]
    per_layer = {s.name: rules[id(s)].options() for _, s in leaves if id(s) in rules and rules[id(s)].options()}
    logits = records[-1].out.reshape(-1).numpy()
    if not np.all(np.isfinite(logits)):
        raise ExtractionError("the model's logits at this input are not finite")
    return Chain(
        ops,
        names=names,
        shapes=[stages[0].in_shape] + [s.out_shape for s in stages],
        input_shape=tuple(xt.shape),
        x=xt.reshape(-1).numpy(),
        logits=logits,
        rule=composite.name,
        options={**common, **{k: options[k] for k in sorted(used)}, "layer_options": per_layer},
        space=space,
        layer_rules=layer_rule_names,
        meta={"model": net.source},
    )


def _fixed_rule_name(st, space, avgpool) -> str:
    if st.kind == "maxpool2d":
        return "winner-take-all"
    if st.kind == "relu":
        return "relu-mask" if space == "gradient" else "identity"
    return "avgpool-proportional" if (space == "relevance" and avgpool == "proportional") else "avgpool-gradient"


def _fixed_operator(st, rec, space, avgpool, stabilizer, dtype) -> Operator:
    """Matrices of pooling stages and of a leading ReLU (no rule applies to them)."""
    n_out = int(np.prod(st.out_shape))
    z = rec.z.reshape(-1)
    mask = ((z > 0).to(torch.float64) if (st.relu and space == "gradient") else torch.ones_like(z)).numpy()
    if st.kind == "maxpool2d":
        return maxpool_operator(st, rec, mask, dtype)
    if st.kind in ("avgpool2d", "adaptiveavgpool2d"):
        w = avgpool_column_weights(st)
        n_in = int(np.prod(st.in_shape))
        if space == "relevance" and avgpool == "proportional":
            c = w / stabilize(z, stabilizer).numpy()
            return window_operator(st, rec.x.reshape(-1).numpy(), c, dtype)
        return window_operator(st, np.ones(n_in), w * mask, dtype)
    if st.kind == "relu":
        d = (rec.x.reshape(-1) > 0).to(torch.float64).numpy() if space == "gradient" else np.ones(n_out)
        return SparseOperator(sp.diags(d.astype(dtype), format="csc"))
    raise ExtractionError(f"no fixed matrix for stage {st.describe()}")


def scale_rows(op: Operator, v: np.ndarray) -> Operator:
    """diag(v) @ op, same storage kind."""
    if hasattr(op, "scale_rows"):  # implicit operators
        return op.scale_rows(v)
    if isinstance(op, DenseOperator):
        return DenseOperator(op.array * v[:, None].astype(op.dtype), op.bias_relevance)
    if isinstance(op, SparseOperator):
        M = op.matrix.copy()
        if M.format == "csc":
            M.data *= v[M.indices].astype(M.dtype)
        else:
            M.data *= np.repeat(v, np.diff(M.indptr)).astype(M.dtype)
        return SparseOperator(M, op.bias_relevance)
    raise TypeError(f"cannot scale rows of {type(op).__name__}")
