"""The digits chainlab ships: scikit-learn's bundled 8×8 digits.

``data/digits.npz`` (made by ``scripts/make_data.py``) holds uint8 pixel values 0…16 and labels, split
into train (1437) and test (360) by a seeded stratified split.  :func:`load_digits` returns float32
images in [0, 1] of shape (n, 1, 8, 8).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, MissingFileError
from .manifest import checked
from .models import data_dir
from .storage import read_npz

__all__ = ["Digits", "load_digits"]


@dataclass
class Digits:
    x_train: np.ndarray   # (1437, 1, 8, 8) float32 in [0, 1]
    y_train: np.ndarray   # (1437,) int64
    x_test: np.ndarray    # (360, 1, 8, 8)
    y_test: np.ndarray


def load_digits(path=None) -> Digits:
    """The shipped digits as float32 images in [0, 1] with labels."""
    path = Path(path or data_dir() / "digits.npz")
    if not path.exists():
        raise MissingFileError(f"{path} is missing; run scripts/make_data.py to make it")
    checked(path)
    z = read_npz(path, error=InputError, what="the digits file")
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in z]
    if missing:
        raise InputError(f"{path} is not chainlab's digits file: no {', '.join(missing)}; run scripts/make_data.py")

    def img(k):
        a = z[k]
        if a.dtype.kind not in "iuf" or a.ndim < 1 or a.size % 64 or not np.all((a >= 0) & (a <= 16)):
            raise InputError(f"{path}: {k} must hold 8×8 images of values 0…16 "
                             f"(got dtype {a.dtype}, shape {a.shape})")
        return (a.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)

    def labels(k, n):
        a = z[k]
        if a.dtype.kind not in "iu" or a.shape != (n,) or not np.all((a >= 0) & (a <= 9)):
            raise InputError(f"{path}: {k} must hold {n} labels 0…9 (got dtype {a.dtype}, shape {a.shape})")
        return a.astype(np.int64)

    x_train, x_test = img("x_train"), img("x_test")
    return Digits(x_train, labels("y_train", len(x_train)), x_test, labels("y_test", len(x_test)))
