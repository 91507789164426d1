"""Sixt et al. 2020 with the paper's own protocol, run on a model: the passes behind Figs. 1, 4 and 5.

The methods and how their maps are read are the paper's table (:data:`SIXT_METHODS`, from the
authors' code ``get_analyser_params``): a method is an id, the paper's label, the ``extract`` rule
name with its options, the channel reduction of its maps (``absmax`` for gradient-type, ``sum`` for
LRP-type and DeepLIFT) and its group in the paper's CSC statement.  Adding a method = adding a row
(any name :func:`chainlab.extract` accepts: every one has the batched backward).

* :func:`sixt_pass` — one pass of a method over N images in batches (:func:`chainlab.extraction.extract_batch`):
  CSC gaps 1 − |cos| for signals injected at the given boundaries (``vectors`` N(0, I) signals per image and
  boundary, seeded by (seed, image, boundary), the same for every method), read at every lower boundary,
  and the explanations of given target logits (random-logit SSIM, two-object scenes).
* :func:`cascading` — Fig. 4b: layers re-initialized from the top, cumulatively (keras' glorot-uniform
  weights, zero biases, BatchNorm reset, as the authors' ``load_model(load_weights=False)``), the
  SSIM of each step's map with the original (:func:`chainlab.measures.maps.ssim_flipped`).  Pattern
  methods keep the trained patterns; PatternAttribution keeps A ⊙ W of the trained net (in the
  authors' code the analyzer's A ⊙ W is fixed when it is built).
* :func:`prefix_columns` — columns of P_k = M_1 ⋯ M_k (unit signals at boundary k read at the input),
  the sampled matrices whose rank-1 convergence Theorem 1 predicts.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from ..errors import InputError, MissingFileError, PatternError, UnsupportedLayerError
from ..extraction import extract_batch, forward_batch, method_names
from ..measures.csc import cosine_gaps, pair_list
from ..measures.maps import reduce_channels, ssim_flipped
from ..nets.data import INPUT_BOUNDS
from ..rules import PatternAttribution, PatternNet
from ..rules.pattern_rules import resolve_patterns
from ..trace import eval_mode, trace, walk_stages
from .explanations import Traced, smoothgrad

__all__ = ["SixtMethod", "SIXT_METHODS", "SMOOTHGRAD", "PROPORTIONAL_VARIANTS", "DEEPLIFT_PM", "AUTHORS",
           "explanations",
           "PassResult", "sixt_passes", "sixt_pass", "cascading", "cascading_many", "glorot_reinit",
           "prefix_columns", "iter_prefix_columns", "prepared_rule", "available", "as_images"]


@dataclass(frozen=True)
class SixtMethod:
    """One row of the paper's method table.

    ``group``: "converging" (the paper: CSC ≥ 0.99), "excepted" (LRP-z and DeepLIFT: not converging),
    "ablation" (DeepLIFT ablation: converges, S3), "reference" (the gradient), "extra" (discussed in the
    paper outside Figs. 4–5: LRP-CMP (Fig. 6), excitation BP, the contrastive methods (§6); reported only).  ``residual``: run on nets
    with residual blocks (the paper leaves DTD and the pattern methods out of ResNet-50).
    ``percentile``: the SSIM normalization percentile (100 for RectGrad, as the authors' code)."""

    id: str
    label: str
    rule: str
    options: tuple = ()
    reduce: str = "sum"
    group: str = "converging"
    residual: bool = True
    percentile: float = 99.5

    def opts(self) -> dict:
        return dict(self.options)


AUTHORS = (("residual", "authors"),)
SIXT_METHODS = (
    SixtMethod("guided-bp", "GuidedBP", "guided-bp", reduce="absmax"),
    SixtMethod("deconv", "Deconv", "deconv", reduce="absmax"),
    SixtMethod("rectgrad", "RectGrad", "rectgrad", (("q", 98),), reduce="absmax", percentile=100.0),
    SixtMethod("dtd", "DTD", "dtd", (("low", INPUT_BOUNDS[0]), ("high", INPUT_BOUNDS[1])), residual=False),
    SixtMethod("patternattribution", "PatternAttr.", "patternattribution", residual=False),
    SixtMethod("patternnet", "PatternNet", "patternnet", residual=False),
    # the αβ rules (and LRP-CMP below) with the authors' ResNet rule at residual sums and BatchNorms
    # (monkey_patch_lrp_resnet.py, used for every αβ analyzer: get_custom_rule :224-234); no effect on plain nets
    SixtMethod("lrp-a1b0", "LRP α1β0", "zplus", AUTHORS),
    SixtMethod("lrp-a2b1", "LRP α2β1", "alpha-beta", (("alpha", 2.0), ("beta", 1.0)) + AUTHORS),
    SixtMethod("lrp-a5b4", "LRP α5β4", "alpha-beta", (("alpha", 5.0), ("beta", 4.0)) + AUTHORS),
    SixtMethod("lrp-z", "LRP-z", "lrp-0", group="excepted"),
    # DeepLIFT as the authors ran it: the deeplift package's rule (chainlab.extraction.deeplift; the ± rule with
    # parts carried through the net is "deeplift-*-pm": DEEPLIFT_PM, measured beside)
    SixtMethod("deeplift-revealcancel", "DeepLIFT Rev.C.", "deeplift-revealcancel", group="excepted"),
    SixtMethod("deeplift-rescale", "DeepLIFT Resc.", "deeplift-rescale", group="excepted"),
    SixtMethod("deeplift-ablation", "DeepLIFT Abla.", "deeplift-ablation", group="ablation"),
    SixtMethod("gradient", "Gradient", "gradient", reduce="absmax", group="reference"),
    # methods the paper discusses beside Fig. 4/5 (§2, §6; not in the authors' code): reported, in no decision
    SixtMethod("lrp-cmp-a1b0", "LRP CMP α1β0", "lrp-cmp-sixt-a", AUTHORS, group="extra"),
    SixtMethod("lrp-cmp-a2b1", "LRP CMP α2β1", "lrp-cmp-sixt-b", AUTHORS, group="extra"),
    SixtMethod("excitation-bp", "Excitation BP", "excitation-bp", group="extra"),
    SixtMethod("contrastive-ebp", "Contrastive EBP", "contrastive-ebp", group="extra"),
    SixtMethod("contrastive-lrp", "Contrastive LRP", "contrastive-lrp", group="extra"),
)

# the αβ methods with chainlab's own residual rule (relevance split z_t/s(z), BatchNorm folded): measured beside the
# authors' rule on residual nets (issue 24 §3: S1 with both rules)
PROPORTIONAL_VARIANTS = tuple(
    dataclasses.replace(m, id=f"{m.id}-proportional", label=f"{m.label} (z_t/z split)", group="extra",
                        options=tuple(o for o in m.options if o[0] != "residual"))
    for m in SIXT_METHODS if m.id in ("lrp-a1b0", "lrp-a2b1", "lrp-a5b4"))

# SmoothGrad (the authors' table, Fig. 4 only: ['exclude_cos_sim'] in when_explanations_lie.py:435-436): the mean
# gradient of the explained logit over n = 50 noisy copies x + N(0, σ²I), σ = 0.15 × the input range (:409-410).
# A map, not a chain: no CSC; explanations by :func:`explanations`.
# DeepLIFT's ± rule (the (+, −) parts carried through the net, two multipliers per neuron; extraction.deeplift_pm):
# not the authors' rule, measured beside S3 (--extended) with tied and independent ± injections
DEEPLIFT_PM = tuple(
    dataclasses.replace(m, id=f"{m.id}-pm", label=f"{m.label} ±", rule=f"{m.rule}-pm", group="extra")
    for m in SIXT_METHODS if m.id.startswith("deeplift-"))

SMOOTHGRAD = SixtMethod("smoothgrad", "SmoothGrad", "smoothgrad", (("n", 50), ("noise_scale", 0.15)),
                        reduce="absmax", group="reference")


def available(model, method: SixtMethod, net=None):
    """(True, "") if the method runs on ``model`` (traced: ``net``), else (False, why): residual nets without the
    method's residual support (the paper's exclusions, or extract's), pattern methods without a pattern file."""
    if method.rule not in method_names() and method.rule != SMOOTHGRAD.rule:
        return False, "not a method of this chainlab"
    if net is None:
        with eval_mode(model):
            net = trace(model)
    residual = any(s.kind == "residual" for s in net.stages)
    if residual and not method.residual:
        return False, "not run on residual nets (as the paper)"
    if method.rule == SMOOTHGRAD.rule:
        return True, ""
    if method.rule.startswith("pattern"):
        try:
            resolve_patterns(model, dict(method.options).get("patterns")).check(net)
        except (MissingFileError, PatternError) as e:     # a missing or stale file is a reason, reported
            return False, f"no patterns ({type(e).__name__}: {e})"
    if residual and getattr(model, "input_shape", None) is not None:
        try:
            extract_batch(model, torch.zeros(model.input_shape), method.rule, **method.opts())
        except UnsupportedLayerError as e:
            return False, str(e)
    return True, ""


# ---------------------------------------------------------------------------------------------
# batches: the batched backward of every method


def _batch(model, X, method, rule, dtype, forward):
    """The batch chain of ``method`` on the images X (``rule``: a prepared rule object standing for the
    method's rule, or None)."""
    if rule is not None:
        return extract_batch(model, X, rule, dtype=dtype, forward=forward)
    return extract_batch(model, X, method.rule, dtype=dtype, forward=forward, **method.opts())


def prepared_rule(model, method: SixtMethod, net=None):
    """The method's rule object with its patterns loaded and checked once (pattern methods), else None."""
    if not method.rule.startswith("pattern"):
        return None
    if net is None:
        with eval_mode(model):
            net = trace(model)
    opts = method.opts()
    r = (PatternNet if method.rule == "patternnet" else PatternAttribution)(**opts)
    r.prepare(net, model)
    return r


# ---------------------------------------------------------------------------------------------
# one pass: CSC gaps and explanations


@dataclass
class PassResult:
    """What :func:`sixt_passes` measured for one method on N images.

    gaps[(k, mode)][j]: list of float32 arrays (B, pairs, locations) of 1 − |cos| (NaN: zero vector), mode
    "tied" or "independent" (the ± injection of DeepLIFT's -pm chains); d[j] channel dimension; names, shapes of the
    boundaries; explanations[name]: (N, *input) float64; predicted (N,), logits (N, K); seconds."""

    gaps: dict = field(default_factory=dict)
    d: dict = field(default_factory=dict)
    names: list = field(default_factory=list)
    shapes: list = field(default_factory=list)
    explanations: dict = field(default_factory=dict)
    predicted: np.ndarray | None = None
    logits: np.ndarray | None = None
    seconds: float = 0.0
    batched: bool = True
    n_images: int = 0


def _channels(shape):
    return int(shape[0]) if len(shape) == 3 else int(np.prod(shape))


def _signals(seed, ids, k, shape, vectors, tag=()):
    n = int(np.prod(shape))
    V = np.stack([np.random.default_rng((seed, int(i), int(k)) + tag).standard_normal((vectors, n)) for i in ids])
    return torch.as_tensor(V).reshape((len(ids), vectors) + tuple(shape))


def sixt_passes(model, X, methods, *, injections=(), vectors: int = 5, pairs: int = 10, side: str = "post",
                targets=None, independent=False, seed: int = 0, image_ids=None, dtype: str = "float32",
                batch: int = 25, rules=None, progress=None, net=None) -> dict:
    """{method.id: :class:`PassResult`}: one pass of each method over the images X (N, …), in batches of
    ``batch`` images whose forward pass all methods share.

    injections: boundary indices k (1..L, L = the logits) where ``vectors`` N(0, I) signals per image are
    injected — after the activation of stage k−1 (``side="post"``) or at its pre-activation output
    (``side="pre"``; signals are then also read before each activation); every boundary j < k is read and
    the first ``pairs`` pairs of the signals give 1 − |cos| per location.  Signals are seeded by (seed,
    image id, k): every method sees the same ones.  targets: {name: (N,) logit indices} whose
    explanations are returned.  independent: DeepLIFT's ± chains (the ``-pm`` variants: two multipliers per
    neuron) also with independent signals for the + and − multipliers (mode "independent"; the package's rule
    has one multiplier per neuron and no such mode); True for every image, a number n for the batches that start
    below image n.  image_ids: the images' global indices (default 0..N−1).
    rules: {method.id: prepared rule object} (pattern rules: loaded once; cascading: fixed patterns).
    progress: called with the number of images after each batch and method.  net: the model traced once."""
    X = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X).to(torch.float64)
    N = X.shape[0]
    ids = np.arange(N) if image_ids is None else np.asarray(image_ids)
    targets = {k: np.asarray(v, dtype=np.int64).reshape(-1) for k, v in (targets or {}).items()}
    rules = dict(rules or {})
    if net is None:
        with eval_mode(model):
            net = trace(model)
    for m in methods:
        if m.id not in rules:
            rules[m.id] = prepared_rule(model, m, net)
    pl = pair_list(vectors, pairs)
    out = {m.id: PassResult(n_images=N) for m in methods}
    expl = {m.id: {name: [] for name in targets} for m in methods}
    preds, logits = {m.id: [] for m in methods}, {m.id: [] for m in methods}
    for s in range(0, N, batch):
        xb = X[s:s + batch]
        B = xb.shape[0]
        fwd = forward_batch(model, xb, dtype, net=net)
        net = fwd[0]
        for m in methods:
            t0 = time.perf_counter()
            res = out[m.id]
            bc = _batch(model, xb, m, rules[m.id], dtype, fwd)
            res.names, res.shapes = list(bc.names), list(bc.shapes)
            preds[m.id].append(bc.predicted)
            logits[m.id].append(bc.logits.numpy())
            L = len(bc)
            done = False
            for k in injections:
                V = _signals(seed, ids[s:s + B], k, bc.shapes[k], vectors)
                modes = [("tied", bc.inject(V))]
                if bc.paired and independent and (independent is True or s < int(independent)):
                    modes.append(("independent", bc.inject(V, _signals(seed, ids[s:s + B], k, bc.shapes[k],
                                                                       vectors, (1,)))))
                plain = k == L and bc.linear_explain and (side == "post" or not bc.stages[L - 1].has_act)
                for mode, R in modes:
                    extra = []
                    if mode == "tied" and plain and targets and not done:
                        for name in targets:
                            extra.append(name)
                            R = torch.cat([R, bc.start(targets[name][s:s + B]).to(R.dtype)], dim=1)
                        done = True
                    acc = res.gaps.setdefault((k, mode), {})
                    for j, S in bc.signals(R, k, inject=side, measure=side):
                        g = cosine_gaps(S[:, :vectors].numpy(), bc.shapes[j], pl)
                        acc.setdefault(j, []).append(g.astype(np.float32))         # relative precision kept
                        res.d[j] = _channels(bc.shapes[j])
                        if j == 0:
                            for t, name in enumerate(extra):
                                expl[m.id][name].append(S[:, vectors + t].to(torch.float64).numpy())
            if targets and not done:
                for name in targets:
                    expl[m.id][name].append(bc.explain(targets[name][s:s + B]).to(torch.float64).numpy())
            bc = R = S = None    # one method's batch chain alive at a time (a VGG's αβ chain holds W⁺, W⁻: GBs)
            res.seconds += time.perf_counter() - t0
            if progress is not None:
                progress(B)
    for m in methods:
        r = out[m.id]
        r.explanations = {k: np.concatenate(v) for k, v in expl[m.id].items()}
        r.predicted = np.concatenate(preds[m.id])
        r.logits = np.concatenate(logits[m.id])
    return out


