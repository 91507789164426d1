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
