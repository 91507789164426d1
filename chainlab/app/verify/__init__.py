"""The verify job: each claim of the papers checked on the shipped nets, with a verdict.

One package per paper (:mod:`chainlab.papers.sixt`, :mod:`chainlab.papers.binder`, :mod:`chainlab.papers.mehrpanah`) defines its claims
(``CLAIMS``: id → check, ``ORDER``);
:mod:`.core` holds what they share.

Claims (Sixt et al. 2020, ``S*``, with the paper's protocol — see :mod:`.sixt`; Binder et al. 2025, ``B*``;
Mehrpanah et al. 2025, ``M*``):

* S1  Fig. 5: every method but LRP-z and DeepLIFT reaches a median CSC ≥ 0.99 (5 N(0, I) vectors per
      image injected at the logits, median |cos| of the channel vectors per layer; 200 test scenes on
      sixt-cifar, vgg-cifar, resnet-cifar).
* S2  LRP-α1β0 median CSC > 1 − 1e-6 on the small 6-layer network (sixt-cifar, the paper's CIFAR net).
* S3  DeepLIFT (Rescale, RevealCancel) stays < 0.99, DeepLIFT ablation reaches ≥ 0.99 (CSC of the
      contributions, tied injection; independent ± injections beside).
* S4  Fig. 3 (data-independent): σ1/σ2 of the patterns A > 6 for almost all layers; W ⊙ A more
      rank-1-like than W per layer (centre taps) and for the inter-layer members T_l.
* S5  Fig. 4a: SSIM(true-logit map, random-logit map) ≈ 1 for converging methods, 0.4–0.8 for the rest.
* S6  Thm. 1: σ2/σ1 of the LRP-α1β0 prefix products decays exponentially; the appendix simulation.
* S7  Fig. 4b: cascading randomization leaves the converging methods' maps similar (SSIM ≈ 1).
* S8  Fig. 1: LRP-α1β0 maps of the two labels of two-object scenes hardly differ.
* B1–B3 (Binder et al. 2025): :mod:`chainlab.papers.binder` — the bounds' constants of LRP-β independent of the
      weight norms, unlike the gradient's and LRP-ε's (trained nets over seeds, a controlled W → c·W experiment).
* M1–M5 (Mehrpanah et al. 2025): :mod:`chainlab.papers.mehrpanah` — EF falls with the Softplus β (M1); surrogates
      lower EF at the cost of faithfulness (M2); our hypothesis M3 (EF rises at the ReLU masks); the ablations
      (M4) and the regularize claim (M5) with ``--extended``.

``run(quick=False)`` computes everything and returns the verdicts and all records; the CLI writes
them as ``report/verify.md`` (verdict table beside the papers' numbers) plus the plots of
:func:`chainlab.report.make_report`.  Verdicts are results, not errors: a claim that is not
reproduced is reported with its numbers.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ...errors import OptionError
from ...papers import binder, mehrpanah, sixt
from . import pool
from .core import Context, Settings, as_verdict, one_thread
from ...papers.verdict import Outcome
from .write import tally, verify_markdown, write_run

__all__ = ["CLAIMS", "ORDER", "Settings", "Outcome", "run", "script_main", "write_run", "verify_markdown", "tally"]

PAPERS = (sixt, binder, mehrpanah)
CLAIMS = {cid: fn for paper in PAPERS for cid, fn in paper.CLAIMS.items()}
ORDER = tuple(cid for paper in PAPERS for cid in paper.ORDER)


def run(quick: bool = False, claims=None, progress: bool = True, seed: int = 0, extended: bool = False, ctx=None,
        workers: int = 1, facts: dict | None = None):
    """Check the claims (all by default); returns (verdicts in claim order, records).  ``ctx``: a prepared
    :class:`~chainlab.papers.context.Context` (e.g. with a user's net registered), else a new one.  ``workers`` > 1:
    the claims' per-image chunks (each paper's ``plan``) are measured first on that many single-threaded
    processes (:mod:`.pool`; this one among them, the claims of the papers with no chunks run here meanwhile),
    then the other claims run here and find them — the records in claim order, as a serial run writes them; ``facts``
    (a dict) receives what the pool measured: its memory (``peak_bound_mib``, ``peak_sampled_mib``) and time
    (``seconds_wall``, ``seconds_by_group``: the chunks' seconds per claim and net, summed over the workers)."""
    wanted = list(ORDER) if not claims else [c.upper() for c in claims]
    bad = [c for c in wanted if c not in CLAIMS]
    if bad:
        raise OptionError(f"unknown claim(s) {', '.join(bad)}; known: {', '.join(sorted(CLAIMS))}")
    if quick and extended:
        raise OptionError("choose --quick or --extended, not both")
    ctx = ctx or Context(Settings(quick=quick, extended=extended, seed=seed, progress=progress))
    verdicts, records = {}, {}
    fns = list(dict.fromkeys(CLAIMS[c] for c in wanted))

    def check(fn):                 # a claim's verdicts; its records kept apart until all ran (claim order)
        n = len(ctx.records)
        with one_thread():         # as the pool measures: the records cannot depend on the thread settings
            for v in fn(ctx):
                v = as_verdict(v)
                verdicts[v.claim] = v
        records[fn] = ctx.records[n:]
        del ctx.records[n:]

    if workers > 1:
        plans = {paper: paper.plan(ctx, wanted) if hasattr(paper, "plan") else [] for paper in PAPERS}
        chunks = [c for p in PAPERS for c in plans[p]]
        planned = {fn for p in PAPERS if plans[p] for fn in p.CLAIMS.values()}
        if chunks:             # the claims of the papers with no chunks to measure run here while the workers measure
            got = pool.measure(ctx, chunks, workers, desc=f"measuring on {workers} processes",
                               meanwhile=lambda: [check(fn) for fn in fns if fn not in planned])
            if facts is not None:
                facts.update({k: got[k] for k in ("peak_bound_mib", "peak_sampled_mib", "seconds_wall",
                                                  "seconds_by_group")})
    for fn in fns:
        if fn not in records:
            check(fn)
    for fn in fns:
        ctx.records.extend(records[fn])
    order = [c for c in ORDER if c in verdicts and c in wanted]
    return [verdicts[c] for c in order], ctx.records


def _kind(quick, extended):
    return "--quick run" if quick else "--extended run" if extended else "full run"


SMOKE_CLAIM = "S4"     # the cheapest claim at --quick size (about a second)


def script_main(claims, argv=None) -> int:
    """Entry point of scripts/verify_*.py: check ``claims``, print the verdicts, write ``<out>/verify-<ids>.md``.

    ``--smoke`` (tests/test_scripts.py): the claims are checked to exist, then the same path (run, verdict file,
    printout) runs on :data:`SMOKE_CLAIM` at ``--quick`` size, in seconds; the claims themselves run in the
    quick run of tests/test_verify.py."""
    p = argparse.ArgumentParser(description=f"Check claims {', '.join(claims)} on the shipped nets.")
    p.add_argument("--quick", action="store_true", help="CI-sized run (digits nets, fewer images)")
    p.add_argument("--extended", action="store_true", help="more of the papers' protocols")
    p.add_argument("--smoke", action="store_true",
                   help=f"seconds: check that the claims exist, then run claim {SMOKE_CLAIM} at --quick size")
    p.add_argument("-o", "--output", type=Path, default=Path("report"), help="directory for the verdict file")
    a = p.parse_args(argv)
    if a.smoke:
        unknown = [c for c in claims if c not in CLAIMS]
        if unknown:
            raise OptionError(f"unknown claim(s) {', '.join(unknown)}; known: {', '.join(sorted(CLAIMS))}")
        print(f"smoke: claims {', '.join(claims)} exist; running {SMOKE_CLAIM} --quick in their place")
        claims, a.quick, a.extended = [SMOKE_CLAIM], True, False
    t0 = time.perf_counter()
    verdicts, _ = run(quick=a.quick, claims=claims, extended=a.extended)
    a.output.mkdir(parents=True, exist_ok=True)
    md = a.output / f"verify-{'-'.join(claims)}.md"
    flag = " --quick" if a.quick else " --extended" if a.extended else ""
    md.write_text(verify_markdown(verdicts, run=f"{_kind(a.quick, a.extended)}, {time.perf_counter() - t0:.0f} s.",
                                  rerun=f"python {Path(sys.argv[0]).name}{flag}"))
    for v in verdicts:
        print(f"{v.claim}  {v.label}\n    claim: {v.spec.statement}\n    here:  {v.observed}")
    print(f"verdicts written to {md}")
    return 0
