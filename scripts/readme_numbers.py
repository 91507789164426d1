"""The README's numbers, generated from the committed results — never typed.

README.md holds generated blocks between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``; this script
rewrites each from ``results/``:

* ``verdicts``  — the tally and one row per claim from ``results/verdicts.json`` (a full ``chainlab verify``
                  run, committed by ``scripts/update_results.py``);
* ``run``       — what the committed full run cost (time, peak memory) from ``results/run.json``;
* ``verdicts-PAPER`` — one paper's claims part by part (estimate, interval, threshold, outcome);
* ``mutation``  — the mutation score of the decision code from ``results/mutation.json``
                  (``scripts/mutation.py --output results/mutation.json``);
* ``bench-NAME`` — the summary lines of ``results/bench_NAME.txt`` (the output of ``scripts/bench_NAME.py``, or
                  of ``scripts/bench_X.py`` with other options for ``bench_X-VARIANT.txt``): its tables (runs of
                  lines starting with ``|``, each with the ``table:`` line before it as caption), then its
                  ``summary:`` lines, then the command that wrote the file (its header line);
* ``output-STEM`` — the same of ``results/STEM.txt``, the output of another script (``--output``), e.g.
                  ``output-residual_methods_agreement``.

    python scripts/readme_numbers.py           # rewrite README.md
    python scripts/readme_numbers.py --check   # exit 1 when README.md and results/ disagree (a test runs this)
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- generated:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /generated:(?P=name) -->)", re.S)
ORDER = ("reproduced", "not reproduced", "inconclusive", "not checked")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def verdicts(results: Path) -> str:
    doc = json.loads((results / "verdicts.json").read_text())
    vs = doc["verdicts"]
    claims = [v for v in vs if v["kind"] == "claim"]
    hyps = [v for v in vs if v["kind"] == "hypothesis"]
    count = {o: sum(v["outcome"] == o for v in claims) for o in ORDER}
    run = doc.get("run", {})
    lines = [f"Papers' claims ({run.get('kind', 'run')}): " + ", ".join(f"{count[o]} {o}" for o in ORDER)
             + f" of {len(claims)}." + (" Our hypotheses, counted apart: " + ", ".join(
                 f"{v['id']} {v['outcome']}" for v in hyps) + "." if hyps else ""), "",
             "| claim | verdict | rests on our thresholds | our numbers | the paper's |", "|---|---|---|---|---|"]
    for v in claims + hyps:
        ours = [t["name"] for t in v["thresholds"] if t["source"] == "ours"]
        nums = "; ".join(f"{k} {_num(x)}" for k, x in v.get("numbers", {}).items()) or _cell(v["observed"])[:200]
        label = v["id"] + (" (hypothesis, ours)" if v["kind"] == "hypothesis" else "")
        lines.append(f"| {label} {_cell(v['statement'])} | **{v['outcome']}** | {', '.join(ours) or 'no'} | "
                     f"{_cell(nums)} | {_cell(v.get('paper_numbers', ''))} |")
    return "\n".join(lines) + "\n"


def _estimate(e) -> str:
    if not e:
        return "—"
    return f"{_num(e['value'])} [{_num(e['lo'])}, {_num(e['hi'])}] ({e['n']} {e['unit']})"


def paper_details(results: Path, paper: str) -> str:
    """One paper's claims part by part: each part's estimate with its interval, the relation and threshold it was
    decided on, its outcome; then what was observed and the paper's own numbers."""
    doc = json.loads((results / "verdicts.json").read_text())
    vs = [v for v in doc["verdicts"] if v["paper"].lower().startswith(paper)]
    if not vs:
        raise KeyError(f"results/verdicts.json has no claim of the paper {paper!r}")
    lines = ["| claim | part | estimate [interval] | decided as | outcome |", "|---|---|---|---|---|"]
    for v in vs:
        head = v["id"] + (" (hypothesis, ours)" if v["kind"] == "hypothesis" else "")
        if not v["parts"]:
            lines.append(f"| {head} | — | — | {_cell(v.get('reason') or v['rule'])} | {v['outcome']} |")
        for i, pt in enumerate(v["parts"]):
            rel = f"{pt['relation']} {_num(pt['threshold'])}" if pt["relation"] else "—"
            lines.append(f"| {head if i == 0 else ''} | {_cell(pt['name'])} | {_cell(_estimate(pt['estimate']))} | "
                         f"{_cell(rel)} | {pt['outcome']} |")
    lines.append("")
    for v in vs:
        lines.append(f"* **{v['id']} — {v['outcome']}.** {_cell(v['observed'])}"
                     + (f" *The paper:* {_cell(v['paper_numbers'])}" if v.get("paper_numbers") else ""))
    return "\n".join(lines) + "\n"


