"""The resumable store of a ``chainlab verify --model … --images …`` run: what each measured chunk of images
produced, on disk inside ``--output``, so that ``--resume`` continues after a crash or a ``kill -9``.

Layout (everything under ``<output>/store/``, nothing outside ``--output`` is ever written):

* ``manifest.json`` — what the stored results are results of: the model (state-dict fingerprint and spec), the
  images (digest of the files and the preprocessing), the number of images, the seed, the settings and the
  chainlab version.  ``--resume`` refuses a store whose manifest differs (naming the first field that does);
* ``chunks/<sha256 of the key>.npz`` — one entry per measured chunk: the values the measure functions cached
  (``ctx.cache[key] = value``) and the records they wrote while computing them.

Every file is written through :func:`chainlab.files.atomic_path` (a temp file beside it, fsync, rename): a
killed writer leaves at most a temp file (``*.tmp-<pid>-<n>.npz``; removed on the next resume when its process is
gone), never a half-written entry.  An entry that cannot be read back (foreign or damaged file) is an
ArchiveError naming it.

Values are stored as data, never pickled: a JSON tree (dicts with keys of str/int/float/bool/None/tuple, lists,
tuples, numbers, strings, None) whose arrays (numpy arrays, numpy scalars, torch tensors) live beside it in the
same ``.npz`` (``allow_pickle=False`` on reading).  A value of another type is not persisted (:func:`encodable`
says so) and is recomputed on resume.
"""
from __future__ import annotations

import hashlib
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import torch

from ...errors import ArchiveError, InputError
from ...files import atomic_path, stale_temps_in, write_bytes
from ...version import __version__

__all__ = ["ChunkStore", "encode", "decode", "encodable", "key_text", "FORMAT"]

FORMAT = 1
_TREE = "__tree__"


class _NotEncodable(TypeError):
    pass


def key_text(key) -> str:
    """The canonical JSON text of a cache key (tuples of str/int/float/bool/None, nested)."""
    def enc(k):
        if isinstance(k, tuple):
            return {"t": [enc(v) for v in k]}
        if isinstance(k, list):
            return {"l": [enc(v) for v in k]}
        if k is None or isinstance(k, (str, bool, int)):
            return k
        if isinstance(k, float):
            return {"f": repr(k)}
        if isinstance(k, (np.integer,)):
            return int(k)
        if isinstance(k, np.floating):
            return {"f": repr(float(k))}
        raise _NotEncodable(f"key part {k!r} ({type(k).__name__})")
    return json.dumps(enc(key), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def encode(value):
    """(JSON tree, {name: array}) of a value (module docstring); TypeError for a type that is not stored."""
    arrays = {}

    def enc(v):
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int) and not isinstance(v, bool):
            return {"i": str(v)}
        if isinstance(v, float):
            return {"f": repr(v)} if not math.isfinite(v) else v
        if isinstance(v, (np.generic, np.ndarray, torch.Tensor)):
            tensor = isinstance(v, torch.Tensor)
            a = v.detach().cpu().numpy() if tensor else np.asarray(v)
            if a.dtype.kind not in "biufcU":
                raise _NotEncodable(f"array of dtype {a.dtype}")
            name = f"a{len(arrays)}"
            arrays[name] = a
            return {"a": name, "tensor": tensor, "scalar": isinstance(v, np.generic)}
        if isinstance(v, dict):
            return {"d": [[json.loads(key_text(k)), enc(x)] for k, x in v.items()]}
        if isinstance(v, tuple):
            return {"t": [enc(x) for x in v]}
        if isinstance(v, list):
            return {"l": [enc(x) for x in v]}
        if isinstance(v, range):
            return {"r": [v.start, v.stop, v.step]}
        raise _NotEncodable(f"{type(v).__name__}")

    return enc(value), arrays


def _key_from_json(j):
    if isinstance(j, dict):
        if "t" in j:
            return tuple(_key_from_json(v) for v in j["t"])
        if "l" in j:
            return [_key_from_json(v) for v in j["l"]]
        if "f" in j:
            return float(j["f"])
        raise ValueError(f"bad key node {j!r}")
    return j


