"""``extract(model, x, rule)`` and ``extract_batch(model, X, rule)``: one backward path, one input or many.

Both validate the options once (:class:`~.options.ExtractOptions`, the rule's own options), read the model
into stages (:func:`chainlab.trace.trace`, BatchNorm folded), run them on the input(s), check that they
reproduce the model's logits, and build the method's stage operators (:func:`build`): a whole-chain method of
:mod:`.methods` (DeepLIFT, guided BP, deconv, RectGrad, contrastive LRP) or the layer-rule method of
:mod:`.layerwise`.  They differ only in how many inputs they take and what they return:

* :func:`extract` — one input, forward in float64; the :class:`~chainlab.chain.Chain` of that input: the stage
  operators themselves (``materialize=False``) or their explicit matrices, stored in ``dtype``;
* :func:`extract_batch` — B inputs, forward and signals in ``dtype``; the :class:`~chainlab.chain.BatchChain`,
  which propagates signals (B, m, *shape) through the same stage operators (it has no matrices).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ..chain import BatchChain
from ..errors import InputError, OptionError, UnsupportedLayerError
from ..rules import COMPOSITES, RULES, rule_names
from ..trace import check_logits, eval_mode, trace
from .layerwise import build_layerwise
from .methods import METHODS, parse_request
from .options import COMMON

__all__ = ["extract", "extract_batch", "forward_batch", "batch_supported", "method_names", "TORCH_DTYPES"]

TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32}
BATCH_COMMON = tuple(k for k in COMMON if k not in ("materialize", "dtype"))   # dtype: extract_batch's own argument


def method_names() -> list[str]:
    """Every rule, composite and method name ``extract`` accepts."""
    return sorted(set(rule_names()) | set(METHODS))


def batch_supported(rule) -> bool:
    """Whether :func:`extract_batch` builds ``rule``: every rule, composite and method ``extract`` knows (the one
    path serves both); False only for an unknown name."""
    return not isinstance(rule, str) or rule in RULES or rule in COMPOSITES or rule in METHODS


def _where(rule) -> str:
    return f"rule {rule!r}" if isinstance(rule, str) else f"rule {getattr(rule, 'name', type(rule).__name__)!r}"


def _check_rule(model, rule):
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module (e.g. chainlab.models.load(name)), got "
                         f"{type(model).__name__}")
    if isinstance(rule, str) and rule not in METHODS and rule not in RULES and rule not in COMPOSITES:
        raise OptionError(f"unknown rule {rule!r}; known rules: {', '.join(method_names())}")


def build(model, net, xt, records, rule, req) -> BatchChain:
    """The stage operators of the request ``req`` (:func:`~.methods.parse_request` of ``rule``) at the inputs xt,
    records = net.forward(xt): what extract and extract_batch share."""
    method, opts = req.method, req.opts
    with torch.no_grad():
        if method is None:
            return build_layerwise(model, net, xt, records, opts, req.composite, req.used)
        blocks = [s.name for s in net.stages if s.kind == "residual"]
        if blocks and not method.residual:
            raise UnsupportedLayerError(f"rule {rule!r} does not support residual blocks ({', '.join(blocks)})")
        return method.build(model, net, xt, records, opts, req.own)


def extract(model, x, rule, *, forward=None, **options):
    """Extract the chain of per-layer backward matrices of ``model`` at input ``x`` under ``rule``.

    Parameters
    ----------
    model : torch.nn.Module
        A plain chain of supported layers, possibly with residual blocks (see
        :data:`chainlab.trace.SUPPORTED`).  A model in training mode is extracted in eval mode and
        restored, with a warning.
    x : tensor or array
        One input with batch dimension 1; an unbatched input gets the batch dimension added.
    rule : str | Rule | Composite | dict
        A rule name ("gradient", "gradient-x-input", "lrp-0", "lrp-epsilon", "zplus", "alpha-beta",
        "gamma", "zbox", "wsquare", "flat", "excitation-bp", "contrastive-excitation", "patternnet",
        "patternattribution", "smooth-gradient"), a composite name ("epsilon-plus", "lrp-cmp", "dtd",
        "lrp-cmp-sixt-a", "lrp-cmp-sixt-b", "contrastive-ebp"), a method ("deeplift-rescale",
        "deeplift-revealcancel", "deeplift-ablation" — the deeplift package's rule — and their ± variants
        "deeplift-rescale-pm", …, "guided-bp", "deconv", "rectgrad", "contrastive-lrp", "contrastive-lrp-nomax"),
        a Rule object, or a composite mapping layer index / module path / "first" / "last" / layer type to rules.
    **options
        The common options (:mod:`chainlab.extraction.options`: bias, stabilizer, dtype, avgpool,
        materialize, residual — each method takes those it uses and refuses the rest) and the rule's
        own (epsilon, alpha, beta, gamma, low, high, patterns, pattern_type, reference, sigma, q, …).
        Anything else raises :class:`~chainlab.errors.OptionError`.
    forward : (net, records), optional
        :func:`forward_batch` of this model at this ``x`` in float64 (one trace, forward pass and logit check
        shared by several rules at one input); the records' input must equal ``x`` (checked).
    """
    _check_rule(model, rule)
    req = parse_request(rule, options, _where(rule))
    if req.method is not None and not req.opts.materialize and not req.method.implicit:
        raise OptionError(f"materialize=False is not available for the whole-chain method {rule!r}")
    if forward is not None:
        net, records = forward
        xt = net.prepare_input(x)
        got = records[0].x
        if got.dtype != torch.float64 or got.shape[0] != 1 or not torch.equal(got.reshape(-1), xt.reshape(-1)):
            raise InputError("forward= holds the float64 forward pass of another input than x "
                             "(forward_batch(model, x) of this x)")
    else:
        with eval_mode(model):
            net = trace(model)
            xt = net.prepare_input(x)
            with torch.no_grad():
                records = net.forward(xt)
            check_logits(model, xt, records[-1].out)
    bc = build(model, net, xt, records, rule, req)
    return bc.chain(materialize=req.opts.materialize, dtype=req.opts.np_dtype)


def _torch_dtype(dtype):
    tdt = TORCH_DTYPES.get(dtype)
    if tdt is None:
        raise OptionError(f"option dtype of extract_batch must be one of {', '.join(TORCH_DTYPES)}, got {dtype!r}")
    return tdt


def forward_batch(model, X, dtype: str = "float64", check: bool = True, net=None):
    """(traced net with weights in ``dtype``, records of its forward at the inputs X (B, …)): what
    :func:`extract_batch` builds every method's factors from — compute it once, pass it to many methods.
    ``check``: compare the traced forward with the model's logits (tolerance of the dtype).  ``net``: the
    model already traced (:func:`chainlab.trace.trace`), or the result of an earlier call's net."""
    tdt = _torch_dtype(dtype)
    with eval_mode(model):
        net = (trace(model) if net is None else net).astype(tdt)
        xt = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X).detach().to(tdt)
        net.prepare_input(xt[:1].to(torch.float64))
        with torch.no_grad():
            records = net.forward(xt)
            if check:
                check_logits(model, xt, records[-1].out)
    return net, records


