"""The archive under attack and failure: O(new chain) appends, kill -9 at random moments, byte flips in data
and attributes of every chain, two concurrent writers, a full disk, --overwrite, stale temp files, claimed sizes.

scripts/archive_torture.py runs the kill -9 and byte-flip harnesses with many more trials.
"""
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from chainlab import archive
from chainlab.archive import ArchiveError, store
from chainlab.archive.encoding import LIBVER, set_str, write_chain
from chainlab.chain import Chain
from chainlab.linalg import DenseOperator

from conftest import CHAINLAB
from test_archive import assert_same_chain, synthetic_chain, write_flipped

ENV = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONDONTWRITEBYTECODE="1")


def files_of(path):
    """[index, chain file of every key, in key order]."""
    with archive.open(path) as r:
        return [path] + [r.chain_file(k) for k in r.keys()]


def leftovers(path):
    """Files beside/inside the archive other than the index, its lock and the chain files it lists."""
    expected = {path.name, path.name + ".lock", path.name + ".chains"}
    extra = [p.name for p in path.parent.iterdir() if p.name not in expected and p.name.startswith(path.name)]
    d = path.parent / (path.name + ".chains")
    listed = {f.name for f in files_of(path)[1:]} if path.exists() else set()
    if d.is_dir():
        extra += [f"{d.name}/{p.name}" for p in d.iterdir() if p.name not in listed]
    return sorted(extra)


def big_chain(seed, n=300):
    rng = np.random.default_rng(seed)
    return Chain([DenseOperator(rng.standard_normal((n, n)))], names=["big"], shapes=[(n,), (n,)], input_shape=(1, n),
                 x=rng.standard_normal(n), logits=rng.standard_normal(n), rule="r", options={}, space="relevance",
                 meta={"image": int(seed)})


# -- cost ----------------------------------------------------------------------------------------------
def test_append_writes_only_the_new_chain(tmp_path):
    """An append lands one new file and a new small index; the files of the chains already there are never
    rewritten (same inode, same mtime, same bytes) and the index grows by a few hundred bytes per chain."""
    path = tmp_path / "a.h5"
    sizes = []
    for s in range(6):
        before = {f: (f.stat().st_ino, f.stat().st_mtime_ns, f.read_bytes()) for f in files_of(path)[1:]} \
            if path.exists() else {}
        archive.append(path, big_chain(s))
        for f, (ino, mtime, data) in before.items():
            st = f.stat()
            assert (st.st_ino, st.st_mtime_ns) == (ino, mtime) and f.read_bytes() == data
        sizes.append(path.stat().st_size)
        assert len(files_of(path)) == s + 2
    assert max(np.diff(sizes)) < 400, sizes                # index growth per chain
    assert sizes[-1] < 0.02 * files_of(path)[1].stat().st_size * 6