def sixt_pass(model, X, method: SixtMethod, **kw) -> PassResult:
    """:func:`sixt_passes` for one method."""
    return sixt_passes(model, X, [method], **kw)[method.id]


# ---------------------------------------------------------------------------------------------
# Fig. 4b: cascading parameter randomization


def as_images(E) -> np.ndarray:
    """Explanations (N, C, H, W) as they are; flat ones (N, n) with n = s² as one-channel images (N, 1, s, s)."""
    E = np.asarray(E)
    if E.ndim == 2:
        s = int(round(math.sqrt(E.shape[1])))
        if s * s != E.shape[1]:
            raise InputError(f"cannot make square maps of {E.shape[1]} values")
        return E.reshape(E.shape[0], 1, s, s)
    return E


def glorot_reinit(model: nn.Module, names, generator: torch.Generator) -> None:
    """Re-initialize the modules ``names`` (and everything inside them) in place as keras does for a fresh
    model: Conv2d/Linear weights glorot-uniform (fan_in = in·kh·kw, fan_out = out·kh·kw), biases 0;
    BatchNorm γ = 1, β = 0, running mean 0, running variance 1."""
    for name in names:
        root = model.get_submodule(name)
        for m in root.modules():
            with torch.no_grad():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    w = m.weight
                    rf = int(np.prod(w.shape[2:])) if w.ndim > 2 else 1
                    fan_in, fan_out = w.shape[1] * rf, w.shape[0] * rf
                    lim = math.sqrt(6.0 / (fan_in + fan_out))
                    w.copy_((torch.rand(w.shape, generator=generator, dtype=torch.float64) * 2 - 1) * lim)
                    if m.bias is not None:
                        m.bias.zero_()
                elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    m.reset_running_stats()
                    if m.affine:
                        m.weight.fill_(1.0)
                        m.bias.zero_()


