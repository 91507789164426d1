"""Archive torture: many kill -9 at random moments during appends, and byte flips over every chain file.

kill -9: a writer process appends chain after chain (dense 300×300, seeded so every chain can be
recomputed); it is SIGKILLed after a random delay, the archive is checked — every chain it reported
done is there and bit-exact, nothing else but possibly the chain being written, no chain twice —
and the next writer starts.  At the end one more append must leave no temp file and no unlisted
chain file.

byte flips: an archive of a few chains of every storage kind (first written and appended); for every
chain file, one flip at each attribute value and each data chunk (all must be detected: ArchiveError
naming the index, the chain and the chain file's path) and ``--flips`` random flips anywhere (detected
or harmless — never a silently different chain); then ``--flips`` random flips in the index.

crafted content (``--crafted`` rounds): what h5py lets anyone write, not only what a flipped byte
makes — every attribute of every object of a chain file replaced in turn by a value of another type
(an int, a float, an array, invalid UTF-8, JSON of the wrong type, JSON nested 100 000 deep, an
integer of 5000 digits), every dataset replaced by one of another dtype, shape or by one whose chunks
were never written, by a group, or deleted.  Each must give an ArchiveError (naming the chain file) or
a chain (unchanged, or as edited where the new value is consistent — e.g. meta = {} — which is data,
not damage): any other exception (a TypeError from a decoder, a MemoryError) is a failure.

    .venv/bin/python scripts/archive_torture.py --kills 50 --flips 300 --crafted 1
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp

from chainlab import archive
from chainlab.archive import ArchiveError
from chainlab.archive.store import index_image
from chainlab.chain import Chain
from chainlab.linalg import BlockOperator, DenseOperator, SparseOperator

WRITER = textwrap.dedent("""
    import sys, numpy as np
    from chainlab import archive
    from chainlab.chain import Chain
    from chainlab.linalg import DenseOperator
    path, start, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print("ready", flush=True)
    for s in range(start, start + 100000):
        rng = np.random.default_rng(s)
        c = Chain([DenseOperator(rng.standard_normal((size, size)))], names=["big"], shapes=[(size,), (size,)],
                  input_shape=(1, size), x=rng.standard_normal(size), logits=rng.standard_normal(size),
                  rule="r", options={}, space="relevance", meta={"image": s})
        archive.append(path, c)
        print("done", s, flush=True)
