"""The README's numbers are the committed results': every generated block equals what scripts/readme_numbers.py
renders from results/, and a changed result makes the check fail."""
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import readme_numbers  # noqa: E402


def test_readme_agrees_with_committed_results():
    assert readme_numbers.main(["--check"]) == 0, "README.md is stale: run python scripts/readme_numbers.py"


def test_readme_has_the_generated_blocks():
    names = [m.group("name") for m in readme_numbers.BLOCK.finditer((ROOT / "README.md").read_text())]
    for name in ("verdicts", "verdicts-sixt", "verdicts-binder", "verdicts-mehrpanah", "mutation", "run"):
        assert name in names, f"README.md has no generated block {name!r}"


def generated_names():
    return [m.group("name") for m in readme_numbers.BLOCK.finditer((ROOT / "README.md").read_text())]


def script_outputs():
    """{results file: script that wrote it} of the README's bench-NAME and output-STEM blocks."""
    out = {}
    for name in generated_names():
        if name.startswith("bench-"):
            stem = "bench_" + name[len("bench-"):]
            out[ROOT / "results" / f"{stem}.txt"] = stem.split("-")[0] + ".py"
        elif name.startswith("output-"):
            stem = name[len("output-"):]
            out[ROOT / "results" / f"{stem}.txt"] = stem + ".py"
    return out


def test_every_bench_block_has_its_output_and_every_output_its_block():
    """README's ``bench-NAME`` blocks and the committed ``results/bench_NAME.txt`` files are the same set, and each
    script output the README shows names its command, the cores and the load average at its start (the header
    line of _bench.printed_to)."""
    blocks = {n[len("bench-"):] for n in generated_names() if n.startswith("bench-")}
    files = {p.stem[len("bench_"):] for p in (ROOT / "results").glob("bench_*.txt")}
    assert blocks == files, f"blocks without output: {sorted(blocks - files)}, output without block: {sorted(files - blocks)}"
    for path, script in script_outputs().items():
        assert path.exists(), f"README shows {path.name}, which is not committed"
        head = path.read_text().splitlines()[0]
        assert head.startswith(f"# {script} ") and " cores, load average " in head, (path.name, head)


# written before every run ended with the machine line (cores, threads, load at start and at the end, run time)
WITHOUT_MACHINE_LINE = {"bench_import.txt", "bench_load.txt"}


def test_script_outputs_state_the_load_at_the_end():
    for path in script_outputs():
        if path.name in WITHOUT_MACHINE_LINE:
            continue
        last = path.read_text().splitlines()[-1]
        assert last.startswith("summary: machine: ") and " at the end " in last, (path.name, last)


def test_bench_block_renders_tables_captions_summaries_and_the_command(tmp_path):
    """Two tables (each with the caption printed before it), summary lines as paragraphs, other lines left out,
    and the header's command, time and load in the footnote."""
    (tmp_path / "bench_x-y.txt").write_text(
        "# bench_x.py --n 3 --output results/bench_x-y.txt — 2026-01-01T00:00:00, 2 cores, load average 4.2 at start\n"
        "plain text line\ntable: first\n| a | b |\n|---|---:|\n| 1 | 2 |\nmore text\n| c |\n|---|\n| 3 |\n"
        "summary: one\nsummary: machine: two\n")
    got = readme_numbers.bench(tmp_path, "x-y")
    assert got == ("*first*\n\n| a | b |\n|---|---:|\n| 1 | 2 |\n\n| c |\n|---|\n| 3 |\n\nsummary: one\n\n"
                   "summary: machine: two\n\n(`python scripts/bench_x.py --n 3 --output results/bench_x-y.txt` — "
                   "2026-01-01T00:00:00, 2 cores, load average 4.2 at start; output committed in "
                   "`results/bench_x-y.txt`)\n")


@pytest.fixture
def results_copy(tmp_path):
    res = tmp_path / "results"
    shutil.copytree(ROOT / "results", res)
    readme = tmp_path / "README.md"
    shutil.copyfile(ROOT / "README.md", readme)
    return res, readme


def test_a_changed_verdict_fails_the_check(results_copy, capsys):
    """Negative control: one outcome flipped in verdicts.json → the README no longer agrees."""
    res, readme = results_copy
    doc = json.loads((res / "verdicts.json").read_text())
    v = doc["verdicts"][0]
    v["outcome"] = "reproduced" if v["outcome"] != "reproduced" else "not reproduced"
    (res / "verdicts.json").write_text(json.dumps(doc))
    assert readme_numbers.main(["--check", "--readme", str(readme), "--results", str(res)]) == 1
    # and regenerating makes it agree again, with the flipped outcome in the tally
    assert readme_numbers.main(["--readme", str(readme), "--results", str(res)]) == 0
    assert readme_numbers.main(["--check", "--readme", str(readme), "--results", str(res)]) == 0
    assert f"| {v['id']} " in readme.read_text()


def test_a_changed_mutation_score_fails_the_check(results_copy):
    res, readme = results_copy
    m = json.loads((res / "mutation.json").read_text())
    m["killed"] -= 1
    (res / "mutation.json").write_text(json.dumps(m))
    assert readme_numbers.main(["--check", "--readme", str(readme), "--results", str(res)]) == 1


def test_a_changed_benchmark_number_fails_the_check(results_copy):
    """Negative control: one digit of a table line in a committed benchmark output → the README no longer agrees."""
    res, readme = results_copy
    for p in sorted(res.glob("bench_*.txt")):
        lines = p.read_text().splitlines()
        i = next((i for i, ln in enumerate(lines) if ln.startswith("|") and any(c.isdigit() for c in ln)), None)
        if i is not None:
            break
    j = next(k for k, c in enumerate(lines[i]) if c.isdigit())
    lines[i] = lines[i][:j] + str((int(lines[i][j]) + 1) % 10) + lines[i][j + 1:]
    p.write_text("\n".join(lines) + "\n")
    assert readme_numbers.main(["--check", "--readme", str(readme), "--results", str(res)]) == 1


def test_tally_counts_only_the_papers_claims(tmp_path):
    """The tally line counts claims; a hypothesis (ours) is listed apart, never in the papers' count."""
    def claim(i, kind, outcome):
        return {"id": i, "paper": "Sixt et al. 2020", "kind": kind, "outcome": outcome, "statement": "s",
                "thresholds": [{"name": "t", "source": "ours"}], "numbers": {}, "observed": "o", "parts": []}
    (tmp_path / "verdicts.json").write_text(json.dumps({"run": {"kind": "full run"}, "verdicts": [
        claim("S1", "claim", "reproduced"), claim("S2", "claim", "not reproduced"),
        claim("M3", "hypothesis", "reproduced")]}))
    text = readme_numbers.verdicts(tmp_path)
    assert "1 reproduced, 1 not reproduced, 0 inconclusive, 0 not checked of 2." in text
    assert "Our hypotheses, counted apart: M3 reproduced." in text
    assert "| M3 (hypothesis, ours) s |" in text
