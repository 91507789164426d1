"""``extract(model, x, rule, **options)``: the backward pass of one input as a :class:`~chainlab.chain.Chain`.

Steps: validate the options once (:class:`~.options.ExtractOptions`, the rule's own options), read
the model into stages (:func:`chainlab.trace.trace`, BatchNorm folded), run them in float64 on x and
check that they reproduce the model's logits, then build the chain with the method the rule names:
a whole-chain method of :mod:`.methods` (DeepLIFT, guided BP, deconv, RectGrad, contrastive LRP) or the layer-rule
method of :mod:`.layerwise`.
"""
from __future__ import annotations

import torch.nn as nn

from ..errors import InputError, OptionError, UnsupportedLayerError
from ..rules import COMPOSITES, RULES, rule_names
from ..trace import check_logits, eval_mode, trace
from .layerwise import build_layerwise
from .methods import METHODS, parse_request

__all__ = ["extract", "method_names"]


def method_names() -> list[str]:
    """Every rule, composite and method name ``extract`` accepts."""
    return sorted(set(rule_names()) | set(METHODS))


def extract(model, x, rule, **options):
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
        "patternattribution"), a composite name ("epsilon-plus", "lrp-cmp", "dtd", "lrp-cmp-sixt-a",
        "lrp-cmp-sixt-b", "contrastive-ebp"), a method ("deeplift-rescale", "deeplift-revealcancel",
        "deeplift-ablation", "guided-bp", "deconv", "rectgrad", "contrastive-lrp", "contrastive-lrp-nomax"),
        a Rule object, or a composite mapping layer index / module path / "first" / "last" / layer type
        to rules.
    **options
        The common options (:mod:`chainlab.extraction.options`: bias, stabilizer, dtype, avgpool,
        materialize, residual — each method takes those it uses and refuses the rest) and the rule's
        own (epsilon, alpha, beta, gamma, low, high, patterns, pattern_type, reference, sigma, q, …).
        Anything else raises :class:`~chainlab.errors.OptionError`.
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module (e.g. chainlab.models.load(name)), got "
                         f"{type(model).__name__}")
    if isinstance(rule, str) and rule not in METHODS and rule not in RULES and rule not in COMPOSITES:
        raise OptionError(f"unknown rule {rule!r}; known rules: {', '.join(method_names())}")
    where = f"rule {rule!r}" if isinstance(rule, str) else f"rule {getattr(rule, 'name', type(rule).__name__)!r}"
    req = parse_request(rule, options, where)
    method, opts = req.method, req.opts

    with eval_mode(model):
        net = trace(model)
        xt = net.prepare_input(x)
        records = net.forward(xt)
        check_logits(model, xt, records[-1].out)
    if method is None:
        return build_layerwise(model, net, xt, records, opts, req.composite, req.used)
    blocks = [s.name for s in net.stages if s.kind == "residual"]
    if blocks and not method.residual:
        raise UnsupportedLayerError(f"rule {rule!r} does not support residual blocks ({', '.join(blocks)})")
    if not opts.materialize and not method.implicit:
        raise OptionError(f"materialize=False is not available for the whole-chain method {rule!r}")
    return method.build(model, net, xt, records, opts, req.own)
