"""Batched backward passes: B inputs under one method at once, as per-image factors applied with torch.

A measure that sends many signals through many inputs (Sixt et al.'s CSC and SSIM: 200 images ×
5 random vectors) needs no matrices: :func:`extract_batch` runs the net once on the batch
X (B, …), evaluates the method's per-image factors for all B inputs at once (one rule evaluation per
stage, the weights shared), and propagates signals of shape (B, m, *shape) — m signals per image,
one torch convolution for all B·m of them.  Each stage i (boundary i+1 → boundary i) is split as

    back_i = lin_i ∘ act_i

* ``act_i``: the activation after stage i — gradient space: ×ρ'(z) (the ReLU mask); guided BP,
  deconv, RectGrad: their rectifier ρ (:mod:`chainlab.chain.rectified`); DeepLIFT: the multipliers
  S⁺, S⁻ of the two parts; relevance space: the identity;
* ``lin_i``: the rest —
    layer rules:   Σ_t a_t ⊙ φ_tᵀ(c_t ⊙ X), the rule's own groups (:meth:`chainlab.rules.Rule.groups`)
                   evaluated on the batch, with ρ'(z) taken out of c_t (checked: c_t = c_t|ρ'=1 · ρ'(z));
    max-pool:      winner-take-all scatter to each image's argmax;  average pools: x_i/s(z_j) split
                   (relevance, ``avgpool="proportional"``) or the pool's gradient;
    residual:      Σ_t branch_t(c_t ⊙ X) with c_t = z_t/s(z) (relevance, proportional), 1/T (equal), 1
                   (gradient, rectified and DeepLIFT: the sum is linear with weights 1);
    DeepLIFT:      [m_x⁺; m_x⁻] = [W⁺ᵀm⁺ + W⁻ᵀm⁻; W⁻ᵀm⁺ + W⁺ᵀm⁻] = ½[Wᵀs ± |W|ᵀd], s = m⁺ + m⁻,
                   d = m⁺ − m⁻ (d = 0 for tied signals under Rescale: one convolution); ablation
                   [W⁺ᵀm⁺; W⁻ᵀm⁻]; max-pool: captum's rule (:mod:`.deeplift`) per image.

So a signal injected *after* the activation of stage k−1 (``inject="post"``, the chain's boundary k)
goes through back_(k−1); one injected at its pre-activation output (``inject="pre"``) only through
lin_(k−1); likewise a signal is read at boundary j after (``"post"``) or before (``"pre"``, act_(j−1)
applied) the activation.  DeepLIFT signals are (B, m, 2, *shape) pairs [m⁺, m⁻]; they are read as
contributions m⁺ ⊙ Δh⁺ + m⁻ ⊙ Δh⁻ (equal before and after the activation).

The math is :func:`chainlab.extract`'s (tests compare every method with the per-image chain); a
whole-chain method without a batched builder here raises :class:`UnsupportedLayerError` (callers fall
back to one chain per image).
"""
from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import torch

from ..errors import ExtractionError, OptionError, UnsupportedLayerError
from ..options import number
from ..rules import COMPOSITES, RULES, LayerContext, stabilize
from ..trace import Net, eval_mode, trace, walk_stages
from .deeplift import DELTA_EPS, check_own, make_reference
from .methods import METHODS, parse_request
from .options import COMMON

__all__ = ["BatchChain", "BatchContext", "extract_batch", "forward_batch", "batch_supported", "BATCHED_METHODS"]

BATCHED_METHODS = ("guided-bp", "deconv", "rectgrad", "deeplift-rescale", "deeplift-revealcancel",
                   "deeplift-ablation")
_COMMON = tuple(k for k in COMMON if k != "materialize")
TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def batch_supported(rule) -> bool:
    """Whether :func:`extract_batch` builds ``rule`` (every layer rule / composite, and BATCHED_METHODS)."""
    if not isinstance(rule, str):
        return getattr(rule, "batchable", True)
    return (rule in RULES and RULES[rule].batchable) or rule in COMPOSITES or rule in BATCHED_METHODS


# ---------------------------------------------------------------------------------------------
# the rules' groups on a batch


