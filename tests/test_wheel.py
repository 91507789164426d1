"""A built wheel carries what chainlab needs, and the shipped data files are checked against their checksums.

The wheel is built from a copy of the source tree (``pip wheel --no-deps --no-build-isolation``: offline, with
this venv's setuptools), installed with ``pip install --no-deps --target`` into a temp folder, and run from a
temp working directory with ``PYTHONPATH`` = that folder, by its own console script: ``chainlab extract`` and
``chainlab verify --quick`` on the claims S4 and M3 (a shipped net with its pattern file, the digits, a scenes
net and the scene generator; the whole ``--quick`` run takes about a minute and runs on the source tree in
tests/test_verify.py — set CHAINLAB_WHEEL_FULL=1 to run all of it on the wheel too).
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import chainlab
from chainlab.errors import ChecksumError
from chainlab.nets import manifest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
NOT_DATA = ("README.md", "SHA256SUMS")            # the provenance text and the manifest itself


def sha256sum_lines(path):
    """{name: digest} of a coreutils-format manifest, parsed here independently of chainlab.nets.manifest."""
    out = {}
    for line in Path(path).read_text().splitlines():
        digest, name = line.split("  ", 1)
        out[name] = digest
    return out


# -- the manifest --------------------------------------------------------------------------------------


def test_the_manifest_lists_every_data_file_with_its_sha256():
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in DATA.iterdir()
             if p.is_file() and p.name not in NOT_DATA}
    assert files, "data/ holds no files"
    assert sha256sum_lines(DATA / "SHA256SUMS") == files
    assert manifest.problems(DATA) == []


def test_problems_name_a_missing_a_changed_and_an_unlisted_file(tmp_path):
    for name in ("digits.npz", "digits-mlp.npz"):
        shutil.copy(DATA / name, tmp_path / name)
        manifest.record(tmp_path / name)
    assert manifest.problems(tmp_path) == []
    (tmp_path / "digits-mlp.npz").unlink()
    with open(tmp_path / "digits.npz", "ab") as f:
        f.write(b"\0")
    (tmp_path / "extra.npz").write_bytes(b"x")
    assert manifest.problems(tmp_path) == ["digits-mlp.npz: listed in SHA256SUMS, missing",
                                           "digits.npz: sha256 differs from SHA256SUMS",
                                           "extra.npz: not listed in SHA256SUMS"]


def _shipped_copy(tmp_path, monkeypatch, *names):
    """A data folder with copies of ``names`` and their lines of the shipped manifest; $CHAINLAB_DATA points at it."""
    lines = sha256sum_lines(DATA / "SHA256SUMS")
    for name in names:
        shutil.copy(DATA / name, tmp_path / name)
    (tmp_path / "SHA256SUMS").write_text("".join(f"{lines[n]}  {n}\n" for n in names))
    monkeypatch.setenv("CHAINLAB_DATA", str(tmp_path))
    return tmp_path


def test_a_remade_net_is_refused_until_recorded(tmp_path, monkeypatch):
    """A valid model file with other weights under a shipped name: read_state alone would load it; the
    manifest check refuses it, naming file and manifest; once recorded it loads."""
    d = _shipped_copy(tmp_path, monkeypatch, "digits-mlp.npz")
    net = chainlab.models.load("digits-mlp")                       # the intact copy loads
    with torch.no_grad():
        next(net.parameters()).add_(1.0)
    chainlab.models.save(net, d / "digits-mlp.npz", "digits-mlp")
    with pytest.raises(ChecksumError, match=r"digits-mlp\.npz does not match its checksum in .*SHA256SUMS"):
        chainlab.models.load("digits-mlp")
    digest = manifest.record(d / "digits-mlp.npz")
    assert digest == hashlib.sha256((d / "digits-mlp.npz").read_bytes()).hexdigest()
    assert sha256sum_lines(d / "SHA256SUMS") == {"digits-mlp.npz": digest}
    again = chainlab.models.load("digits-mlp")
    assert torch.equal(next(again.parameters()), next(net.parameters()))


def test_damaged_digits_and_patterns_are_refused(tmp_path, monkeypatch):
    d = _shipped_copy(tmp_path, monkeypatch, "digits.npz", "patterns-digits-cnn.npz")
    for name in ("digits.npz", "patterns-digits-cnn.npz"):
        b = bytearray((d / name).read_bytes())
        b[len(b) // 2] ^= 0xFF
        (d / name).write_bytes(bytes(b))
    with pytest.raises(ChecksumError, match="digits.npz"):
        chainlab.data.load_digits()
    with pytest.raises(ChecksumError, match="patterns-digits-cnn.npz"):
        chainlab.patterns.load(d / "patterns-digits-cnn.npz")


def test_a_folder_without_a_manifest_is_read_as_it_is(tmp_path, monkeypatch):
    shutil.copy(DATA / "digits.npz", tmp_path / "digits.npz")
    monkeypatch.setenv("CHAINLAB_DATA", str(tmp_path))
    assert chainlab.data.load_digits().x_test.shape == (360, 1, 8, 8)


# -- the wheel -----------------------------------------------------------------------------------------


def _run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert p.returncode == 0, f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.fixture(scope="module")
def wheel_install(tmp_path_factory):
    """(wheel file, install folder, environment for running it) of a wheel built from a copy of the tree."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc", "*.egg-info", "build")
    for d in ("chainlab", "kernels", "data"):
        shutil.copytree(ROOT / d, src / d, ignore=skip)
    for f in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    _run(pip + ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp / "dist"), str(src)])
    (whl,) = (tmp / "dist").glob("chainlab-*.whl")
    site = tmp / "site"
    _run(pip + ["install", "--no-deps", "--no-index", "--target", str(site), str(whl)])
    env = {k: v for k, v in os.environ.items() if k not in ("CHAINLAB_DATA", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    cwd = tmp / "elsewhere"
    cwd.mkdir()
    return whl, site, env, cwd


def test_the_wheel_holds_the_kernels_and_every_shipped_file(wheel_install):
    whl = wheel_install[0]
    names = set(zipfile.ZipFile(whl).namelist())
    shipped = set(sha256sum_lines(DATA / "SHA256SUMS")) | {"SHA256SUMS", "README.md"}
    assert {f"chainlab/shipped/{n}" for n in shipped} <= names
    assert {"chainlab/kernels/__init__.py", "chainlab/kernels/sparse.py", "chainlab/kernels/conv.py"} <= names
    assert not [n for n in names if n.startswith(("tests/", "scripts/", "data/", "kernels/"))]


def test_the_installed_copy_is_imported_and_finds_its_own_intact_data(wheel_install):
    _, site, env, cwd = wheel_install
    code = ("import chainlab, chainlab.kernels\nfrom chainlab.nets import manifest\n"
            "d = chainlab.models.data_dir()\n"
            "print(chainlab.__file__); print(chainlab.kernels.__file__); print(d); print(manifest.problems(d))")
    out = _run([sys.executable, "-c", code], env=env, cwd=cwd).stdout.splitlines()
    assert out[0] == str(site / "chainlab" / "__init__.py")
    assert out[1] == str(site / "chainlab" / "kernels" / "__init__.py")
    assert out[2] == str(site / "chainlab" / "shipped")
    assert out[3] == "[]"


def test_chainlab_extract_runs_from_the_wheel(wheel_install):
    """The installed console script extracts chains of a shipped net outside the source tree; the chains equal
    the source tree's, and the wheel's own kernels were compiled (their numba cache is in the install)."""
    _, site, env, cwd = wheel_install
    out = cwd / "chains.h5"
    _run([str(site / "bin" / "chainlab"), "extract", "-m", "digits-cnn", "-r", "zplus", "-o", str(out),
          "--images", "0:2"], env=env, cwd=cwd)
    assert list((site / "chainlab" / "kernels" / "__pycache__").glob("*.nbi")), "the wheel's kernels did not run"
    assert not (cwd / "data").exists()
    net = chainlab.models.load("digits-cnn")
    x = chainlab.data.model_input(net, chainlab.data.load_digits().x_test[:2])
    with chainlab.archive.open(out) as r:
        assert len(r) == 2
        for key, i in zip(r.keys(), range(2)):
            got = r.load(key).explain()
            want = chainlab.extract(net, x[i:i + 1], "zplus").explain()
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_chainlab_verify_runs_from_the_wheel(wheel_install):
    _, site, env, cwd = wheel_install
    claims = None if os.environ.get("CHAINLAB_WHEEL_FULL") else "S4,M3"
    report = cwd / "report"
    _run([str(site / "bin" / "chainlab"), "verify", "--quick", "-o", str(report)]
         + (["--claims", claims] if claims else []), env=env, cwd=cwd)
    table = (report / "verify.md").read_text()
    for claim in (claims or "S4,M3,S1,B1").split(","):
        assert re.search(rf"^\| {claim} \|.*\| \*\*(reproduced|not reproduced|inconclusive|not checked)\*\* \|",
                         table, flags=re.M), claim
    verdicts = json.loads((report / "verdicts.json").read_text())["verdicts"]
    assert {v["id"] for v in verdicts} >= set((claims or "S4,M3,S1,B1").split(","))
    assert sum(len(p.read_text().splitlines()) for p in (report / "records").glob("*.csv")) > 10
    assert "not found" not in table and "missing" not in table.lower()
