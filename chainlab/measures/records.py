"""Tidy records as CSV: ``write_csv(records, path)`` / ``read_csv(path)``.

Columns: net, rule, image, measure, quantity, layer, k, value first, then every extra key in
first-seen order.  None is written as an empty cell, ±inf as ``inf``/``-inf``.  ``read_csv`` turns
numbers back into int/float (empty → None, "True"/"False" → bool) so a round trip gives the
same records up to float formatting (repr, exact for float64).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

from ..errors import InputError
from ..files import atomic_path
from ._common import RECORD_KEYS

__all__ = ["write_csv", "read_csv"]


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
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(keys)
        for r in records:
            w.writerow([_cell(r.get(key)) for key in keys])
    return path


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
    except UnicodeDecodeError:
        raise InputError(f"{path} is not a records CSV (not text)") from None


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
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
