"""Option checking shared by every layer: one way to refuse an unknown option or a bad value.

Each function raises :class:`~chainlab.errors.OptionError` with a message that names the option,
the value it got, and what takes it (``where``, e.g. "rule 'lrp-epsilon'"), so that a bad option
gives the same kind of error wherever it is passed: to ``extract``, to a rule, to a measure or
on the command line.

* :func:`check_known` — every given key must be one of ``allowed``;
* :func:`number` — a real number (never a bool or a string), finite unless ``finite=False``,
  optionally positive / non-negative / integral / inside [low, high];
* :func:`choice` — one of a fixed set of strings;
* :func:`flag` — True or False.
"""
from __future__ import annotations

import math
import numbers

from .errors import OptionError

__all__ = ["check_known", "number", "choice", "flag"]


def _names(keys) -> str:
    return ", ".join(sorted(map(str, keys))) or "no options"


def check_known(given, allowed, where: str, common=()) -> None:
    """Raise OptionError naming the unknown keys of ``given`` (a mapping or iterable of names)."""
    unknown = sorted(set(given) - set(allowed) - set(common))
    if unknown:
        own = sorted(set(allowed) - set(common))
        msg = f"unknown option(s) {', '.join(map(repr, unknown))} for {where}; it takes {_names(own)}"
        if common:
            msg += f"; common options: {_names(common)}"
        raise OptionError(msg)


def number(name: str, value, where: str, *, positive: bool = False, nonnegative: bool = False,
           integer: bool = False, finite: bool = True, low=None, high=None):
    """``value`` as float (int with ``integer``) after checking it; raises OptionError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise OptionError(f"option {name} of {where} must be a number, got {value!r} ({type(value).__name__})")
    v = float(value)
    if math.isnan(v) or (finite and math.isinf(v)):
        raise OptionError(f"option {name} of {where} must be a finite number, got {value!r}")
    if integer and v != int(v):
        raise OptionError(f"option {name} of {where} must be an integer, got {value!r}")
    if positive and not v > 0:
        raise OptionError(f"option {name} of {where} must be > 0, got {value!r}")
    if nonnegative and not v >= 0:
        raise OptionError(f"option {name} of {where} must be >= 0, got {value!r}")
    if low is not None and v < low or high is not None and v > high:
        raise OptionError(f"option {name} of {where} must lie in [{low}, {high}], got {value!r}")
    return int(v) if integer else v


def choice(name: str, value, choices, where: str) -> str:
    """``value`` if it is one of ``choices`` (strings); raises OptionError otherwise."""
    if not isinstance(value, str) or value not in choices:
        raise OptionError(f"option {name} of {where} must be one of {', '.join(choices)}; got {value!r}")
    return value


def flag(name: str, value, where: str) -> bool:
    """``value`` if it is True or False; raises OptionError otherwise."""
    if not isinstance(value, bool):
        raise OptionError(f"option {name} of {where} must be True or False, got {value!r}")
    return value