def _frozen_pattern_rule(model, method: SixtMethod):
    """The pattern methods under randomization: PatternNet with the trained A; PatternAttribution as
    PatternNet with the fixed kernel A ⊙ W of the trained net (the authors' analyzer)."""
    with eval_mode(model):
        net = trace(model)
    pats = resolve_patterns(model, dict(method.options).get("patterns"))
    pats.check(net, what=f"model {getattr(model, 'name', type(model).__name__)!r}")
    table = pats.of_kind(dict(method.options).get("pattern_type", "relu"))
    r = PatternNet(pattern_type=dict(method.options).get("pattern_type", "relu"))
    if method.rule == "patternattribution":
        weights = {st.name: st.weight.numpy() for _, st in walk_stages(net.stages) if st.is_parametric}
        table = {k: v * weights[k] for k, v in table.items()}
    r.table = table
    r.fingerprint = pats.net_fingerprint
    return r


def explanations(model, X, method: SixtMethod, targets, *, dtype: str = "float32", batch: int = 50, rule=None,
                 seed: int = 0, image_ids=None) -> np.ndarray:
    """The maps (N, *input) of ``method`` for the logits ``targets`` (N,): a chain method's explanation, or
    SmoothGrad's mean gradient of the logit over n noisy copies (noise N(0, σ²I), σ = noise_scale × the width of
    :data:`~chainlab.nets.data.INPUT_BOUNDS`; the noise of image i seeded by (seed, image id i))."""
    X = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X).to(torch.float64)
    targets = np.asarray(targets, dtype=np.int64).reshape(-1)
    if method.rule != SMOOTHGRAD.rule:
        return sixt_pass(model, X, method, targets={"t": targets}, dtype=dtype, batch=batch,
                         rules={method.id: rule}).explanations["t"]
    o = method.opts()
    sigma = float(o["noise_scale"]) * (INPUT_BOUNDS[1] - INPUT_BOUNDS[0])
    ids = np.arange(len(X)) if image_ids is None else np.asarray(image_ids)
    tr = Traced(model, dtype)
    return np.concatenate([smoothgrad(model, X[i:i + 1], sigma=sigma, n=int(o["n"]), seed=(seed, int(ids[i])),
                                      targets=targets[i:i + 1], of="logit", dtype=dtype, traced=tr)
                           for i in range(len(X))])