def decode(tree, arrays):
    """The value :func:`encode` encoded."""
    def dec(j):
        if j is None or isinstance(j, (bool, str, int, float)):
            return j
        if not isinstance(j, dict):
            raise ValueError(f"bad node {j!r:.60}")
        if "i" in j:
            return int(j["i"])
        if "f" in j:
            return float(j["f"])
        if "a" in j:
            a = arrays[j["a"]]
            if j.get("tensor"):
                return torch.from_numpy(np.array(a))
            return a[()] if j.get("scalar") else a
        if "d" in j:
            out = {}
            for k, v in j["d"]:
                k = _key_from_json(k)
                out[tuple(k) if isinstance(k, list) else k] = dec(v)
            return out
        if "t" in j:
            return tuple(dec(v) for v in j["t"])
        if "l" in j:
            return [dec(v) for v in j["l"]]
        if "r" in j:
            return range(*j["r"])
        raise ValueError(f"bad node {j!r:.60}")

    return dec(tree)


def encodable(value) -> bool:
    """Whether :func:`encode` stores ``value``."""
    try:
        encode(value)
    except _NotEncodable:
        return False
    return True


class ChunkStore:
    """The store of one run in ``<output>/store`` (module docstring).  ``manifest``: the run's identity (a dict of
    JSON values).  ``resume=False`` refuses a directory that already holds a store (an earlier run's results are
    never overwritten silently); ``resume=True`` requires the same manifest."""

    def __init__(self, output, manifest: dict, *, resume: bool):
        self.root = Path(output) / "store"
        self.chunks = self.root / "chunks"
        self.manifest = {"format": FORMAT, "chainlab": __version__, **manifest}
        path = self.root / "manifest.json"
        if path.exists():
            if not resume:
                raise InputError(f"{Path(output)} holds the results of an earlier run ({path}); --resume continues "
                                 "it, or choose another --output to start over")
            old = self._read_manifest(path)
            for k in sorted(set(old) | set(self.manifest)):
                if k == "chainlab":
                    continue
                if old.get(k) != self.manifest.get(k):
                    raise InputError(f"--resume: {path} was made for another run ({k}: stored {old.get(k)!r:.80}, "
                                     f"now {self.manifest.get(k)!r:.80}); choose another --output")
            for stale in stale_temps_in(self.chunks):
                stale.unlink(missing_ok=True)
        else:
            self.chunks.mkdir(parents=True, exist_ok=True)
            write_bytes(path, (json.dumps(self.manifest, indent=1, sort_keys=True) + "\n").encode())
        self.chunks.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _read_manifest(path: Path) -> dict:
        try:
            m = json.loads(path.read_text())
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise ArchiveError(f"cannot read the store's manifest {path}: {exc}") from None
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise ArchiveError(f"{path} is not a chainlab verify store (format {FORMAT})")
        return m

    def _path(self, name: str) -> Path:
        return self.chunks / (hashlib.sha256(name.encode()).hexdigest()[:32] + ".npz")

    def has(self, name: str) -> bool:
        return self._path(name).exists()

    def names(self) -> list[str]:
        """The names of the stored entries (read from each file)."""
        out = []
        for p in sorted(self.chunks.glob("*.npz")):
            if ".tmp-" in p.name:
                continue
            out.append(self._read(p)[0])
        return out

    def put(self, name: str, entries: dict, records: list, seconds: float = 0.0) -> None:
        """Store one chunk: ``entries`` {cache key: value} (values that cannot be encoded are left out), the
        ``records`` written while computing them and the ``seconds`` it took; atomically."""
        keep = []
        for k, v in entries.items():
            try:
                text = key_text(k)
            except _NotEncodable:
                continue
            if encodable(v):
                keep.append((text, v))
        tree, arrays = encode({"name": name, "entries": keep, "records": list(records), "seconds": float(seconds)})
        if _TREE in arrays:
            raise ArchiveError("reserved array name")
        arrays[_TREE] = np.array(json.dumps(tree, ensure_ascii=False))
        with atomic_path(self._path(name)) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

    def _read(self, p: Path):
        try:
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            tree = json.loads(str(arrays.pop(_TREE)))
            got = decode(tree, arrays)
        except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile) as exc:
            raise ArchiveError(f"stored chunk {p} cannot be read ({type(exc).__name__}: {str(exc)[:120]}); delete it "
                               "to recompute that chunk") from None
        entries = {_key_from_json(json.loads(k)): v for k, v in got["entries"]}
        return got["name"], entries, got["records"], got.get("seconds", 0.0)

    def get(self, name: str):
        """(entries, records, seconds) of a stored chunk, or None."""
        p = self._path(name)
        if not p.exists():
            return None
        stored, entries, records, seconds = self._read(p)
        if stored != name:
            raise ArchiveError(f"stored chunk {p} holds {stored!r}, not {name!r}")
        return entries, records, seconds
