"""Training seeds of a net: the shipped seed names of a study net, and the seed a name stands for.

A net trained from several seeds ships as ``<name>`` (seed 0) and ``<name>-seed<k>``
(:func:`chainlab.nets.models.seed_names`).  The claims decided over seeds (Binder's slopes, Mehrpanah's β
trend) take the seed as the resampling unit: :func:`family` gives {seed: name} of the seeds a run can use —
shipped nets whose weights are present, or nets the user registered under those names.
"""
from __future__ import annotations

import re

from ..errors import OptionError
from ..nets import models

__all__ = ["seed_names", "seed_of", "family"]

_SUFFIX = re.compile(r"^(?P<base>.+)-seed(?P<k>[0-9]+)$")


def seed_names(name: str) -> tuple:
    """Every shipped seed name of net ``name`` (seed 0 first).  Until the seeds land in
    :mod:`chainlab.nets.models` (branch train-seeds) only ``name`` itself (seed 0)."""
    fn = getattr(models, "seed_names", None)
    return (name,) if fn is None else tuple(fn(name))


def seed_of(name: str) -> int:
    """The training seed a net name stands for: k for ``<base>-seed<k>``, else 0."""
    m = _SUFFIX.match(str(name))
    return int(m.group("k")) if m else 0


def family(ctx, name: str) -> tuple[dict, list]:
    """({seed: net name} of the seeds of ``name`` that the run has — shipped with weights, or registered by the
    user (also as ``<name>-seed<k>``) —, [the seed names without weights; ``ctx.missing`` has the reasons])."""
    have, missing = {}, []
    try:
        names = list(seed_names(name))
    except OptionError:                  # not a shipped net: the user's own, registered under its name
        names = [name]
    names += sorted((n for n in ctx.registered if n not in names and _SUFFIX.match(n)
                     and _SUFFIX.match(n).group("base") == name), key=seed_of)
    for n in names:
        if ctx.shipped(n) is None:
            missing.append(n)
        else:
            have[seed_of(n)] = n
    return have, missing
