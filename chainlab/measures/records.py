"""Tidy records as CSV: ``write_csv(records, path)`` / ``read_csv(path)``; one table per measure:
``write_tables(records, folder)`` / ``read_tables(folder)``.

Columns: net, rule, image, measure, quantity, layer, k, value first, then every extra key in
first-seen order.  None is written as an empty cell, ±inf as ``inf``/``-inf``.  ``read_csv`` turns
numbers back into int/float (empty → None, "True"/"False" → bool) so a round trip gives the
same records up to float formatting (repr, exact for float64).  A path ending in ``.gz`` is gzip-compressed
(written with mtime 0, so the bytes depend only on the records).

``write_tables`` writes ``<folder>/<measure>.csv[.gz]`` per measure, each with the key columns and only the
extra columns that measure fills (a pandas user reads one measure without knowing the others:
``pd.read_csv("records/csc_sixt.csv")``).
"""
from __future__ import annotations

import csv
import gzip
import io
import math
import re
from collections import defaultdict
from pathlib import Path

from ..errors import InputError
from ..files import atomic_path
from ._common import RECORD_KEYS

__all__ = ["write_csv", "read_csv", "write_tables", "read_tables"]


def _cell(v):
    if v is None:
        return ""
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):     # numpy scalars
        v = v.item()
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("inf" if v > 0 else "-inf" if v < 0 else "nan")
    return str(v)


def write_csv(records, path) -> Path:
    """Write records (list of dicts) to ``path`` atomically; returns the path."""
    records = list(records)
    keys = list(RECORD_KEYS)
    for r in records:
        if not isinstance(r, dict):
            raise InputError(f"records must be dicts, got {type(r).__name__}")
        for key in r:
            if key not in keys:
                keys.append(key)
    path = Path(path)
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(keys)
    for r in records:
        w.writerow([_cell(r.get(key)) for key in keys])
    raw = buf.getvalue().encode()
    if path.suffix == ".gz":
        raw = gzip.compress(raw, mtime=0)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(raw)
    return path


def _table_name(measure) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(measure)).strip("._") or "unnamed"
    return name


def write_tables(records, folder, *, compress: bool = False) -> list[Path]:
    """One tidy CSV per measure in ``folder`` (made if missing): the key columns, then the extra columns that at
    least one record of the measure fills, in first-seen order.  Returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    groups = defaultdict(list)
    for r in records:
        if not isinstance(r, dict):
            raise InputError(f"records must be dicts, got {type(r).__name__}")
        groups[r.get("measure")].append(r)
    out = []
    for measure, rows in groups.items():
        filled = {k for r in rows for k, v in r.items() if v is not None}
        rows = [{k: v for k, v in r.items() if k in RECORD_KEYS or k in filled} for r in rows]
        out.append(write_csv(rows, folder / f"{_table_name(measure)}.csv{'.gz' if compress else ''}"))
    return out


def read_tables(folder) -> list[dict]:
    """The records of every ``*.csv``/``*.csv.gz`` table in ``folder`` (sorted by file name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no records folder {folder}")
    paths = sorted(list(folder.glob("*.csv")) + list(folder.glob("*.csv.gz")))
    return [r for p in paths for r in read_csv(p)]


def _parse(s: str):
    if s == "":
        return None
    if s in ("True", "False"):
        return s == "True"
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s


def read_csv(path) -> list[dict]:
    """Read records written by :func:`write_csv`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no records file {path}")
    try:
        return _read(path)
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError):
        raise InputError(f"{path} is not a records CSV (not text)") from None


def _read(path: Path) -> list[dict]:
    opener = (lambda: gzip.open(path, "rt", newline="")) if path.suffix == ".gz" else (lambda: open(path, newline=""))
    with opener() as fh:
        rd = csv.reader(fh)
        try:
            header = next(rd)
        except StopIteration:
            raise InputError(f"{path} is empty, not a records CSV") from None
        missing = [k for k in RECORD_KEYS if k not in header]
        if missing:
            raise InputError(f"{path} is not a records CSV: missing column(s) {', '.join(missing)}")
        out = []
        for n, row in enumerate(rd, start=2):
            if len(row) != len(header):
                raise InputError(f"{path} line {n}: {len(row)} cells, header has {len(header)}")
            out.append({k: _parse(v) for k, v in zip(header, row)})
    return out
