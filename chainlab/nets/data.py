"""The data the shipped nets see, and each net's input format.

* :func:`load_digits` — scikit-learn's 8×8 digits as shipped (:mod:`.digits`);
* :func:`load_scenes`, :func:`load_two_object_scenes` — glyphs on natural scenes, 32×32 RGB, made on the
  fly from a seed (:mod:`.scenes`);
* :func:`model_input` — images shaped for a net: flat 64 for digits-mlp, (n, 1, 8, 8) for digits-cnn,
  (n, 3, 32, 32) for the CIFAR-size nets (scenes as they are; 8×8 digits upsampled ×4 bilinearly and
  repeated over 3 channels, the format the first sixt-cifar was trained on).

Every net sees inputs in [0, 1] (:data:`INPUT_BOUNDS`, the z^B box).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .architectures import INPUT_SHAPES
from .digits import Digits, load_digits
from .scenes import Scenes, TwoObjectScenes, load_scenes, load_two_object_scenes

__all__ = ["Digits", "Scenes", "TwoObjectScenes", "load_digits", "load_scenes", "load_two_object_scenes",
           "model_input", "INPUT_BOUNDS", "DATASETS", "test_set"]

INPUT_BOUNDS = (0.0, 1.0)
DIGITS_FORMATS = {"digits-mlp": "flat", "digits-cnn": "image"}
DATASETS = ("digits", "scenes")
SCENES_TEST_SIZE = 2000        # the fixed held-out scene set: load_scenes("test", 2000, seed=0)


def test_set(dataset: str, n: int | None = None):
    """(images, labels) of a dataset's test set: the 360 shipped test digits, or the first ``n`` (default
    2000) of the fixed held-out scenes ``load_scenes("test", 2000, seed=0)``."""
    if dataset == "digits":
        d = load_digits()
        return d.x_test[:n], d.y_test[:n]
    if dataset == "scenes":
        s = load_scenes("test", SCENES_TEST_SIZE if n is None else max(int(n), 1), seed=0)
        return s.x, s.y
    raise InputError(f"dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")


def model_input(model_or_name, images) -> torch.Tensor:
    """Images (n, 1, 8, 8) digits or (n, 3, 32, 32) scenes shaped for a net (see the module docstring)."""
    name = model_or_name if isinstance(model_or_name, str) else getattr(model_or_name, "name", None)
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if name in DIGITS_FORMATS:
        if tuple(x.shape[1:]) != (1, 8, 8):
            raise InputError(f"{name} takes 8×8 digits (n, 1, 8, 8), got images of shape {tuple(x.shape)}")
        return x.reshape(x.shape[0], 64) if DIGITS_FORMATS[name] == "flat" else x
    if INPUT_SHAPES.get(name) == (1, 3, 32, 32):
        if tuple(x.shape[1:]) == (3, 32, 32):
            return x
        if tuple(x.shape[1:]) == (1, 8, 8):
            up = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1)
            return up.repeat(1, 3, 1, 1)
    raise InputError(f"model_input knows the input formats of the shipped nets, not of "
                     f"{'a model without a name' if name is None else repr(name)} with images of shape "
                     f"{tuple(x.shape)}; pass the model's input tensor directly")
