"""Archive cost on a real chain: write/read time and size of chainlab.archive against numpy's .npz.

Extracts one chain (default sixt-cifar, zplus, test image 0), then times
  * archive.write (gzip level 1 + shuffle + fletcher32, the shipped setting) and archive.open(...).load,
  * the same with gzip level 4 (chainlab.archive.COMPRESSION patched),
  * np.savez / np.savez_compressed of the same arrays (data/indices/indptr or dense) and np.load,
and prints sizes and time ratios.  Run: .venv/bin/python scripts/bench_archive.py [net] [rule]
"""
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import chainlab
from chainlab import archive


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


def main():
    net_name = sys.argv[1] if len(sys.argv) > 1 else "sixt-cifar"
    rule = sys.argv[2] if len(sys.argv) > 2 else "zplus"
    net = chainlab.models.load(net_name)
    x = chainlab.data.model_input(net_name, chainlab.data.load_digits().x_test[:1])
    chain = chainlab.extract(net, x, rule)
    nnz = sum(op.nnz for op in chain)
    raw = sum(a.nbytes for a in arrays_of(chain).values())
    print(f"{net_name} {rule}: {len(chain)} operators, {nnz:,} stored entries, {raw / 1e6:.1f} MB in memory")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        rows = []
        for label, level in (("archive gzip-1 (shipped)", 1), ("archive gzip-4", 4)):
            archive.COMPRESSION["compression_opts"] = level
            tw, _ = timed(lambda: archive.write(d / f"a{level}.h5", [chain]))
            def load():
                with archive.open(d / f"a{level}.h5") as r:
                    return r.load(r.keys()[0])
            tr, back = timed(load)
            assert all(np.array_equal(a.to_sparse("csc").data, b.to_sparse("csc").data) for a, b in zip(chain, back))
            rows.append((label, tw, tr, (d / f"a{level}.h5").stat().st_size))
        archive.COMPRESSION["compression_opts"] = 1
        for label, fn in (("np.savez", np.savez), ("np.savez_compressed", np.savez_compressed)):
            p = d / f"{fn.__name__}.npz"
            tw, _ = timed(lambda: fn(p, **arrays_of(chain)))
            tr, _ = timed(lambda: {k: v for k, v in np.load(p).items()})
            rows.append((label, tw, tr, p.stat().st_size))
        base = rows[2]
        print(f"{'format':28s} {'write s':>8s} {'read s':>8s} {'MB':>8s}  write/savez  read/savez  size/savez")
        for label, tw, tr, size in rows:
            print(f"{label:28s} {tw:8.2f} {tr:8.2f} {size / 1e6:8.1f}  {tw / base[1]:11.2f} {tr / base[2]:11.2f} "
                  f"{size / base[3]:11.2f}")


if __name__ == "__main__":
    main()
