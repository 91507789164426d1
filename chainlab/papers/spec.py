"""Claims as pre-registered specs: what a paper says, what is measured, and how it is decided — with provenance.

A :class:`ClaimSpec` is fixed before any number is looked at.  It holds the paper's sentence and figure, the
quantity measured, the nets and methods in scope (per net, as the paper's figure has them, with the sources
of every exclusion), the statistic and its interval (the resampling unit), the decision rule, and every
threshold the rule uses with its :class:`Source`:

* ``paper``  — the paper's own words (quoted, with section/figure);
* ``code``   — the authors' public code, where the text is silent (file and line);
* ``ours``   — our choice, with the reason (a verdict resting on one says so in the report).

``kind`` separates the papers' claims (counted in the tally) from our own hypotheses (labelled
"hypothesis (ours)", counted apart) — an identity that holds by algebra is a regression test, not a spec.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Source", "Threshold", "Scope", "ClaimSpec", "paper", "code", "ours", "KINDS"]

KINDS = ("claim", "hypothesis")


@dataclass(frozen=True)
class Source:
    """Where a number or a choice comes from: ``kind`` in {"paper", "code", "ours"}; ``text`` the quote (paper,
    code) or the reason (ours); ``where`` the section, figure, or file:line."""

    kind: str
    text: str
    where: str = ""

    def __post_init__(self):
        if self.kind not in ("paper", "code", "ours"):
            raise ValueError(f"a source is 'paper', 'code' or 'ours', not {self.kind!r}")
        if not self.text.strip():
            raise ValueError("a source needs its quote or reason")

    def cite(self) -> str:
        where = f" ({self.where})" if self.where else ""
        if self.kind == "paper":
            return f"paper{where}: “{self.text}”"
        if self.kind == "code":
            return f"authors' code{where}: {self.text}"
        return f"ours: {self.text}"


def paper(text: str, where: str = "") -> Source:
    return Source("paper", text, where)


def code(text: str, where: str = "") -> Source:
    return Source("code", text, where)


def ours(reason: str) -> Source:
    return Source("ours", reason)


@dataclass(frozen=True)
class Threshold:
    """A number a decision rule compares with, and where it comes from."""

    name: str
    value: float
    source: Source

    def cite(self) -> str:
        return f"{self.name} = {self.value:g} — {self.source.cite()}"


@dataclass(frozen=True)
class Scope:
    """Nets and methods a claim is decided on: ``methods`` {net: tuple of method ids in the decision};
    ``beside`` {net: {method id: Source}} measured and reported beside the verdict but not in it (the paper's
    own exceptions and exclusions, each with its source)."""

    methods: dict = field(default_factory=dict)
    beside: dict = field(default_factory=dict)

    def decided(self, net: str) -> tuple:
        return tuple(self.methods.get(net, ()))

    def excluded(self, net: str) -> dict:
        return dict(self.beside.get(net, {}))


@dataclass(frozen=True)
class ClaimSpec:
    """One claim, pre-registered (module docstring).  ``statistic``: how the per-unit values become the number
    decided on; ``interval``: the interval's method and resampling unit; ``rule``: the decision in words, naming
    the thresholds."""

    id: str
    paper: str
    statement: str
    quote: Source
    figure: str
    quantity: str
    statistic: str
    interval: str
    rule: str
    thresholds: tuple = ()
    scope: Scope | None = None
    kind: str = "claim"
    protocol: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"{self.id}: kind is one of {KINDS}, not {self.kind!r}")
        names = [t.name for t in self.thresholds]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.id}: threshold names repeat: {names}")

    def threshold(self, name: str) -> float:
        """The value of the threshold called ``name`` (KeyError names the spec and the known ones)."""
        for t in self.thresholds:
            if t.name == name:
                return t.value
        raise KeyError(f"{self.id} has no threshold {name!r}; it has {[t.name for t in self.thresholds]}")

    @property
    def ours(self) -> tuple:
        """The thresholds that are our choice (a verdict resting on them says so)."""
        return tuple(t for t in self.thresholds if t.source.kind == "ours")

    @property
    def label(self) -> str:
        return "hypothesis (ours)" if self.kind == "hypothesis" else "claim"