def extract_batch(model, X, rule, *, dtype: str = "float64", check: bool = True, forward=None,
                  **options) -> BatchChain:
    """The backward pass of ``model`` at the inputs X (B, …) under ``rule`` as a :class:`~chainlab.chain.BatchChain`.

    ``rule`` and ``options`` as :func:`extract` (every rule, composite and method; ``materialize`` has no meaning
    for a batch).  ``dtype``: of the forward pass, the factors and the signals ("float32": Sixt's precision,
    several times faster convolutions on CPU; DeepLIFT computes its parts in float64 whatever it is).
    ``forward``: (net, records) of :func:`forward_batch` for these X and dtype (shared by many methods).  Rules
    already prepared (pattern rules with their table set) may be passed as objects and keep their table.

    ``extract_batch(model, x, rule, dtype="float64").chain()`` is ``extract(model, x, rule)`` for one input.
    """
    _check_rule(model, rule)
    tdt = _torch_dtype(dtype)
    req = parse_request(rule, options, _where(rule), common=BATCH_COMMON)
    net, records = forward if forward is not None else forward_batch(model, X, dtype, check)
    xt = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X).detach().to(tdt)
    if xt.shape[0] != records[0].x.shape[0]:
        raise InputError(f"forward holds {records[0].x.shape[0]} inputs, X {xt.shape[0]}")
    return build(model, net, xt, records, rule, req)
