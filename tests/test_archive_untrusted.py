"""An archive is untrusted input (issue 22): crafted index and chain files — made here with plain h5py and
os.symlink, as anyone could make them — never make chainlab read, write or delete anything outside the archive.

Every test builds a small world in a tmp dir: the archive ``work/a.h5`` (one digits-mlp gradient chain, or
synthetic chains), a sibling archive ``work/b.h5`` and an unrelated ``work/data.h5`` beside it, and a sentinel
folder ``victim/`` holding files that look like chainlab's (``*.h5``, a chain-file name, stale temp names of a
dead process, another archive).  It then tampers with ``a.h5`` and runs chainlab on it (the API, and the CLI in
process) and checks that every file outside archive ``a`` is byte-for-byte unchanged (a sha256 of each file,
symlink and folder before and after) and that chainlab refused (ArchiveError / one ``chainlab: error:`` line,
exit 2) or handled the case safely.
"""
import errno
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from chainlab import archive
from chainlab.app.cli import app
from chainlab.archive import ArchiveError, store
from chainlab.archive.encoding import LIBVER

from conftest import CHAINLAB
from test_archive import assert_same_chain, synthetic_chain, write_flipped

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def refused(res, *fragments) -> str:
    """The CLI result is one ``chainlab: error:`` line (exit 2) holding every fragment; returns the line."""
    assert res.exit_code == 2, (res.exit_code, res.output[-2000:], res.exception)
    lines = [ln for ln in res.output.splitlines() if ln.startswith("chainlab")]
    assert len(lines) == 1 and lines[0].startswith("chainlab: error: "), res.output[-2000:]
    assert "Traceback" not in res.output
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def snapshot(root: Path, skip=lambda rel: False) -> dict:
    """Every file, symlink and folder under ``root`` (never following links): relative path → sha256 of the
    bytes, 'link → target' or 'dir'."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = p.relative_to(root).as_posix()
            if skip(rel):
                continue
            if p.is_symlink():
                out[rel] = "link → " + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# -- crafting with plain h5py ----------------------------------------------------------------------------
def read_index(path):
    """(rows [(key, file, size)], root attributes) of a schema-2 index, read with plain h5py."""
    with h5py.File(path, "r") as f:
        rows = [(r["key"].decode(), r["file"].decode(), int(r["size"])) for r in f["catalog"][()]]
        return rows, {k: f.attrs[k] for k in f.attrs}


def write_index(path, rows, attrs, links=None, extra=None):
    """A schema-2 index written with plain h5py: root attributes, one external link per row (``links``
    overrides key → (file, object path)), the catalog; ``extra(f)`` may add more."""
    links = links or {}
    with h5py.File(path, "w", libver=LIBVER) as f:
        for k, v in attrs.items():
            f.attrs[k] = v
        g = f.create_group("chains")
        for key, file, _ in rows:
            g[key] = h5py.ExternalLink(*links.get(key, (file, "/")))
        f.create_dataset("catalog", data=np.array([(k.encode(), fl.encode(), s) for k, fl, s in rows],
                                                  dtype=[("key", "S64"), ("file", "S512"), ("size", "<i8")]))
        if extra is not None:
            extra(f)


def write_chain_file(path, key, n_in, n_out, make_matrix):
    """A one-layer chain file (n_in → n_out) in chainlab's encoding, written with plain h5py; ``make_matrix(lg)``
    creates ``lg["matrix"]``.  Returns its size."""
    with h5py.File(path, "w", libver=LIBVER) as f:
        a = f.attrs
        for k, v in {"encoding-type": "chainlab-chain", "encoding-version": "1.0.0", "key": key, "net": "toy",
                     "fingerprint": "", "input_hash": "sha256:0", "rule": "gradient", "space": "gradient",
                     "dtype": "float64", "options": "{}", "meta": '{"image": 0}', "names": '["big"]',
                     "layer_rules": '["gradient"]', "shapes": json.dumps([[n_in], [n_out]]),
                     "input_shape": json.dumps([1, n_in])}.items():
            a[k] = np.bytes_(v)
        a["linear"] = True
        a["n_layers"] = 1
        f.create_dataset("x", data=np.zeros(n_in), chunks=True, compression="gzip")
        f.create_dataset("logits", data=np.zeros(n_out), chunks=True, compression="gzip")
        lg = f.create_group("layers/0000")
        for k, v in {"kind": "dense", "name": "big", "rule": "gradient"}.items():
            lg.attrs[k] = np.bytes_(v)
        lg.attrs["shape"] = np.array([n_in, n_out], dtype=np.int64)
        make_matrix(lg)
    return Path(path).stat().st_size


# -- the world ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """a.h5: one digits-mlp gradient chain (image 0), via the CLI; b.h5: two synthetic chains."""
    d = tmp_path_factory.mktemp("templates")
    res = cli("extract", "-m", "digits-mlp", "-r", "gradient", "--images", "0", "-o", d / "a.h5")
    assert res.exit_code == 0, res.output
    archive.write(d / "b.h5", [synthetic_chain(0), synthetic_chain(1)])
    return d


@pytest.fixture
def world(tmp_path, templates, dead_pid):
    work, victim = tmp_path / "work", tmp_path / "victim"
    shutil.copytree(templates, work, symlinks=True)
    for p in work.glob("*.lock"):
        p.unlink()
    victim.mkdir()
    with h5py.File(work / "data.h5", "w") as f:
        f["x"] = np.arange(10.0)
    shutil.copy(work / "data.h5", victim / "data.h5")
    (victim / "000009-deadbeef.h5").write_bytes(b"not a chain, but named like one" * 10)
    (victim / f"x.h5.tmp-{dead_pid}-0.h5").write_bytes(b"looks like a dead writer's temp")
    (victim / f"000009-deadbeef.h5.tmp-{dead_pid}-1.h5").write_bytes(b"looks like a dead writer's temp")
    (victim / "notes.txt").write_text("precious\n")
    shutil.copytree(work, victim / "elsewhere", symlinks=True)     # another whole archive (a.h5 and b.h5)
    a = work / "a.h5"

    def outside():
        """Everything under tmp_path but archive a itself (its index, lock, chain folder and temps)."""
        return snapshot(tmp_path, skip=lambda rel: rel.startswith("work/a.h5"))

    with archive.open(a) as r:
        a_files = [r.chain_file(k) for k in r.keys()]
    with archive.open(work / "b.h5") as r:
        b_files = [r.chain_file(k) for k in r.keys()]
    return SimpleNamespace(root=tmp_path, work=work, victim=victim, a=a, b=work / "b.h5", a_files=a_files,
                           b_files=b_files, outside=outside, dead_pid=dead_pid)


def resume(w, images="0:2"):
    return cli("extract", "-m", "digits-mlp", "-r", "gradient", "--images", images, "-o", w.a, "--resume")


def overwrite(w, images="1"):
    return cli("extract", "-m", "digits-mlp", "-r", "gradient", "--images", images, "-o", w.a, "--overwrite")


def measure(w, path=None):
    return cli("measure", path or w.a, "-w", "spectra", "-o", w.root / "m.csv")


def check_b_intact(w):
    with archive.open(w.b) as r:
        for k, s in zip(r.keys(), (0, 1)):
            assert_same_chain(r.load(k), synthetic_chain(s))


# -- 1: the chain folder comes from the index's name, never from its attributes ----------------------------
@pytest.mark.parametrize("chains_dir", ["../victim", "ABS", ".", "..", "b.h5.chains"])
def test_chains_dir_attribute_is_never_followed(world, chains_dir):
    """chains_dir = ../victim, an absolute path, '.' (the old code deleted a sibling archive's index and data.h5
    there), '..' or another archive's folder: --resume and --overwrite write and clean only in a.h5.chains."""
    w = world
    rows, attrs = read_index(w.a)
    attrs["chains_dir"] = np.bytes_(str(w.victim) if chains_dir == "ABS" else chains_dir)
    write_index(w.a, rows, attrs)
    before = w.outside()
    res = resume(w)
    assert res.exit_code == 0, res.output
    assert w.outside() == before
    with archive.open(w.a) as r:                    # the index it committed is one chainlab reads …
        assert [r.info(k)["image"] for k in r.keys()] == [0, 1]
        assert all(r.chain_file(k).parent == w.work / "a.h5.chains" for k in r.keys())
        [r.load(k) for k in r.keys()]
    with h5py.File(w.a, "r") as f:                   # … and so does plain h5py
        assert f["chains/000001/layers/0000/matrix"].shape == (64, 128)
    rows, attrs = read_index(w.a)
    attrs["chains_dir"] = np.bytes_(str(w.victim) if chains_dir == "ABS" else chains_dir)
    write_index(w.a, rows, attrs)
    res = overwrite(w)
    assert res.exit_code == 0, res.output
    assert w.outside() == before
    with archive.open(w.a) as r:
        assert [r.info(k)["image"] for k in r.keys()] == [1]
    check_b_intact(w)