""")


def check(path, size):
    images = []
    with archive.open(path) as r:
        for k in r.keys():
            c = r.load(k)
            s = c.meta["image"]
            rng = np.random.default_rng(s)
            if c[0].array.tobytes() != rng.standard_normal((size, size)).tobytes() or \
                    c.x.tobytes() != rng.standard_normal(size).tobytes():
                raise AssertionError(f"chain {k} (image {s}) changed")
            images.append(s)
    return images


def kills(d: Path, n: int, size: int, seed: int):
    rng = np.random.default_rng(seed)
    path = d / "kill.h5"
    start, stored, lost = 0, [], 0
    for i in range(n):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(start), str(size)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0, 1.0)))
        os.kill(proc.pid, signal.SIGKILL)
        out = proc.communicate()[0]
        done = [int(ln.split()[1]) for ln in out.splitlines() if ln.startswith("done")]
        images = check(path, size) if path.exists() else []
        assert len(images) == len(set(images)), "a chain stored twice"
        assert set(stored + done) <= set(images), f"kill {i}: finished chains lost"
        extra = set(images) - set(stored + done)
        assert extra <= {start + len(done)}, f"kill {i}: unexpected chains {extra}"
        lost += int(not extra)                     # the chain being written did not land
        stored = images
        start = max(images, default=start - 1) + 1
    archive.append(path, Chain([DenseOperator(np.eye(3))], names=["i"], shapes=[(3,), (3,)], input_shape=(1, 3),
                               x=np.zeros(3), logits=np.zeros(3), rule="r", options={}, space="relevance",
                               meta={"image": -1}))
    d_chains = path.with_name(path.name + ".chains")
    with archive.open(path) as r:
        listed = {r.chain_file(k).name for k in r.keys()}
    leftovers = [p.name for p in d_chains.iterdir() if p.name not in listed]
    leftovers += [p.name for p in d.iterdir() if ".tmp-" in p.name]
    print(f"kill -9: {n} kills, {len(stored)} chains stored, all bit-exact; the chain in flight was lost "
          f"{lost} times, landed {n - lost} times; leftovers after the next append: {leftovers or 'none'}")
    assert not leftovers


def synthetic(seed, block=False):
    rng = np.random.default_rng(seed)

    def rs(n, m, fmt):
        return sp.random(n, m, density=0.3, format=fmt, random_state=rng)
    if block:
        ops = [BlockOperator(DenseOperator(rng.standard_normal((6, 4))), SparseOperator(rs(6, 4, "csc")),
                             SparseOperator(rs(6, 4, "csr")), DenseOperator(rng.standard_normal((6, 4))))]
        shapes = [(6,), (4,)]
    else:
        ops = [DenseOperator(rng.standard_normal((6, 5))), SparseOperator(rs(5, 4, "csr")),
               SparseOperator(rs(4, 3, "csc"), bias_relevance=rng.random(3))]
        shapes = [(6,), (5,), (4,), (3,)]
    return Chain(ops, names=[f"l{i}" for i in range(len(ops))], shapes=shapes, input_shape=(1, 6),
                 x=rng.standard_normal(6), logits=rng.standard_normal(shapes[-1][0]), rule="r",
                 options={"epsilon": 0.1}, space="relevance" if not block else "deeplift",
                 meta={"image": seed, "net": "toy"})


def same(a, b):
    for x, y in zip(a, b):
        A = x.to_dense() if x.kind != "block" else np.block([[q.to_dense() for q in row] for row in x.blocks])
        B = y.to_dense() if y.kind != "block" else np.block([[q.to_dense() for q in row] for row in y.blocks])
        if A.tobytes() != B.tobytes():
            return False
    return (len(a) == len(b) and a.meta == b.meta and a.names == b.names and a.x.tobytes() == b.x.tobytes()
            and a.logits.tobytes() == b.logits.tobytes())


def flips(d: Path, n_random: int, seed: int):
    path = d / "flip.h5"
    archive.write(path, [synthetic(0)])
    for s in (1, 2):
        archive.append(path, synthetic(s, block=(s == 2)))
    with archive.open(path) as r:
        keys = r.keys()
        expected = {k: r.load(k) for k in keys}
        files = [r.chain_file(k) for k in keys]
    rng = np.random.default_rng(seed)
    counts = dict(targeted=0, targeted_detected=0, random=0, random_detected=0, random_harmless=0)
    for key, f in zip(keys, files):
        raw = f.read_bytes()
        targets = set()
        with h5py.File(f, "r") as h:
            def visit(name, obj):
                for v in obj.attrs.values():
                    if isinstance(v, bytes) and len(v) >= 4 and raw.find(v) >= 0:
                        targets.add(raw.find(v) + len(v) // 2)
                if isinstance(obj, h5py.Dataset) and obj.chunks:
                    for c in range(obj.id.get_num_chunks()):
                        info = obj.id.get_chunk_info(c)
                        targets.add(info.byte_offset + info.size // 2)
            h.visititems(visit)
        for kind, positions in (("targeted", sorted(targets)), ("random", rng.choice(len(raw), n_random))):
            for pos in positions:
                b = bytearray(raw)
                b[pos] ^= 0x01 if kind == "targeted" else int(rng.integers(1, 256))
                f.write_bytes(bytes(b))
                counts[kind] += 1
                try:
                    with archive.open(path) as r:
                        r.info(key)
                        got = r.load(key)
                except ArchiveError as exc:
                    assert str(path) in str(exc) and repr(key) in str(exc) and str(f) in str(exc), exc
                    counts[kind + "_detected"] += 1
                    continue
                if kind == "targeted" or not same(got, expected[key]):
                    raise AssertionError(f"{f.name}: flip at byte {pos} went unnoticed")
                counts["random_harmless"] += 1
        f.write_bytes(raw)
    print(f"byte flips over {len(files)} chain files: {counts['targeted']} at attribute values and data chunks, "
          f"{counts['targeted_detected']} detected; {counts['random']} random, {counts['random_detected']} detected, "
          f"{counts['random_harmless']} harmless, 0 silent; every message named the chain file")
    raw = path.read_bytes()
    detected = harmless = 0
    for pos in rng.choice(len(raw), n_random):
        b = bytearray(raw)
        b[pos] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(b))
        try:
            with archive.open(path) as r:
                got = {k: r.load(k) for k in r.keys()}
        except ArchiveError as exc:
            assert str(path) in str(exc), exc
            detected += 1
            continue
        if got.keys() != expected.keys() or not all(same(got[k], expected[k]) for k in keys):
            raise AssertionError(f"index flip at byte {pos} went unnoticed")
        harmless += 1
    path.write_bytes(raw)
    print(f"byte flips in the index: {n_random} random, {detected} detected, {harmless} harmless, 0 silent")


def _variants(rng):
    """Values of other types an attribute could be replaced by (what plain h5py lets anyone write)."""
    out = [np.int64(7), np.float64(0.5), np.arange(3), np.bytes_(b"\xff\xfe not utf-8"), np.bytes_(b"[1, 2"),
           np.bytes_(b"{}"), np.bytes_(b"[]"), np.bytes_(b"[[1], 2]"), np.bytes_(b"[-1]"), np.bytes_(b"null"),
           np.bytes_(b"[" * 100_000 + b"]" * 100_000), np.bytes_(b"1" * 5000), np.bytes_(b'[[1e999]]'),
           np.array([2**62, 2**62], dtype=np.int64), np.array([1.5, 2.5]), np.bool_(True), "a str"]
    return [out[i] for i in rng.permutation(len(out))]


def _dataset_variants(shape, dtype, attrs):
    def make(kind):
        def apply(parent, name):
            del parent[name]
            if kind == "group":
                g = parent.create_group(name)
            elif kind == "unwritten":
                g = parent.create_dataset(name, shape=shape, dtype=dtype, chunks=True if shape else None)
            elif kind == "int8":
                g = parent.create_dataset(name, data=np.zeros(shape, np.int8))
            elif kind == "str":
                g = parent.create_dataset(name, data=np.array([b"x"] * max(int(np.prod(shape)), 1)))
            elif kind == "2d":
                g = parent.create_dataset(name, data=np.zeros((2, 2)))
            elif kind == "longer":
                g = parent.create_dataset(name, data=np.zeros(tuple(s + 1 for s in shape) or (1,)))
            elif kind == "bigendian":
                g = parent.create_dataset(name, data=np.zeros(shape, ">f8"))
            elif kind == "compound":
                g = parent.create_dataset(name, data=np.zeros(shape or (1,), [("a", "<f8"), ("b", "<i4")]))
            else:
                return
            for k, v in attrs.items():
                g.attrs[k] = v
        return apply
    return [(k, make(k)) for k in ("group", "unwritten", "int8", "str", "2d", "longer", "bigendian", "compound",
                                    "deleted")]


def crafted(d: Path, rounds: int, seed: int):
    """Replace attributes and datasets of every chain file by values of other types (see the module docstring)."""
    path = d / "crafted.h5"
    archive.write(path, [synthetic(0), synthetic(1, block=True)])
    with archive.open(path) as r:
        keys = r.keys()
        expected = {k: r.load(k) for k in keys}
        files = {k: r.chain_file(k) for k in keys}
    rng = np.random.default_rng(seed)
    counts = dict(cases=0, refused=0, unchanged=0, edited=0)

    def check(key, f):
        with archive.open(path) as r0:
            entries = dict(r0._entries)
        entries[key] = (entries[key][0], f.stat().st_size)
        path.write_bytes(index_image(entries, len(entries), path.name + ".chains"))
        counts["cases"] += 1
        try:
            with archive.open(path) as r:
                r.info(key)
                got = r.load(key)
                [r.load_layer(key, i) for i in range(len(got))]
        except ArchiveError as exc:
            assert str(f) in str(exc), exc
            counts["refused"] += 1
            return
        counts["unchanged" if same(got, expected[key]) else "edited"] += 1   # a consistent edit is data, not damage

    for _ in range(rounds):
        for key, f in files.items():
            raw = f.read_bytes()
            with h5py.File(f, "r") as h:
                objects = [("/", "")]
                h.visititems(lambda name, obj: objects.append((name, type(obj).__name__)))
                attrs = [(o, k) for o, _ in objects for k in h[o].attrs]
                datasets = [(o, h[o].shape, h[o].dtype, dict(h[o].attrs)) for o, t in objects if t == "Dataset"]
            for obj, name in attrs:
                for value in _variants(rng)[:6]:
                    f.write_bytes(raw)
                    with h5py.File(f, "r+") as h:
                        del h[obj].attrs[name]
                        h[obj].attrs[name] = value
                    check(key, f)
                f.write_bytes(raw)
                with h5py.File(f, "r+") as h:
                    del h[obj].attrs[name]
                check(key, f)
            for obj, shape, dtype, attrs_of in datasets:
                for kind, apply in _dataset_variants(shape, dtype, attrs_of):
                    f.write_bytes(raw)
                    with h5py.File(f, "r+") as h:
                        parent, name = obj.rsplit("/", 1) if "/" in obj else ("/", obj)
                        if kind == "deleted":
                            del h[parent or "/"][name]
                        else:
                            apply(h[parent or "/"], name)
                    check(key, f)
            f.write_bytes(raw)
            check(key, f)
    print(f"crafted content: {counts['cases']} chain files changed with h5py (attributes of other types, datasets of "
          f"other dtypes/shapes/unwritten, groups, deletions): {counts['refused']} refused with an ArchiveError "
          f"naming the chain file, {counts['unchanged']} read back unchanged, {counts['edited']} read back as edited "
          "(a consistent value of the right type, e.g. meta = {}), 0 other exceptions")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--flips", type=int, default=300, help="random flips per chain file")
    ap.add_argument("--size", type=int, default=400, help="the writer's dense chains are size × size")
    ap.add_argument("--crafted", type=int, default=1, help="rounds of crafted attributes and datasets (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        if a.crafted:
            crafted(Path(d), a.crafted, a.seed)
        flips(Path(d), a.flips, a.seed)
        kills(Path(d), a.kills, a.size, a.seed)


if __name__ == "__main__":
    main()