def cascading(model, X, targets, method: SixtMethod, steps, *, original=None, seed: int = 0,
              dtype: str = "float32", batch: int = 50, progress=None, reinit=None, keep: int = 0,
              image_ids=None, original_maps=None) -> list[dict]:
    """SSIM (Sixt's ``ssim_flipped(randomized map, original map)``) of each step of cumulative top-down
    re-initialization: ``steps`` = [(label, [module names])] applied in order; the same random draw for
    every method (seeded).  Returns [{step, label, values (N,), maps}], step 0 = the original model (SSIM 1);
    ``maps``: the channel-reduced maps of the first ``keep`` images (Fig. 1a's grid), step 0 included as
    ``out[0]["original"]``.  ``reinit(model, names, generator)``: the re-initialization (default
    :func:`glorot_reinit`); ``original_maps``: the channel-reduced maps of the original net, when known.
    :func:`cascading_many` for one method."""
    return cascading_many(model, X, targets, [method], steps, originals={method.id: original}, seed=seed,
                          dtype=dtype, batch=batch, progress=progress, reinit=reinit, keep=keep,
                          image_ids=image_ids, original_maps={method.id: original_maps})[method.id]


def cascading_many(model, X, targets, methods, steps, *, originals=None, seed: int = 0, dtype: str = "float32",
                   batch: int = 50, progress=None, reinit=None, keep: int = 0, image_ids=None,
                   original_maps=None) -> dict:
    """{method.id: :func:`cascading`'s list} for several methods on one randomized copy: each step re-initializes
    the copy once (one seeded draw, the same as each method alone would see) and every chain method's maps come
    from one shared forward pass of it (:func:`sixt_passes`; SmoothGrad alone).  ``originals`` / ``original_maps``:
    {method.id: explanations / channel-reduced maps of the original net} where known."""
    X = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X).to(torch.float64)
    targets = np.asarray(targets, dtype=np.int64)
    reinit = glorot_reinit if reinit is None else reinit
    originals, original_maps = dict(originals or {}), dict(original_maps or {})
    rules = {m.id: _frozen_pattern_rule(model, m) if m.rule.startswith("pattern") else None for m in methods}
    kw = dict(dtype=dtype, batch=batch, seed=seed, image_ids=image_ids)
    m0 = {}
    for m in methods:
        if original_maps.get(m.id) is not None:
            m0[m.id] = np.asarray(original_maps[m.id])
        else:
            o = originals.get(m.id)
            if o is None:
                o = explanations(model, X, m, targets, rule=rules[m.id], **kw)
            m0[m.id] = reduce_channels(as_images(o), m.reduce)
    rnd = copy.deepcopy(model).to(torch.float64) if next(model.parameters()).dtype == torch.float64 else copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    chain = [m for m in methods if m.rule != SMOOTHGRAD.rule]
    out = {m.id: [] for m in methods}
    for i, (label, names) in enumerate(steps, start=1):
        reinit(rnd, names, g)
        maps = {}
        if chain:
            res = sixt_passes(rnd, X, chain, targets={"t": targets}, dtype=dtype, batch=batch,
                              rules={m.id: rules[m.id] for m in chain})
            maps = {m.id: res[m.id].explanations["t"] for m in chain}
        for m in methods:
            e = maps[m.id] if m.id in maps else explanations(rnd, X, m, targets, rule=rules[m.id], **kw)
            mm = reduce_channels(as_images(e), m.reduce)
            out[m.id].append({"step": i, "label": label, "values": ssim_flipped(mm, m0[m.id], m.percentile),
                              "maps": mm[:keep]})
        if progress is not None:
            progress(1)
    for m in methods:
        if out[m.id]:
            out[m.id][0]["original"] = m0[m.id][:keep]
    return out