# -- 2: a symlinked chain folder -------------------------------------------------------------------------
def test_symlinked_chain_folder_is_refused(world):
    w = world
    folder = w.work / "a.h5.chains"
    target = w.victim / "achains"
    shutil.move(folder, target)
    (target / "data.h5").write_bytes(b"x" * 100)                             # unreferenced *.h5 …
    (target / "000007-0123abcd.h5").write_bytes(b"x" * 100)                  # … even one named like chainlab's
    (target / f"000007-0123abcd.h5.tmp-{w.dead_pid}-0.h5").write_bytes(b"x")  # a stale-looking temp
    os.symlink("../victim/achains", folder)
    before = w.outside()
    refused(resume(w), "a.h5.chains", "symbolic link")
    refused(overwrite(w), "a.h5.chains", "symbolic link")
    refused(measure(w), "a.h5.chains", "symbolic link")
    with pytest.raises(ArchiveError, match=r"a\.h5\.chains.*symbolic link"):
        with archive.open(w.a) as r:
            r.load("000000")
    with pytest.raises(ArchiveError, match="symbolic link"):
        archive.delete(w.a, "000000")
    with pytest.raises(ArchiveError, match="symbolic link"):
        archive.append(w.a, synthetic_chain(3))
    assert w.outside() == before