def run_cost(results: Path) -> str:
    r = json.loads((results / "run.json").read_text())
    return (f"The committed {r['kind']} (`results/run.json`) took {r['seconds_total'] / 60:.1f} min in all "
            f"({r['seconds_measuring']:.0f} s of measuring, the rest the report's figures) on {r['cores']} cores "
            + (f"with {r['workers']} worker processes " if r.get("workers", 1) > 1 else "")
            + f"(load average {r['load_at_start']:.1f} at its start), peak memory {r['peak_rss_mib'] / 1024:.1f} GiB"
            + (" (an upper bound: this process's peak plus its workers')" if r.get("workers", 1) > 1 else "") + ".\n")


def _num(x) -> str:
    if isinstance(x, float):
        return f"{x:.3g}" if (x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e4)) else f"{x:.4g}"
    return str(x)


def mutation(results: Path) -> str:
    m = json.loads((results / "mutation.json").read_text())
    lines = [f"Mutation score of the decision code: {m['killed']}/{m['total']} mutants killed "
             f"({100 * m['score']:.1f} %).", "", "| module | mutants | killed | survivors |", "|---|---:|---:|---|"]
    for target, t in m["targets"].items():
        surv = "; ".join(f"{s['line']}: {s['change']}" + (f" (equivalent: {s['equivalent']})" if s.get("equivalent")
                                                             else "") for s in t["survivors"]) or "none"
        lines.append(f"| `{target}` | {t['mutants']} | {t['killed']} | {_cell(surv)} |")
    return "\n".join(lines) + "\n"


def bench(results: Path, name: str) -> str:
    """The tables and summary lines of ``results/bench_NAME.txt``: each run of consecutive ``|`` lines is one table,
    preceded by the text of a ``table:`` line printed before it (its caption); then the ``summary:`` lines, one
    paragraph each; then the command that wrote the file, when and at what load (its ``# script args — …`` header line)."""
    return output(results, f"bench_{name}")


def output(results: Path, stem: str) -> str:
    """:func:`bench` of any committed script output ``results/STEM.txt``."""
    src = results / f"{stem}.txt"
    if not src.exists():
        raise SystemExit(f"README.md shows {src}, which does not exist: run the script named in the README beside the "
                         f"block with --output {src.relative_to(results.parent) if results.parent in src.parents else src}")
    lines = src.read_text().splitlines()
    parts, table, caption = [], [], None
    for ln in lines + [""]:
        if ln.startswith("|"):
            table.append(ln)
            continue
        if table:
            parts.append(("*" + caption + "*\n\n" if caption else "") + "\n".join(table))
            table, caption = [], None
        if ln.startswith("table:"):
            caption = ln[len("table:"):].strip()
    parts += [ln for ln in lines if ln.startswith("summary:")]
    head = lines[0][2:] if lines and lines[0].startswith("# ") else f"{stem}.py"
    command, _, when = head.partition(" — ")
    return "\n\n".join(parts) + "\n" + \
        f"\n(`python scripts/{command}`{' — ' + when if when else ''}; output committed in `results/{stem}.txt`)\n"


def render(name: str, results: Path) -> str:
    if name == "verdicts":
        return verdicts(results)
    if name.startswith("verdicts-"):
        return paper_details(results, name[len("verdicts-"):])
    if name == "run":
        return run_cost(results)
    if name == "mutation":
        return mutation(results)
    if name.startswith("bench-"):
        return bench(results, name[len("bench-"):])
    if name.startswith("output-"):
        return output(results, name[len("output-"):])
    raise KeyError(f"README names an unknown generated block {name!r}")


def regenerate(text: str, results: Path) -> str:
    return BLOCK.sub(lambda m: m.group(1) + render(m.group("name"), results) + m.group(4), text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if README.md differs from what results/ give")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    a = ap.parse_args(argv)
    text = a.readme.read_text()
    new = regenerate(text, a.results)
    names = [m.group("name") for m in BLOCK.finditer(text)]
    if a.check:
        if new != text:
            print(f"{a.readme}: generated blocks differ from {a.results} — run scripts/readme_numbers.py",
                  file=sys.stderr)
            return 1
        print(f"{a.readme}: {len(names)} generated block(s) agree with {a.results}")
        return 0
    a.readme.write_text(new)
    print(f"{a.readme}: regenerated {len(names)} block(s): {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
