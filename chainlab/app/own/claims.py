"""Which claims run on a user's net, how their measurements are cut into chunks, and how they are decided.

(Wiring to the papers' packages: filled in when the ported claims land.)
"""
from __future__ import annotations

from ...nets.specs import UNTRAINED
from ...papers.spec import ClaimSpec, paper
from ...papers.verdict import not_checked
from ..verify import CLAIMS, ORDER

__all__ = ["ORDER", "not_applicable", "plan", "verdicts", "default_images", "chunk_size", "run_text"]

BUDGET_MACS = 6e12        # placeholder until the claims are wired: multiply-adds of the default run's measuring


def default_images(macs: int) -> int:
    return max(6, min(200, int(BUDGET_MACS // max(macs * 500, 1))))


def chunk_size(user) -> int:
    return 1 if user.macs > 1e9 else 25


def not_applicable(claim: str, user):
    return None


def plan(ctx, net, claims, n, chunk):
    return []


def verdicts(ctx, user, wanted, reasons):
    out = []
    for c in wanted:
        out.append(not_checked(_spec(c), reasons[c] or "not wired yet"))
    if not user.info.trained:
        for v in out:
            v.caveats = tuple(v.caveats) + (UNTRAINED,)
    return out


def _spec(c):
    return ClaimSpec(c, "", c, paper(c), "", "", "", "", "")


def run_text(user, n, seconds, est, measured, peak):
    return f"Net: {user.info.description}. Images: {n}. {seconds:.0f} s; peak {peak / 1024:.1f} GB."


_ = CLAIMS