# -- 3: a catalog row naming another archive's chain file ----------------------------------------------------
def test_catalog_row_naming_another_archives_file_is_refused(world):
    """a's row 000000 (and its link) name b.h5.chains/<b's chain 000000>: the old code measured b's chain as a's,
    and --overwrite / delete of a removed b's file."""
    w = world
    rows, attrs = read_index(w.a)
    other = f"b.h5.chains/{w.b_files[0].name}"
    write_index(w.a, [("000000", other, w.b_files[0].stat().st_size)], attrs)
    before = w.outside()
    with pytest.raises(ArchiveError, match=r"a\.h5.*000000.*b\.h5\.chains"):
        archive.open(w.a)
    refused(measure(w), "a.h5", "b.h5.chains")
    refused(resume(w), "a.h5", "b.h5.chains")
    with pytest.raises(ArchiveError, match="b.h5.chains"):
        archive.delete(w.a, "000000")
    res = overwrite(w)              # replacing a damaged index is allowed; nothing it names is deleted
    assert res.exit_code == 0, res.output
    assert w.outside() == before
    check_b_intact(w)


@pytest.mark.parametrize("name", [
    "../victim/000009-deadbeef.h5", "ABS", "a.h5.chains/../b.h5.chains/X", "a.h5.chains/sub/x.h5",
    "000009-deadbeef.h5", "a.h5.chains/.hidden.h5", "a.h5.chains/", "a.h5.chains/..", "./a.h5.chains/X",
    "a.h5.chains//X", "a.h5.chains/X\\..\\..\\x.h5", "elsewhere.chains/X",
])
def test_catalog_names_are_plain_file_names_in_the_archives_folder(world, name):
    w = world
    rows, attrs = read_index(w.a)
    own = w.a_files[0].name
    name = (str(w.victim / "000009-deadbeef.h5") if name == "ABS" else name).replace("X", own)
    write_index(w.a, [("000000", name, rows[0][2])], attrs, links={"000000": (rows[0][1], "/")})
    before = w.outside()
    with pytest.raises(ArchiveError, match=r"a\.h5: .*catalog"):
        archive.open(w.a)
    refused(resume(w), "a.h5")
    refused(measure(w), "a.h5")
    assert w.outside() == before