class BatchContext(LayerContext):
    """:class:`~chainlab.rules.LayerContext` of B inputs: x (B, *in), z (B, n_out); ``unit_derivative``
    replaces ρ'(z) by ones (the factor act_i takes out of the layer's terms)."""

    unit_derivative: bool = False

    @property
    def z(self) -> torch.Tensor:
        return self.record.z.reshape(self.record.z.shape[0], -1)

    @property
    def derivative(self) -> torch.Tensor:
        act = self.stage.activation
        if act is None or self.unit_derivative:
            return torch.ones_like(self.z)
        return act.derivative(self.z)

    def fwd(self, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        a = a.reshape((a.shape[0],) + tuple(self.x.shape[1:])).to(self.x.dtype)
        return self.stage.linear_map(a, w.to(self.x.dtype)).reshape(a.shape[0], -1)


def batched_terms(rule, ctx: BatchContext) -> list:
    """[(a (B|1, n_in) or None for ones, φ (weight shape), c (B|1, n_out) or None for ones)], as
    :meth:`chainlab.rules.Rule.terms` but per image; terms that vanish for every image are dropped (and
    not evaluated: x⁻ = 0 after a ReLU)."""
    keep_bias = ctx.bias_policy != "none"
    n_out = ctx.z.shape[1]
    dt = ctx.z.dtype
    out = []
    for g in rule.groups(ctx):
        mask = g.mask if g.mask is not None else torch.ones(n_out, dtype=dt)
        bias_num = torch.zeros(n_out, dtype=dt)
        if keep_bias:
            for t in g.terms:
                if t.b is not None:
                    bias_num = bias_num + ctx.per_unit(t.b).to(dt)
        live = [(t, t.a.reshape(t.a.shape[0], -1)) for t in g.terms]
        live = [(t, a) for t, a in live if _nonzero(a)]
        if g.eps is None:
            c = g.coef * mask
        else:
            d = bias_num
            for t, _ in live:
                d = d + ctx.fwd(t.a, t.w)
            c = g.coef * mask / stabilize(d, g.eps)
        c = torch.as_tensor(c).reshape(-1, n_out)
        if not live or not _nonzero(c):
            continue
        c = None if _ones(c) else c
        for t, a in live:
            out.append((None if _ones(a) else a, t.w, c))
    return out


def _nonzero(t) -> bool:
    head = t.reshape(-1)[:256]
    return bool(head.any()) or bool(t.amax() != 0) or bool(t.amin() != 0)


def _ones(t) -> bool:
    head = t.reshape(-1)[:256]
    return bool((head == 1).all()) and bool(t.amin() == 1) and bool(t.amax() == 1)


# ---------------------------------------------------------------------------------------------
# stages: back = lin ∘ act on signals (B, m, *shape)


def _per_image(t, shape, dtype):
    """A per-image factor (B|1, n) as (B|1, 1, *shape) of dtype."""
    return t.reshape((t.shape[0], 1) + tuple(shape)).to(dtype)


class _Stage:
    """Identity act; subclasses give lin (and act)."""

    def __init__(self, in_shape, out_shape):
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.factor = None                    # act's per-image multiplier (B, 1, *out) or None

    @property
    def has_act(self) -> bool:
        return self.factor is not None

    def act(self, X):
        return X if self.factor is None else X * self.factor

    def lin(self, X):
        raise NotImplementedError

    def back(self, X):
        return self.lin(self.act(X))


class _Terms(_Stage):
    """Σ_t a_t ⊙ φ_tᵀ(c_t ⊙ X) of a Linear/Conv2d stage (weights shared by the batch)."""

    def __init__(self, st, in_shape, out_shape, terms, dtype):
        super().__init__(in_shape, out_shape)
        self.conv = st.conv if st.kind == "conv2d" else None
        self.terms = []
        for a, phi, c in terms:
            self.terms.append((None if a is None else _per_image(a, in_shape, dtype), phi.to(dtype),
                               None if c is None else _per_image(c, out_shape, dtype)))

    def lin(self, X):
        B, M = X.shape[:2]
        out, scaled = None, {}
        for a, phi, c in self.terms:
            key = id(c)
            if key not in scaled:
                scaled[key] = (X if c is None else X * c).reshape((B * M,) + self.out_shape)
            Y = scaled[key]
            if self.conv is not None:
                Y = torch.nn.grad.conv2d_input((B * M,) + self.in_shape, phi, Y, **self.conv.kwargs())
            else:
                Y = Y.reshape(B * M, -1) @ phi
            Y = Y.reshape((B, M) + self.in_shape)
            if a is not None:
                Y = Y * a
            out = Y if out is None else out.add_(Y)
        if out is None:
            out = X.new_zeros((B, M) + self.in_shape)
        return out


class _Gather(_Stage):
    """Winner-take-all: each output unit's signal goes to its window's argmax (per image)."""

    def __init__(self, rec, in_shape, out_shape):
        super().__init__(in_shape, out_shape)
        C, H, W = in_shape
        off = (torch.arange(C, dtype=torch.int64) * (H * W)).reshape(1, C, 1)
        self.rows = (rec.argmax.reshape(rec.argmax.shape[0], C, -1).to(torch.int64) + off).reshape(
            rec.argmax.shape[0], 1, -1)

    def lin(self, X):
        B, M = X.shape[:2]
        out = X.new_zeros((B, M, int(np.prod(self.in_shape))))
        out.scatter_add_(2, self.rows.expand(B, M, -1), X.reshape(B, M, -1))
        return out.reshape((B, M) + self.in_shape)


class _Pool(_Stage):
    """Average pools: a ⊙ Aᵀ(c ⊙ X), A the pooling map (Aᵀ by autograd)."""

    def __init__(self, spec, in_shape, out_shape, a=None, c=None, dtype=torch.float64):
        super().__init__(in_shape, out_shape)
        self.spec = spec
        self.a = None if a is None else _per_image(a, in_shape, dtype)
        self.c = None if c is None else _per_image(c, out_shape, dtype)

    def lin(self, X):
        B, M = X.shape[:2]
        G = X if self.c is None else X * self.c
        with torch.enable_grad():
            Z = torch.zeros((B * M,) + self.in_shape, dtype=X.dtype, requires_grad=True)
            (g,) = torch.autograd.grad(self.spec.apply(Z), Z, G.reshape((B * M,) + self.out_shape))
        g = g.reshape((B, M) + self.in_shape)
        return g if self.a is None else g * self.a


class _Scale(_Stage):
    """diag(d) (a leading activation in gradient space), or the identity (d None)."""

    def __init__(self, in_shape, d=None, dtype=torch.float64):
        super().__init__(in_shape, in_shape)
        self.d = None if d is None else _per_image(d, in_shape, dtype)

    def lin(self, X):
        return X if self.d is None else X * self.d


class _Residual(_Stage):
    """Σ_t branch_t(c_t ⊙ X); branch_t = its inner stages' back in reverse (identity for ())."""

    def __init__(self, in_shape, out_shape, branches, cols):
        super().__init__(in_shape, out_shape)
        self.branches, self.cols = branches, cols

    def lin(self, X):
        out = None
        for stages, c in zip(self.branches, self.cols):
            Y = X if c is None else X * c
            for s in reversed(stages):
                Y = s.back(Y)
            out = Y if out is None else out + Y
        return out


class _Rectify:
    """ρ of guided BP, deconv or RectGrad at a ReLU, per image (see :mod:`chainlab.chain.rectified`)."""

    def __init__(self, kind, z, shape, q, dtype):
        self.kind, self.q = kind, q
        self.mask = _per_image((z > 0).to(torch.float64), shape, dtype)
        self.h = _per_image(torch.clamp(z, min=0.0), shape, dtype)

    def __call__(self, X):
        if self.kind == "guided-bp":
            return torch.clamp(X, min=0.0) * self.mask
        if self.kind == "deconv":
            return torch.clamp(X, min=0.0)
        B, M = X.shape[:2]
        prod = (self.h * X).reshape(B, M, -1)
        tau = _percentile(prod, self.q)
        return torch.where(prod > tau, X.reshape(B, M, -1), X.new_zeros(())).reshape(X.shape)


def _percentile(P, q):
    """numpy's q-th percentile (linear interpolation) along the last axis, keepdim: from the top n − ⌊pos⌋ values
    (a partial selection; q = 98 needs the top 2 %)."""
    n = P.shape[-1]
    pos = q / 100.0 * (n - 1)
    lo = int(np.floor(pos))
    top = torch.topk(P, n - lo, dim=-1, largest=True, sorted=True).values      # v_(n−1) … v_(lo)
    v_lo = top[..., -1:]
    v_hi = top[..., -2:-1] if n - lo >= 2 else v_lo
    return v_lo + (pos - lo) * (v_hi - v_lo)


class _Rectified(_Stage):
    """A stage of a rectified chain: the rectifier as act, the linear part as lin."""

    def __init__(self, inner, rect):
        super().__init__(inner.in_shape, inner.out_shape)
        self.inner, self.rect = inner, rect

    @property
    def has_act(self) -> bool:
        return self.rect is not None

    def act(self, X):
        return X if self.rect is None else self.rect(X)

    def lin(self, X):
        return self.inner.lin(X)


# ---------------------------------------------------------------------------------------------
# the batch chain


class BatchChain:
    """The backward pass of B inputs under one method as stages applied to torch batches.

    ``stages[i]`` maps signals at boundary i+1 to boundary i, like ``chain[i]``; ``shapes`` are the
    signal shapes at the boundaries without batch dimension (``shapes[0]`` the input's), ``names``
    the stage names, ``x`` (B, *input) and ``logits`` (B, K) float64, ``space`` "gradient" |
    "relevance" | "deeplift", ``dtype`` the torch dtype of the signals.
    """

    def __init__(self, stages, *, names, shapes, x, logits, rule, space, dtype, options, input_scale=None,
                 parts=None):
        self.stages = list(stages)
        self.names = list(names)
        self.shapes = [tuple(s) for s in shapes]
        self.x = x
        self.logits = logits
        self.rule = rule
        self.space = space
        self.dtype = dtype
        self.options = dict(options)
        self.input_scale = None if input_scale is None else _per_image(input_scale.reshape(x.shape[0], -1),
                                                                      self.shapes[0], dtype)
        self.parts = parts          # DeepLIFT: [(Δh⁺, Δh⁻) at boundary j] as (B, 1, *shape_j)
        self.meta: dict = {}

    def __len__(self):
        return len(self.stages)

    @property
    def batch(self) -> int:
        return int(self.x.shape[0])

    @property
    def predicted(self) -> np.ndarray:
        return self.logits.argmax(dim=1).numpy()

    @property
    def paired(self) -> bool:
        return self.space == "deeplift"

    def _check_k(self, k):
        if not 1 <= k <= len(self):
            raise OptionError(f"injection boundary k must be in 1..{len(self)}, got {k}")

    def inject(self, V, W=None) -> torch.Tensor:
        """Signals (B, m, *shape) as the chain's signal: itself, or for DeepLIFT the pair [V, V]
        (tied) or [V, W] (independent parts)."""
        V = V.to(self.dtype)
        if not self.paired:
            if W is not None:
                raise OptionError("independent (+, −) injections exist only for DeepLIFT chains")
            return V
        return torch.stack([V, V if W is None else W.to(self.dtype)], dim=2)

    def signals(self, R, k: int, *, inject: str = "post", measure: str = "post"):
        """Yield (j, signal read at boundary j) for j = k−1 … 0 from R injected at boundary k.

        R: (B, m, *shapes[k]) (DeepLIFT: (B, m, 2, *shapes[k]), see :meth:`inject`)."""
        self._check_k(k)
        X = R if inject == "pre" else self.stages[k - 1].act(R)       # the pre-activation signal of stage k−1
        for j in range(k - 1, -1, -1):
            X = self.stages[j].lin(X)
            X = X.reshape(tuple(X.shape[:3 if self.paired else 2]) + self.shapes[j])   # (a flatten between stages)
            if j == 0:
                yield j, self.read(0, X)
                break
            A = self.stages[j - 1].act(X)                               # through the activation of stage j−1
            yield j, self.read(j, A if (measure == "pre" and not self.paired) else X)
            X = A

    def read(self, j: int, X):
        """The measured quantity of a signal X at boundary j: X itself, ×x at the input of gradient × input,
        DeepLIFT's contributions m⁺ ⊙ Δh⁺ + m⁻ ⊙ Δh⁻."""
        if self.paired:
            dp, dm = self.parts[j]
            return X[:, :, 0] * dp + X[:, :, 1] * dm
        if j == 0 and self.input_scale is not None:
            X = X * self.input_scale
        return X

    def apply(self, R, k: int | None = None, *, inject: str = "post"):
        """The quantity at the input (B, m, *shapes[0]) for R injected at boundary k (default: the logits)."""
        k = len(self) if k is None else k
        out = None
        for _, out in self.signals(R, k, inject=inject):
            pass
        return out

    def start(self, targets) -> torch.Tensor:
        """r_L per image for logit targets[b] (B,): f_k(x)·e_k (relevance), e_k (gradient), [e_k; e_k]
        (DeepLIFT); shape (B, 1, K) (DeepLIFT (B, 1, 2, K))."""
        t = torch.as_tensor(np.asarray(targets), dtype=torch.int64).reshape(-1, 1)
        B, K = self.logits.shape
        e = torch.zeros((B, K), dtype=torch.float64).scatter_(1, t, 1.0)
        if self.space == "relevance":
            e = e * self.logits
        return self.inject(e.reshape(B, 1, K))

    def explain(self, targets) -> torch.Tensor:
        """The method's explanation of logit targets[b] for every image: (B, *input shape)."""
        return self.apply(self.start(targets))[:, 0]


# ---------------------------------------------------------------------------------------------
# builders


def forward_batch(model, X, dtype: str = "float64", check: bool = True, net=None):
    """(traced net with weights in ``dtype``, records of its forward at the inputs X (B, …)): what
    :func:`extract_batch` builds every method's factors from — compute it once, pass it to many methods.
    ``check``: compare the traced forward with the model's logits (tolerance of the dtype).  ``net``: the
    model already traced (:func:`chainlab.trace.trace`), or the result of an earlier call's net."""
    tdt = _torch_dtype(dtype)
    with eval_mode(model):
        net = _cast_net(trace(model) if net is None else net, tdt)
        xt = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X).detach().to(tdt)
        net.prepare_input(xt[:1].to(torch.float64))
        with torch.no_grad():
            records = net.forward(xt)
            if check:
                _check_logits(model, xt, records[-1].out)
    return net, records


