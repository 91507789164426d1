"""The verify job: one real subprocess run of `chainlab verify --quick`, plus its error paths."""
import csv
import os
import subprocess

import pytest

from conftest import CHAINLAB



def run_quick(out, threads, *more):
    """`chainlab verify --quick` in a fresh process with ``threads`` numba, torch (OpenMP) and BLAS threads."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", NUMBA_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads))
    return subprocess.run(CHAINLAB + ["verify", "--quick", "-o", str(out), *more], capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify") / "report"
    return run_quick(out, 2), out


def _verdicts(md: str) -> list[str]:
    """The verdict sections of verify.md (labels and every number), without the timing column."""
    return [ln for ln in md.splitlines() if ln.startswith("## ") or ln.startswith("*Measured here.*")]


def test_verdicts_and_records_do_not_depend_on_thread_counts_or_processes(quick_run, tmp_path):
    """The main job with 1 thread (numba, torch, BLAS) and its chunks measured on 2 worker processes gives the same
    verdicts — and bit-identical records — as with 2 threads in one process: no reduction whose order depends on
    the thread count, no solver drawing from OS entropy, no result that depends on which process measured it or
    when it came back (chainlab.app.verify.pool)."""
    p2, out2 = quick_run
    p1 = run_quick(tmp_path / "one", 1, "--workers", "2")
    assert p1.returncode == 0 and p2.returncode == 0, p1.stderr[-1000:]
    assert _verdicts((tmp_path / "one" / "verify.md").read_text()) == _verdicts((out2 / "verify.md").read_text())
    one, two = sorted((tmp_path / "one" / "records").iterdir()), sorted((out2 / "records").iterdir())
    assert [p.name for p in one] == [p.name for p in two] and one
    for a, b in zip(one, two):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_quick_verify_writes_a_verdict_per_claim(quick_run):
    p, out = quick_run
    assert p.returncode == 0, p.stderr[-2000:]
    md = (out / "verify.md").read_text()
    for claim in ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "B1", "B2", "B3"):
        assert f"## {claim}: " in md, claim
        assert f"| {claim} | claim | **" in md
    assert "papers' claims:" in p.stdout


def test_theorem1_holds_on_the_quick_run_and_verdicts_show_their_provenance(quick_run):
    """S6 (z⁺ prefix products of the digits nets decay, the simulation's non-negative products too) is the claim the
    theorem predicts with certainty on any ReLU net; every Sixt verdict prints its spec's sources."""
    p, out = quick_run
    md = (out / "verify.md").read_text()
    assert "| S6 | claim | **reproduced**" in md, md
    s1 = md.split("## S1: ")[1].split("## S2")[0]
    assert "paper (§4): “Except for LRP_z and DeepLIFT" in s1 and "converges = 0.99" in s1
    s5 = md.split("## S5: ")[1].split("## S6")[0]
    assert "This verdict rests on threshold(s) of ours: ssim_converging" in s5
    assert "when_explanations_lie.py:418-421" in md


def test_binder_and_mehrpanah_claims_in_the_quick_run(quick_run):
    """The quick run has one digits net per architecture: B1–B3 are decided on the controlled W → c·W experiment
    alone and say so; M1–M3 run on the shipped scenes nets with a few images; M4/M5 say they need --extended."""
    p, out = quick_run
    md = (out / "verify.md").read_text()
    for claim in ("B1", "B2", "B3"):
        sec = md.split(f"## {claim}: ")[1].split("\n## ")[0]
        assert "controlled (digits-mlp × c)" in sec and "trained nets: not checked (--quick" in sec
    for claim in ("M1", "M2", "M4", "M5"):
        assert f"| {claim} | claim | **" in md
    assert "| M3 | hypothesis (ours) | **" in md
    assert "runs with --extended only" in md.split("## M4: ")[1]


def test_records_and_plots(quick_run):
    _, out = quick_run
    from chainlab.measures.records import read_tables

    rows = read_tables(out / "records")
    measures = {r["measure"] for r in rows}
    for table in (out / "records").iterdir():          # one tidy table per measure
        with open(table) as f:
            assert {r["measure"] for r in csv.DictReader(f)} == {table.name[:-4]}
    assert {"csc_sixt", "ssim_sixt", "weight_spectra", "theorem1", "simulation", "cascading", "class_difference",
            "csc_s2", "constants", "spectral", "faithfulness", "accuracy"} <= measures
    pngs = list(out.glob("*.png"))
    assert len(pngs) >= 3
    import matplotlib.image as mpimg

    for png in pngs:
        img = mpimg.imread(png)
        assert img.std() > 0.01, f"{png.name} is blank"


def test_unknown_claim_is_one_line_error(tmp_path):
    p = subprocess.run(CHAINLAB + ["verify", "--quick", "--claims", "S9", "-o", str(tmp_path / "r")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert "unknown claim" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1