def test_two_rows_naming_one_file_are_refused(world):
    """Deleting one of the keys would delete the other's chain."""
    w = world
    rows, attrs = read_index(w.a)
    write_index(w.a, rows + [("000001", rows[0][1], rows[0][2])], attrs)
    with pytest.raises(ArchiveError, match=r"a\.h5: .*000001.*same file"):
        archive.open(w.a)
    with pytest.raises(ArchiveError, match="same file"):
        archive.delete(w.a, "000001")
    assert w.a_files[0].exists()


# -- cleaning: only chainlab's own names, only this archive's ------------------------------------------------
def test_cleaning_removes_only_chainlabs_own_leftovers(world):
    w = world
    d = w.work / "a.h5.chains"
    dead = w.dead_pid
    ours = [d / "000007-0123abcd.h5",                          # landed, never listed (a killed writer)
            d / f"000007-0123abcd.h5.tmp-{dead}-3.h5",         # a dead writer's chain temp
            w.work / f"a.h5.tmp-{dead}-0.h5"]                  # a dead writer's index temp
    theirs = [d / "notes.h5", d / "data.txt", d / "results.h5", d / "000007-0123ABCD.h5",
              d / f"notes.h5.tmp-{dead}-0.h5x", d / "sub",
              w.work / f"a.h5.tmp-{dead}-0.h5.bak", w.work / f"b.h5.tmp-{dead}-0.h5"]
    for p in ours + theirs:
        if p.name == "sub":
            p.mkdir()
            (p / "inner.h5").write_bytes(b"x")
        else:
            p.write_bytes(b"x" * 100)
    before = {p: p.read_bytes() for p in theirs if p.is_file()}
    assert resume(w).exit_code == 0
    assert not any(p.exists() for p in ours)
    assert {p: p.read_bytes() for p in theirs if p.is_file()} == before and (d / "sub" / "inner.h5").exists()


# -- 4: external links must agree with the catalog -------------------------------------------------------------
@pytest.mark.parametrize("target", ["outside", "absolute", "object", "swapped", "missing-row-file"])
def test_external_links_are_checked_against_the_catalog(world, target):
    """The link chains/<key> is what plain h5py follows (the access path the README advertises): re-pointed at an
    outside file, at another object, or at another row's file, the archive is refused on open by every reader
    and by the next writer — which neither follows nor silently rewrites it."""
    w = world
    archive.append(w.a, synthetic_chain(5))
    rows, attrs = read_index(w.a)
    shutil.copy(w.a_files[0], w.victim / "copy.h5")
    links = {"outside": {"000000": ("../victim/copy.h5", "/")},
             "absolute": {"000000": (str(w.victim / "copy.h5"), "/")},
             "object": {"000000": (rows[0][1], "/layers")},
             "swapped": {"000000": (rows[1][1], "/"), "000001": (rows[0][1], "/")},
             "missing-row-file": {"000001": (rows[0][1], "/")}}[target]
    write_index(w.a, rows, attrs, links=links)
    index_before = w.a.read_bytes()
    before = w.outside()
    with pytest.raises(ArchiveError, match=r"a\.h5: .*link chains/00000[01]"):
        archive.open(w.a)
    refused(measure(w), "a.h5", "link")
    refused(resume(w), "a.h5", "link")
    with pytest.raises(ArchiveError, match="link"):
        archive.append(w.a, synthetic_chain(6))
    assert w.a.read_bytes() == index_before                # refused, not silently rewritten
    assert w.outside() == before


def test_an_index_whose_catalog_or_chains_live_elsewhere_is_refused(world):
    """The catalog (or the chains group) as an external link into another file, or extra links anywhere."""
    w = world
    rows, attrs = read_index(w.a)
    shutil.copy(w.a, w.victim / "index-copy.h5")
    cases = {
        "catalog elsewhere": lambda f: (f.__delitem__("catalog"),
                                        f.__setitem__("catalog", h5py.ExternalLink("../victim/index-copy.h5",
                                                                                   "/catalog"))),
        "an extra external link": lambda f: f.__setitem__("notes", h5py.ExternalLink("../victim/data.h5", "/")),
        "a soft link in chains": lambda f: f["chains"].__setitem__("zz", h5py.SoftLink("/catalog")),
    }
    for what, extra in cases.items():
        write_index(w.a, rows, attrs, extra=extra)
        with pytest.raises(ArchiveError, match=r"a\.h5: "):
            with archive.open(w.a) as r:
                r.load("000000")
        refused(measure(w), "a.h5")


