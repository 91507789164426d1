"""Commit a verify run's results: copy ``verify.md``, ``verdicts.json`` and
``run.json`` (what the run cost) of a report folder into ``results/`` and
its record tables, gzip-compressed (bytes independent of the time of writing), into ``results/records/``.

    chainlab verify -o report            # the full run (the README's first command)
    python scripts/update_results.py report
    python scripts/readme_numbers.py     # regenerate the README's tables from results/

Records larger than ``--max-mb`` in all (default 8 MB compressed) are refused: the committed records are the ones
the verdicts use, not bulk data.
"""
from __future__ import annotations

import argparse
import gzip
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report", type=Path, help="the folder `chainlab verify -o` wrote")
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    ap.add_argument("--max-mb", type=float, default=8.0)
    a = ap.parse_args(argv)
    for name in ("verify.md", "verdicts.json"):
        if not (a.report / name).is_file():
            print(f"update_results: {a.report / name} is missing: not a verify report folder", file=sys.stderr)
            return 2
    tables = sorted((a.report / "records").glob("*.csv"))
    packed = {t.name + ".gz": gzip.compress(t.read_bytes(), mtime=0) for t in tables}
    size = sum(len(b) for b in packed.values()) / 2 ** 20
    if size > a.max_mb:
        print(f"update_results: the records take {size:.1f} MB compressed (> {a.max_mb} MB)", file=sys.stderr)
        return 2
    a.results.mkdir(parents=True, exist_ok=True)
    for name in ("verify.md", "verdicts.json", "run.json"):
        if (a.report / name).is_file():
            shutil.copyfile(a.report / name, a.results / name)
    rec = a.results / "records"
    if rec.exists():
        shutil.rmtree(rec)
    rec.mkdir()
    for name, blob in packed.items():
        (rec / name).write_bytes(blob)
    print(f"results/: verify.md, verdicts.json, {len(packed)} record tables ({size:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
