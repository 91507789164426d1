"""Weights on disk: chainlab's ``.npz`` model files, foreign state-dict files, int8 storage, fingerprints.

* :func:`save_state` / :func:`read_state` — a model file: one array per state-dict entry plus
  ``__arch__`` (the architecture name) and ``__meta__<key>`` entries.  Float tensors with more than
  ``QUANTIZE_ABOVE`` entries are stored as int8 with one float32 scale per row
  (:func:`quantize_rows`: symmetric, scale = max|row| / 127); with ``float16=True`` the other weight
  tensors (≥ 2 axes: linear matrices, conv kernels) are stored as float16 (relative rounding error
  ≤ 2⁻¹¹; biases and BatchNorm entries stay float32).  The stored net *is* the rounded one: reading
  returns those values as float32.
* :func:`read_state_dict` — a state dict from ``.pt``/``.pth`` (``torch.load(weights_only=True)``:
  a file that would run code when unpickled — a pickled ``nn.Module`` — is refused) or ``.npz``.
* :func:`read_npz` — every member of a ``.npz`` as a plain array (``allow_pickle=False``), or a
  named error: an empty, truncated, corrupt or foreign file (a plain zip renamed ``.npz``, a
  ``.npy``) is never a TypeError or an uncaught numpy/zipfile error further on.
* :func:`load_weights` / :func:`load_state` — a state-dict file / a state dict into a model, strictly (missing,
  unexpected and mis-shaped keys are named).
* :func:`state_fingerprint` — sha256 over a module's state dict (names, dtypes, shapes, bytes).

Untrusted files are data, never code: nothing here unpickles objects.
"""
from __future__ import annotations

import hashlib
import pickle
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..errors import MissingFileError, ModelFileError
from ..files import atomic_path
from .manifest import checked

__all__ = ["QUANTIZE_ABOVE", "NPZ_ERRORS", "quantize_rows", "dequantize_rows", "save_state", "read_npz",
           "read_state", "read_state_dict", "load_weights", "load_state", "state_fingerprint"]

QUANTIZE_ABOVE = 1_000_000


def quantize_rows(a: np.ndarray):
    """int8 values and float32 per-row scales (scale = max|row|/127; row = first axis), symmetric rounding."""
    rows = np.asarray(a).reshape(a.shape[0], -1).astype(np.float64)
    scale = np.abs(rows).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    scale = scale.astype(np.float32)
    q = np.round(rows / scale.astype(np.float64)[:, None]).astype(np.int8).reshape(a.shape)
    return q, scale


def dequantize_rows(q: np.ndarray, scale: np.ndarray, dtype=np.float64) -> np.ndarray:
    """The values q · scale (per row) of :func:`quantize_rows`."""
    return (q.astype(dtype) * scale.astype(dtype).reshape((-1,) + (1,) * (q.ndim - 1)))


def save_state(model: nn.Module, path, arch: str, *, float16: bool = False, **meta) -> None:
    """Write ``model``'s state dict to ``path`` (.npz) with its architecture name, atomically: float tensors
    with more than QUANTIZE_ABOVE entries as int8 per row; with ``float16`` the other float tensors of ≥ 2 axes
    as float16."""
    arrays = {"__arch__": np.array(arch)}
    for k, v in meta.items():
        arrays[f"__meta__{k}"] = np.array(v)
    for key, t in model.state_dict().items():
        a = t.detach().cpu().numpy()
        if a.dtype.kind == "f" and a.size > QUANTIZE_ABOVE:
            arrays[f"{key}::q"], arrays[f"{key}::scale"] = quantize_rows(a)
        elif float16 and a.dtype.kind == "f" and a.ndim >= 2:
            arrays[key] = a.astype(np.float16)
        else:
            arrays[key] = a
    with atomic_path(Path(path).with_suffix(".npz")) as tmp:
        np.savez(tmp, **arrays)


# What numpy and zipfile raise on reading a damaged or foreign .npz (measured on ~1000 truncated and byte-flipped
# files): BadZipFile and zlib.error (a corrupt or truncated zip or member), EOFError (an empty file), ValueError (a
# bad .npy header; object arrays, refused by allow_pickle=False), OSError, NotImplementedError (an unsupported zip
# compression) and RuntimeError (an encrypted member).  Only np.load and the member reads sit in the try.
NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)


def read_npz(path, error=ModelFileError, what="model file") -> dict[str, np.ndarray]:
    """Every member of the ``.npz`` at ``path`` as an array (never unpickling), or ``error`` naming the file: the
    file is empty, not a zip of ``.npy`` arrays (a plain zip renamed ``.npz`` has members numpy returns as bytes),
    a single ``.npy``, or damaged."""
    path = Path(path)
    try:
        size = path.stat().st_size
        z = np.load(path, allow_pickle=False) if size else None
        members = None
        if isinstance(z, np.lib.npyio.NpzFile):
            with z:
                members = {k: z[k] for k in z.files}
    except NPZ_ERRORS as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise error(f"cannot read {what} {path}: {type(exc).__name__}: {first} (chainlab reads .npz archives of "
                    "plain arrays only, never pickled objects)") from None
    if members is None:
        raise error(f"cannot read {what} {path}: " + ("the file is empty" if not size else
                                                      "a single .npy array, not a .npz archive of named arrays"))
    for k, v in members.items():
        if not isinstance(v, np.ndarray):
            raise error(f"cannot read {what} {path}: its member {k!r} is not a .npy array (a plain zip renamed .npz?)")
    return members


# the dtypes torch.from_numpy takes (after the byte order is made native)
_TENSOR_DTYPES = {np.dtype(t) for t in ("bool", "int8", "uint8", "int16", "int32", "int64", "float16", "float32",
                                        "float64", "complex64", "complex128")}


