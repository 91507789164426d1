"""What every claim check shares: the verdict, the run's settings, and a context that loads each net once.

A :class:`Verdict` is a result, not an error: a claim that is not reproduced is reported with the
numbers it rests on, beside the paper's.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...papers.context import Context, Settings, fmt, on_one_thread, one_thread, progress
from ...papers.spec import ClaimSpec, paper
from ...papers.verdict import Decision, Outcome
from ...papers.verdict import Verdict as PaperVerdict

__all__ = ["Verdict", "Settings", "Context", "progress", "fmt", "RULE_OPTIONS", "LABELS", "one_thread", "on_one_thread",
           "as_verdict"]

RULE_OPTIONS = {"alpha-beta": {"alpha": 2.0, "beta": 1.0}}
LABELS = {"zplus": "LRP-α1β0 (z⁺)", "alpha-beta": "LRP-α2β1", "lrp-0": "LRP-z", "gradient": "gradient"}


@dataclass
class Verdict:
    claim: str
    statement: str
    paper: str
    observed: str
    reproduced: bool | None
    seconds: float = 0.0
    protocol: str = ""            # how it was measured, in one line (shown beside the paper's statement)
    figures: tuple = ()           # PNG names of the report that show it

    @property
    def label(self) -> str:
        return {True: "reproduced", False: "not reproduced", None: "not checked"}[self.reproduced]


def as_verdict(v: "Verdict") -> PaperVerdict:
    """A claim module not yet moved into :mod:`chainlab.papers` (two-valued, no spec) in the new frame: its statement
    and the paper's words become a spec without thresholds, ``reproduced`` the outcome."""
    if isinstance(v, PaperVerdict):
        return v
    spec = ClaimSpec(v.claim, "", v.statement, paper(v.paper or v.statement), "", "", "", "", "", protocol=v.protocol)
    out = {True: Outcome.REPRODUCED, False: Outcome.NOT_REPRODUCED, None: Outcome.NOT_CHECKED}[v.reproduced]
    return PaperVerdict(spec, Decision(out), v.observed, v.seconds, tuple(v.figures))
