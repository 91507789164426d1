"""A user's images (``chainlab verify --images DIR_OR_NPY``): a folder of PNG/JPEG files or one ``.npy`` array, made
model inputs by a named preprocessing, with optional labels.

* Folder: every ``.png``/``.jpg``/``.jpeg`` file directly in it (case-insensitive; names starting with "." are
  skipped), sorted by name; any other file, a sub-folder, or a file that does not decode is an error naming it.
  Grayscale images give one channel, RGB (and palette, CMYK, YCbCr converted to RGB) three; an alpha channel
  that is not fully opaque is an error (chainlab does not guess the background).
* ``.npy``: (N, C, H, W), (N, H, W, C) with C ∈ {1, 3} last, or (N, H, W); read with ``allow_pickle=False``.
  uint8 arrays are 8-bit pixels; float arrays are taken as they are.

Preprocessing (``preprocess``):

* ``imagenet`` — torchvision's ImageNet evaluation transform: resize the shorter side to 256 (bilinear, with
  antialiasing; the longer side int(256·long/short)), centre crop 224×224 (offsets round((size − 224)/2)),
  pixels / 255, then (x − mean)/std per channel with mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225);
  RGB only;
* ``unit`` — pixels / 255 (8-bit) into [0, 1], no resizing (every image must have the same size);
* ``none`` — the values as stored (0–255 for image files), no resizing.

Labels (optional): a ``.npy`` integer array or a text file with one integer per line, in the images' order.
The result's ``digest`` (sha256 over the names, the stored bytes, the preprocessing and the labels) identifies
the input set of a run (a resumed run must see the same one).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, MissingFileError

__all__ = ["Images", "load_images", "load_labels", "PREPROCESS", "IMAGE_SUFFIXES", "IMAGENET_MEAN", "IMAGENET_STD",
           "imagenet_transform"]

PREPROCESS = ("imagenet", "unit", "none")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE, CROP = 256, 224


@dataclass
class Images:
    """Model inputs x (N, C, H, W) float64, the images' names, labels (N,) int64 or None, and where they came from."""

    x: torch.Tensor
    names: list
    labels: np.ndarray | None
    source: str
    preprocess: str
    digest: str

    def __len__(self):
        return int(self.x.shape[0])

    @property
    def shape(self) -> tuple:
        """One image's shape (C, H, W)."""
        return tuple(self.x.shape[1:])


def _files(folder: Path) -> list[Path]:
    if not any(True for _ in folder.iterdir()):
        raise InputError(f"image folder {folder} is empty; put PNG or JPEG files in it")
    files, bad = [], []
    for p in sorted(folder.iterdir(), key=lambda q: q.name):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            raise InputError(f"{p} is a folder; chainlab reads the PNG/JPEG files directly in {folder} "
                             "(labels, if any, with --labels)")
        (files if p.suffix.lower() in IMAGE_SUFFIXES else bad).append(p)
    if bad:
        raise InputError(f"{bad[0]} is not a PNG or JPEG image (by its name); the image folder must hold only "
                         f"{'/'.join(IMAGE_SUFFIXES)} files" + (f" ({len(bad)} others)" if len(bad) > 1 else ""))
    if not files:
        raise InputError(f"image folder {folder} holds no PNG or JPEG files")
    return files