# -- 5: a chain file that is a symlink --------------------------------------------------------------------------
def test_chain_file_symlink_is_refused(world):
    """The chain file replaced by a symlink to an outside chainlab file of the right size (and key)."""
    w = world
    f = w.a_files[0]
    shutil.copy(f, w.victim / "outside.h5")
    f.unlink()
    os.symlink(w.victim / "outside.h5", f)
    before = w.outside()
    with archive.open(w.a) as r:
        with pytest.raises(ArchiveError, match=rf"{f.name}.*symbolic link"):
            r.load("000000")
        with pytest.raises(ArchiveError, match=rf"{f.name}.*symbolic link"):
            r.info("000000")
    refused(measure(w), f.name, "symbolic link")
    refused(resume(w), f.name, "symbolic link")
    assert w.outside() == before


def test_links_and_foreign_storage_inside_a_chain_file_are_refused(world):
    """Inside a chain file: a layer that is an external link to an outside file, a dataset whose bytes live in an
    outside file (HDF5 external storage), a virtual dataset mapping an outside file, a soft link: none is read."""
    w = world
    f = w.a_files[0]
    raw = f.read_bytes()
    with h5py.File(f, "r") as h:
        M = h["layers/0000/matrix"][()]
        enc = h["layers/0000/matrix"].attrs["encoding-type"]
    with h5py.File(w.victim / "m.h5", "w") as h:
        h["matrix"] = M
        h["matrix"].attrs["encoding-type"] = enc
    (w.victim / "m.raw").write_bytes(M.astype("<f8").tobytes())

    def external_link(lg):
        lg["matrix"] = h5py.ExternalLink(str(w.victim / "m.h5"), "/matrix")

    def external_storage(lg):
        d = lg.create_dataset("matrix", shape=M.shape, dtype="<f8", external=[(str(w.victim / "m.raw"), 0, M.nbytes)])
        d.attrs["encoding-type"] = enc

    def virtual(lg):
        layout = h5py.VirtualLayout(shape=M.shape, dtype="<f8")
        layout[:] = h5py.VirtualSource(str(w.victim / "m.h5"), "matrix", shape=M.shape)
        d = lg.create_virtual_dataset("matrix", layout)
        d.attrs["encoding-type"] = enc

    def soft(lg):
        lg.file["elsewhere"] = M
        lg.file["elsewhere"].attrs["encoding-type"] = enc
        lg["matrix"] = h5py.SoftLink("/elsewhere")

    before = w.outside()
    for make in (external_link, external_storage, virtual, soft):
        f.write_bytes(raw)
        with h5py.File(f, "r+") as h:
            del h["layers/0000/matrix"]
            make(h["layers/0000"])
        rows, attrs = read_index(w.a)
        write_index(w.a, [(rows[0][0], rows[0][1], f.stat().st_size)], attrs)
        with archive.open(w.a) as r:
            with pytest.raises(ArchiveError, match=rf"a\.h5: chain '000000'.*{f.name}"):
                r.load("000000")
        refused(measure(w), f.name)
    assert w.outside() == before


# -- 6: decompression bombs -------------------------------------------------------------------------------------
def bomb_archive(w, n, matrix):
    """Replace a's chain by a one-layer n × n chain file (consistent metadata) whose matrix ``matrix(lg)`` makes."""
    f = w.a_files[0]
    size = write_chain_file(f, "000000", n, n, matrix)
    rows, attrs = read_index(w.a)
    write_index(w.a, [("000000", rows[0][1], size)], attrs)
    return f


def unwritten(n):
    """A dense n × n dataset nothing was written to: HDF5 reads its fill value, the file holds no bytes of it."""
    def make(lg):
        d = lg.create_dataset("matrix", shape=(n, n), dtype="<f8", chunks=(min(n, 1000), min(n, 1000)))
        d.attrs["encoding-type"] = np.bytes_("array")
    return make


