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
* :func:`load_weights` — a state-dict file into a model, strictly (missing, unexpected and
  mis-shaped keys are named).
* :func:`state_fingerprint` — sha256 over a module's state dict (names, dtypes, shapes, bytes).

Untrusted files are data, never code: nothing here unpickles objects.
"""
from __future__ import annotations

import hashlib
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..errors import MissingFileError, ModelFileError
from ..files import atomic_path

__all__ = ["QUANTIZE_ABOVE", "quantize_rows", "dequantize_rows", "save_state", "read_state", "read_state_dict",
           "load_weights", "state_fingerprint"]

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


def _npz(path: Path):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc}") from None


def read_state(path) -> tuple[str | None, dict, dict]:
    """(architecture name or None, state dict of float tensors, meta) of a ``.npz`` weights file."""
    path = Path(path)
    try:
        return _read_state(path)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"cannot read model file {path}: {exc} (chainlab reads plain arrays only, never "
                             "pickled objects)") from None


def _read_state(path: Path):
    with _npz(path) as z:
        arch = str(z["__arch__"]) if "__arch__" in z.files else None
        meta = {k[len("__meta__"):]: z[k].item() for k in z.files if k.startswith("__meta__")}
        state = {}
        for k in z.files:
            if k.startswith("__") or k.endswith("::scale"):
                continue
            if k.endswith("::q"):
                base = k[:-3]
                if base + "::scale" not in z.files:
                    raise ModelFileError(f"{path}: quantized entry {base!r} has no scale")
                state[base] = torch.from_numpy(dequantize_rows(z[k], z[base + "::scale"], np.float32))
            else:
                a = z[k]
                state[k] = torch.from_numpy(a.astype(np.float32) if a.dtype == np.float16 else a)
    return arch, state, meta


def read_state_dict(path) -> dict:
    """A state dict (name → tensor) from a ``.pt``/``.pth`` or ``.npz`` file; never runs code from the file."""
    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"weights file {p} does not exist")
    if p.suffix == ".npz":
        return read_state(p)[1]
    if p.suffix not in (".pt", ".pth"):
        raise ModelFileError(f"weights file {p}: unknown suffix {p.suffix!r} (use .pt, .pth or .npz)")
    try:
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
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelFileError(f"cannot read weights file {p}: {type(exc).__name__}: {str(exc).splitlines()[0]}") \
            from None
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
    state = read_state_dict(path)
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
        raise ModelFileError(f"weights file {path} does not fit {getattr(model, 'name', type(model).__name__)}: "
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