def _check_logits(model, xt, ours):
    """The traced forward reproduces the model's logits (float32 tolerance if either side is float32)."""
    p = next(model.parameters(), None)
    mdt = p.dtype if p is not None else torch.float32
    with torch.no_grad():
        ref = model(xt.to(mdt)).reshape(ours.shape).to(torch.float64)
    ours = ours.to(torch.float64)
    coarse = torch.float32 in (mdt, xt.dtype)
    tol = (1e-4 if coarse else 1e-9) * (1.0 + float(ours.abs().max()))
    err = float((ref - ours).abs().max())
    if not err <= tol:
        raise ExtractionError(f"the traced stages do not reproduce the model's output (max difference {err:.3g} > "
                              f"{tol:.3g}); the forward may contain operations chainlab does not see")


def _torch_dtype(dtype):
    tdt = TORCH_DTYPES.get(dtype)
    if tdt is None:
        raise OptionError(f"option dtype of extract_batch must be one of {', '.join(TORCH_DTYPES)}, got {dtype!r}")
    return tdt


def _cast_net(net, tdt):
    """The net with its weights and biases in the torch dtype ``tdt`` (the net itself if they are)."""
    w = next((st.weight for _, st in walk_stages(net.stages) if st.weight is not None), None)
    if w is None or w.dtype == tdt:
        return net

    def cast(st):
        kw = {k: getattr(st, k).to(tdt) for k in ("weight", "bias") if getattr(st, k) is not None}
        if st.branches is not None:
            kw["branches"] = tuple(tuple(cast(b) for b in br) for br in st.branches)
        return dataclasses.replace(st, **kw)
    return Net([cast(s) for s in net.stages], net.input_shape, net.source)


