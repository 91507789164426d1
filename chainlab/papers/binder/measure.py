"""The numbers of Binder et al.'s claims, measured on nets: the bounds' constants per image, and what is beside.

Per image x of a net and per rule (chain R = M_1 ⋯ M_L r_L, :mod:`chainlab.measures.bounds`):

* ``c_norm1`` = Π_l ‖M_l(x)‖₁ — the constant of the componentwise bound ‖R(x)‖_∞ ≤ Π_l ‖M_l(x)‖₁ ‖r_L‖₁
  (data-dependent: the layer matrices at x);
* ``c_apriori`` = Π_l c_l — the a-priori constant at x (c_l ≥ ‖M_l‖₁ from the rule and the weights);
* ``support_constant`` (per perturbation) = Π_l c_l(S): the a-priori constants with the layer inputs bounded
  over the perturbation's support S (interval bound propagation, :mod:`chainlab.studies.ranges`) — the factor
  of the Hoeffding range B = Π_l c_l(S)·F that does not involve the logit; ``logit_range_rel`` = F/|f_k(x)|,
  F the interval bound of the logit over S (relevance rules only);
* ``c_emp`` = ‖R(x)‖_∞/‖r_L‖₁ — the attribution's own largest entry per unit of start vector, a tightness
  measure of the bound (C_emp ≤ c_norm1 ≤ c_apriori, checked: a violation is a bug and raises);
* ``weight_norm_product`` Π_l ‖W_l‖_∞ (BatchNorm folded), the covariate.

:func:`constants` is a function of (ctx, net, images) returning per-image arrays, so runs split into image
ranges; it writes the records (``measure="constants"``, extras study/seed/role/scale/perturbation) and caches
its result in the context (B1, B2 and B3 share one pass).  :func:`controlled` measures the controlled net at
every scale c, :func:`rescaled` its function-preserving rescaling; :func:`averages_study` and
:func:`sigma_bounds` are the ``--extended`` (and ``--quick``) measurements reported beside the verdicts.
"""
from __future__ import annotations

import numpy as np
import torch

from ... import measures
from ...errors import UnsupportedLayerError
from ...extraction import extract, forward_batch
from ...studies import averages, rescale_consecutive, rescaling_runs, scale_weights
from ...studies.ranges import apriori_range, support_bounds_many
from ..context import progress
from . import protocol as P

__all__ = ["QUANTITIES", "constants", "controlled", "rescaled", "averages_study", "sigma_bounds", "model_input",
           "controlled_chunk", "rescaled_chunk", "derived_model", "image_chunks", "rescalable"]

QUANTITIES = ("c_norm1", "c_emp", "c_apriori", "weight_norm_product")


def _opts(model) -> dict:
    """Implicit operators for nets with convolutions (the measures need products and column abs sums only)."""
    has_conv = any(type(m).__name__ == "Conv2d" for m in model.modules())
    return {"materialize": False} if has_conv else {}


def model_input(model, X, i):
    """Image i of X (float64, model-shaped) in the model's dtype, with its batch dimension."""
    return X[i:i + 1].to(next(model.parameters()).dtype)


def _image_constants(model, x, rules, perturbations, bounds, forward=None, normed=None):
    """{rule: {quantity: value}} at one input x (module docstring); ``forward``: :func:`forward_batch` of the model
    at x in float64, shared by the rules (one trace, forward pass and logit check per input); ``normed``: the labels
    with c_norm1 (default: all)."""
    out = {}
    for label, (name, opts) in rules.items():
        ch = extract(model, x, name, forward=forward, **opts, **_opts(model))
        norms = normed is None or label in normed
        v = {r["quantity"]: r["value"] for r in measures.constants(ch, norms=norms) if r["layer"] is None}
        logit = abs(float(ch.logits[ch.predicted]))
        for (pert, level), ib in zip(perturbations, bounds):
            rng = apriori_range(model, ch, pert, level, target=ch.predicted, bounds=ib)
            v[f"support_constant:{pert}"] = rng["C"]
            v[f"logit_range_rel:{pert}"] = rng["F"] / logit if rng["F"] is not None and logit > 0 else None
        out[label] = v
        ch = rng = None  # one rule's chain alive at a time (an αβ chain of a VGG holds W⁺ and W⁻ in float64: GBs)
    return out


