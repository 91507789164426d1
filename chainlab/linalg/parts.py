"""The sign parts t⁺ = max(t, 0) and t⁻ = min(t, 0) of a tensor, computed once per tensor, and the sign they carry.

A rule builds W⁺ and W⁻ of a layer's weight for every image and rule (z⁺, α-β, z^B, …); for a VGG's first Linear
(10⁸ numbers in float64) one copy costs about 0.2 s.  :func:`positive_part` and :func:`negative_part` keep their
result while the source tensor lives (keyed weakly by its identity and checked against its version counter, so an
in-place change recomputes), and the images and rules of one trace share one copy — bit-identical to a fresh
``clamp``.  :func:`known_sign` is +1 for a part t⁺, −1 for a part t⁻ made here, 0 otherwise: then |t| = ±t needs
no copy (:meth:`chainlab.linalg.TermsOperator.abs_column_sums`).
"""
from __future__ import annotations

import torch
from torch.utils.weak import WeakIdKeyDictionary

__all__ = ["positive_part", "negative_part", "known_sign"]

_PARTS = WeakIdKeyDictionary()          # source tensor → {"+"|"-": (version, part)}
_SIGNS = WeakIdKeyDictionary()          # part → +1 | −1


def _part(t: torch.Tensor, which: str) -> torch.Tensor:
    got = _PARTS.get(t)
    if got is None:
        got = _PARTS[t] = {}
    hit = got.get(which)
    if hit is not None and hit[0] == t._version:
        return hit[1]
    part = t.clamp(min=0) if which == "+" else t.clamp(max=0)
    got[which] = (t._version, part)
    _SIGNS[part] = 1 if which == "+" else -1
    return part


def positive_part(t: torch.Tensor) -> torch.Tensor:
    """t⁺ = max(t, 0), the same tensor for the same t (while t is unchanged); do not modify it in place."""
    return _part(t, "+")


def negative_part(t: torch.Tensor) -> torch.Tensor:
    """t⁻ = min(t, 0), the same tensor for the same t (while t is unchanged); do not modify it in place."""
    return _part(t, "-")


def known_sign(t) -> int:
    """+1 when t is a part t⁺ made here (every entry ≥ 0), −1 for a part t⁻ (≤ 0), 0 when not known."""
    if not isinstance(t, torch.Tensor):
        return 0
    s = _SIGNS.get(t)
    return s if s is not None and t._version == 0 else 0        # a part changed in place has lost its sign