def _decode(p: Path):
    """(H, W, C) uint8 array of one image file (C = 1 or 3)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            im.load()
            mode = im.mode
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA" if mode != "LA" else "LA")
                a = np.asarray(rgba)[..., -1]
                if (a < 255).any():
                    raise InputError(f"{p} has transparent pixels (mode {mode}); chainlab does not guess a background: "
                                     "save it without an alpha channel")
                im2 = rgba.convert("RGB" if mode != "LA" else "L")
            elif mode in ("1", "L"):
                im2 = im.convert("L")
            elif mode in ("RGB", "P", "CMYK", "YCbCr"):
                im2 = im.convert("RGB")
            else:
                raise InputError(f"{p}: image mode {mode!r} (e.g. 16-bit or float) is not read; save 8-bit "
                                 "grayscale or RGB")
            a = np.asarray(im2, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{p} is not a readable PNG/JPEG image ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:120] if str(exc) else ''})") from None
    return a[..., None] if a.ndim == 2 else a


def imagenet_transform(img) -> np.ndarray:
    """torchvision's ``Resize(256) → CenterCrop(224) → ToTensor → Normalize`` on a PIL image: (3, 224, 224) float64."""
    from PIL import Image

    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = RESIZE, int(RESIZE * long / short)
    size = (new_short, new_long) if w <= h else (new_long, new_short)
    img = img.resize(size, Image.BILINEAR)
    w, h = img.size
    top, left = int(round((h - CROP) / 2.0)), int(round((w - CROP) / 2.0))
    img = img.crop((left, top, left + CROP, top + CROP))
    a = np.asarray(img, dtype=np.float64) / 255.0
    if a.ndim != 3 or a.shape[2] != 3:
        raise InputError("imagenet preprocessing normalizes three channels (RGB); use --preprocess unit for "
                         "grayscale images")
    a = (a - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    return a.transpose(2, 0, 1)


def _from_folder(folder: Path, preprocess: str, n):
    from PIL import Image

    files = _files(folder)
    if n is not None:
        files = files[:n]
    h = hashlib.sha256()
    xs, first = [], None
    for p in files:
        a = _decode(p)
        h.update(p.name.encode())
        h.update(p.read_bytes())
        if first is None:
            first = (p, a.shape)
        elif a.shape[2] != first[1][2]:
            raise InputError(f"{p} has {a.shape[2]} channel(s), {first[0].name} has {first[1][2]}; the images of a run "
                             "must all be grayscale or all RGB")
        if preprocess == "imagenet":
            if a.shape[2] != 3:
                raise InputError(f"{p} is grayscale; imagenet preprocessing normalizes RGB images (use --preprocess "
                                 "unit)")
            xs.append(imagenet_transform(Image.fromarray(a)))
            continue
        if a.shape[:2] != first[1][:2]:
            raise InputError(f"{p} is {a.shape[1]}×{a.shape[0]} pixels, {first[0].name} is {first[1][1]}×{first[1][0]}; "
                             f"--preprocess {preprocess} does not resize (resize them, or use --preprocess imagenet)")
        a = a.astype(np.float64).transpose(2, 0, 1)
        xs.append(a / 255.0 if preprocess == "unit" else a)
    return np.stack(xs), [p.name for p in files], h


def _from_npy(path: Path, preprocess: str, n):
    try:
        a = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"cannot read image array {path}: {str(exc).splitlines()[0][:160]} (a plain numeric .npy "
                         "array is read, never pickled objects)") from None
    if a.dtype.kind not in "uif":
        raise InputError(f"image array {path} has dtype {a.dtype}; give numbers (uint8 pixels or floats)")
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise InputError(f"image array {path} has shape {a.shape}; give (N, C, H, W), (N, H, W, C) or (N, H, W)")
    if a.shape[1] not in (1, 3) and a.shape[3] in (1, 3):
        a = np.moveaxis(a, 3, 1)
    if n is not None:
        a = a[:n]
    a = np.array(a)
    if a.shape[0] == 0:
        raise InputError(f"image array {path} holds no images")
    if not np.isfinite(a).all():
        raise InputError(f"image array {path} holds NaN or infinite values")
    h = hashlib.sha256()
    h.update(str(a.dtype).encode() + str(a.shape).encode())
    h.update(np.ascontiguousarray(a).tobytes())
    pixels = a.dtype == np.uint8
    x = a.astype(np.float64)
    if preprocess in ("unit", "imagenet") and pixels:
        x = x / 255.0
    if preprocess == "imagenet":
        from PIL import Image

        if x.shape[1] != 3:
            raise InputError(f"image array {path} has {x.shape[1]} channel(s); imagenet preprocessing normalizes RGB")
        u8 = np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
        x = np.stack([imagenet_transform(Image.fromarray(im)) for im in u8])
    return x, [f"{path.name}[{i}]" for i in range(x.shape[0])], h


def load_labels(path, n_images: int) -> np.ndarray:
    """Labels (n_images,) int64 from a .npy integer array or a text file with one integer per line."""
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"labels file {p} does not exist")
    if p.suffix == ".npy":
        try:
            y = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(f"cannot read labels {p}: {str(exc).splitlines()[0][:160]}") from None
        if y.dtype.kind not in "iu" or y.ndim != 1:
            raise InputError(f"labels {p}: give a 1-D integer array, got {y.dtype} of shape {y.shape}")
    else:
        lines = [ln.strip() for ln in p.read_text(errors="replace").splitlines() if ln.strip()]
        try:
            y = np.array([int(ln) for ln in lines], dtype=np.int64)
        except ValueError:
            bad = next(ln for ln in lines if not ln.lstrip("-").isdigit())
            raise InputError(f"labels {p}: one integer per line, got {bad[:40]!r}") from None
    if len(y) < n_images:
        raise InputError(f"labels {p} has {len(y)} label(s) for {n_images} image(s)")
    if (y < 0).any():
        raise InputError(f"labels {p} holds negative labels")
    return np.asarray(y[:n_images], dtype=np.int64)


def load_images(path, preprocess: str = "unit", n: int | None = None, labels=None) -> Images:
    """The first ``n`` (all when None) images of a folder or ``.npy`` file, preprocessed (module docstring)."""
    if preprocess not in PREPROCESS:
        raise InputError(f"--preprocess must be one of {', '.join(PREPROCESS)}, got {preprocess!r}")
    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"images {p} do not exist (give a folder of PNG/JPEG files or a .npy array)")
    if p.is_dir():
        x, names, h = _from_folder(p, preprocess, n)
    elif p.suffix.lower() == ".npy":
        x, names, h = _from_npy(p, preprocess, n)
    else:
        raise InputError(f"images {p}: give a folder of PNG/JPEG files or a .npy array")
    y = load_labels(labels, len(names)) if labels is not None else None
    h.update(preprocess.encode())
    if y is not None:
        h.update(y.tobytes())
    return Images(torch.as_tensor(x, dtype=torch.float64), names, y, str(p), preprocess, "sha256:" + h.hexdigest())
