"""Verdicts with three values, decided from intervals: the decision code every claim shares.

A claim's decision is made of *parts* (one per net, method, seed, … — whatever the spec's rule quantifies
over).  Each part compares an :class:`Estimate` (a point value with a confidence interval [lo, hi] from the
spec's resampling unit) with a threshold:

    quantity ≥ t   reproduced ⇔ lo ≥ t,   not reproduced ⇔ hi < t,   else inconclusive
    quantity > t   reproduced ⇔ lo > t,   not reproduced ⇔ hi ≤ t,   else inconclusive
    quantity ≤ t   reproduced ⇔ hi ≤ t,   not reproduced ⇔ lo > t,   else inconclusive
    quantity < t   reproduced ⇔ hi < t,   not reproduced ⇔ lo ≥ t,   else inconclusive

i.e. *inconclusive* means the interval straddles the threshold.  A deterministic quantity (no sampling: a
property of the weights) has lo = hi = value and is never inconclusive.  A missing or NaN value is
inconclusive (no number can confirm or refute), never a silent pass.

Parts combine with Kleene's three-valued logic (:func:`all_of`: not reproduced if any part is, else
inconclusive if any part is, else reproduced; :func:`any_of` dually).  :func:`agree` combines the same claim
decided on several training seeds: one outcome if all seeds give it, otherwise inconclusive.  An empty
decision (nothing in scope was measured) is *not checked*.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Iterable

__all__ = ["Outcome", "Estimate", "Part", "Decision", "at_least", "above", "at_most", "below", "within", "all_of",
           "any_of", "agree", "part", "decision", "Verdict", "not_checked"]


class Outcome(enum.Enum):
    REPRODUCED = "reproduced"
    NOT_REPRODUCED = "not reproduced"
    INCONCLUSIVE = "inconclusive"
    NOT_CHECKED = "not checked"

    def __str__(self) -> str:
        return self.value


R, N, U, X = Outcome.REPRODUCED, Outcome.NOT_REPRODUCED, Outcome.INCONCLUSIVE, Outcome.NOT_CHECKED


def _finite(v) -> bool:
    return v is not None and not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


@dataclass(frozen=True)
class Estimate:
    """A statistic with its confidence interval: ``value`` in [``lo``, ``hi``] at ``level``, from ``n`` units of
    kind ``unit`` (images, pairs, seeds, …) by ``method`` (e.g. "exact order statistics", "t over seeds").
    ``exact(v)`` is a deterministic number (lo = hi = v)."""

    value: float | None
    lo: float | None = None
    hi: float | None = None
    level: float | None = None
    n: int | None = None
    unit: str = ""
    method: str = ""

    @classmethod
    def exact(cls, value, method: str = "deterministic") -> "Estimate":
        return cls(value, value, value, None, None, "", method)

    @property
    def known(self) -> bool:
        """True when value, lo and hi are all finite numbers — or lo/hi are ±inf bounds around a finite value
        (an interval with no coverage: e.g. too few images for the level)."""
        return _finite(self.value) and self.lo is not None and self.hi is not None and not (
            math.isnan(self.lo) or math.isnan(self.hi))

    def text(self, fmt=lambda v: f"{v:.4g}") -> str:
        if not _finite(self.value):
            return "n/a"
        if self.lo == self.hi == self.value:
            return fmt(self.value)
        lev = f"{100 * self.level:g} % " if self.level else ""
        return f"{fmt(self.value)} [{lev}{fmt(self.lo)}, {fmt(self.hi)}]"


@dataclass(frozen=True)
class Part:
    """One comparison of a decision: ``name`` (what was compared, e.g. "vgg-cifar / LRP α1β0"), its outcome, the
    estimate and the relation it was held against (e.g. "≥ 0.99"), and the threshold's name in the spec."""

    name: str
    outcome: Outcome
    estimate: Estimate | None = None
    relation: str = ""
    threshold: str = ""

    def text(self, fmt=lambda v: f"{v:.4g}") -> str:
        est = self.estimate.text(fmt) if self.estimate is not None else ""
        rel = f" {self.relation}" if self.relation else ""
        return f"{self.name}: {est}{rel} → {self.outcome}"


@dataclass(frozen=True)
class Decision:
    """The outcome of a claim and the parts it rests on (``notes``: anything else the rule took into account)."""

    outcome: Outcome
    parts: tuple = ()
    notes: tuple = field(default_factory=tuple)

    def failing(self) -> tuple:
        return tuple(p for p in self.parts if p.outcome is N)

    def open(self) -> tuple:
        return tuple(p for p in self.parts if p.outcome is U)