def constants(ctx, net, images, *, model=None, derive=None, source=None, rules=None, perturbations=None,
              role="study", study=None, seed=None, scale=None) -> dict:
    """{rule: {quantity: per-image array}} of ``net`` (or of ``model``, recorded as ``net``, on the images of net
    ``source``; or of ``derive()``, called only when the result is not cached yet) on the run's images ``images``
    (a range): every quantity of the module docstring; records written once, the result cached.  ``rules``:
    {label: (rule, options)} or labels of the protocol's rules (default ``P.RULES``); ``perturbations``: of the
    support constants (default :func:`~.protocol.measured_perturbations`: B3's, when B3 is decided)."""
    rules = P.RULES if rules is None else rules if isinstance(rules, dict) else P.rule_table(rules)
    perturbations = P.measured_perturbations(ctx.s) if perturbations is None else tuple(perturbations)
    images = ctx.image_range(net if source is None else source, images)
    key = ("binder-constants", net, images.start, images.stop, tuple(rules), tuple(perturbations))
    if key in ctx.cache:
        return ctx.cache[key]
    model = model if model is not None else derive() if derive is not None else ctx.model(net)
    X, _ = ctx.images(net if source is None else source, images.stop)
    per = {label: {} for label in rules}
    normed = P.normed_rules(ctx.s, rules)
    traced = _shared_trace(ctx, net, model)
    for i in progress(images, f"constants {net}", ctx.s.progress):
        x = model_input(model, X, i)
        xb = x.detach().double().numpy()
        # one trace per model, shared by its chunks; one forward pass (and logit check) per image, shared by the rules
        traced, records = forward_batch(model, x.detach().double(), "float64", net=traced)
        _keep_trace(ctx, net, model, traced)
        try:
            bounds = support_bounds_many(model, xb, perturbations, net=traced) if perturbations else []
            perts = perturbations
        except UnsupportedLayerError:      # no interval bounds through residual blocks: no support constants (B3)
            bounds, perts = [], ()
        got = _image_constants(model, x, rules, perts, bounds, forward=(traced, records), normed=normed)
        for label, v in got.items():
            for q, val in v.items():
                per[label].setdefault(q, []).append(np.nan if val is None else float(val))
                pert = q.split(":")[1] if ":" in q else None
                ctx.record("constants", net=net, rule=label, image=i, quantity=q.split(":")[0], layer=None, k=None,
                           value=val, study=study, seed=seed, role=role, scale=scale, perturbation=pert)
    out = {label: {q: np.asarray(v, dtype=np.float64) for q, v in d.items()} for label, d in per.items()}
    ctx.cache[key] = out
    return out


def _drop(ctx, kinds, keep=None) -> None:
    """Remove the cache entries whose key is a tuple starting with one of ``kinds`` (except the key ``keep``)."""
    for k in [k for k in ctx.cache if isinstance(k, tuple) and k[:1] and k[0] in kinds and k != keep]:
        del ctx.cache[k]


def _shared_trace(ctx, net, model):
    """The float64 trace of ``model`` kept by an earlier chunk measuring it as ``net`` (None: not kept)."""
    hit = ctx.cache.get(("binder-trace", net))
    return hit[1] if hit is not None and hit[0] is model else None


def _keep_trace(ctx, net, model, traced) -> None:
    """Keep the trace of ``model`` (measured as ``net``) for the next chunk of its images: its float64 weights,
    their parts W⁺, W⁻ (:func:`chainlab.linalg.positive_part`) and weight norms are made once per model, not once
    per chunk (a VGG's first Linear: 10⁸ numbers each).  One trace at a time (another net's goes); transient;
    dropped with the derived model it traces."""
    key = ("binder-trace", net)
    _drop(ctx, ("binder-trace",), keep=key)
    ctx.cache[key] = (model, traced)
    ctx.transient.add(key)


def derived_model(ctx, net, kind, c):
    """``net`` with its weights multiplied by c (``kind="scaled"``: W_l → c·W_l, biases and BatchNorm kept; c = 1
    the net itself) or rescaled function-preservingly (``kind="rescaled"``: (c, 1/c) on consecutive layers) — kept
    in ``ctx.cache`` (in memory, never stored) until another derived copy is asked for."""
    key = ("binder-model", net, kind, float(c))
    if key not in ctx.cache:
        _drop(ctx, ("binder-model", "binder-trace"))   # one derived copy and its trace at a time (a VGG's: GBs)
        base = ctx.model(net)
        if kind == "scaled":
            ctx.cache[key] = base if c == 1.0 else scale_weights(base, c, equivariant=False)[0]
        else:
            ctx.cache[key] = rescale_consecutive(base, c)[0]
        ctx.transient.add(key)
    return ctx.cache[key]


def rescalable(ctx, net) -> bool:
    """Whether ``net`` has a function-preserving (c, 1/c) rescaling: two consecutive Linear/Conv2d layers that
    positive scaling passes between (:func:`chainlab.studies.rescaling_runs`; not across residual blocks)."""
    key = ("binder-rescalable", net)
    if key not in ctx.cache:
        ctx.cache[key] = any(len(r) >= 2 for r in rescaling_runs(ctx.model(net)))
    return ctx.cache[key]