def extract_batch(model, X, rule, *, dtype="float64", check: bool = True, forward=None, **options) -> BatchChain:
    """The :class:`BatchChain` of ``model`` at the inputs X (B, …) under ``rule`` (a layer-rule name,
    composite, Rule, or one of BATCHED_METHODS), with :func:`chainlab.extract`'s options (except
    ``materialize``).  ``dtype``: of the forward pass, the factors and the signals ("float32": Sixt's
    precision, ~7× faster convolutions on CPU).  ``forward``: (net, records) of :func:`forward_batch` for
    these X and dtype (shared by many methods).  Rules already prepared (pattern rules with their table set)
    may be passed as objects and keep their table."""
    tdt = _torch_dtype(dtype)
    name = rule if isinstance(rule, str) else getattr(rule, "name", type(rule).__name__)
    where = f"rule {name!r}"
    if isinstance(rule, str) and rule in METHODS and rule not in BATCHED_METHODS:
        raise UnsupportedLayerError(f"rule {rule!r} has no batched backward; extract one chain per image")
    # dtype is extract_batch's own argument; materialize has no meaning for a batch
    req = parse_request(rule, options, where, common=tuple(k for k in _COMMON if k != "dtype"))
    method, opts, own, composite = req.method, req.opts, req.own, req.composite
    net, records = forward if forward is not None else forward_batch(model, X, dtype, check)
    if isinstance(rule, str) and rule in METHODS:
        blocks = [s.name for s in net.stages if s.kind == "residual"]
        if blocks and not method.residual:
            raise UnsupportedLayerError(f"rule {rule!r} does not support residual blocks ({', '.join(blocks)})")
    xt = records[0].x
    if tuple(xt.shape[1:]) != tuple(net.shapes(records)[0]):
        xt = xt.reshape((xt.shape[0],) + tuple(net.shapes(records)[0]))
    common = dict(names=[s.name for s in net.stages], shapes=net.shapes(records), x=xt,
                  logits=records[-1].out.reshape(xt.shape[0], -1).to(torch.float64), dtype=tdt)
    with torch.no_grad():
        if isinstance(rule, str) and rule in METHODS:
            if rule.startswith("deeplift-"):
                return _build_deeplift(net, xt, records, rule, opts, own, tdt, common)
            return _build_rectified(net, records, rule, own, tdt, common)
        return _build_layerwise(model, net, records, composite, opts, tdt, common,
                                req.used)


