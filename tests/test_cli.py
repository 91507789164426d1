"""The command line through typer's CliRunner: extract, measure, report and their error paths."""
import csv
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import chainlab
import chainlab.measures
from chainlab import archive
from chainlab.app import report
from chainlab.app import cli as cli_module
from chainlab.app.cli import app, parse_options
from chainlab.nets.storage import state_fingerprint

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def err_of(res):
    return getattr(res, "stderr", None) or res.output


def assert_one_line_error(res, *fragments):
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    text = err_of(res).strip()
    lines = [ln for ln in text.splitlines() if ln.startswith("chainlab: error:")]
    assert len(lines) == 1, text
    assert "Traceback" not in res.output
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture(scope="module")
def mlp_archive(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "chains.h5"
    res = run("extract", "--model", "digits-mlp", "--rule", "lrp-epsilon", "-O", "epsilon=0.1", "--images", "0:3",
              "-o", path)
    assert res.exit_code == 0, res.output
    return path


def test_extract_writes_the_chains_extract_gives(mlp_archive, digits):
    net = chainlab.models.load("digits-mlp")
    with archive.open(mlp_archive) as r:
        assert len(r) == 3
        for key, i in zip(r.keys(), range(3)):
            got = r.load(key)
            assert got.meta["net"] == "digits-mlp" and got.meta["image"] == i
            assert got.meta["label"] == int(digits.y_test[i])
            assert got.meta["fingerprint"] == state_fingerprint(net)
            assert got.rule == "lrp-epsilon" and got.options["epsilon"] == 0.1
            x = chainlab.data.model_input("digits-mlp", digits.x_test[i:i + 1])
            ref = chainlab.extract(net, x, "lrp-epsilon", epsilon=0.1)
            assert len(got) == len(ref)
            for a, b in zip(got, ref):
                assert np.array_equal(a.to_dense(), b.to_dense())


def test_extract_resume_and_crash_midway(tmp_path, monkeypatch):
    path = tmp_path / "c.h5"
    real = chainlab.extract
    calls = []

    def flaky(model, x, rule, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise chainlab.ExtractionError("simulated failure on the third chain")
        return real(model, x, rule, **kw)

    monkeypatch.setattr(cli_module, "extract", flaky)
    res = run("extract", "-m", "digits-mlp", "-r", "zplus", "--images", "0:5", "-o", path)
    assert_one_line_error(res, "simulated failure")
    with archive.open(path) as r:                       # the two finished chains are in the archive
        assert [r.info(k)["image"] for k in r.keys()] == [0, 1]
    monkeypatch.setattr(cli_module, "extract", real)
    res = run("extract", "-m", "digits-mlp", "-r", "zplus", "--images", "0:5", "-o", path)
    assert_one_line_error(res, "exists", "--resume")
    res = run("extract", "-m", "digits-mlp", "-r", "zplus", "--images", "0:5", "-o", path, "--resume")
    assert res.exit_code == 0, res.output
    with archive.open(path) as r:
        assert sorted(r.info(k)["image"] for k in r.keys()) == [0, 1, 2, 3, 4]
    # a different rule or option is a different chain: --resume adds it
    res = run("extract", "-m", "digits-mlp", "-r", "zplus", "--images", "0:2", "--dtype", "float32", "-o", path,
              "--resume")
    assert res.exit_code == 0
    with archive.open(path) as r:
        assert len(r) == 7 and r.info(r.keys()[-1])["dtype"] == "float32"


def test_extract_from_a_model_file(tmp_path, digits):
    net = chainlab.models.load("digits-mlp")
    with torch.no_grad():
        net.fc1.weight.mul_(2.0)
    mpath = tmp_path / "mine.npz"
    chainlab.models.save(net, mpath, "digits-mlp")
    out = tmp_path / "m.h5"
    res = run("extract", "-m", mpath, "-r", "gradient", "--images", "4", "-o", out)
    assert res.exit_code == 0, res.output
    with archive.open(out) as r:
        c = r.load(r.keys()[0])
    assert c.meta["image"] == 4 and c.meta["fingerprint"] == state_fingerprint(chainlab.models.load(str(mpath)))
    assert c.meta["fingerprint"] != state_fingerprint(chainlab.models.load("digits-mlp"))
    x = chainlab.data.model_input("digits-mlp", digits.x_test[4:5]).double().requires_grad_()
    net.double()(x)[0, 3].backward()
    assert np.allclose(c.to_dense()[:, 3], x.grad.numpy().ravel(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("args, fragments", [
    (["extract", "-m", "no-such-net", "-r", "zplus", "-o", "{tmp}/a.h5"], ["no-such-net"]),
    (["extract", "-m", "digits-mlp", "-r", "no-such-rule", "-o", "{tmp}/a.h5"], ["unknown rule 'no-such-rule'"]),
    (["extract", "-m", "digits-mlp", "-r", "zplus", "--images", "5:999", "-o", "{tmp}/a.h5"], ["image range", "359"]),
    (["extract", "-m", "digits-mlp", "-r", "zplus", "--images", "a:b", "-o", "{tmp}/a.h5"], ["bad image range"]),
    (["extract", "-m", "digits-mlp", "-r", "lrp-epsilon", "-O", "eps=1", "-o", "{tmp}/a.h5"], ["eps"]),
    (["extract", "-m", "digits-mlp", "-r", "zplus", "-O", "novalue", "-o", "{tmp}/a.h5"], ["bad option"]),
    (["extract", "-m", "digits-mlp", "-r", "zplus", "--dtype", "float16", "-o", "{tmp}/a.h5"], ["dtype"]),
    (["extract", "-m", "digits-mlp", "-r", "zplus", "-o", "{tmp}/nodir/a.h5"], ["nodir"]),
    (["measure", "{tmp}/missing.h5", "-o", "{tmp}/m.csv"], ["missing.h5", "does not exist"]),
    (["measure", "{tmp}/text.h5", "-w", "spectra", "-o", "{tmp}/m.csv"], ["text.h5", "not a readable HDF5"]),
    (["measure", "{tmp}/text.h5", "-w", "spectra,nonsense", "-o", "{tmp}/m.csv"], ["nonsense"]),
    (["report", "{tmp}/missing.csv", "-o", "{tmp}/r"], ["missing.csv", "does not exist"]),
    (["report", "{tmp}/bad.csv", "-o", "{tmp}/r"], ["bad.csv", "missing column"]),
])
def test_bad_input_gives_one_line_and_exit_2(tmp_path, args, fragments):
    (tmp_path / "text.h5").write_text("hello\n")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    res = run(*[a.format(tmp=tmp_path) for a in args])
    assert_one_line_error(res, *fragments)
    assert not (tmp_path / "a.h5").exists()


def test_debug_shows_the_traceback(tmp_path):
    res = run("--debug", "extract", "-m", "no-such-net", "-r", "zplus", "-o", tmp_path / "a.h5")
    assert res.exit_code != 0 and isinstance(res.exception, FileNotFoundError)


def test_parse_options():
    assert parse_options(["epsilon=0.1", "alpha=2", "name=x", "pairs=[1, 2]", "flag=true"]) == \
        {"epsilon": 0.1, "alpha": 2, "name": "x", "pairs": [1, 2], "flag": True}
    with pytest.raises(ValueError, match="bad option"):
        parse_options(["=3"])


# -- measure ---------------------------------------------------------------------------------------
def test_measure_spectra_matches_numpy_svd(mlp_archive, tmp_path):
    out = tmp_path / "m.csv"
    res = run("measure", mlp_archive, "--what", "spectra", "-o", out)
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open()))
    assert set(report.RECORD_KEYS) <= set(rows[0])
    with archive.open(mlp_archive) as r:
        chains = {r.info(k)["image"]: r.load(k) for k in r.keys()}
    checked = 0
    for row in rows:
        if row["quantity"] == "sigma1" and row.get("of", "layer") in ("layer", "") and row["measure"] == "spectra":
            ch = chains[int(row["image"])]
            k = int(row["k"])
            s = np.linalg.svd(ch[k - 1].to_dense(), compute_uv=False)
            assert row["net"] == "digits-mlp" and row["rule"] == "lrp-epsilon"
            assert abs(float(row["value"]) - s[0]) <= 1e-9 * s[0]
            checked += 1
    assert checked == 3 * 6   # 3 images × 6 Linear layers


def test_measure_dispatches_through_measures_measure(mlp_archive, tmp_path, monkeypatch):
    """A fake measures.measure (interface 4): per-chain measures one chain at a time, pooled ones per (net, rule)."""
    seen = []

    def fake_spectra(chain, *, top=2):
        pass

    def fake_csc(chains, *, pairs=10):
        pass

    def fake_measure(chains, what=(), **opts):
        seen.append(([c.meta["image"] for c in chains], list(what), dict(opts)))
        return [dict(net=c.meta["net"], rule=c.rule, image=c.meta["image"], measure=w, quantity="q", layer=None, k=1,
                     value=float(len(c))) for c in chains for w in what]

    monkeypatch.setattr(chainlab.measures, "measure", fake_measure, raising=False)
    monkeypatch.setattr(chainlab.measures, "PER_CHAIN", {"spectra": fake_spectra, "rank1": fake_spectra},
                        raising=False)
    monkeypatch.setattr(chainlab.measures, "POOLED", {"csc": fake_csc}, raising=False)
    out = tmp_path / "m.csv"
    res = run("measure", mlp_archive, "-w", "spectra,csc", "-O", "top=3", "-O", "pairs=4", "-o", out)
    assert res.exit_code == 0, res.output
    assert seen == [([0], ["spectra"], {"top": 3}), ([1], ["spectra"], {"top": 3}), ([2], ["spectra"], {"top": 3}),
                    ([0, 1, 2], ["csc"], {"pairs": 4})]
    rows = report.read_records(out)
    assert len(rows) == 6 and {r["measure"] for r in rows} == {"spectra", "csc"}
    assert all(r["value"] == 6.0 and r["net"] == "digits-mlp" for r in rows)
    res = run("measure", mlp_archive, "-w", "spectra", "-O", "pairs=4", "-o", out)
    assert_one_line_error(res, "unknown option(s) 'pairs' for the measures")
    res = run("measure", mlp_archive, "-w", "spectra", "--keys", "000000,nope", "-o", out)
    assert_one_line_error(res, "nope")


# -- report ----------------------------------------------------------------------------------------
def synthetic_records():
    rng = np.random.default_rng(0)
    rows = []
    for rule in ("zplus", "gradient"):
        for image in range(3):
            base = dict(net="toy", rule=rule, image=image)
            for k in range(1, 6):
                for of in ("layer", "interlayer"):
                    rows.append(dict(base, measure="spectra", quantity="sigma1/sigma2", layer=f"l{k}", k=k,
                                     value=float(1 + k * rng.random()), of=of))
                rows.append(dict(base, measure="cone", quantity="angular_diameter", layer=f"l{k}", k=k,
                                 value=float(1 / k + rng.random() * 0.1)))
                rows.append(dict(base, measure="bounds", quantity="sigma1", layer=f"l{k}", k=k,
                                 value=float(rng.random())))
                rows.append(dict(base, measure="bounds", quantity="sigma1_bound", layer=f"l{k}", k=k, value=1.5))
            rows.append(dict(base, measure="bounds", quantity="sup_R", layer=None, k=None, value=float(rng.random())))
            rows.append(dict(base, measure="bounds", quantity="bound", layer=None, k=None, value=2.0))
            rows.append(dict(base, measure="sanity", quantity="ssim_random_logit", layer=None, k=None,
                             value=float(0.5 + 0.5 * rng.random())))
            for N in (1, 2, 4, 8, 16, 32):
                rows.append(dict(base, measure="averages", quantity="sup_error", layer=None, k=N,
                                 value=float(rng.random() / np.sqrt(N))))
                rows.append(dict(base, measure="averages", quantity="hoeffding_t", layer=None, k=N,
                                 value=float(3 / np.sqrt(N))))
        for j in range(0, 5):
            base = dict(net="toy", rule=rule, image=None, measure="csc", k=5, layer=j)
            v = 10.0 ** (-j - (3 if rule == "zplus" else 0))
            rows += [dict(base, quantity="csc", value=1 - v), dict(base, quantity="1-csc", value=v),
                     dict(base, quantity="baseline", value=0.01)]
    return rows


def pixel_variance(path):
    from matplotlib.image import imread

    return float(np.var(imread(path)[..., :3]))


def test_report_draws_every_present_measure(mlp_archive, tmp_path):
    csv_path = tmp_path / "m.csv"
    report.write_records(synthetic_records(), csv_path)
    assert report.read_records(csv_path)[0]["net"] == "toy"
    out = tmp_path / "rep"
    res = run("report", csv_path, "-o", out, "--chains", mlp_archive)
    assert res.exit_code == 0, res.output
    expected = ["spectra_sigma_ratio.png", "csc_convergence.png", "bounds.png", "averages.png",
                "ssim_random_logit.png", "cone.png", "heatmaps.png"]
    md = (out / "report.md").read_text()
    for name in expected:
        assert (out / name).exists(), name
        assert pixel_variance(out / name) > 0, name
        assert f"]({name})" in md
    assert "| bounds | sup_R | toy | zplus |" in md   # scalar table


def test_report_plots_only_what_is_present(tmp_path):
    rows = [r for r in synthetic_records() if r["measure"] == "sanity"]
    csv_path = tmp_path / "s.csv"
    report.write_records(rows, csv_path)
    res = run("report", csv_path, "-o", tmp_path / "r")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["report.md", "ssim_random_logit.png"]
    assert pixel_variance(tmp_path / "r" / "ssim_random_logit.png") > 0


def test_report_heatmap_is_the_explanation(mlp_archive):
    with archive.open(mlp_archive) as r:
        ch = r.load(r.keys()[0])
    m = report.map_of(ch)
    assert m.shape == (8, 8) and np.array_equal(m.ravel(), ch.explain().ravel())
    json.dumps(ch.meta)   # meta stays JSON-serializable


def test_measure_model_based_measures_get_the_model_and_input(mlp_archive, tmp_path, monkeypatch):
    """averages/sanity re-run the model: the CLI loads the model named by --model (never one named inside the
    archive) and passes the chain's input."""
    calls = []

    def fake_averages(model, x, rule, *, n=64):
        calls.append((type(model).__name__, tuple(x.shape), rule, n, float(model(x).detach().sum())))
        return [dict(net=None, rule=rule, image=None, measure="averages", quantity="sup_error", layer=None, k=n,
                     value=0.5)]

    monkeypatch.setitem(cli_module.MODEL_MEASURES, "averages", fake_averages)
    out = tmp_path / "a.csv"
    res = run("measure", mlp_archive, "-w", "averages", "-O", "n=8", "-o", out)
    assert_one_line_error(res, "re-run the model: name it with --model")
    res = run("measure", mlp_archive, "-w", "averages", "-O", "n=8", "-o", out, "--model", "digits-mlp")
    assert res.exit_code == 0, res.output
    with archive.open(mlp_archive) as r:
        logits = [r.load(k).logits.sum() for k in r.keys()]
    assert [c[:4] for c in calls] == [("Sequential", (1, 64), "lrp-epsilon", 8)] * 3
    assert np.allclose([c[4] for c in calls], logits, rtol=1e-12)
    rows = report.read_records(out)
    assert [(r["net"], r["image"], r["k"]) for r in rows] == [("digits-mlp", i, 8) for i in range(3)]


# -- issue 14's smaller defects ---------------------------------------------------------------------
def test_repeated_images_and_empty_claims_are_refused(tmp_path):
    res = run("extract", "-m", "digits-mlp", "-r", "zplus", "--images", "3,3,3", "-o", tmp_path / "a.h5")
    assert_one_line_error(res, "'3,3,3' names an image more than once")
    assert not (tmp_path / "a.h5").exists()
    res = run("verify", "--quick", "--claims", "", "-o", tmp_path / "r")
    assert_one_line_error(res, "--claims names no claim")
    assert not (tmp_path / "r").exists()


def test_measure_output_that_is_a_directory_fails_before_computing(mlp_archive, tmp_path, monkeypatch):
    def never(*a, **k):
        raise AssertionError("measured before checking the output")

    monkeypatch.setattr(chainlab.measures, "measure", never)
    res = run("measure", mlp_archive, "-w", "spectra", "-o", tmp_path)
    assert_one_line_error(res, str(tmp_path), "is a directory")


def test_report_counts_values_it_cannot_plot_and_leaks_no_warning(tmp_path):
    """NaN/inf values are left out of the plots but counted in the caption and in a table; matplotlib's warnings
    (a panel with nothing to draw has no legend entries) go to the report's notes, not to the user."""
    import warnings

    rows = [dict(net="toy", rule=r, image=i, measure="spectra", quantity="sigma1/sigma2", layer=f"l{k}", k=k,
                 value=v, of="layer")
            for r, vals in (("zplus", [2.0, 3.0, float("inf")]), ("gradient", [1.5, float("nan"), float("inf")]))
            for i in (0,) for k, v in zip((1, 2, 3), vals)]
    rows += [dict(net="toy", rule="zplus", image=0, measure="spectra", quantity="sigma1/sigma2", layer="l1", k=1,
                  value=float("nan"), of="prefix")]       # a panel with nothing finite to draw
    rows += [dict(net="toy", rule="zplus", image=0, measure="cone", quantity="angle", layer=f"l{k}", k=k, value=v)
             for k, v in ((1, 0.5), (2, float("-inf")), (3, 0.25))]
    out = tmp_path / "rep"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        md = report.make_report(rows, out).read_text()
    assert [str(w.message) for w in caught] == []
    assert "4 values not finite and not plotted: 2 NaN, 2 +inf." in md        # the spectra caption
    assert "1 value not finite and not plotted: 1 −inf." in md                 # the generic cone figure
    assert "| spectra | sigma1/sigma2 | 2 | 2 | 0 |" in md                      # the table counts every one
    assert "## Notes" in md and "No artists with labels" in md


def test_report_error_leaves_no_partial_directory(tmp_path):
    rows = [r for r in synthetic_records() if r["measure"] == "sanity"]
    bad = tmp_path / "bad.h5"
    bad.write_text("not an archive")
    out = tmp_path / "rep"
    with pytest.raises(chainlab.ArchiveError):
        report.make_report(rows, out, chains=bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5"]             # no out, no temp directory
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    res = run("report", _write(rows, tmp_path / "m.csv"), "-o", out, "--chains", bad)
    assert_one_line_error(res, "bad.h5")
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def _write(rows, path):
    report.write_records(rows, path)
    return path


@pytest.mark.parametrize("bug", [ZeroDivisionError, KeyError, TypeError])
def test_a_bug_in_a_claim_reaches_the_user_as_a_bug_not_as_a_verdict(tmp_path, monkeypatch, bug):
    """An injected bug in a claim's measure code must propagate: exit 3 with 'internal error' and the --debug hint,
    no verdict written (a bug must never turn into 'not reproduced' or 'not checked')."""
    from chainlab.papers.sixt import measure

    def broken(*a, **k):
        raise bug("injected")

    monkeypatch.setattr(measure, "fig3_ratios", broken)
    res = run("verify", "--quick", "--claims", "S4", "-o", tmp_path / "rep")
    assert res.exit_code == 3, (res.exit_code, res.output)
    out = err_of(res)
    assert "internal error" in out and "--debug" in out
    assert not (tmp_path / "rep" / "verdicts.json").exists()