def test_a_claim_more_than_the_file_can_hold_is_refused_before_allocating(world, monkeypatch):
    """A ~10 kB chain file claiming a dense 4000 × 4000 layer (128 MB): consistent metadata, but deflate cannot
    expand a file that much; refused before a byte is decoded."""
    w = world
    f = bomb_archive(w, 4000, unwritten(4000))
    assert f.stat().st_size < 20_000
    reads, getitem = [], h5py.Dataset.__getitem__
    monkeypatch.setattr(h5py.Dataset, "__getitem__", lambda self, *a, **k: (reads.append(self.name),
                                                                            getitem(self, *a, **k))[1])
    with archive.open(w.a) as r:
        with pytest.raises(ArchiveError, match=rf"a\.h5: chain '000000', layer 0.*can hold.*{f.name}"):
            r.load("000000")
    assert "/layers/0000/matrix" not in reads
    refused(measure(w), "can hold")


def _limit_memory(nbytes):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))
    return apply


def test_the_issues_bomb_under_a_memory_limit_is_one_error_line(world):
    """The issue's case: a 6 kB chain file whose metadata claims a dense 23000 × 23000 layer (4.2 GB), `measure`
    under a 3 GB address-space limit: the old code compared with the machine's RAM, allocated, MemoryError, exit 3."""
    w = world
    f = bomb_archive(w, 23000, unwritten(23000))
    assert f.stat().st_size < 10_000
    p = subprocess.run(CHAINLAB + ["measure", str(w.a), "-w", "spectra", "-o", str(w.root / "m.csv")],
                       capture_output=True, text=True, preexec_fn=_limit_memory(3 << 30), timeout=300)
    assert p.returncode == 2, (p.returncode, p.stderr[-1500:])
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("chainlab")]
    assert len(lines) == 1 and lines[0].startswith("chainlab: error: ") and f.name in lines[0], p.stderr[-1500:]


def test_a_claim_the_file_can_hold_but_memory_cannot_is_refused(world):
    """A 3 MB chain file that really decompresses to a dense 20000 × 20000 layer (3.2 GB of zeros, deflate at
    ~1027:1, within what deflate can do) under a 3 GB address-space limit: compared with the memory *available*
    (here the limit), not the machine's RAM, and refused before allocating."""
    w = world
    chunk = zlib.compress(bytes(1000 * 1000 * 8), 9)

    def zeros(lg):
        d = lg.create_dataset("matrix", shape=(20000, 20000), dtype="<f8", chunks=(1000, 1000), compression="gzip")
        d.attrs["encoding-type"] = np.bytes_("array")
        for i in range(20):
            for j in range(20):
                d.id.write_direct_chunk((i * 1000, j * 1000), chunk)
    f = bomb_archive(w, 20000, zeros)
    assert 2e6 < f.stat().st_size < 4e6
    p = subprocess.run(CHAINLAB + ["measure", str(w.a), "-w", "spectra", "-o", str(w.root / "m.csv")],
                       capture_output=True, text=True, preexec_fn=_limit_memory(3 << 30), timeout=300)
    assert p.returncode == 2, (p.returncode, p.stderr[-1500:])
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("chainlab")]
    assert len(lines) == 1 and "available" in lines[0] and f.name in lines[0], p.stderr[-1500:]


def test_available_memory_follows_the_address_space_limit():
    code = ("import resource; from chainlab.archive.encoding import memory_bytes; "
            "resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30)); print(memory_bytes())")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert 0 < int(p.stdout) < 6 << 30


