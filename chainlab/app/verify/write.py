"""What a verify run writes: ``verify.md`` (the verdicts with their provenance), ``verdicts.json`` (the same, for
machines: the README's tables are generated from it) and ``records/`` (one tidy table per measure).

The tally counts the papers' claims only; our hypotheses are listed apart.  Every verdict shows the spec it was
decided by — the paper's sentence, the quantity, statistic and interval, the rule and each threshold's source —
and says when the rule rests on a threshold of ours.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from ...files import write_bytes
from ...measures.records import write_tables
from ...papers.verdict import Outcome

__all__ = ["tally", "verify_markdown", "verdicts_json", "write_run"]

OUTCOMES = (Outcome.REPRODUCED, Outcome.NOT_REPRODUCED, Outcome.INCONCLUSIVE, Outcome.NOT_CHECKED)


def tally(verdicts, kind: str = "claim") -> Counter:
    """{Outcome: count} over the verdicts of specs of ``kind`` ("claim": the papers'; "hypothesis": ours)."""
    return Counter(v.outcome for v in verdicts if v.spec.kind == kind)


def _tally_text(c: Counter) -> str:
    n = sum(c.values())
    return ", ".join(f"{c.get(o, 0)} {o.value}" for o in OUTCOMES) + f" (of {n})"


def _num(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a" if v is None or math.isnan(v) else ("∞" if v > 0 else "−∞")
    if isinstance(v, float) and (abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3)):
        return f"{v:.3g}"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _ours_line(spec) -> str:
    ours = spec.ours
    return ("yes: " + ", ".join(t.name for t in ours)) if ours else "no"


def verify_markdown(verdicts, *, title: str = "chainlab verify", run: str = "", rerun: str = "chainlab verify") -> str:
    """Markdown: the tally, one table row per claim, then one section per claim (module docstring)."""
    claims = [v for v in verdicts if v.spec.kind == "claim"]
    hyps = [v for v in verdicts if v.spec.kind == "hypothesis"]
    lines = [f"# {title}", "", f"Papers' claims: {_tally_text(tally(verdicts))}."]
    if hyps:
        lines.append("Our hypotheses (not in the papers' tally): "
                     + ", ".join(f"{v.claim} {v.label}" for v in hyps) + ".")
    if run:
        lines.append(run)
    lines += [f"Rerun: `{rerun}`.", "",
              "| claim | kind | verdict | rests on our thresholds | seconds |", "|---|---|---|---|---:|"]
    for v in claims + hyps:
        lines.append(f"| {v.claim} | {v.spec.label} | **{v.label}** | {_ours_line(v.spec)} | {v.seconds:.1f} |")
    lines.append("")
    for v in claims + hyps:
        lines += _section(v)
    lines += ["Plots: [report.md](report.md); records: `records/<measure>.csv` (one tidy table per measure).", ""]
    return "\n".join(lines)


def _section(v) -> list[str]:
    s = v.spec
    out = [f"## {v.claim}: {v.label}" + (" — hypothesis (ours)" if s.kind == "hypothesis" else ""), ""]
    out += [f"*Claim.* {s.statement}", "", f"*Source.* {s.quote.cite()}" + (f" — {s.figure}" if s.figure else ""), ""]
    if v.outcome is Outcome.NOT_CHECKED and v.reason:
        out += [f"*Not checked.* {v.reason}", ""]
    if s.quantity:
        out += [f"*Quantity.* {s.quantity}. *Statistic.* {s.statistic}. *Interval.* {s.interval}.", ""]
    if s.protocol:
        out += [f"*Protocol.* {s.protocol}", ""]
    if s.rule:
        out += [f"*Decision rule.* {s.rule}", ""]
    if s.thresholds:
        out += ["*Thresholds.*", ""] + [f"- {t.cite()}" for t in s.thresholds] + [""]
        if s.ours:
            out += [f"This verdict rests on threshold(s) of ours: {', '.join(t.name for t in s.ours)}.", ""]
    if s.scope is not None and s.scope.beside:
        ex = [f"- {net}: {m} — {src.cite()}" for net, d in s.scope.beside.items() for m, src in d.items()]
        out += ["*Out of the decision by the spec (reported beside).*", ""] + ex + [""]
    if v.decision.parts:
        out += ["| part | estimate | rule | outcome |", "|---|---|---|---|"]
        out += [f"| {p.name} | {p.estimate.text(_num) if p.estimate else ''} | {p.relation} | {p.outcome.value} |"
                for p in v.decision.parts]
        out.append("")
    if v.decision.notes:
        out += ["*Notes.* " + " ".join(v.decision.notes), ""]
    if v.per_seed:
        out += ["*Per training seed.* " + "; ".join(f"seed {k}: {o.value}" for k, o in v.per_seed.items())
                + " (a verdict that differs between seeds is inconclusive)", ""]
    out += [f"*Measured here.* {v.observed}", ""]
    if v.paper_numbers:
        out += [f"*The paper's numbers.* {v.paper_numbers}", ""]
    if v.beside:
        out += [f"*Beside the verdict (not decided).* {v.beside}", ""]
    if v.caveats:
        out += ["*Caveats.* " + " ".join(v.caveats), ""]
    if v.figures:
        out += ["*Figure.* " + " ".join(f"![{Path(f).stem}]({f})" for f in v.figures), ""]
    return out


def _est(e):
    if e is None:
        return None
    return {"value": e.value, "lo": e.lo, "hi": e.hi, "level": e.level, "n": e.n, "unit": e.unit, "method": e.method}


def verdicts_json(verdicts, **run) -> str:
    """The verdicts as JSON (sorted keys, ±inf as strings): the input of the README's generated tables."""
    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    out = []
    for v in verdicts:
        s = v.spec
        out.append({
            "id": s.id, "paper": s.paper, "kind": s.kind, "outcome": v.outcome.value, "statement": s.statement,
            "quote": s.quote.cite(), "figure": s.figure, "quantity": s.quantity, "statistic": s.statistic,
            "interval": s.interval, "rule": s.rule,
            "thresholds": [{"name": t.name, "value": t.value, "source": t.source.kind, "text": t.source.text,
                            "where": t.source.where} for t in s.thresholds],
            "parts": [{"name": p.name, "outcome": p.outcome.value, "relation": p.relation, "threshold": p.threshold,
                       "estimate": _est(p.estimate)} for p in v.decision.parts],
            "notes": list(v.decision.notes), "per_seed": {str(k): o.value for k, o in v.per_seed.items()},
            "observed": v.observed, "paper_numbers": v.paper_numbers, "beside": v.beside, "caveats": list(v.caveats),
            "numbers": v.numbers, "seconds": round(v.seconds, 1), "reason": v.reason,
        })
    return json.dumps(clean({"run": run, "verdicts": out}), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def write_run(verdicts, records, output: Path, *, run_text: str = "", rerun: str = "chainlab verify",
              title: str = "chainlab verify", **run) -> Path:
    """Write verify.md, verdicts.json and records/ into ``output``; returns the path of verify.md."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    write_tables(records, output / "records")
    write_bytes(output / "verdicts.json", verdicts_json(verdicts, **run).encode())
    md = output / "verify.md"
    write_bytes(md, verify_markdown(verdicts, title=title, run=run_text, rerun=rerun).encode())
    return md