def _build_layerwise(model, net, records, composite, opts, tdt, common, used) -> BatchChain:
    stages = net.stages
    leaves = list(walk_stages(stages))
    first = next((s for _, s in leaves if s.is_parametric), None)
    last = next((s for _, s in reversed(leaves) if s.is_parametric), None)
    takes_last = "is_last" in inspect.signature(composite.lookup).parameters     # composites with a "last" key
    rules = {}
    for i, st in leaves:
        if st.is_parametric:
            r = (composite.lookup(i, len(stages), st, st is first, st is last) if takes_last
                 else composite.lookup(i, len(stages), st, st is first))
            if r is None:
                raise OptionError(f"composite {composite.name!r} has no rule for layer {st.describe()}")
            rules[id(st)] = r
    unbatched = sorted({r.name for r in rules.values() if not r.batchable})
    if unbatched:
        raise OptionError(f"rule {', '.join(map(repr, unbatched))} replaces the activation derivatives per image; "
                          "extract_batch does not build it: extract one chain per image")
    for r in {id(r): r for r in rules.values()}.values():
        if getattr(r, "table", None) is None:       # pattern rules passed already prepared keep their table
            r.prepare(net, model)
    spaces = {r.space for r in rules.values()}
    if len(spaces) > 1:
        raise OptionError(f"composite {composite.name!r} mixes gradient-space and relevance-space rules")
    space = spaces.pop() if spaces else "gradient"
    index_of = {id(s): i for i, s in leaves}

    def build(st, rec):
        in_shape, out_shape = rec.in_shape, rec.out_shape
        r = rules.get(id(st))
        if r is not None:
            kw = dict(bias_policy=opts.bias, stabilizer=opts.stabilizer)
            ctx = BatchContext(st, rec, index_of[id(st)], st is first, **kw)
            terms = batched_terms(r, ctx)
            if space != "gradient" or st.activation is None:
                return _Terms(st, in_shape, out_shape, terms, tdt)
            ctx1 = BatchContext(st, rec, index_of[id(st)], st is first, **kw)
            ctx1.unit_derivative = True
            terms1 = batched_terms(r, ctx1)
            d = ctx.derivative
            if not _factors(terms, terms1, d, 1e-12 if tdt == torch.float64 else 1e-5):
                raise ExtractionError(f"rule {r.name!r} at layer {st.describe()}: the terms do not factor through "
                                      "the activation's derivative (c_t ≠ c_t|ρ'=1 · ρ'(z))")
            s = _Terms(st, in_shape, out_shape, terms1, tdt)
            s.factor = _per_image(d, out_shape, tdt)
            return s
        if st.kind == "residual":
            branches, cols = [], []
            z = rec.z.reshape(rec.z.shape[0], -1)
            for b_st, b_rec in zip(st.branches, rec.branches):
                branches.append([build(s, q) for s, q in zip(b_st, b_rec)])
                if space == "gradient":
                    cols.append(None)
                elif opts.residual == "proportional":
                    z_t = (b_rec[-1].out if b_rec else rec.x).reshape(z.shape)
                    cols.append(_per_image(z_t / stabilize(z, opts.stabilizer), out_shape, tdt))
                else:
                    cols.append(torch.full((1, 1) + tuple(out_shape), 1.0 / len(st.branches), dtype=tdt))
            s = _Residual(in_shape, out_shape, branches, cols)
        elif st.kind == "maxpool2d":
            s = _Gather(rec, in_shape, out_shape)
        elif st.kind in ("avgpool2d", "adaptiveavgpool2d"):
            if space == "relevance" and opts.avgpool == "proportional":
                B = rec.x.shape[0]
                c = 1.0 / stabilize(rec.z.reshape(B, -1), opts.stabilizer)
                s = _Pool(st.pool, in_shape, out_shape, rec.x.reshape(B, -1), c, tdt)
            else:
                s = _Pool(st.pool, in_shape, out_shape, dtype=tdt)
        elif st.kind == "activation":
            B = rec.x.shape[0]
            d = st.activation.derivative(rec.x).reshape(B, -1) if space == "gradient" else None
            return _Scale(in_shape, d, tdt)
        else:
            raise ExtractionError(f"no batched backward for stage {st.describe()}")
        if space == "gradient" and st.activation is not None:
            s.factor = _per_image(st.activation.derivative(rec.z).reshape(rec.z.shape[0], -1), out_shape, tdt)
        return s

    ops = [build(st, rec) for st, rec in zip(stages, records)]
    scale = common["x"] if any(r.multiply_input for r in rules.values()) else None
    options = {**opts.record([k for k in _COMMON if k != "residual"]), **used}
    return BatchChain(ops, rule=composite.name, space=space, options=options, input_scale=scale, **common)