# -- checksums -----------------------------------------------------------------------------------------
def _attribute_offsets(f, raw):
    """Byte offsets (in the file) of distinctive attribute values of every object of an open chain file."""
    needles = []
    def visit(name, obj):
        for k, v in obj.attrs.items():
            if isinstance(v, bytes) and len(v) >= 4:
                needles.append(v)
    f.visititems(visit)
    for k, v in f.attrs.items():
        if isinstance(v, bytes) and len(v) >= 4:
            needles.append(v)
    offsets = set()
    for n in needles:
        pos = raw.find(n)
        if pos >= 0:
            offsets.add(pos + len(n) // 2)
    return sorted(offsets)


def test_byte_flips_in_data_and_attributes_of_every_chain_are_detected(tmp_path):
    """Every chain — the first written and every appended one — is checksummed throughout: a flipped byte in an
    attribute value (image index in meta, rule, layer names, key, …) or in a data chunk raises ArchiveError
    naming the file and the chain; random flips anywhere are detected or harmless."""
    path = tmp_path / "flip.h5"
    archive.write(path, [synthetic_chain(0)])
    for s in (1, 2):
        archive.append(path, synthetic_chain(s))       # appended chains: the old code wrote unchecksummed headers
    with archive.open(path) as r:
        expected = {k: r.load(k) for k in r.keys()}
    rng = np.random.default_rng(7)
    n_attr = n_data = 0
    for key, f in zip(sorted(expected), files_of(path)[1:]):
        raw = f.read_bytes()
        with h5py.File(f, "r") as h:
            attr_pos = _attribute_offsets(h, raw)
            chunk_pos = []
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset) and obj.chunks and obj.id.get_num_chunks():
                    info = obj.id.get_chunk_info(0)
                    chunk_pos.append(info.byte_offset + info.size // 2)
            h.visititems(visit)
        assert len(attr_pos) >= 10 and len(chunk_pos) >= 5
        for pos in attr_pos + chunk_pos:
            write_flipped(f, raw, pos, 0x01)
            with pytest.raises(ArchiveError, match=rf"flip\.h5: chain '{key}'"):
                with archive.open(path) as r:
                    r.info(key)
                    r.load(key)
            n_attr += pos in attr_pos
            n_data += pos in chunk_pos
        for pos in rng.choice(len(raw), 25, replace=False):
            write_flipped(f, raw, pos)
            try:
                with archive.open(path) as r:
                    assert_same_chain(r.load(key), expected[key])
                    r.info(key)
            except ArchiveError as exc:
                assert "flip.h5" in str(exc)
        f.write_bytes(raw)
    assert n_attr >= 30 and n_data >= 15
    with archive.open(path) as r:
        for k, c in expected.items():
            assert_same_chain(r.load(k), c)


# -- claimed sizes -------------------------------------------------------------------------------------
def _tamper(path, key, fn):
    """Apply fn(h5py.File r+) to the chain file of ``key`` and fix the index's recorded size (so only the
    tampered content, not the size check, can catch it)."""
    with archive.open(path) as r:
        f = r.chain_file(key)
        entries = dict(r._entries)
    with h5py.File(f, "r+", libver=LIBVER) as h:
        fn(h)
    entries[key] = (entries[key][0], f.stat().st_size)
    with h5py.File(path, "r") as h:
        nxt, d = int(h.attrs["next_index"]), h.attrs["chains_dir"].decode()
    path.write_bytes(store.index_image(entries, nxt, d))


def test_claimed_sizes_are_checked_against_the_chains_metadata_before_allocating(tmp_path, monkeypatch):
    path = tmp_path / "claims.h5"
    archive.write(path, [synthetic_chain(0), synthetic_chain(1), synthetic_chain(2)])

    def huge_dense(h):       # layer 0: a 200k × 200k dense matrix (320 GB), nothing stored
        lg = h["layers/0000"]
        del lg["matrix"]
        d = lg.create_dataset("matrix", shape=(200_000, 200_000), dtype="f8", chunks=(1000, 1000))
        set_str(d.attrs, "encoding-type", "array")
        lg.attrs["shape"] = np.array([200_000, 200_000], dtype=np.int64)

    def huge_sparse(h):      # layer 2 (CSC): claims 10^12 rows
        lg = h["layers/0002"]
        lg.attrs["shape"] = np.array([10**12, 7], dtype=np.int64)
        lg["matrix"].attrs["shape"] = np.array([10**12, 7], dtype=np.int64)

    _tamper(path, "000000", huge_dense)
    _tamper(path, "000001", huge_sparse)
    with archive.open(path) as r:
        with pytest.raises(ArchiveError, match=r"claims\.h5: chain '000000', layer 0 \('layer0'\).*\(6, 5\)"):
            r.load("000000")
        with pytest.raises(ArchiveError, match=r"claims\.h5: chain '000001', layer 2 \('layer2'\).*\(4, 7\)"):
            r.load_layer("000001", 2)
        assert_same_chain(r.load("000002"), synthetic_chain(2))
        # a claim consistent with the metadata but larger than the machine's memory is refused before reading
        monkeypatch.setattr("chainlab.archive.encoding.memory_bytes", lambda: 100)
        with pytest.raises(ArchiveError, match=r"chain '000002', layer 0 .*more than this machine's memory"):
            r.load("000002")


# -- old archives ----------------------------------------------------------------------------------------
def test_schema_1_archives_are_read_and_converted_on_the_first_write(tmp_path):
    path = tmp_path / "old.h5"
    with h5py.File(path, "w", libver=LIBVER) as f:       # the schema-1 layout: every chain inside one file
        set_str(f.attrs, "encoding-type", "chainlab-archive")
        f.attrs["schema_version"] = 1
        f.attrs["next_index"] = 2
        for k, s in (("000000", 0), ("000001", 1)):
            write_chain(f.require_group("chains").create_group(k), synthetic_chain(s), "old")
    with archive.open(path) as r:
        assert r.version == 1 and r.keys() == ["000000", "000001"]
        assert_same_chain(r.load("000001"), synthetic_chain(1))
    assert archive.append(path, synthetic_chain(2)) == "000002"
    with archive.open(path) as r:
        assert r.version == 2
        for k, s in zip(r.keys(), range(3)):
            assert_same_chain(r.load(k), synthetic_chain(s))


# -- crashes -------------------------------------------------------------------------------------------
def seeded_chain(s, size):
    rng = np.random.default_rng(s)
    return Chain([DenseOperator(rng.standard_normal((size, size)))], names=["big"], shapes=[(size,), (size,)],
                 input_shape=(1, size), x=rng.standard_normal(size), logits=rng.standard_normal(size),
                 rule="r", options={}, space="relevance", meta={"image": s})


def check_archive(path, size):
    """Every chain in the archive is bit-exact; returns the images it holds (in key order)."""
    images = []
    with archive.open(path) as r:
        for k in r.keys():
            c = r.load(k)
            s = c.meta["image"]
            rng = np.random.default_rng(s)
            assert c[0].array.tobytes() == rng.standard_normal((size, size)).tobytes()
            assert c.x.tobytes() == rng.standard_normal(size).tobytes()
            images.append(s)
    return images


def kill_at_random_moments(path, kills, seed, size=300, window=(0.0, 0.4)):
    """Fork a writer that appends chain after chain, SIGKILL it at a random moment, check the archive (every
    chain reported done is in and bit-exact, nothing else but possibly the chain being written); ``kills`` times.
    Returns the images stored."""
    rng = np.random.default_rng(seed)
    start, stored = 0, []
    for _ in range(kills):
        r_fd, w_fd = os.pipe()
        pid = os.fork()
        if pid == 0:                                   # the writer
            try:
                os.close(r_fd)
                for s in range(start, start + 1000):
                    archive.append(path, seeded_chain(s, size))
                    os.write(w_fd, f"done {s}\n".encode())
            finally:
                os._exit(0)
        os.close(w_fd)
        time.sleep(float(rng.uniform(*window)))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        with os.fdopen(r_fd) as fh:
            done = [int(line.split()[1]) for line in fh.read().splitlines() if line.startswith("done")]
        images = check_archive(path, size) if path.exists() else []
        assert len(images) == len(set(images))
        assert set(stored + done) <= set(images) <= set(stored + done) | {start + len(done)}
        stored = images
        start = max(images, default=start - 1) + 1
    return stored


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the kill harness forks writers")
def test_sigkill_at_random_moments_loses_at_most_the_chain_being_written(tmp_path):
    path = tmp_path / "k.h5"
    seed = int.from_bytes(os.urandom(2), "little")
    stored = kill_at_random_moments(path, kills=4, seed=seed)
    assert stored, f"seed {seed}: no chain landed before the kills"
    # the next writer removes what the killed ones left (temp files, a landed but unlisted chain file)
    archive.append(path, seeded_chain(10_000, 300))
    assert leftovers(path) == []


def test_stale_temps_and_orphans_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    path = tmp_path / "s.h5"
    archive.append(path, synthetic_chain(0))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        d = tmp_path / "s.h5.chains"
        junk = [path.with_name(f"s.h5.tmp-{dead.pid}-0"), d / f"000001-abcd.h5.tmp-{dead.pid}-3.h5",
                d / "000001-deadbeef.h5"]                      # the last: landed, never listed (killed before the index)
        keep = [path.with_name(f"s.h5.tmp-{live.pid}-0"), tmp_path / "s.h5.notes", tmp_path / "other.h5"]
        for p in junk + keep:
            p.write_bytes(b"x" * 1000)
        archive.append(path, synthetic_chain(1))
        assert not any(p.exists() for p in junk)
        assert all(p.exists() for p in keep)
    finally:
        live.kill()
        live.wait()


# -- concurrent writers ----------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks the writers")
def test_two_writer_processes_store_every_chain_exactly_once(tmp_path):
    path = tmp_path / "two.h5"
    pids = []
    for start in (0, 100):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for s in range(start, start + 15):
                    archive.append(path, seeded_chain(s, 60))
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    assert [os.waitpid(p, 0)[1] for p in pids] == [0, 0]
    assert sorted(check_archive(path, 60)) == list(range(15)) + list(range(100, 115))
    with archive.open(path) as r:
        assert r.keys() == [f"{i:06d}" for i in range(30)]
    assert leftovers(path) == []


def test_cli_two_extract_processes_store_every_image_exactly_once(tmp_path):
    """Two `chainlab extract --resume` into one archive at once (the old code lost 7–19 of 60 chains and
    duplicated others): each image is stored once, both exit 0."""
    path = tmp_path / "cli.h5"
    cmd = CHAINLAB + ["extract", "-m", "digits-mlp", "-r", "gradient", "--images", "0:20", "-o", str(path), "--resume"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
             for _ in range(2)]
    results = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1][-500:] for r in results]
    with archive.open(path) as r:
        images = [r.info(k)["image"] for k in r.keys()]
    assert sorted(images) == list(range(20))
    assert leftovers(path) == []


