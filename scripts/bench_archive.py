"""Archive cost: append time per chain against the number of chains already archived, and formats.

Appends (the default run): for a digits-cnn and a sixt-cifar chain (zplus, test image 0), appends the
same chain N times to a fresh archive with
  * chainlab.archive.append (the shipped layout: one file per chain + an index; an append writes the
    new chain and a small index),
  * the obvious crash-safe alternative in one file — the schema-1 append: copy the whole archive to a
    temp file, add the chain there (h5py "r+"), fsync, rename over the original (what chainlab did before),
and prints, per append, the seconds and the bytes written, then the ratio last/first append (flat = 1).
Every file is fsynced, so the times include the disk.

    .venv/bin/python scripts/bench_archive.py                   # digits-cnn ×30, sixt-cifar ×5
    .venv/bin/python scripts/bench_archive.py --n 30 5 --dir /scratch
    .venv/bin/python scripts/bench_archive.py --formats [net] [rule]   # one chain: gzip levels vs np.savez
    .venv/bin/python scripts/bench_archive.py --output results/bench_archive.txt

``--smoke``: two appends of the digits-cnn chain, then the formats of that chain (seconds).
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

import _bench
import chainlab
from chainlab import archive
from chainlab.app.cli import dataset_of
from chainlab.archive.encoding import LIBVER, set_str, write_chain
from chainlab.files import atomic_path


def chain_of(net_name, rule="zplus"):
    net = chainlab.models.load(net_name)
    xs, _ = chainlab.data.test_set(dataset_of(net_name, None))
    return chainlab.extract(net, chainlab.data.model_input(net_name, xs[:1]), rule)


def copy_append(path: Path, chain, key: str):
    """The schema-1 append: the whole archive copied, the chain added to the copy, the copy renamed over it."""
    with atomic_path(path) as tmp:
        if path.exists():
            shutil.copyfile(path, tmp)
            f = h5py.File(tmp, "r+")
        else:
            f = h5py.File(tmp, "w", libver=LIBVER)
            set_str(f.attrs, "encoding-type", "chainlab-archive")
            f.attrs["schema_version"] = 1
        with f:
            write_chain(f.require_group("chains").create_group(key), chain, str(path))
            f.flush()


def du(path: Path) -> int:
    """Bytes of the archive: the index (or single file) plus its chains directory."""
    total = path.stat().st_size if path.exists() else 0
    d = path.with_name(path.name + ".chains")
    if d.is_dir():
        total += sum(p.stat().st_size for p in d.iterdir())
    return total


def bench_appends(chain, n, d: Path, label):
    print(f"\n{label}: {len(chain)} operators, {sum(op.nnz for op in chain):,} stored entries; {n} appends each")
    print(f"{'#':>3s} {'archived':>8s}  {'append s':>9s} {'written MB':>10s}  {'copy-append s':>13s} {'written MB':>10s}"
          f"  {'ratio':>6s}")
    new, old = d / "new.h5", d / "old.h5"
    rows, written = [], []
    for i in range(n):
        t = time.perf_counter()
        key = archive.append(new, chain)
        tn = time.perf_counter() - t
        with archive.open(new) as r:
            wn = r.chain_file(key).stat().st_size + new.stat().st_size   # the new chain file and the new index
        t = time.perf_counter()
        copy_append(old, chain, f"{i:06d}")
        to = time.perf_counter() - t
        wo = old.stat().st_size                         # the whole file is written again (copy + new chain)
        rows.append((tn, to))
        written.append((wn, wo))
        print(f"{i:3d} {i:8d}  {tn:9.2f} {wn / 1e6:10.1f}  {to:13.2f} {wo / 1e6:10.1f}  {to / tn:6.3g}", flush=True)
    (tn0, to0), (tn1, to1) = rows[0], rows[-1]
    print(f"last/first append: chainlab.archive {tn1 / tn0:.3g}, copy-append {to1 / to0:.3g}; "
          f"archive sizes {du(new) / 1e6:.1f} MB vs {old.stat().st_size / 1e6:.1f} MB")
    with archive.open(new) as r:
        assert len(r) == n
    q = max(1, n // 4)                  # medians over the first and the last quarter: one append is noisy on a busy machine
    n0, n1 = np.median([t for t, _ in rows[:q]]), np.median([t for t, _ in rows[-q:]])
    o0, o1 = np.median([t for _, t in rows[:q]]), np.median([t for _, t in rows[-q:]])
    md = [label.split()[0], f"{written[0][0] / 1e6:.1f} MB", str(n), f"{n0:.3g} → {n1:.3g}", f"{n1 / n0:.3g}",
          f"{max(w for w, _ in written) / 1e6:.1f} MB", f"{new.stat().st_size / 1e3:.1f} kB", f"{o0:.3g} → {o1:.3g}",
          f"{o1 / o0:.3g}", f"{written[-1][1] / 1e6:.1f} MB", f"{sum(t for _, t in rows) / sum(t for t, _ in rows):.3g}×"]
    new.unlink()
    shutil.rmtree(new.with_name(new.name + ".chains"))
    old.unlink()
    return md


# -- formats (one chain) ---------------------------------------------------------------------------
def arrays_of(chain):
    out = {}
    for i, op in enumerate(chain):
        if op.kind == "sparse":
            M = op.matrix
            out.update({f"{i}_data": M.data, f"{i}_indices": M.indices, f"{i}_indptr": M.indptr})
        else:
            out[f"{i}_dense"] = op.to_dense()
    return out


def timed(fn):
    t = time.perf_counter()
    r = fn()
    return time.perf_counter() - t, r


def bench_formats(net_name, rule, d: Path):
    chain = chain_of(net_name, rule)
    nnz = sum(op.nnz for op in chain)
    raw = sum(a.nbytes for a in arrays_of(chain).values())
    print(f"{net_name} {rule}: {len(chain)} operators, {nnz:,} stored entries, {raw / 1e6:.1f} MB in memory")
    rows = []
    for label, level in (("archive gzip-1 (shipped)", 1), ("archive gzip-4", 4)):
        archive.COMPRESSION["compression_opts"] = level
        p = d / f"a{level}.h5"
        tw, _ = timed(lambda: archive.write(p, [chain]))

        def load():
            with archive.open(p) as r:
                return r.load(r.keys()[0])
        tr, back = timed(load)
        assert all(np.array_equal(a.to_sparse("csc").data, b.to_sparse("csc").data) for a, b in zip(chain, back))
        rows.append((label, tw, tr, du(p)))
    archive.COMPRESSION["compression_opts"] = 1
    for label, fn in (("np.savez", np.savez), ("np.savez_compressed", np.savez_compressed)):
        p = d / f"{fn.__name__}.npz"
        tw, _ = timed(lambda: fn(p, **arrays_of(chain)))
        tr, _ = timed(lambda: {k: v for k, v in np.load(p).items()})
        rows.append((label, tw, tr, p.stat().st_size))
    base = rows[2]
    print(f"{'format':28s} {'write s':>8s} {'read s':>8s} {'MB':>8s}  write/savez  read/savez  size/savez")
    for label, tw, tr, size in rows:
        print(f"{label:28s} {tw:8.2f} {tr:8.2f} {size / 1e6:8.1f}  {tw / base[1]:11.3g} {tr / base[2]:11.3g} "
              f"{size / base[3]:11.3g}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs=2, default=(30, 5), metavar=("N_DIGITS", "N_SIXT"),
                    help="appends of the digits-cnn and of the sixt-cifar chain")
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp directory)")
    ap.add_argument("--formats", nargs="*", default=None, metavar="NET_RULE",
                    help="instead: compare storage formats for one chain (net, rule)")
    _bench.add_options(ap)
    a = ap.parse_args(argv)
    if a.smoke:
        a.n = (2, 0)
    with tempfile.TemporaryDirectory(dir=a.dir) as d, _bench.printed_to(a.output):
        d = Path(d)
        if a.formats is not None:
            bench_formats(*(a.formats + ["sixt-cifar", "zplus"][len(a.formats):]), d)
            return
        print(f"writing to {d} ({shutil.disk_usage(d).free / 1e9:.0f} GB free), {os.cpu_count()} CPUs")
        md = []
        for net_name, n in zip(("digits-cnn", "sixt-cifar"), a.n):
            if n < 1:
                continue
            t = time.perf_counter()
            chain = chain_of(net_name)
            print(f"\nextracted {net_name} zplus image 0 in {time.perf_counter() - t:.1f} s", flush=True)
            md.append(bench_appends(chain, n, d, f"{net_name} zplus"))
        print("\ntable: seconds per append, the median over the first and over the last quarter of the appends (at least "
              "one); written: bytes written by one append")
        _bench.table(["chain (zplus, image 0)", "chain file", "appends", "`archive.append` s first → last", "last/first",
                      "written per append", "index after the last", "copy-append (schema 1) s first → last",
                      "last/first", "written by the last copy-append", "copy-append / append (sum over the appends)"], md)
        print(f"summary: the same chain appended N times to a fresh archive in {d.parent} (every file fsynced): "
              "chainlab.archive.append writes the new chain file and the index; the schema-1 copy-append copies the whole "
              "archive, adds the chain and renames, so the bytes it writes grow with the chains archived")
        if a.smoke:
            print()
            bench_formats("digits-cnn", "zplus", d)


if __name__ == "__main__":
    sys.exit(main())