def _tensor(path, key, a: np.ndarray) -> torch.Tensor:
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if a.dtype not in _TENSOR_DTYPES:
        raise ModelFileError(f"{path}: entry {key!r} has dtype {a.dtype}, not a tensor's (numbers or booleans)")
    return torch.from_numpy(a)


def read_state(path) -> tuple[str | None, dict, dict]:
    """(architecture name or None, state dict of float tensors, meta) of a ``.npz`` weights file."""
    path = checked(Path(path))
    z = read_npz(path)
    arch = None
    if "__arch__" in z:
        a = z["__arch__"]
        if a.shape != () or a.dtype.kind != "U":
            raise ModelFileError(f"{path}: '__arch__' must be one string (the architecture name), got an array of "
                                 f"dtype {a.dtype} and shape {a.shape}")
        arch = str(a)
    meta = {k[len("__meta__"):]: (v.item() if v.shape == () else v.tolist())
            for k, v in z.items() if k.startswith("__meta__")}
    state = {}
    for k, v in z.items():
        if k.startswith("__") or k.endswith("::scale"):
            continue
        if k.endswith("::q"):
            base = k[:-3]
            scale = z.get(base + "::scale")
            if scale is None:
                raise ModelFileError(f"{path}: quantized entry {base!r} has no scale")
            if v.dtype != np.int8 or v.ndim < 1 or scale.dtype.kind != "f" or scale.shape != (v.shape[0],):
                raise ModelFileError(f"{path}: quantized entry {base!r}: values of dtype {v.dtype} and shape {v.shape} "
                                     f"with scales of dtype {scale.dtype} and shape {scale.shape}; expected int8 "
                                     "values and one float scale per row")
            state[base] = torch.from_numpy(dequantize_rows(v, scale, np.float32))
        else:
            state[k] = _tensor(path, k, v.astype(np.float32) if v.dtype == np.float16 else v)   # float16 storage
    return arch, state, meta


# What torch.load(weights_only=True) raises on a truncated, byte-flipped or foreign file besides UnpicklingError
# (measured on ~1000 such files): RuntimeError (a zip it cannot read), EOFError, ValueError and UnicodeDecodeError,
# OSError, BadZipFile, IndexError, struct.error, AssertionError, TypeError — the reactions of torch's own readers to
# bad bytes.  Only the torch.load call sits in the try, so none of them can come from chainlab's code.
_TORCH_LOAD_ERRORS = (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile, IndexError, struct.error,
                      AssertionError, TypeError, KeyError)


def read_state_dict(path) -> dict:
    """A state dict (name → tensor) from a ``.pt``/``.pth`` or ``.npz`` file; never runs code from the file."""
    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"weights file {p} does not exist")
    if p.suffix == ".npz":
        return read_state(p)[1]
    if p.suffix not in (".pt", ".pth"):
        raise ModelFileError(f"weights file {p}: unknown suffix {p.suffix!r} (use .pt, .pth or .npz)")
    if p.is_file() and p.stat().st_size == 0:
        raise ModelFileError(f"cannot read weights file {p}: the file is empty")
    try:
        with warnings.catch_warnings():
            # torch notes any pickle protocol but 2 before its own unpickler decides; chainlab reports the decision
            warnings.filterwarnings("ignore", message=r"Detected pickle protocol")
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower():    # not a pickle of objects: random bytes, another format
            raise ModelFileError(f"cannot read weights file {p}: not a torch state-dict file (torch.load: "
                                 f"{_last_line(exc)})") from None
        raise ModelFileError(
            f"{p} is not a plain state dict: it holds pickled objects (e.g. a whole nn.Module), which chainlab "
            "never unpickles because loading them can run code. Save the weights with "
            "torch.save(model.state_dict(), path) and load them into the architecture "
            f"(chainlab.models.load(<name>, weights=path)). ({str(exc).splitlines()[0][:120]})") from None
    except _TORCH_LOAD_ERRORS as exc:
        raise ModelFileError(f"cannot read weights file {p}: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else 'truncated or not a torch file'}") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelFileError(f"{p} does not hold a state dict (a dict of tensors); got {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _last_line(exc) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and "pytorch.org" not in ln]
    return (lines[-1] if lines else type(exc).__name__)[:160]


def load_weights(model: nn.Module, path) -> nn.Module:
    """Load the state dict in ``path`` into ``model`` (strict) and return the model in eval mode."""
    return load_state(model, read_state_dict(path), path)


def load_state(model: nn.Module, state: dict, source) -> nn.Module:
    """Load the state dict ``state`` (read from ``source``, named in errors) into ``model``, strictly: missing,
    unexpected and mis-shaped keys are a ModelFileError naming them; returns the model in eval mode."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
           for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        def short(v):
            return ", ".join(v[:5]) + (f" … ({len(v)} in all)" if len(v) > 5 else "")
        parts = [f"missing keys: {short(missing)}" if missing else "",
                 f"unexpected keys: {short(unexpected)}" if unexpected else "",
                 f"shape mismatches: {short(bad)}" if bad else ""]
        raise ModelFileError(f"weights file {source} does not fit {getattr(model, 'name', type(model).__name__)}: "
                             + "; ".join(x for x in parts if x))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return model.eval()


def state_fingerprint(model: nn.Module) -> str:
    """sha256 over a torch model's state dict: every entry's name, dtype, shape and raw bytes, in order.

    Two models with the same architecture and bit-identical parameters and buffers have the same
    fingerprint; any changed weight changes it.  Returned as 'sha256:<hex>'.
    """
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        a = np.ascontiguousarray(t.detach().cpu().numpy())
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return "sha256:" + h.hexdigest()