def _compare(est: Estimate, t: float, strict: bool, upper: bool) -> Outcome:
    """Holds-interval logic of the module docstring; ``upper``: the claim bounds the quantity from above."""
    if est is None or not est.known:
        return U
    lo, hi = est.lo, est.hi
    if not upper:               # quantity ≥ t (strict: > t)
        if (lo > t) if strict else (lo >= t):
            return R
        if (hi <= t) if strict else (hi < t):
            return N
        return U
    if (hi < t) if strict else (hi <= t):     # quantity ≤ t (strict: < t)
        return R
    if (lo >= t) if strict else (lo > t):
        return N
    return U


def _num(t: float) -> str:
    return f"{t:g}"


def at_least(name: str, est: Estimate, t: float, threshold: str = "") -> Part:
    """Part for "quantity ≥ t"."""
    return Part(name, _compare(est, t, strict=False, upper=False), est, f"≥ {_num(t)}", threshold)


def above(name: str, est: Estimate, t: float, threshold: str = "") -> Part:
    """Part for "quantity > t"."""
    return Part(name, _compare(est, t, strict=True, upper=False), est, f"> {_num(t)}", threshold)


def at_most(name: str, est: Estimate, t: float, threshold: str = "") -> Part:
    """Part for "quantity ≤ t"."""
    return Part(name, _compare(est, t, strict=False, upper=True), est, f"≤ {_num(t)}", threshold)


def below(name: str, est: Estimate, t: float, threshold: str = "") -> Part:
    """Part for "quantity < t"."""
    return Part(name, _compare(est, t, strict=True, upper=True), est, f"< {_num(t)}", threshold)


def within(name: str, est: Estimate, lo: float, hi: float, threshold: str = "") -> Part:
    """Part for "lo ≤ quantity ≤ hi" (both ends must hold)."""
    outcome = all_of([_compare(est, lo, strict=False, upper=False), _compare(est, hi, strict=False, upper=True)])
    return Part(name, outcome, est, f"in [{_num(lo)}, {_num(hi)}]", threshold)


def part(name: str, outcome: Outcome, est: Estimate | None = None, relation: str = "", threshold: str = "") -> Part:
    """A part decided elsewhere (e.g. a combination of sub-parts)."""
    return Part(name, outcome, est, relation, threshold)


def _outcomes(items: Iterable) -> list:
    return [i.outcome if isinstance(i, (Part, Decision)) else i for i in items]


def all_of(items: Iterable) -> Outcome:
    """Kleene AND of outcomes (or parts/decisions): N if any is N, else U if any is U, else R; not-checked items
    are left out; nothing left → not checked."""
    outs = [o for o in _outcomes(items) if o is not X]
    if not outs:
        return X
    if N in outs:
        return N
    if U in outs:
        return U
    return R


def any_of(items: Iterable) -> Outcome:
    """Kleene OR: R if any is R, else U if any is U, else N; not-checked items left out; nothing left → not checked."""
    outs = [o for o in _outcomes(items) if o is not X]
    if not outs:
        return X
    if R in outs:
        return R
    if U in outs:
        return U
    return N


def agree(items: Iterable) -> Outcome:
    """One outcome for several seeds (or other replications): the common outcome when they all agree, otherwise
    inconclusive; not-checked replications left out; nothing left → not checked."""
    outs = [o for o in _outcomes(items) if o is not X]
    if not outs:
        return X
    first = outs[0]
    return first if all(o is first for o in outs) else U


def decision(parts: Iterable[Part], notes: Iterable[str] = (), combine=all_of) -> Decision:
    """A decision from its parts combined by ``combine`` (default: every part must hold)."""
    parts = tuple(parts)
    return Decision(combine(parts), parts, tuple(notes))


@dataclass
class Verdict:
    """A claim checked: its spec, the decision, and what the report prints beside it.

    ``observed``: our numbers in words (the paper's beside them in ``paper_numbers``); ``beside``: what was
    measured but is outside the decision (the spec's exclusions, extra methods), each with its reason;
    ``per_seed``: {seed: Outcome} when the claim was decided on several training seeds (the outcome is then
    :func:`agree` of them); ``caveats``: conditions every reader must see (e.g. an untrained net);
    ``numbers``: {name: value} of the headline numbers (the README's table is generated from them)."""

    spec: "object"
    decision: Decision
    observed: str
    seconds: float = 0.0
    figures: tuple = ()
    paper_numbers: str = ""
    beside: str = ""
    per_seed: dict = field(default_factory=dict)
    caveats: tuple = ()
    numbers: dict = field(default_factory=dict)
    reason: str = ""          # why not checked (missing net, claim not applicable to this net)

    @property
    def claim(self) -> str:
        return self.spec.id

    @property
    def outcome(self) -> Outcome:
        return self.decision.outcome

    @property
    def label(self) -> str:
        return self.outcome.value


def not_checked(spec, reason: str, seconds: float = 0.0) -> Verdict:
    """The verdict of a claim that could not be checked (its reason is printed)."""
    return Verdict(spec, Decision(X, (), (reason,)), f"not checked: {reason}", seconds, reason=reason)
