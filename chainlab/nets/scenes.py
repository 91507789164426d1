"""Glyphs on natural scenes: an offline 32×32 RGB, 10-class image set made on the fly.

Every image is a crop of a natural photograph bundled with scikit-image or scikit-learn (no
download) with one coloured digit glyph (scikit-learn's 8×8 digits, :func:`chainlab.nets.digits.load_digits`)
alpha-blended onto it; the label is the digit.  Pixel values lie in [0, 1] (the z^B box).

* Backgrounds: ``skimage.data`` astronaut, chelsea (``cat`` is the same photograph and is used
  once), coffee, hubble_deep_field, immunohistochemistry, retina, rocket and
  ``sklearn.datasets.load_sample_images`` china, flower.  Each photograph is cut at a column
  (:data:`TRAIN_FRACTION` ≈ 70 % of its width, rounded to a multiple of 4): training crops come
  only from the left part, test crops only from the right part, so no background pixel is shared
  between train and test.  A crop is a random square of side 40–128 px (log-uniform, i.e. random
  scale) at a random position inside its part, resampled to 32×32 (bilinear from a 2×-area
  pyramid level of that part, so the resampling factor is 1–2 and aliasing small), flipped
  horizontally / vertically with probability 1/2 each, and colour-jittered (brightness ×0.85–1.15,
  per-channel gain ×0.93–1.07, clipped to [0, 1]).
* Objects: a digit glyph (train glyphs from the shipped train split, test glyphs from the test
  split) scaled bilinearly to a random integer size of 14–24 px, placed at a random integer
  position, alpha = glyph intensity; its colour has a random hue and saturation and a luminance
  that contrasts with the mean luminance of the background under the glyph (0–0.2 on a background
  brighter than 0.5, else 0.75–1), so that the digit stays visible.  Labels are class-balanced
  (n // 10 or n // 10 + 1 images per class, in random order).
* Two-object scenes (:func:`load_two_object_scenes`): two glyphs of different classes, of size
  14–16 px, one in the left half (columns 0–15) and one in the right half (columns 16–31).

Generation is batched (``torch.nn.functional.grid_sample``) and deterministic: the same
``(split, n, seed)`` gives bit-identical arrays whatever the thread count.  All random numbers are
drawn up front from ``numpy.random.default_rng`` seeded by ``(seed, split, kind)``.

:func:`radial_power_spectrum_slope` and :func:`channel_correlation` measure two statistics of
natural images (power ∝ 1/f^2 and strongly correlated colour channels).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .digits import load_digits

__all__ = ["Scenes", "TwoObjectScenes", "load_scenes", "load_two_object_scenes", "load_backgrounds",
           "photographs", "radial_power_spectrum_slope", "channel_correlation",
           "PHOTOS", "TRAIN_FRACTION", "SIZE", "GLYPH_SIZES", "TWO_OBJECT_GLYPH_SIZES", "CROP_SIDES"]

SIZE = 32
PHOTOS = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "retina", "rocket",
          "china", "flower")
TRAIN_FRACTION = 0.7
CROP_SIDES = (40, 128)              # side of the square crop in photo pixels (log-uniform)
GLYPH_SIZES = (14, 24)              # inclusive
TWO_OBJECT_GLYPH_SIZES = (14, 16)   # inclusive; a glyph must fit in a 16-px half
BRIGHTNESS = (0.85, 1.15)
CHANNEL_GAIN = (0.93, 1.07)
_LEVELS = 3                         # pyramid levels 0, 1, 2 (area downsampling by 2)
_SPLITS = {"train": 0, "test": 1}
_CHUNK = 4096


@dataclass
class Scenes:
    x: np.ndarray        # (n, 3, 32, 32) float32 in [0, 1]
    y: np.ndarray        # (n,) int64
    info: dict | None = field(default=None, repr=False)

    def __len__(self):
        return len(self.y)


@dataclass
class TwoObjectScenes:
    x: np.ndarray        # (n, 3, 32, 32) float32 in [0, 1]
    y_left: np.ndarray   # (n,) int64, the glyph in columns 0–15
    y_right: np.ndarray  # (n,) int64, the glyph in columns 16–31; y_left != y_right
    info: dict | None = field(default=None, repr=False)

    def __len__(self):
        return len(self.y_left)


# ----------------------------------------------------------------------------------------------
# photographs


def _load_photo(name: str) -> np.ndarray:
    # scikit-image and scikit-learn are imported here, where the photographs are read (once per process):
    # importing chainlab or loading a net does not pay for them
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image
        return load_sample_image(f"{name}.jpg")
    import skimage.data
    return getattr(skimage.data, name)()


@functools.lru_cache(maxsize=None)
def photographs() -> tuple[np.ndarray, ...]:
    """The bundled photographs (uint8, (H, W, 3)), in the order of :data:`PHOTOS`."""
    out = []
    for name in PHOTOS:
        a = np.asarray(_load_photo(name))
        if a.ndim != 3 or a.shape[2] < 3:
            raise ValueError(f"photograph {name!r} is not RGB: shape {a.shape}")
        out.append(np.ascontiguousarray(a[:, :, :3]))
    return tuple(out)


def split_column(width: int) -> int:
    """The column where a photograph of this width is cut: train = [0, c), test = [c, width)."""
    return int(round(TRAIN_FRACTION * width / 4)) * 4


@functools.lru_cache(maxsize=None)
def _pyramids(split: str):
    """Per photograph: (column offset in the photo, [level-0, level-1, level-2 images (1, 3, h, w)])."""
    out = []
    for a in photographs():
        c = split_column(a.shape[1])
        part = a[:, :c] if split == "train" else a[:, c:]
        offset = 0 if split == "train" else c
        t = torch.from_numpy(part.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0).contiguous()
        levels = [t]
        for _ in range(1, _LEVELS):
            levels.append(F.avg_pool2d(levels[-1], 2))      # drops an odd last row/column
        out.append((offset, levels))
    return out


def _draw_backgrounds(rng: np.random.Generator, n: int, split: str) -> dict:
    """Random crop parameters (no pixels yet)."""
    pyr = _pyramids(split)
    photo = rng.integers(0, len(pyr), n)
    side0 = np.exp(rng.uniform(np.log(CROP_SIDES[0]), np.log(CROP_SIDES[1]), n))
    level = np.clip(np.floor(np.log2(side0 / SIZE)), 0, _LEVELS - 1).astype(np.int64)
    side = np.maximum(np.round(side0 / 2.0 ** level), SIZE).astype(np.int64)   # in level pixels
    u, v = rng.random(n), rng.random(n)
    flip_h, flip_v = rng.random(n) < 0.5, rng.random(n) < 0.5
    brightness = rng.uniform(*BRIGHTNESS, n)
    gain = rng.uniform(*CHANNEL_GAIN, (n, 3))
    x0 = np.empty(n, np.int64)
    y0 = np.empty(n, np.int64)
    for p in range(len(pyr)):
        for lv in range(_LEVELS):
            m = (photo == p) & (level == lv)
            h, w = pyr[p][1][lv].shape[2:]
            s = side[m]
            if np.any(s > min(h, w)):
                raise ValueError(f"crop side {s.max()} exceeds photo part {h}×{w}")
            x0[m] = np.floor(u[m] * (w - s + 1)).astype(np.int64)
            y0[m] = np.floor(v[m] * (h - s + 1)).astype(np.int64)
    scale = 2 ** level
    offset = np.array([pyr[p][0] for p in range(len(pyr))])[photo]
    # crop box in original photograph pixels, half-open: [x0, x1) × [y0, y1)
    box = np.stack([offset + x0 * scale, y0 * scale, offset + (x0 + side) * scale, (y0 + side) * scale], 1)
    return dict(photo=photo, level=level, side=side, x0=x0, y0=y0, flip_h=flip_h, flip_v=flip_v,
                brightness=brightness.astype(np.float32), gain=gain.astype(np.float32), box=box)


def _render_backgrounds(p: dict, split: str) -> torch.Tensor:
    """(n, 3, 32, 32) float32 in [0, 1] from crop parameters."""
    pyr = _pyramids(split)
    n = len(p["photo"])
    out = torch.empty(n, 3, SIZE, SIZE)
    centres = (torch.arange(SIZE, dtype=torch.float64) + 0.5) / SIZE        # in (0, 1)
    for ph in range(len(pyr)):
        for lv in range(_LEVELS):
            idx = np.flatnonzero((p["photo"] == ph) & (p["level"] == lv))
            if len(idx) == 0:
                continue
            img = pyr[ph][1][lv]
            h, w = img.shape[2:]
            s = torch.from_numpy(p["side"][idx]).double()[:, None]
            fx = torch.where(torch.from_numpy(p["flip_h"][idx])[:, None], 1 - centres, centres)
            fy = torch.where(torch.from_numpy(p["flip_v"][idx])[:, None], 1 - centres, centres)
            # continuous pixel coordinates (pixel i spans [i, i+1)); with side >= 32 every bilinear
            # tap stays inside the crop box
            px = torch.from_numpy(p["x0"][idx]).double()[:, None] + fx * s
            py = torch.from_numpy(p["y0"][idx]).double()[:, None] + fy * s
            gx = (2 * px / w - 1).float()          # align_corners=False normalisation
            gy = (2 * py / h - 1).float()
            k = len(idx)
            grid = torch.stack([gx[:, None, :].expand(k, SIZE, SIZE), gy[:, :, None].expand(k, SIZE, SIZE)], -1)
            res = F.grid_sample(img, grid.reshape(1, k * SIZE, SIZE, 2), mode="bilinear",
                                padding_mode="border", align_corners=False)
            out[torch.from_numpy(idx)] = res.reshape(3, k, SIZE, SIZE).permute(1, 0, 2, 3)
    jitter = torch.from_numpy(p["brightness"])[:, None] * torch.from_numpy(p["gain"])
    return (out * jitter[:, :, None, None]).clamp_(0, 1)


# ----------------------------------------------------------------------------------------------
# glyphs


@functools.lru_cache(maxsize=None)
def _glyph_source(split: str):
    d = load_digits()
    x, y = (d.x_train, d.y_train) if split == "train" else (d.x_test, d.y_test)
    return torch.from_numpy(np.ascontiguousarray(x)), y


def _pick_glyphs(rng, labels: np.ndarray, split: str) -> np.ndarray:
    """For each label a random glyph index (into the split's digits) of that class."""
    _, y = _glyph_source(split)
    idx = np.empty(len(labels), np.int64)
    u = rng.random(len(labels))
    for c in range(10):
        pool = np.flatnonzero(y == c)
        m = labels == c
        idx[m] = pool[np.floor(u[m] * len(pool)).astype(np.int64)]
    return idx


def _balanced_labels(rng, n: int) -> np.ndarray:
    return rng.permutation(np.arange(n) % 10).astype(np.int64)


def _render_alpha(glyph_index, size, gx0, gy0, split) -> torch.Tensor:
    """(n, 32, 32) alpha maps: glyph `glyph_index` scaled to size×size at column gx0, row gy0."""
    src, _ = _glyph_source(split)
    n = len(glyph_index)
    out = torch.empty(n, SIZE, SIZE)
    centres = torch.arange(SIZE, dtype=torch.float64) + 0.5
    for a in range(0, n, _CHUNK):
        sl = slice(a, min(n, a + _CHUNK))
        s = torch.from_numpy(size[sl]).double()[:, None]
        # canvas pixel centre -> normalized glyph coordinate in [-1, 1] over the glyph box
        gx = (2 * (centres - torch.from_numpy(gx0[sl]).double()[:, None]) / s - 1).float()
        gy = (2 * (centres - torch.from_numpy(gy0[sl]).double()[:, None]) / s - 1).float()
        k = gx.shape[0]
        grid = torch.stack([gx[:, None, :].expand(k, SIZE, SIZE), gy[:, :, None].expand(k, SIZE, SIZE)], -1)
        g = src[torch.from_numpy(glyph_index[sl])]
        res = F.grid_sample(g, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]
        # nothing outside the glyph box (bilinear zero padding bleeds half a source pixel)
        inside = ((centres > torch.from_numpy(gx0[sl]).double()[:, None])
                  & (centres < torch.from_numpy(gx0[sl] + size[sl]).double()[:, None]))
        inside_y = ((centres > torch.from_numpy(gy0[sl]).double()[:, None])
                    & (centres < torch.from_numpy(gy0[sl] + size[sl]).double()[:, None]))
        out[sl] = res * (inside_y[:, :, None] & inside[:, None, :])
    return out.clamp_(0, 1)


def _hsv_to_rgb(h, s, v):
    i = np.floor(h * 6).astype(np.int64) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([r, g, b], 1)


_LUMA = torch.tensor([0.299, 0.587, 0.114])


def _draw_colour(rng, n):
    return dict(hue=rng.random(n), sat=rng.uniform(0.3, 1.0, n), lum=rng.random(n))


def _colour(c: dict, bg: torch.Tensor, alpha: torch.Tensor) -> np.ndarray:
    """A colour of random hue and saturation whose luminance contrasts with the local background.

    The local background luminance is its mean under the glyph (alpha-weighted).  Above 0.5 the
    glyph gets a luminance in [0, 0.2], else in [0.75, 1]; the pure hue colour hsv(h, s, 1) is scaled
    down (darker) or mixed with white (brighter) to reach that luminance.
    """
    lum = torch.einsum("nchw,c->nhw", bg, _LUMA).double()
    a = alpha.double()
    local = ((lum * a).sum((1, 2)) / a.sum((1, 2)).clamp_min(1e-6)).numpy()
    target = np.where(local > 0.5, 0.2 * c["lum"], 0.75 + 0.25 * c["lum"])
    pure = _hsv_to_rgb(c["hue"], c["sat"], np.ones_like(c["hue"]))
    l1 = pure @ _LUMA.numpy().astype(np.float64)
    darker = pure * (target / l1)[:, None]
    t = ((target - l1) / np.maximum(1 - l1, 1e-9))[:, None]
    brighter = pure + t * (1 - pure)
    return np.clip(np.where((target <= l1)[:, None], darker, brighter), 0, 1).astype(np.float32)


def _composite(x: torch.Tensor, alpha: torch.Tensor, colour: np.ndarray) -> torch.Tensor:
    a = alpha[:, None]
    return (x * (1 - a) + torch.from_numpy(colour)[:, :, None, None] * a).clamp_(0, 1)


# ----------------------------------------------------------------------------------------------
# public API


def _check(split, n):
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if int(n) < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return int(n)


def _rng(seed, split, kind):
    return np.random.default_rng([int(seed), _SPLITS[split], kind])


def load_backgrounds(split: str, n: int, seed: int = 0) -> np.ndarray:
    """The bare backgrounds of ``load_scenes(split, n, seed)`` (same crops, no glyph): (n, 3, 32, 32)."""
    n = _check(split, n)
    rng = _rng(seed, split, 0)
    p = _draw_backgrounds(rng, n, split)
    return _render_backgrounds(p, split).numpy()


def load_scenes(split: str, n: int, seed: int = 0, return_info: bool = False) -> Scenes:
    """``n`` glyph-on-scene images of ``split`` ("train" or "test"), deterministic from ``seed``.

    ``return_info=True`` also returns (in ``.info``) the generation parameters: source photo index
    (``photo``, into :data:`PHOTOS`) and crop ``box`` (x0, y0, x1, y1, half-open, in photo pixels),
    ``glyph_index`` (into the split of :func:`chainlab.nets.digits.load_digits`), ``glyph_box`` (x0, y0, x1,
    y1 on the 32×32 canvas), ``colour``, ``alpha`` (n, 32, 32) and ``background`` (n, 3, 32, 32).
    """
    n = _check(split, n)
    rng = _rng(seed, split, 0)
    p = _draw_backgrounds(rng, n, split)
    y = _balanced_labels(rng, n)
    gi = _pick_glyphs(rng, y, split)
    size = rng.integers(GLYPH_SIZES[0], GLYPH_SIZES[1] + 1, n)
    gx0 = np.floor(rng.random(n) * (SIZE - size + 1)).astype(np.int64)
    gy0 = np.floor(rng.random(n) * (SIZE - size + 1)).astype(np.int64)
    col = _draw_colour(rng, n)
    bg = _render_backgrounds(p, split)
    alpha = _render_alpha(gi, size, gx0, gy0, split)
    colour = _colour(col, bg, alpha)
    x = _composite(bg, alpha, colour).numpy()
    info = None
    if return_info:
        info = dict(photo=p["photo"], box=p["box"], flip_h=p["flip_h"], flip_v=p["flip_v"], glyph_index=gi,
                    glyph_box=np.stack([gx0, gy0, gx0 + size, gy0 + size], 1), colour=colour,
                    alpha=alpha.numpy(), background=bg.numpy())
    return Scenes(x, y, info)


def load_two_object_scenes(split: str, n: int, seed: int = 0, return_info: bool = False) -> TwoObjectScenes:
    """``n`` scenes with two glyphs of different classes, one per half (left: columns 0–15, right: 16–31).

    Glyph size 14–16 px.  ``y_left`` is class-balanced; ``y_right = (y_left + k) % 10`` with a random
    k in 1..9, so the two labels always differ.  ``return_info`` as in :func:`load_scenes`, with
    ``glyph_index``, ``glyph_box``, ``colour`` and ``alpha`` of shape (n, 2, …) (left, right).
    """
    n = _check(split, n)
    rng = _rng(seed, split, 1)
    p = _draw_backgrounds(rng, n, split)
    yl = _balanced_labels(rng, n)
    yr = (yl + rng.integers(1, 10, n)) % 10
    bg = _render_backgrounds(p, split)
    x = bg
    parts = []
    half = SIZE // 2
    for side, labels in ((0, yl), (1, yr)):
        gi = _pick_glyphs(rng, labels, split)
        size = rng.integers(TWO_OBJECT_GLYPH_SIZES[0], TWO_OBJECT_GLYPH_SIZES[1] + 1, n)
        gx0 = side * half + np.floor(rng.random(n) * (half - size + 1)).astype(np.int64)
        gy0 = np.floor(rng.random(n) * (SIZE - size + 1)).astype(np.int64)
        col = _draw_colour(rng, n)
        alpha = _render_alpha(gi, size, gx0, gy0, split)
        colour = _colour(col, bg, alpha)
        x = _composite(x, alpha, colour)
        parts.append((gi, np.stack([gx0, gy0, gx0 + size, gy0 + size], 1), colour, alpha.numpy()))
    info = None
    if return_info:
        info = dict(photo=p["photo"], box=p["box"], flip_h=p["flip_h"], flip_v=p["flip_v"],
                    glyph_index=np.stack([q[0] for q in parts], 1), glyph_box=np.stack([q[1] for q in parts], 1),
                    colour=np.stack([q[2] for q in parts], 1), alpha=np.stack([q[3] for q in parts], 1),
                    background=bg.numpy())
    return TwoObjectScenes(x.numpy(), yl.astype(np.int64), yr.astype(np.int64), info)


# ----------------------------------------------------------------------------------------------
# statistics


def radial_power_spectrum(images) -> tuple[np.ndarray, np.ndarray]:
    """Mean radial power spectrum of (n, [c,] h, w) images: (frequencies 1..min(h,w)//2, power).

    Colour images are averaged over channels (grey); each image's mean is removed and a 2-D Hann
    window applied before the FFT (so the frame edges add no spurious 1/f^2 power); power is
    averaged over images and over annuli of integer radius (cycles per image).
    """
    a = np.asarray(images, dtype=np.float64)
    if a.ndim == 4:
        a = a.mean(1)
    if a.ndim != 3:
        raise ValueError(f"images must be (n, h, w) or (n, c, h, w), got shape {np.shape(images)}")
    _, h, w = a.shape
    a = a - a.mean((1, 2), keepdims=True)
    a = a * np.outer(np.hanning(h), np.hanning(w))
    p = (np.abs(np.fft.fft2(a)) ** 2).mean(0)
    fy = np.fft.fftfreq(h) * h
    fx = np.fft.fftfreq(w) * w
    r = np.round(np.hypot(fy[:, None], fx[None, :])).astype(np.int64)
    fmax = min(h, w) // 2
    freqs = np.arange(1, fmax + 1)
    power = np.array([p[r == f].mean() for f in freqs])
    return freqs, power


def radial_power_spectrum_slope(images, fmin: int = 2, fmax: int | None = None) -> float:
    """Least-squares slope of log power vs log frequency over [fmin, fmax] (default up to min(h, w)//2 - 2).

    Natural images give about −2 (power ∝ 1/f^2); white noise gives 0.
    """
    freqs, power = radial_power_spectrum(images)
    fmax = fmax or freqs[-1] - 2
    m = (freqs >= fmin) & (freqs <= fmax)
    return float(np.polyfit(np.log(freqs[m]), np.log(power[m]), 1)[0])


def channel_correlation(images) -> np.ndarray:
    """3×3 Pearson correlation of the colour channels over all pixels of (n, 3, h, w) images."""
    a = np.asarray(images, dtype=np.float64)
    if a.ndim != 4:
        raise ValueError(f"images must be (n, c, h, w), got shape {a.shape}")
    return np.corrcoef(a.transpose(1, 0, 2, 3).reshape(a.shape[1], -1))