def _concat(parts: list) -> dict:
    """{rule: {quantity: per-image}} of consecutive chunks, concatenated."""
    return {rule: {q: np.concatenate([p[rule][q] for p in parts]) for q in parts[0][rule]} for rule in parts[0]}


def controlled_chunk(ctx, net, c, images, rules=None) -> dict:
    """:func:`constants` of ``net`` × c on one chunk of images (``images``)."""
    return constants(ctx, f"{net} ×{c:g}", images, derive=lambda: derived_model(ctx, net, "scaled", c), source=net,
                     rules=rules, role="controlled", study=net, scale=c)


def rescaled_chunk(ctx, net, images, c=P.RESCALE_C, rules=None) -> dict:
    """:func:`constants` of the function-preserving rescaling of ``net`` on one chunk of images."""
    return constants(ctx, f"{net} rescaled", images, derive=lambda: derived_model(ctx, net, "rescaled", c),
                     source=net, rules=rules, role="rescaled", study=net, scale=c)


def image_chunks(ctx, net, images) -> list:
    """``images`` (a range from 0) cut to the net's images, in the run's chunks (one chunk unless a run on a user's
    net sets ``ctx.s.chunk``)."""
    images = ctx.image_range(net, images)
    return ctx.s.chunks(images.stop)


def controlled(ctx, net, images, scales=P.SCALES, rules=None) -> dict:
    """{c: constants(...)} of ``net`` with its weights multiplied by c (W_l → c·W_l, biases and BatchNorm kept)."""
    return {c: _concat([controlled_chunk(ctx, net, c, r, rules) for r in image_chunks(ctx, net, images)])
            for c in scales}


def rescaled(ctx, net, images, c=P.RESCALE_C, rules=None) -> dict:
    """{"original": constants, "rescaled": constants} of ``net`` and its function-preserving rescaling (c, 1/c on
    consecutive Linear/Conv2d layers, biases and BatchNorm along: the same logits), plus "logit_change" (the
    largest relative change of the logits over the images) and "same_decision"."""
    base = ctx.model(net)
    model = derived_model(ctx, net, "rescaled", c)
    images = ctx.image_range(net, images)
    X, _ = ctx.images(net, images.stop)
    with torch.no_grad():
        a = np.concatenate([base(model_input(base, X, i)).double().numpy() for i in images])
        b = np.concatenate([model(model_input(model, X, i)).double().numpy() for i in images])
    chunks = image_chunks(ctx, net, images)
    out = {"original": _concat([controlled_chunk(ctx, net, 1.0, r, rules) for r in chunks]),
           "rescaled": _concat([rescaled_chunk(ctx, net, r, c, rules) for r in chunks]),
           "logit_change": float(np.abs(a - b).max() / np.abs(a).max()),
           "same_decision": bool((a.argmax(1) == b.argmax(1)).all())}
    return out


def averages_study(ctx, net, images, perturbations=P.PERTURBATIONS, n=16, n_ref=128, study=None, seed=None) -> list:
    """The convergence of averages (``--extended``, beside B3): e(N) against N and the fitted constant K_rel per
    rule and perturbation on each image (:func:`chainlab.studies.averages`); records ``measure="averages"``."""
    model = ctx.model(net)
    X, _ = ctx.images(net, images.stop)
    rows = []
    for i in images:
        x = model_input(model, X, i)
        for pert, level in perturbations:
            for label in ("gradient", "zplus", "alpha2-beta1", "lrp-epsilon=0.01"):
                name, opts = P.RULES[label]
                rows += averages(model, x, name, perturbation=pert, level=level, n=n, n_ref=n_ref, seed=ctx.s.seed,
                                 label=label, net=net, image=i, n_boot=0, **opts, **_opts(model))
    for r in rows:
        r.update(study=study, seed=seed)
        ctx.record(**r)
    return rows


def sigma_bounds(ctx, net, image=0) -> list:
    """σ1 bounds of the layer matrices and of their product (:func:`chainlab.measures.bounds`) on one image, for
    the gradient, z⁺, α2β1 and LRP-ε 0.01 (figure bounds_tightness.png; no verdict rests on them)."""
    model = ctx.model(net)
    X, _ = ctx.images(net, image + 1)
    x = model_input(model, X, image)
    rows = []
    for label in ("gradient", "zplus", "alpha2-beta1", "lrp-epsilon=0.01"):
        name, opts = P.RULES[label]
        ch = extract(model, x, name, **opts, **_opts(model))
        ch.meta.update(net=net, image=image)
        for r in measures.bounds(ch):
            r["rule"] = label
            rows.append(r)
    for r in rows:
        ctx.record(**r)
    return rows