def _factors(terms, terms1, d, rtol) -> bool:
    """c_t = c1_t · d for every term (the rule's columns factor through ρ'(z))."""
    if len(terms) != len(terms1):
        return False
    for (_, _, c), (_, _, c1) in zip(terms, terms1):
        c = torch.ones_like(d) if c is None else c.to(d.dtype)
        c1 = d if c1 is None else (c1 * d).to(d.dtype)
        if not torch.equal(c, c1) and not torch.allclose(c, c1, rtol=rtol, atol=0.0):
            return False
    return True


def _build_rectified(net, records, rule, own, tdt, common) -> BatchChain:
    q = number("q", own.get("q", 98), f"rule {rule!r}", low=0, high=100) if rule == "rectgrad" else None

    def build(st, rec):
        in_shape, out_shape = rec.in_shape, rec.out_shape
        B = rec.x.shape[0]
        if st.activation is not None and not st.activation.is_relu:
            raise UnsupportedLayerError(f"rule {rule!r} rectifies ReLUs; layer {st.describe()} is followed by "
                                        f"{st.activation.describe()}")
        if st.is_parametric:
            inner = _Terms(st, in_shape, out_shape, [(None, st.weight, None)], tdt)
        elif st.kind == "maxpool2d":
            inner = _Gather(rec, in_shape, out_shape)
        elif st.kind in ("avgpool2d", "adaptiveavgpool2d"):
            inner = _Pool(st.pool, in_shape, out_shape, dtype=tdt)
        elif st.kind == "activation":
            inner = _Scale(in_shape)
            return _Rectified(inner, _Rectify(rule, rec.x.reshape(B, -1), in_shape, q, tdt))
        elif st.kind == "residual":
            branches = [[build(s, r) for s, r in zip(b_st, b_rec)] for b_st, b_rec in zip(st.branches, rec.branches)]
            inner = _Residual(in_shape, out_shape, branches, [None] * len(branches))
        else:
            raise ExtractionError(f"no batched backward for stage {st.describe()}")
        rect = _Rectify(rule, rec.z.reshape(B, -1), out_shape, q, tdt) if st.relu else None
        return _Rectified(inner, rect)

    ops = [build(st, rec) for st, rec in zip(net.stages, records)]
    return BatchChain(ops, rule=rule, space="gradient", options={"q": q} if q is not None else {}, **common)


# ---------------------------------------------------------------------------------------------
# DeepLIFT


class _DLStage(_Stage):
    """A DeepLIFT stage on pairs X (B, m, 2, *shape): act = (S⁺, S⁻), lin per kind."""

    def __init__(self, in_shape, out_shape, sp_, sm_, dtype):
        super().__init__(in_shape, out_shape)
        self.s = None if sp_ is None else torch.stack([_per_image(sp_, out_shape, dtype),
                                                       _per_image(sm_, out_shape, dtype)], dim=2)

    @property
    def has_act(self) -> bool:
        return self.s is not None

    def act(self, X):
        return X if self.s is None else X * self.s

    @staticmethod
    def _flat(X):
        B, M = X.shape[:2]
        return X.reshape((B, 2 * M) + tuple(X.shape[3:])), B, M

    @staticmethod
    def _pair(Y, B, M):
        return Y.reshape((B, M, 2) + tuple(Y.shape[2:]))


