"""Composites: which rule each Linear/Conv2d stage of a chain gets.

A :class:`Composite` looks a stage up, in this order, by its chain index, its
module path, the key ``"first"`` (the first Linear/Conv2d stage), the key ``"last"``
(the last Linear/Conv2d stage, the final dense layer of a classifier), its layer type
(an ``nn.Module`` subclass or its name, e.g. ``"Conv2d"``), and finally the
default.  Values are :class:`~chainlab.rules.base.Rule` objects or rule names,
which are built with the options given to :func:`chainlab.extract`.

Named composites (as in zennit and Kohlbrenner et al. 2020):

* ``epsilon-plus``: z⁺ for Conv2d, LRP-ε for Linear;
* ``lrp-cmp``: z^B for the first layer, z⁺ for the other Conv2d, LRP-ε for Linear;
* ``dtd``: z^B for the first layer, z⁺ everywhere else;
* ``lrp-cmp-sixt-a`` / ``lrp-cmp-sixt-b``: LRP-CMP as Sixt et al. 2020 ran it (innvestigate's
  ``LRPSequentialPresetA/B(epsilon=1e-10)``): LRP-ε with ε = ``epsilon`` (1e-10, i.e. ≈ LRP-z) on
  every Linear, LRP-α1β0 (A) or LRP-α2β1 (B) on every Conv2d including the first; no z^B, no flat;
  biases as the bias option says (innvestigate keeps them: the default "zennit");
* ``contrastive-ebp``: contrastive excitation backprop (Sixt et al. 2020 eq. 16): Z⁺ − N⁺
  (:class:`~.lrp.ContrastiveExcitation`) on the last Linear/Conv2d layer, excitation BP elsewhere.
"""
from __future__ import annotations

import torch.nn as nn

from ..errors import OptionError

from .lrp import AlphaBeta, ContrastiveExcitation, Epsilon, ExcitationBP, ZBox, ZPlus


class Composite:
    def __init__(self, mapping: dict | None = None, default=None, name: str = "custom"):
        mapping = dict(mapping or {})
        if "default" in mapping:
            default = mapping.pop("default")
        for key in mapping:
            if not isinstance(key, (int, str)) and not (isinstance(key, type) and issubclass(key, nn.Module)):
                raise OptionError(
                    f"composite key {key!r} must be a chain index (int), a module path, 'first' or 'last' (str), "
                    "or a layer type (nn.Module subclass)"
                )
        self.mapping = mapping
        self.default = default
        self.name = name

    def lookup(self, index: int, n_stages: int, stage, is_first: bool, is_last: bool = False):
        """The rule (object or name) for ``stage`` at chain position ``index``, or None (``is_first``/``is_last``:
        the stage is the first/last Linear/Conv2d stage)."""
        m = self.mapping
        for key in (index, index - n_stages, stage.name):
            if key in m:
                return m[key]
        for path in stage.members:
            if path in m:
                return m[path]
        if is_first and "first" in m:
            return m["first"]
        if is_last and "last" in m:
            return m["last"]
        for key, value in m.items():
            if isinstance(key, type) and stage.module is not None and isinstance(stage.module, key):
                return value
            if isinstance(key, str) and stage.module is not None and key == type(stage.module).__name__:
                return value
        return self.default

    def explicit_keys_for_pools(self, stages) -> list[str]:
        """Index/path keys that point at pooling stages (those take no rule): for a clear error."""
        bad = []
        n = len(stages)
        for i, st in enumerate(stages):
            if st.is_parametric or st.kind == "residual":  # a block's index key applies to its layers
                continue
            for key in (i, i - n, st.name):
                if key in self.mapping:
                    bad.append(f"{key!r} -> {st.describe()}")
        return bad

    def __repr__(self):
        return f"Composite({self.name!r}, {self.mapping!r}, default={self.default!r})"


def epsilon_plus(epsilon: float = 1e-6) -> Composite:
    return Composite({nn.Conv2d: ZPlus(), nn.Linear: Epsilon(epsilon)}, name="epsilon-plus")


def lrp_cmp(low=None, high=None, epsilon: float = 1e-6) -> Composite:
    return Composite({"first": ZBox(low, high), nn.Conv2d: ZPlus(), nn.Linear: Epsilon(epsilon)}, name="lrp-cmp")


def dtd(low=None, high=None) -> Composite:
    return Composite({"first": ZBox(low, high)}, default=ZPlus(), name="dtd")


def lrp_cmp_sixt_a(epsilon: float = 1e-10) -> Composite:
    return Composite({nn.Conv2d: AlphaBeta(1.0, 0.0), nn.Linear: Epsilon(epsilon)}, name="lrp-cmp-sixt-a")


def lrp_cmp_sixt_b(epsilon: float = 1e-10) -> Composite:
    return Composite({nn.Conv2d: AlphaBeta(2.0, 1.0), nn.Linear: Epsilon(epsilon)}, name="lrp-cmp-sixt-b")


def contrastive_ebp() -> Composite:
    return Composite({"last": ContrastiveExcitation()}, default=ExcitationBP(), name="contrastive-ebp")


# name -> factory; a factory's keyword parameters are the composite's options
COMPOSITES = {"epsilon-plus": epsilon_plus, "lrp-cmp": lrp_cmp, "dtd": dtd, "lrp-cmp-sixt-a": lrp_cmp_sixt_a,
              "lrp-cmp-sixt-b": lrp_cmp_sixt_b, "contrastive-ebp": contrastive_ebp}