def test_a_busy_lock_waits_then_fails_naming_the_holder(tmp_path):
    path = tmp_path / "busy.h5"
    archive.append(path, synthetic_chain(0))
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, time
        fd = os.open({str(archive.lock_path(path))!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, f"pid {{os.getpid()}}: a holder".encode())
        print("held", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        waits = []
        t0 = time.monotonic()
        with pytest.raises(ArchiveError, match=rf"busy\.h5: another writer holds the archive \(pid {holder.pid}"):
            archive.append(path, synthetic_chain(1), timeout=0.5)
        assert time.monotonic() - t0 >= 0.5
        with pytest.raises(ArchiveError, match="another writer"):
            archive.writer(path, timeout=0.2, on_wait=waits.append)
        assert len(waits) == 1 and str(holder.pid) in waits[0]
    finally:
        holder.kill()
        holder.wait()
    archive.append(path, synthetic_chain(1), timeout=5)      # a dead holder's lock is released by the kernel
    with archive.open(path) as r:
        assert len(r) == 2


# -- disk full -------------------------------------------------------------------------------------------
@pytest.fixture
def small_fs(tmp_path):
    """A 3 MB tmpfs (needs mount rights) — else None."""
    d = tmp_path / "small"
    d.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        yield None
        return
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(d)], capture_output=True)
    if p.returncode != 0:
        yield None
        return
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _limit_file_size(nbytes):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # write() then fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return apply