class _DLLinear(_DLStage):
    """[W⁺ᵀm⁺ + W⁻ᵀm⁻; W⁻ᵀm⁺ + W⁺ᵀm⁻] (coupled) or [W⁺ᵀm⁺; W⁻ᵀm⁻] (ablation)."""

    def __init__(self, st, in_shape, out_shape, sp_, sm_, ablation, dtype):
        super().__init__(in_shape, out_shape, sp_, sm_, dtype)
        W = st.weight
        if ablation:
            self.wp, self.wn = _Terms(st, in_shape, out_shape, [(None, W.clamp(min=0), None)], dtype), \
                _Terms(st, in_shape, out_shape, [(None, W.clamp(max=0), None)], dtype)
        else:
            self.w, self.wabs = _Terms(st, in_shape, out_shape, [(None, W, None)], dtype), \
                _Terms(st, in_shape, out_shape, [(None, W.abs(), None)], dtype)
        self.ablation = ablation

    def lin(self, X):
        P, N = X[:, :, 0], X[:, :, 1]
        if self.ablation:
            return torch.stack([self.wp.lin(P), self.wn.lin(N)], dim=2)
        s = self.w.lin(P + N)
        d = P - N
        if not bool(d.any()):
            h = 0.5 * s
            return torch.stack([h, h], dim=2)
        dd = self.wabs.lin(d)
        return torch.stack([0.5 * (s + dd), 0.5 * (s - dd)], dim=2)


class _DLPair(_DLStage):
    """The same linear map on both parts (pools, identity, residual sums)."""

    def __init__(self, inner, sp_, sm_, dtype):
        super().__init__(inner.in_shape, inner.out_shape, sp_, sm_, dtype)
        self.inner = inner

    def lin(self, X):
        Y, B, M = self._flat(X)
        return self._pair(self.inner.lin(Y), B, M)


class _DLResidual(_DLStage):
    """A residual sum on pairs: its branches are DeepLIFT stages themselves, applied to the paired signal."""

    def __init__(self, inner, sp_, sm_, dtype):
        super().__init__(inner.in_shape, inner.out_shape, sp_, sm_, dtype)
        self.inner = inner

    def lin(self, X):
        return self.inner.lin(X)


class _DLMaxPool(_Stage):
    """captum's DeepLIFT max-pool multipliers (:func:`chainlab.extraction.deeplift._maxpool_matrix`), per image:
    M_ij = ([i = a(j)] w1_j + [i = a⁰(j)] w2_j) / Δx_i, gradient [i = a(j)] in rows with |Δx_i| < 1e-10."""

    def __init__(self, rec, rec0, in_shape, out_shape):
        super().__init__(in_shape, out_shape)
        C, H, W = in_shape
        B = rec.x.shape[0]
        off = (torch.arange(C, dtype=torch.int64) * (H * W)).reshape(1, C, 1)
        flat = lambda am: (am.reshape(am.shape[0], C, -1).to(torch.int64) + off).reshape(am.shape[0], -1)  # noqa
        self.a = flat(rec.argmax).expand(B, -1)
        self.a0 = flat(rec0.argmax).expand(B, -1)
        y, y0 = rec.z.reshape(B, -1), rec0.z.reshape(rec0.z.shape[0], -1)
        ymax = torch.maximum(y, y0)
        self.w1, self.w2 = ymax - y0, y - ymax
        dx = (rec.x - rec0.x).reshape(B, -1)
        self.small = dx.abs() < DELTA_EPS
        self.inv = torch.where(self.small, 0.0, 1.0 / torch.where(self.small, 1.0, dx))

    def forward_parts(self, d):
        """Mᵀ d for parts d (B, n_in)."""
        r = d * self.inv
        g = torch.where(self.small, d, 0.0)
        return (self.w1 * r.gather(1, self.a) + self.w2 * r.gather(1, self.a0) + g.gather(1, self.a))

    def back_flat(self, X, dtype):
        """M X for X (B, M, n_out) → (B, M, n_in)."""
        B, M = X.shape[:2]
        n_in = int(np.prod(self.in_shape))
        idx, idx0 = self.a.unsqueeze(1).expand(B, M, -1), self.a0.unsqueeze(1).expand(B, M, -1)
        U = X.new_zeros((B, M, n_in)).scatter_add_(2, idx, X * self.w1.unsqueeze(1).to(dtype))
        U.scatter_add_(2, idx0, X * self.w2.unsqueeze(1).to(dtype))
        G = X.new_zeros((B, M, n_in)).scatter_add_(2, idx, X)
        small = self.small.unsqueeze(1)
        return torch.where(small, G, U * self.inv.unsqueeze(1).to(dtype))

    def lin(self, X):
        B, M = X.shape[:2]
        return self.back_flat(X.reshape(B, M, -1), X.dtype).reshape((B, M) + self.in_shape)


