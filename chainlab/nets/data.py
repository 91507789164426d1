"""The real data chainlab ships: scikit-learn's bundled 8×8 digits.

``data/digits.npz`` (made by ``scripts/make_data.py``) holds uint8 pixel values
0…16 and labels, split into train (1437) and test (360) by a seeded stratified
split.  :func:`load_digits` returns float32 images in [0, 1] of shape (n, 1, 8, 8);
:func:`model_input` shapes them for a shipped net (flat 64 for the MLP, ×4
bilinear upsampling to 32×32 over 3 channels for sixt-cifar).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, MissingFileError
from .models import data_dir

__all__ = ["Digits", "load_digits", "model_input", "INPUT_BOUNDS"]

INPUT_BOUNDS = (0.0, 1.0)
SHIPPED_FORMATS = ("digits-mlp", "digits-cnn", "sixt-cifar")   # every shipped net sees inputs in [0, 1] (the z^B box)


@dataclass
class Digits:
    x_train: np.ndarray   # (1437, 1, 8, 8) float32 in [0, 1]
    y_train: np.ndarray   # (1437,) int64
    x_test: np.ndarray    # (360, 1, 8, 8)
    y_test: np.ndarray


def load_digits(path=None) -> Digits:
    """The shipped digits as float32 images in [0, 1] with labels."""
    path = path or data_dir() / "digits.npz"
    try:
        z = np.load(path)
    except FileNotFoundError:
        raise MissingFileError(f"{path} is missing; run scripts/make_data.py to make it") from None
    with z:
        def img(a):
            return (a.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
        return Digits(img(z["x_train"]), z["y_train"].astype(np.int64), img(z["x_test"]), z["y_test"].astype(np.int64))


def model_input(model_or_name, images) -> torch.Tensor:
    """Digits images (n, 1, 8, 8) shaped for a shipped net: (n, 64), (n, 1, 8, 8) or (n, 3, 32, 32)."""
    name = model_or_name if isinstance(model_or_name, str) else getattr(model_or_name, "name", None)
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if name == "digits-mlp":
        return x.reshape(x.shape[0], 64)
    if name == "digits-cnn":
        return x
    if name == "sixt-cifar":
        up = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1)
        return up.repeat(1, 3, 1, 1)
    raise InputError(f"model_input knows the input formats of the shipped nets ({', '.join(SHIPPED_FORMATS)}), "
                     f"not of {'a model without a name' if name is None else repr(name)}; pass the model's input "
                     "tensor directly")