NO_SPACE_CHECK = ("import sys; import chainlab.archive.store as s; s.check_space = lambda *a: None; "
                  "from chainlab.app.cli import main; sys.argv[0] = 'chainlab'; main()")


def test_full_disk_is_one_error_line_no_temp_archive_unchanged(tmp_path, small_fs):
    """A write that hits a full disk (ENOSPC on a 3 MB tmpfs, or EFBIG under RLIMIT_FSIZE where no tmpfs can be
    mounted) gives one ``chainlab: error:`` line, leaves no temp file and the archive as it was.  The free-space
    check is switched off in the writer so the disk really fills (the old code segfaulted, rc 139 in File.flush,
    with a flood of tracebacks and a stale temp file)."""
    if small_fs is not None:
        path, preexec = small_fs / "full.h5", None
    else:
        try:
            _limit_file_size(100_000)
        except (ValueError, OSError) as exc:
            pytest.skip(f"cannot mount a tmpfs nor limit the file size here: {exc}")
        path, preexec = tmp_path / "full.h5", _limit_file_size(100_000)
    archive.append(path, synthetic_chain(0))
    before = {f: f.read_bytes() for f in files_of(path)}
    if small_fs is not None:
        with open(small_fs / "filler", "wb") as fh:      # leave 100 kB: less than a digits-mlp chain (≈ 180 kB)
            fh.write(b"\0" * max(0, shutil.disk_usage(small_fs).free - 100_000))
    p = subprocess.run([sys.executable, "-c", NO_SPACE_CHECK, "extract", "-m", "digits-mlp", "-r", "zplus",
                        "--images", "0:3", "--resume", "-o", str(path)],
                       capture_output=True, text=True, env=ENV, preexec_fn=preexec)
    assert p.returncode == 2, (p.returncode, p.stderr[-800:])
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("chainlab")]
    assert len(lines) == 1 and lines[0].startswith("chainlab: error: ") and "full.h5" in lines[0], p.stderr[-800:]
    assert re.search(r"No space left on device \(ENOSPC\)|File too large \(EFBIG\)", lines[0]), lines[0]
    assert "the archive is unchanged" in lines[0] and "Traceback" not in p.stderr
    assert {f: f.read_bytes() for f in files_of(path)} == before
    assert not [q for q in path.parent.rglob("*") if ".tmp-" in q.name]
    assert leftovers(path) == []


