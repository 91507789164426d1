"""The digits chainlab ships: scikit-learn's bundled 8×8 digits.

``data/digits.npz`` (made by ``scripts/make_data.py``) holds uint8 pixel values 0…16 and labels, split
into train (1437) and test (360) by a seeded stratified split.  :func:`load_digits` returns float32
images in [0, 1] of shape (n, 1, 8, 8).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MissingFileError
from .manifest import checked
from .models import data_dir

__all__ = ["Digits", "load_digits"]


@dataclass
class Digits:
    x_train: np.ndarray   # (1437, 1, 8, 8) float32 in [0, 1]
    y_train: np.ndarray   # (1437,) int64
    x_test: np.ndarray    # (360, 1, 8, 8)
    y_test: np.ndarray


def load_digits(path=None) -> Digits:
    """The shipped digits as float32 images in [0, 1] with labels."""
    path = checked(path or data_dir() / "digits.npz")
    try:
        z = np.load(path)
    except FileNotFoundError:
        raise MissingFileError(f"{path} is missing; run scripts/make_data.py to make it") from None
    with z:
        def img(a):
            return (a.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
        return Digits(img(z["x_train"]), z["y_train"].astype(np.int64), img(z["x_test"]), z["y_test"].astype(np.int64))
