"""Names of a package that load on first use (PEP 562), so that ``import chainlab`` imports no layer.

A package's ``__init__`` declares in one literal table what it exports and where each name lives::

    __getattr__, __dir__, LAZY = lazy.attach(__name__, submodules=["linalg", "nets"],
                                             names={".chain": ["Chain"], ".nets": ["data", "models"]})

``pkg.linalg`` then imports the submodule ``pkg.linalg``; ``pkg.Chain`` imports ``pkg.chain`` and returns
its attribute ``Chain`` (module paths are relative to the package, as in ``from .chain import Chain``).
The value is stored in the package's namespace, so ``__getattr__`` runs once per name; ``dir(pkg)`` lists
every name, loaded or not.  The scheme is SPEC 1's ``lazy_loader.attach`` (scikit-image, NetworkX).

The table must be literal: tests/test_layers.py reads it as the package's imports (layer order, circles)
without running it.  The ``import_module`` below is the one import in chainlab made with a computed name;
the layer test allows it here and nowhere else.
"""
from __future__ import annotations

import importlib
import sys

__all__ = ["attach"]


def attach(package: str, submodules=(), names=None):
    """(``__getattr__``, ``__dir__``, sorted exported names) of ``package`` for a PEP 562 ``__init__``.

    ``submodules``: names of the package's own submodules, each exported as the module;
    ``names``: {relative module path: [attribute names]}, each attribute exported under its own name.
    """
    owner = {name: module for module, attrs in (names or {}).items() for name in attrs}
    subs = set(submodules)
    both = sorted(subs & owner.keys())
    if both:
        raise ValueError(f"{package}: {', '.join(both)} named both as submodules and as attributes")
    exported = sorted(subs | owner.keys())

    def __getattr__(name: str):
        if name in subs:
            value = importlib.import_module(f"{package}.{name}")
        elif name in owner:
            value = getattr(importlib.import_module(owner[name], package), name)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(exported))

    return __getattr__, __dir__, exported
