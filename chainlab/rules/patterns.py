"""Signal patterns of Kindermans et al. 2018 (PatternNet / PatternAttribution), fitted by streaming.

For every Linear/Conv2d stage (BatchNorm folded) with weight rows w_j and the layer input x
(the flat input for Linear; for Conv2d the receptive-field patch of the filter, zero padding
included, over all positions and images), y_j = w_jᵀx + b_j, the patterns are

    linear:  a_j = cov[x, y_j] / (w_jᵀ cov[x, y_j])  =  cov[x] w_j / (w_jᵀ cov[x] w_j)
    relu:    the same with expectations over the samples where the unit fires, y_j > 0
             (Kindermans' two-component estimator a₊; y_j includes the bias, i.e. the ReLU's own
             active set).

``fit`` makes one pass over the data in batches and keeps only running float64 sums per unit
(count, Σx, Σy, Σx·y) — never the activations of the whole data set.  A unit with fewer than two
samples or a zero denominator gets the pattern 0 (``Patterns.degenerate`` counts them).

A :class:`Patterns` holds one array per layer with the layer's weight shape (n_out × n_in, or
C_out × C_in × kh × kw), the net's fingerprint (:func:`chainlab.trace.weights_fingerprint`: sha256 of the stages' kinds, names,
weight shapes and float64 weights) and the weight shapes; :meth:`Patterns.check` compares them with a model
before use.  Saved as ``.npz`` (arrays with more than ``quantize_above`` entries as int8 with one
float32 scale per row, symmetric, scale = max|row|/127, as ``chainlab.models`` stores big weights)
or ``.h5``/``.hdf5`` (float64, gzip).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import MissingFileError, PatternError
from ..files import atomic_path
from ..nets.manifest import checked
from ..nets.storage import QUANTIZE_ABOVE, dequantize_rows, quantize_rows
from ..trace import eval_mode, trace, walk_records, walk_stages

__all__ = ["Patterns", "PatternError", "fit", "load", "KINDS", "QUANTIZE_ABOVE"]

KINDS = ("relu", "linear")
FORMAT_VERSION = 1


def _layer_shapes(net) -> dict:
    return {st.name: tuple(int(s) for s in st.weight.shape) for _, st in walk_stages(net.stages) if st.is_parametric}


class Patterns:
    """Fitted patterns: ``patterns[kind][layer_name]`` is an array of the layer's weight shape.

    Attributes: kinds (tuple), net_fingerprint (str), layer_shapes ({name: weight shape}),
    net_name (str or None), n_samples (int), degenerate ({kind: {name: count}}).
    """

    def __init__(self, patterns: dict, *, net_fingerprint: str, layer_shapes: dict, net_name=None,
                 n_samples: int = 0, degenerate=None):
        self.patterns = {k: {n: np.asarray(a, dtype=np.float64) for n, a in v.items()} for k, v in patterns.items()}
        self.net_fingerprint = str(net_fingerprint)
        self.layer_shapes = {n: tuple(int(s) for s in sh) for n, sh in layer_shapes.items()}
        self.net_name = net_name
        self.n_samples = int(n_samples)
        self.degenerate = degenerate or {}

    @property
    def kinds(self) -> tuple:
        return tuple(self.patterns)

    def get(self, kind: str, layer: str) -> np.ndarray:
        return self.of_kind(kind)[layer]

    def of_kind(self, kind: str) -> dict:
        if kind not in KINDS:
            raise PatternError(f"unknown pattern type {kind!r}; pattern types: {', '.join(KINDS)}")
        if kind not in self.patterns:
            raise PatternError(f"these patterns hold the type(s) {', '.join(self.kinds)}, not {kind!r}; "
                               f"fit them with chainlab.patterns.fit(model, data, kind={kind!r})")
        return self.patterns[kind]

    def check(self, net, what: str = "model"):
        """Raise PatternError unless the traced ``net`` has the layers, shapes and fingerprint these were fitted on."""
        shapes = _layer_shapes(net)
        src = f"patterns fitted on {self.net_name or 'another net'}"
        missing = sorted(set(shapes) - set(self.layer_shapes))
        extra = sorted(set(self.layer_shapes) - set(shapes))
        if missing or extra:
            raise PatternError(
                f"{src} do not fit this {what}: layers without patterns: {missing or 'none'}; "
                f"patterns for layers the {what} lacks: {extra or 'none'}"
            )
        for name, sh in shapes.items():
            if self.layer_shapes[name] != sh:
                raise PatternError(f"{src} do not fit this {what}: layer '{name}' has weight shape {sh}, "
                                   f"the patterns {self.layer_shapes[name]}")
        fp = net.fingerprint
        if fp != self.net_fingerprint:
            raise PatternError(f"{src} (fingerprint {self.net_fingerprint}) were fitted on other weights than this "
                               f"{what} (fingerprint {fp}); refit them with chainlab.patterns.fit")

    # -- storage ---------------------------------------------------------------------------
    def save(self, path, quantize_above: int | None = QUANTIZE_ABOVE):
        """Write to ``path``: .npz (big arrays int8 + per-row scale) or .h5/.hdf5 (float64). Atomic."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".npz", ".h5", ".hdf5"):
            raise PatternError(f"cannot save patterns to {path}: use a .npz, .h5 or .hdf5 file name")
        with atomic_path(path) as tmp:
            self._write(tmp, suffix, quantize_above)

    def _write(self, tmp, suffix, quantize_above):
        meta = {"format": "chainlab-patterns", "version": FORMAT_VERSION, "fingerprint": self.net_fingerprint,
                "net": self.net_name or "", "n_samples": self.n_samples}
        if suffix == ".npz":
            arrays = {f"__meta__{k}": np.array(v) for k, v in meta.items()}
            for name, sh in self.layer_shapes.items():
                arrays[f"__shape__{name}"] = np.array(sh, dtype=np.int64)
            for kind, layers in self.patterns.items():
                for name, a in layers.items():
                    key = f"{kind}/{name}"
                    if quantize_above is not None and a.size > quantize_above:
                        q, scale = quantize_rows(a)
                        arrays[key + "::q"] = q
                        arrays[key + "::scale"] = scale
                    else:
                        arrays[key] = a
            np.savez_compressed(tmp, **arrays)
        else:
            import h5py                      # only for .h5 pattern files (the shipped ones are .npz)
            with h5py.File(tmp, "w", libver="latest") as f:
                for k, v in meta.items():
                    f.attrs[k] = v
                g = f.create_group("shapes")
                for name, sh in self.layer_shapes.items():
                    g.attrs[name] = np.array(sh, dtype=np.int64)
                for kind, layers in self.patterns.items():
                    gk = f.create_group(kind)
                    for name, a in layers.items():
                        gk.create_dataset(name, data=a, compression="gzip")

    def __repr__(self):
        return (f"<Patterns net={self.net_name!r} kinds={self.kinds} layers={list(self.layer_shapes)} "
                f"samples={self.n_samples} fingerprint={self.net_fingerprint}>")