# ---------------------------------------------------------------------------------------------
# Theorem 1: sampled columns of the prefix products


PREFIX_BLOCK_BYTES = 128 << 20     # most bytes of one block's unit signals at a boundary (B · block · n_k values)


def iter_prefix_columns(model, X, method: SixtMethod, *, columns: int = 64, seed: int = 0, dtype: str = "float64",
                        rule=None):
    """(names, generator of (k, Y_k)) for k = 1..L with Y_k (N, n_input, c_k) = P_k E_k: the input signals of
    ``c_k`` = min(columns, n_k) unit signals e_j at boundary k (j sampled without replacement, seeded by (seed, k)),
    i.e. c_k sampled columns of P_k = M_1 ⋯ M_k of each image's chain.  One Y_k is alive at a time, and the unit
    signals go through the chain in blocks of columns of at most PREFIX_BLOCK_BYTES: one block, all c_k columns, on
    every shipped net (4 images × 64 columns × 65 536 float32 values ≤ 128 MB); 10 columns on a VGG-16 at 224×224
    (peak RSS 4.5 GB there, 7.2 GB with 256 MB blocks).  How the columns are cut changes their signals only by the
    float32 rounding of a convolution's batch size."""
    X = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X).to(torch.float64)
    bc = _batch(model, X, method, rule if rule is not None else prepared_rule(model, method), dtype,
                forward_batch(model, X, dtype))
    B = X.shape[0]
    tdt = torch.float32 if dtype == "float32" else torch.float64

    def gen():
        for k in range(1, len(bc) + 1):
            n_k = int(np.prod(bc.shapes[k]))
            c = min(columns, n_k)
            idx = np.sort(np.random.default_rng((seed, k)).choice(n_k, size=c, replace=False))
            block = max(1, min(c, PREFIX_BLOCK_BYTES // (B * n_k * tdt.itemsize)))
            Y = np.empty((B, int(np.prod(bc.shapes[0])), c), dtype=np.float64)
            for lo in range(0, c, block):
                hi = min(c, lo + block)
                E = torch.zeros((B, hi - lo, n_k), dtype=tdt)
                E[:, np.arange(hi - lo), idx[lo:hi]] = 1.0          # unit signals: exact in either dtype
                out = bc.apply(bc.inject(E.reshape((B, hi - lo) + tuple(bc.shapes[k]))), k)
                E = None
                Y[:, :, lo:hi] = out.reshape(B, hi - lo, -1).transpose(1, 2).to(torch.float64).numpy()
            yield k, Y

    return list(bc.names), gen()


def prefix_columns(model, X, method: SixtMethod, *, columns: int = 64, seed: int = 0, dtype: str = "float64",
                   rule=None):
    """({k: Y_k}, names): every boundary's columns of :func:`iter_prefix_columns` at once."""
    names, gen = iter_prefix_columns(model, X, method, columns=columns, seed=seed, dtype=dtype, rule=rule)
    return dict(gen), names