# -- 7, 8: one archive, one lock ---------------------------------------------------------------------------------
def test_a_symlinked_index_is_one_archive_with_one_lock(tmp_path):
    """``ln -s c.h5 latest.h5``: writers through either name share c.h5's lock, index and chain folder; the
    symlink stays a symlink; the in-process held-lock entry does not leak (the old code then refused every later
    append to c.h5 as 'nested writers')."""
    c, latest = tmp_path / "c.h5", tmp_path / "latest.h5"
    archive.append(c, synthetic_chain(0))
    os.symlink("c.h5", latest)
    archive.append(latest, synthetic_chain(1))
    archive.append(c, synthetic_chain(2))
    archive.append(latest, synthetic_chain(3))
    with archive.writer(latest) as wr:
        wr.append(synthetic_chain(4))
    archive.delete(latest, "000004")
    assert latest.is_symlink() and os.readlink(latest) == "c.h5"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5", "c.h5.chains", "c.h5.lock", "latest.h5"]
    assert archive.lock_path(latest) == archive.lock_path(c)
    for path in (c, latest):
        with archive.open(path) as r:
            assert r.keys() == ["000000", "000001", "000002", "000003"]
            for k, s in zip(r.keys(), range(4)):
                assert_same_chain(r.load(k), synthetic_chain(s))
    from chainlab.archive import lock
    assert not lock._HELD                                  # nothing held after the writers closed


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks the writers")
def test_writers_through_two_names_of_one_archive_exclude_each_other(tmp_path):
    c, latest = tmp_path / "c.h5", tmp_path / "latest.h5"
    archive.append(c, synthetic_chain(0))
    os.symlink("c.h5", latest)
    pids = []
    for path, start in ((latest, 100), (c, 200)):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for s in range(start, start + 8):
                    archive.append(path, synthetic_chain(s))
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    assert [os.waitpid(p, 0)[1] for p in pids] == [0, 0]
    assert latest.is_symlink()
    with archive.open(latest) as r:
        images = sorted(r.info(k)["image"] for k in r.keys())
    assert images == [0] + list(range(100, 108)) + list(range(200, 208))


def test_a_symlinked_lock_file_is_refused(world):
    """a.h5.lock → an outside file: the old code opened it (following the link), truncated it and wrote its pid."""
    w = world
    precious = w.victim / "notes.txt"
    os.symlink(precious, w.work / "a.h5.lock")
    before = w.outside()
    with pytest.raises(ArchiveError, match=r"a\.h5\.lock"):
        archive.append(w.a, synthetic_chain(3))
    refused(resume(w), "a.h5.lock")
    assert w.outside() == before and precious.read_text() == "precious\n"


def test_disk_full_at_the_lock_write_names_the_archive(world, monkeypatch):
    w = world

    def full(*a):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(ArchiveError, match=r"a\.h5.*lock.*No space left on device"):
        archive.append(w.a, synthetic_chain(3))
    refused(resume(w), "a.h5", "No space left on device")


# -- corruption vs bugs (issue 23) -----------------------------------------------------------------------------
@pytest.mark.parametrize("bug", [TypeError, IndexError, KeyError, AttributeError])
def test_a_reader_bug_is_a_bug_not_a_corrupt_archive(world, monkeypatch, bug):
    """An exception from chainlab's own decoding code (here injected into read_matrix) propagates: the API raises
    it, the CLI says 'internal error' with exit 3 and the --debug hint — it is never counted as a corrupt archive
    (which would let a reader bug pass the byte-flip tests as a detection)."""
    w = world

    def broken(*a, **k):
        raise bug("injected bug")
    monkeypatch.setattr(store, "read_matrix", broken)
    with archive.open(w.a) as r:
        with pytest.raises(bug, match="injected bug"):
            r.load("000000")
    res = measure(w)
    assert res.exit_code == 3, res.output
    assert "internal error" in res.output and "--debug" in res.output and "corrupt" not in res.output


def test_every_corrupt_chain_error_names_the_chain_file(tmp_path):
    """Byte flips all over every chain file: whenever chainlab says a chain is damaged it names the damaged file's
    path (the old messages named it in 99 of 867 cases)."""
    path = tmp_path / "flip.h5"
    archive.write(path, [synthetic_chain(0)])
    archive.append(path, synthetic_chain(1))
    with archive.open(path) as r:
        files = {k: r.chain_file(k) for k in r.keys()}
    rng = np.random.default_rng(22)
    n_errors = 0
    for key, f in files.items():
        raw = f.read_bytes()
        for pos in rng.choice(len(raw), 60, replace=False):
            write_flipped(f, raw, pos)
            try:
                with archive.open(path) as r:
                    r.info(key)
                    r.load(key)
            except ArchiveError as exc:
                assert str(f) in str(exc), str(exc)
                n_errors += 1
        f.write_bytes(raw)
    assert n_errors > 30