def test_free_space_is_checked_before_writing(tmp_path, monkeypatch):
    """A chain that cannot fit is refused before a byte is written; the CLI estimates the rest of a run from the
    first chain and refuses it before extracting more."""
    from typer.testing import CliRunner
    from chainlab.app.cli import app

    path = tmp_path / "space.h5"
    archive.append(path, synthetic_chain(0))
    before = {f: f.read_bytes() for f in files_of(path)}
    monkeypatch.setattr(store, "free_bytes", lambda p: 2 << 20)
    with pytest.raises(ArchiveError, match=r"space\.h5: not enough disk space for chain '000001': it needs about 1\.\d MB"):
        archive.append(path, big_chain(1, 400))        # 1.3 MB of doubles: with the margin it does not fit
    assert {f: f.read_bytes() for f in files_of(path)} == before and leftovers(path) == []

    calls = []
    monkeypatch.setattr(store, "free_bytes", lambda p: (calls.append(p), 3 << 20)[1])
    out = tmp_path / "run.h5"
    res = CliRunner().invoke(app, ["extract", "-m", "digits-cnn", "-r", "zplus", "--images", "0:100", "-o", str(out)])
    assert res.exit_code == 2
    assert re.search(r"not enough disk space for the remaining 99 chain\(s\)", res.output), res.output
    with archive.open(out) as r:
        assert len(r) == 1                             # refused after the first chain, not after hours


# -- --overwrite -------------------------------------------------------------------------------------------
def test_overwrite_replaces_only_a_complete_archive(tmp_path):
    from typer.testing import CliRunner
    from chainlab.app.cli import app

    runner = CliRunner()
    path = tmp_path / "o.h5"
    assert runner.invoke(app, ["extract", "-m", "digits-mlp", "-r", "zplus", "--images", "0:2", "-o", str(path)]
                         ).exit_code == 0
    before = {f: f.read_bytes() for f in files_of(path)}
    # a run that fails (a rule whose chains cannot be archived) leaves the old archive as it was
    res = runner.invoke(app, ["extract", "-m", "digits-mlp", "-r", "guided-bp", "--images", "0:2", "-o", str(path),
                              "--overwrite"])
    assert res.exit_code == 2 and "not linear" in res.output
    assert {f: f.read_bytes() for f in files_of(path)} == before and leftovers(path) == []
    res = runner.invoke(app, ["extract", "-m", "digits-mlp", "-r", "gradient", "--images", "3:6", "-o", str(path),
                              "--overwrite"])
    assert res.exit_code == 0, res.output
    with archive.open(path) as r:
        assert [(r.info(k)["rule"], r.info(k)["image"]) for k in r.keys()] == [("gradient", i) for i in (3, 4, 5)]
    assert leftovers(path) == [] and not any(f.exists() for f in list(before)[1:])   # old chain files removed


# -- --workers: keys follow the requested order ----------------------------------------------------------
def test_worker_results_in_any_order_get_keys_in_the_requested_order(tmp_path, monkeypatch):
    from typer.testing import CliRunner
    from chainlab.app import cli as cli_module
    from chainlab.app.cli import app

    def reversed_run(tasks, on_result, **kw):          # results arrive in the reverse order of the request
        for key in reversed(list(tasks)):
            fn, args = tasks[key]
            on_result(key, fn(*args))
        return type("R", (), {"mode": "test", "rate": 1.0, "completed": list(tasks)})()

    monkeypatch.setattr(cli_module.distributed, "run", reversed_run)
    monkeypatch.setattr(cli_module, "_check_cluster", lambda w, s: None)
    path = tmp_path / "w.h5"
    res = CliRunner().invoke(app, ["extract", "-m", "digits-mlp", "-r", "zplus", "--images", "7,2,5", "-o", str(path),
                                   "--workers", "2"])
    assert res.exit_code == 0, res.output
    with archive.open(path) as r:
        assert [(k, r.info(k)["image"]) for k in r.keys()] == [("000000", 7), ("000001", 2), ("000002", 5)]