def load(path) -> Patterns:
    """Read patterns written by :meth:`Patterns.save` (.npz or .h5/.hdf5); a foreign file gives a PatternError."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"pattern file {path} does not exist")
    checked(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                files = set(z.files)
                if "__meta__format" not in files or str(z["__meta__format"]) != "chainlab-patterns":
                    raise PatternError(f"{path} is not a chainlab pattern file")
                meta = {k[8:]: z[k].item() for k in files if k.startswith("__meta__")}
                shapes = {k[9:]: tuple(z[k].tolist()) for k in files if k.startswith("__shape__")}
                pats: dict = {}
                for k in files:
                    if k.startswith("__") or k.endswith("::scale"):
                        continue
                    kind, name = k.split("/", 1)
                    if name.endswith("::q"):
                        name = name[:-3]
                        a = dequantize_rows(z[k], z[f"{kind}/{name}::scale"])
                    else:
                        a = z[k]
                    pats.setdefault(kind, {})[name] = a
        elif suffix in (".h5", ".hdf5"):
            import h5py                      # only for .h5 pattern files (the shipped ones are .npz)
            with h5py.File(path, "r") as f:
                if f.attrs.get("format") != "chainlab-patterns":
                    raise PatternError(f"{path} is not a chainlab pattern file")
                meta = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
                shapes = {n: tuple(int(s) for s in v) for n, v in f["shapes"].attrs.items()}
                pats = {kind: {n: f[kind][n][()] for n in f[kind]} for kind in f if kind != "shapes"}
        else:
            raise PatternError(f"cannot read patterns from {path}: expected a .npz, .h5 or .hdf5 file")
    except PatternError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise PatternError(f"cannot read pattern file {path}: {exc}") from None
    for kind, layers in pats.items():
        for name, a in layers.items():
            if shapes.get(name) != tuple(a.shape):
                raise PatternError(f"{path}: pattern '{kind}/{name}' has shape {tuple(a.shape)}, "
                                   f"the file's layer shape is {shapes.get(name)}")
    return Patterns(pats, net_fingerprint=meta["fingerprint"], layer_shapes=shapes, net_name=meta.get("net") or None,
                    n_samples=int(meta.get("n_samples", 0)))


# ---------------------------------------------------------------------------------------------
# fitting


class _Acc:
    """Running float64 sums of one layer for the requested kinds."""

    def __init__(self, n_in, n_out, kinds):
        self.kinds = kinds
        self.n = {k: np.zeros(n_out) for k in kinds}
        self.sx = {k: np.zeros((n_in, n_out)) if k == "relu" else np.zeros(n_in) for k in kinds}
        self.sy = {k: np.zeros(n_out) for k in kinds}
        self.sxy = {k: np.zeros((n_in, n_out)) for k in kinds}

    def add(self, X: np.ndarray, Y: np.ndarray):
        """X: (m, n_in) samples, Y: (m, n_out) outputs y = w·x + b."""
        for k in self.kinds:
            if k == "linear":
                self.n[k] += X.shape[0]
                self.sx[k] += X.sum(axis=0)
                self.sy[k] += Y.sum(axis=0)
                self.sxy[k] += X.T @ Y
            else:
                M = (Y > 0).astype(np.float64)
                YM = Y * M
                self.n[k] += M.sum(axis=0)
                self.sx[k] += X.T @ M
                self.sy[k] += YM.sum(axis=0)
                self.sxy[k] += X.T @ YM

    def patterns(self, Wflat: np.ndarray):
        """a_j = cov[x, y_j] / (w_jᵀ cov[x, y_j]) per output unit; rows of the result are the a_j."""
        out, bad = {}, {}
        for k in self.kinds:
            n = self.n[k]
            safe = np.maximum(n, 1.0)
            ex = self.sx[k] / safe if self.sx[k].ndim == 2 else (self.sx[k] / safe[0])[:, None]
            ey = self.sy[k] / safe
            cov = self.sxy[k] / safe[None, :] - ex * ey[None, :]          # (n_in, n_out)
            den = np.einsum("ji,ij->j", Wflat, cov)                       # w_jᵀ cov[x, y_j]
            ok = (n >= 2) & (np.abs(den) > 1e-12 * np.maximum(1.0, np.abs(cov).max(axis=0) * np.abs(Wflat).sum(axis=1)))
            A = np.zeros_like(cov)
            A[:, ok] = cov[:, ok] / den[ok][None, :]
            out[k] = A.T
            bad[k] = int((~ok).sum())
        return out, bad


def _batches(data, batch_size):
    if isinstance(data, (torch.Tensor, np.ndarray)):
        t = torch.as_tensor(data)
        for i in range(0, t.shape[0], batch_size):
            yield t[i:i + batch_size]
    else:
        for b in data:
            if isinstance(b, (tuple, list)):
                b = b[0]
            yield torch.as_tensor(b)


def fit(model, data, kind: str = "relu", *, batch_size: int = 128, net_name: str | None = None) -> Patterns:
    """Fit the patterns of every Linear/Conv2d layer of ``model`` in one streaming pass over ``data``.

    data : tensor/array of model inputs (N, …) — or an iterable of such batches (or of (x, y) pairs).
    kind : "relu" (default), "linear", or "both".
    Returns :class:`Patterns`; conv patterns are per filter over input patches (zero padding included).
    """
    kinds = KINDS if kind == "both" else (kind,)
    if any(k not in KINDS for k in kinds):
        raise PatternError(f"unknown pattern type {kind!r}; pattern types: {', '.join(KINDS)} (or 'both')")
    with eval_mode(model):
        net = trace(model)
        first = None
        accs: dict = {}
        n_samples = 0
        for xb in _batches(data, batch_size):
            xb = xb.detach().to(torch.float64)
            if first is None:
                first = net.prepare_input(xb[:1])           # validates the shape of one sample
            h = xb.reshape((xb.shape[0],) + tuple(first.shape[1:]))
            n_samples += h.shape[0]
            with torch.no_grad():
                records = net.forward(h)
            for st, rec in walk_records(net.stages, records):
                if st.is_parametric:
                    X, Y = _samples(st, rec.x, rec.z)
                    if st.name not in accs:
                        accs[st.name] = _Acc(X.shape[1], Y.shape[1], kinds)
                    accs[st.name].add(X, Y)
        if first is None:
            raise PatternError("fit got no data (an empty data set or iterable)")
    pats = {k: {} for k in kinds}
    degenerate = {k: {} for k in kinds}
    for _, st in walk_stages(net.stages):
        if not st.is_parametric:
            continue
        W = st.weight.numpy()
        A, bad = accs[st.name].patterns(W.reshape(W.shape[0], -1))
        for k in kinds:
            pats[k][st.name] = A[k].reshape(W.shape)
            degenerate[k][st.name] = bad[k]
    return Patterns(pats, net_fingerprint=net.fingerprint, layer_shapes=_layer_shapes(net),
                    net_name=net_name or getattr(model, "name", None) or type(model).__name__,
                    n_samples=n_samples, degenerate=degenerate)


def _samples(st, h: torch.Tensor, z: torch.Tensor):
    """(X, Y) float64 numpy: per sample the layer input (Linear) or per position the patch (Conv2d)."""
    if st.kind == "linear":
        return h.numpy(), z.numpy()
    c = st.conv
    if c.groups != 1:
        raise PatternError(f"patterns for grouped convolutions are not supported (layer {st.describe()}, groups={c.groups})")
    X = _patches(h.numpy(), tuple(st.weight.shape[2:]), c.stride, c.padding, c.dilation, tuple(z.shape[2:]))
    Y = z.reshape(z.shape[0], z.shape[1], -1).permute(0, 2, 1).reshape(-1, z.shape[1])
    return X, Y.numpy()


def _patches(h: np.ndarray, k, stride, pad, dil, out_hw) -> np.ndarray:
    """Receptive-field patches (B·OH·OW, C·KH·KW) in (C, kh, kw) order, zero padding (strided slicing)."""
    B, C = h.shape[:2]
    (KH, KW), (sh, sw), (ph, pw), (dh, dw) = k, stride, pad, dil
    OH, OW = out_hw
    hp = np.pad(h, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = np.empty((B, OH, OW, C, KH, KW), dtype=np.float64)
    for kh in range(KH):
        for kw in range(KW):
            win = hp[:, :, kh * dh: kh * dh + sh * (OH - 1) + 1: sh, kw * dw: kw * dw + sw * (OW - 1) + 1: sw]
            out[:, :, :, :, kh, kw] = win.transpose(0, 2, 3, 1)
    return out.reshape(B * OH * OW, C * KH * KW)