def _dl_multipliers(act, variant, z, z0, zp, zm):
    """(s⁺, s⁻) of the activation ``act`` (Rescale / RevealCancel, :mod:`.deeplift`), all (B, n)."""
    dz = z - z0
    small = dz.abs() < DELTA_EPS
    grad = act.derivative(z)
    resc = torch.where(small, grad, (act(z) - act(z0)) / torch.where(small, 1.0, dz))
    if variant != "revealcancel":
        return resc, resc
    dhp = 0.5 * (act(z0 + zp) - act(z0)) + 0.5 * (act(z) - act(z0 + zm))
    dhm = 0.5 * (act(z0 + zm) - act(z0)) + 0.5 * (act(z) - act(z0 + zp))
    sp_ = torch.where(zp.abs() < DELTA_EPS, resc, dhp / torch.where(zp.abs() < DELTA_EPS, 1.0, zp))
    sm_ = torch.where(zm.abs() < DELTA_EPS, resc, dhm / torch.where(zm.abs() < DELTA_EPS, 1.0, zm))
    return sp_, sm_


def _build_deeplift(net, xt, records, rule, opts, own, tdt, common) -> BatchChain:
    variant = rule.split("-", 1)[1]
    own = check_own(variant, own)
    ref = own["reference"]
    x64 = xt.to(torch.float64)
    if isinstance(ref, str):
        x0 = make_reference(ref, x64, own["sigma"], f"rule {rule!r}").to(xt.dtype)
    else:
        x0 = make_reference(ref, x64[:1], own["sigma"], f"rule {rule!r}").expand_as(xt).to(xt.dtype).clone()
    records0 = net.forward(x0)
    B = xt.shape[0]
    dx = (xt - x0).reshape(B, -1)
    parts = [(dx.clamp(min=0), dx.clamp(max=0))]

    def run(stages, recs, recs0, dp, dm, out_parts):
        ops = []
        for st, rec, rec0 in zip(stages, recs, recs0):
            in_shape, out_shape = rec.in_shape, rec.out_shape
            z, z0 = rec.z.reshape(B, -1), rec0.z.reshape(rec0.z.shape[0], -1)
            act = st.activation if st.kind != "activation" else None
            if st.is_parametric:
                W = st.weight
                a_p, a_m = dp.reshape(rec.x.shape), dm.reshape(rec.x.shape)
                Wp, Wn = W.clamp(min=0), W.clamp(max=0)
                zp = (st.linear_map(a_p, Wp) + st.linear_map(a_m, Wn)).reshape(B, -1)
                zm = (st.linear_map(a_p, Wn) + st.linear_map(a_m, Wp)).reshape(B, -1)
                kind = "linear"
            elif st.kind == "activation":
                zp, zm, act, kind = dp, dm, st.activation, "identity"
                z, z0 = rec.x.reshape(B, -1), rec0.x.reshape(rec0.x.shape[0], -1)
            elif st.kind == "maxpool2d":
                mp = _DLMaxPool(rec, rec0, in_shape, out_shape)
                zp, zm, kind = mp.forward_parts(dp), mp.forward_parts(dm), "maxpool"
            elif st.kind in ("avgpool2d", "adaptiveavgpool2d"):
                zp = st.pool.apply(dp.reshape(rec.x.shape)).reshape(B, -1)
                zm = st.pool.apply(dm.reshape(rec.x.shape)).reshape(B, -1)
                kind = "avgpool"
            elif st.kind == "residual":
                branch_ops, zp, zm = [], 0.0, 0.0
                for b_st, b_rec, b_rec0 in zip(st.branches, rec.branches, rec0.branches):
                    if b_st:
                        ops_b, (bp, bm) = run(b_st, b_rec, b_rec0, dp, dm, None)
                    else:
                        ops_b, (bp, bm) = [], (dp, dm)
                    branch_ops.append(ops_b)
                    zp, zm = zp + bp, zm + bm
                kind = "residual"
            else:
                raise ExtractionError(f"no batched DeepLIFT backward for stage {st.describe()}")
            if act is not None:
                sp_, sm_ = _dl_multipliers(act, variant, z, z0, zp, zm)
            else:
                sp_ = sm_ = None
            if kind == "linear":
                op = _DLLinear(st, in_shape, out_shape, sp_, sm_, variant == "ablation", tdt)
            elif kind == "maxpool":
                op = _DLPair(mp, sp_, sm_, tdt)
            elif kind == "avgpool":
                op = _DLPair(_Pool(st.pool, in_shape, out_shape, dtype=tdt), sp_, sm_, tdt)
            elif kind == "identity":
                op = _DLPair(_Scale(in_shape), sp_, sm_, tdt)
            else:
                op = _DLResidual(_Residual(in_shape, out_shape, branch_ops, [None] * len(branch_ops)), sp_, sm_, tdt)
            ops.append(op)
            if sp_ is not None:
                dp, dm = sp_ * zp, sm_ * zm
            else:
                dp, dm = zp, zm
            if out_parts is not None:
                out_parts.append((dp, dm))
        return ops, (dp, dm)

    ops, _ = run(net.stages, records, records0, parts[0][0], parts[0][1], parts)
    shapes = common["shapes"]
    parts = [(_per_image(p, shapes[j], tdt), _per_image(m, shapes[j], tdt)) for j, (p, m) in enumerate(parts)]
    ref_desc = ref if isinstance(ref, str) else "array"
    return BatchChain(ops, rule=rule, space="deeplift", options={"reference": ref_desc}, parts=parts, **common)
