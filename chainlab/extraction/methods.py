"""The whole-chain methods whose backward is not built from layer rules alone: a static table.

Each :class:`Method` names the common options it takes (those it would ignore are refused), its own
options, and whether it handles residual blocks and implicit (``materialize=False``) operators.  Its
``build`` makes the method's stage operators at any number of inputs (a :class:`~chainlab.chain.BatchChain`):
``extract`` asks it for one input's chain, ``extract_batch`` uses it as it is.
The methods: ``deeplift-rescale``, ``deeplift-revealcancel``, ``deeplift-ablation`` (:mod:`.deeplift`, the
deeplift package's rule) and their ± variants ``deeplift-*-pm`` (:mod:`.deeplift_pm`),
``guided-bp``, ``deconv``, ``rectgrad`` (:mod:`.rectified`), ``contrastive-lrp``,
``contrastive-lrp-nomax`` (:mod:`.contrastive`: the z⁺ chain with a contrastive explanation).
Everything else — a layer-rule or composite name, a Rule, a Composite or a dict — is the layer-rule
method of :mod:`.layerwise`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable

from .contrastive import VARIANTS as CONTRASTIVE
from .contrastive import build_contrastive
from .deeplift import OWN_OPTIONS as DEEPLIFT_OPTIONS
from .deeplift import VARIANTS, build_deeplift
from ..options import check_known
from ..rules import resolve
from .options import COMMON, ExtractOptions
from .rectified import OWN_OPTIONS as RECTIFIED_OPTIONS
from .rectified import build_rectified

__all__ = ["Method", "METHODS", "Request", "parse_request"]


@dataclass(frozen=True)
class Method:
    """A whole-chain method: ``build(model, net, xt, records, opts, own) -> BatchChain``."""

    name: str
    build: Callable
    common: tuple = ("dtype",)
    own: tuple = ()
    residual: bool = False
    implicit: bool = False


METHODS = {
    **{f"deeplift-{v}": Method(f"deeplift-{v}", partial(build_deeplift, variant=v), own=DEEPLIFT_OPTIONS, residual=True)
       for v in VARIANTS},
    **{r: Method(r, partial(build_rectified, rule=r), own=own, residual=True) for r, own in RECTIFIED_OPTIONS.items()},
    # the z⁺ layer-rule chain (every common option, residual blocks, implicit operators) with a contrastive explain()
    **{r: Method(r, partial(build_contrastive, rule=r), common=COMMON, residual=True, implicit=True)
       for r in CONTRASTIVE},
}


@dataclass(frozen=True)
class Request:
    """One validated extraction request: a whole-chain ``method`` with its ``own`` options, or (method None) the
    ``composite`` of a layer rule / composite with the rule options it ``used``; ``opts`` the common options."""

    method: Method | None
    opts: ExtractOptions
    own: dict = field(default_factory=dict)
    composite: object = None
    used: dict = field(default_factory=dict)


def parse_request(rule, options: dict, where: str, common: tuple = COMMON) -> Request:
    """Check ``options`` once for ``rule``: a method takes its own options and the common ones it lists (those
    also in ``common``), a layer rule / composite its rules' options and ``common``; anything else is an
    OptionError naming the rule."""
    method = METHODS.get(rule) if isinstance(rule, str) else None
    if method is not None:
        allowed = tuple(c for c in method.common if c in common)
        check_known(options, method.own, where, common=allowed)
        return Request(method, ExtractOptions.of(options, allowed, where),
                       own={k: options[k] for k in method.own if k in options})
    composite, used, takes = resolve(rule, {k: v for k, v in options.items() if k not in COMMON})
    check_known(options, takes, where, common=common)
    return Request(None, ExtractOptions.of(options, common, where), composite=composite,
                   used={k: options[k] for k in used})
