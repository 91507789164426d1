"""Explanation methods that re-run the model: the vanilla gradient in batches, SmoothGrad, GradCAM.

Why here and not in extraction: none of them is one chain of one input.  SmoothGrad is the mean of
the gradient chains of n noisy copies (a mean of products, not a product); GradCAM is a non-linear
function of a forward activation and a chain suffix.  They need the model, so they are a study.

Everything runs on the traced stages (:func:`chainlab.trace.trace`: the forward that extraction uses,
BatchNorm folded), cast to ``dtype`` (float64 default, float32 for speed), batched, with torch autograd
(``backend="autograd"``) — or through chains (``backend="chain"``: one
``extract(model, x, "gradient", materialize=False)`` per image, the definition; slower).  The two agree
to rounding (tests/test_spectral_methods.py).  X is (n, C, H, W); y_k is the logit f_k
(``of="logit"``) or log p_k = f_k − log Σ_j exp f_j (``of="logprob"``, the authors' choice for VG and
SmoothGrad: the chain's start vector is then e_k − softmax(f(x))); k is ``targets`` or, by default, the
class the net predicts for the clean image (as the authors: also for every noisy copy).

* :func:`vanilla` — VG(x) = ∇_x y_k(x), (n, C, H, W).
* :func:`smoothgrad` — SG(x) = (1/n) Σ_i ∇_x y_k(x + ε_i), ε_i ~ N(0, σ² I) i.i.d., σ absolute in input
  units (the clean point is not included; σ = 0 returns VG).  The authors add the noise after
  standardizing the inputs, σ = 0.1 with n = 64; our inputs lie in [0, 1] unstandardized, so σ here is
  in units of the pixel range (their σ = 0.1 on ImageNet-standardized inputs, pixel std ≈ 0.226, is
  ≈ 0.023 in [0, 1] units).  Same noise as :func:`chainlab.studies.perturb` "smoothgrad" with bounds (0, 1).
* :func:`gradcam` — A (C, h, w) the activation at the output of stage ``layer`` (default: the last Conv2d
  stage, after its activation), G = ∂y_k/∂A (the chain suffix M_(i+2) ⋯ M_L r_L of stage i:
  ``chain.apply(r, start=i+1)``), α_c = mean_(u,v) G_c(u, v), cam = ReLU(Σ_c α_c A_c), upsampled to (H, W)
  (``upsample="bilinear"``, align_corners=False, or "nearest"); result (n, 1, H, W).  ``guided=True``
  multiplies it with guided backprop (n, C, H, W): Captum's GuidedGradCam.  For nets without ReLUs
  guided backprop is the plain gradient (Captum's hooks see only nn.ReLU; our rule refuses them).
  :data:`AUTHORS_GRADCAM` is what the authors ran as "GradCAM": Captum GuidedGradCam on the logit at
  ``model.features[-1]`` (the last MaxPool: the last stage before the first Linear), nearest upsampling.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, OptionError, UnsupportedLayerError
from ..extraction import extract as _extract
from ..options import choice, flag, number
from ..trace import check_logits, eval_mode, trace

__all__ = ["Traced", "vanilla", "smoothgrad", "gradcam", "predict", "AUTHORS_GRADCAM", "BACKENDS", "OF",
           "default_layer", "features_end", "AUTOGRAD_BATCH_BYTES", "AUTOGRAD_BYTES_PER_OUTPUT"]

BACKENDS = ("autograd", "chain")
OF = ("logprob", "logit")
UPSAMPLE = ("bilinear", "nearest")
DTYPES = {"float64": torch.float64, "float32": torch.float32}
AUTHORS_GRADCAM = dict(guided=True, upsample="nearest", layer="features-end", of="logit")
# an autograd pass holds about AUTOGRAD_BYTES_PER_OUTPUT × (Σ of its stages' output bytes) per input (the outputs,
# the pre-activations and masks it saves, the gradients as they flow back: 1.8–2.1 measured on a VGG-16 at 224×224 in
# float32, 4–16 inputs); a batch holds at most AUTOGRAD_BATCH_BYTES of it (SmoothGrad's 64 noisy copies of one
# 224×224 image through a VGG-16 would hold ≈ 7 GB in one batch; a 32×32 net's batches are far below the limit)
AUTOGRAD_BYTES_PER_OUTPUT = 2
AUTOGRAD_BATCH_BYTES = 1 << 30


class _GuidedReLU(torch.autograd.Function):
    """ReLU forward; backward 1[z > 0]·max(g, 0) (guided backprop, Springenberg et al. 2014)."""

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return z.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return g.clamp(min=0) * (z > 0).to(g.dtype)


def _cast(stages, dtype):
    out = []
    for st in stages:
        kw = {}
        if st.weight is not None:
            kw["weight"] = st.weight.to(dtype)
        if st.bias is not None:
            kw["bias"] = st.bias.to(dtype)
        if st.branches is not None:
            kw["branches"] = tuple(tuple(_cast(b, dtype)) for b in st.branches)
        out.append(dataclasses.replace(st, **kw) if kw else st)
    return out


def _forward(stages, h, guided):
    """The output of every stage (after its activation) for a batch h; guided: ReLUs back-propagate guided."""
    outs = []
    for st in stages:
        if st.flatten_before or (st.kind == "linear" and h.ndim > 2):
            h = h.reshape(h.shape[0], -1)
        if st.kind == "residual":
            parts = [_forward(b, h, guided)[-1] if b else h for b in st.branches]
            z = sum(parts[1:], parts[0])
        elif st.kind == "activation":
            z = h
        else:
            z = st.forward(h)[0]
        if st.activation is None:
            h = z
        elif guided and st.activation.is_relu:
            h = _GuidedReLU.apply(z)
        else:
            h = st.activation(z)
        outs.append(h)
    return outs


class Traced:
    """A model's traced stages in ``dtype``, run on batches with autograd (the same forward as extraction)."""

    def __init__(self, model, dtype: str = "float64"):
        self.dtype = DTYPES[choice("dtype", dtype, tuple(DTYPES), "the traced forward")]
        with eval_mode(model):
            net = trace(model)
        self.model = model
        self.stages = _cast(net.stages, self.dtype)
        self.names = [st.name for st in self.stages]
        self.has_relu = any(st.activation is not None and st.activation.is_relu for st in self._leaves())
        self.checked = False
        self._input_bytes = {}

    def _leaves(self, stages=None):
        for st in self.stages if stages is None else stages:
            if st.kind == "residual":
                for b in st.branches:
                    yield from self._leaves(b)
            else:
                yield st

    def index(self, layer) -> int:
        """Chain index of the stage named ``layer`` (a name, or an int index)."""
        if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
            if not -len(self.stages) <= int(layer) < len(self.stages):
                raise OptionError(f"layer index {layer} out of range for {len(self.stages)} stages")
            return int(layer) % len(self.stages)
        if layer not in self.names:
            raise OptionError(f"no stage named {layer!r}; stages: {', '.join(self.names)}")
        return self.names.index(layer)

    def outputs(self, X, guided=False):
        """Every stage's output for the batch X (n, *input) as a tensor of ``dtype`` (autograd on)."""
        X = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X).to(self.dtype)
        outs = _forward(self.stages, X, guided)
        if not self.checked:
            with torch.no_grad():
                check_logits(self.model, X[:1].detach().to(torch.float64), outs[-1][:1].detach().to(torch.float64))
            self.checked = True
        return outs

    def batch_limit(self, X, batch: int) -> int:
        """Inputs per autograd batch: ``batch``, at most AUTOGRAD_BATCH_BYTES // (AUTOGRAD_BYTES_PER_OUTPUT × Σ of
        the stages' output bytes for one input of X's shape), at least 1 (one forward of one input, once per
        shape)."""
        shape = tuple(np.shape(X)[1:])
        if shape not in self._input_bytes:
            with torch.no_grad():
                outs = self.outputs(np.asarray(X)[:1])
            self._input_bytes[shape] = AUTOGRAD_BYTES_PER_OUTPUT * sum(o.numel() * o.element_size() for o in outs)
        return max(1, min(int(batch), AUTOGRAD_BATCH_BYTES // max(self._input_bytes[shape], 1)))

    def backward(self, X, targets=None, of="logprob", at=None, guided=False):
        """(∇_X y_k, activation at stage ``at`` and ∂y_k/∂activation (or None, None), targets used)."""
        Xt = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X).to(self.dtype)
        Xt = Xt.detach().clone().requires_grad_(True)
        outs = self.outputs(Xt, guided)
        logits = outs[-1]
        t = logits.detach().argmax(1) if targets is None else torch.as_tensor(np.asarray(targets)).long()
        y = torch.log_softmax(logits, dim=1) if of == "logprob" else logits
        obj = y.gather(1, t.reshape(-1, 1)).sum()
        wrt = [Xt] + ([outs[at]] if at is not None else [])
        grads = torch.autograd.grad(obj, wrt)
        A = outs[at].detach() if at is not None else None
        return grads[0].detach(), A, (grads[1].detach() if at is not None else None), t.numpy()


def _as_batch(X) -> np.ndarray:
    X = np.asarray(X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else X, dtype=np.float64)
    if X.ndim < 2:
        raise InputError(f"X must be a batch (n, …) of inputs, got shape {X.shape}")
    return X


def _targets(targets, n):
    if targets is None:
        return None
    t = np.asarray(targets).reshape(-1)
    if t.size != n:
        raise InputError(f"{t.size} targets for {n} inputs")
    return t.astype(np.int64)


def predict(model, X, *, traced: Traced | None = None, batch: int = 256) -> np.ndarray:
    """The predicted class argmax f(x) of every input (n,)."""
    tr = traced or Traced(model)
    X = _as_batch(X)
    with torch.no_grad():
        return np.concatenate([tr.outputs(X[s:s + batch])[-1].argmax(1).numpy() for s in range(0, len(X), batch)])


def vanilla(model, X, *, targets=None, of: str = "logprob", backend: str = "autograd", dtype: str = "float64",
            batch: int = 128, extract=_extract, traced: Traced | None = None) -> np.ndarray:
    """VG(x) = ∇_x y_k(x) of every input (n, C, H, W) (see the module docstring)."""
    of = choice("of", of, OF, "vanilla")
    backend = choice("backend", backend, BACKENDS, "vanilla")
    X = _as_batch(X)
    t = _targets(targets, len(X))
    if backend == "chain":
        out = []
        for i, x in enumerate(X):
            ch = extract(model, x[None], "gradient", materialize=False)
            out.append(ch.explain(None if t is None else int(t[i]), of=of)[0])
        return np.asarray(out)
    tr = traced or Traced(model, dtype)
    batch = tr.batch_limit(X, batch)
    res = []
    for s in range(0, len(X), batch):
        g, _, _, _ = tr.backward(X[s:s + batch], None if t is None else t[s:s + batch], of)
        res.append(g.to(torch.float64).numpy())
    return np.concatenate(res)


def smoothgrad(model, X, *, sigma: float = 0.1, n: int = 64, seed: int = 0, targets=None, of: str = "logprob",
               dtype: str = "float32", batch: int = 256, traced: Traced | None = None) -> np.ndarray:
    """SG(x) = (1/n) Σ_i ∇_x y_k(x + ε_i), ε_i ~ N(0, σ²I), k the clean prediction; (n_images, C, H, W)."""
    sigma = number("sigma", sigma, "smoothgrad", nonnegative=True)
    n = number("n", n, "smoothgrad", integer=True, positive=True)
    of = choice("of", of, OF, "smoothgrad")
    X = _as_batch(X)
    tr = traced or Traced(model, dtype)
    t = _targets(targets, len(X))
    if t is None:
        t = predict(model, X, traced=tr)
    if sigma == 0:
        return vanilla(model, X, targets=t, of=of, traced=tr, batch=batch)
    rng = np.random.default_rng(seed)
    cap = tr.batch_limit(X, batch)                 # noisy inputs per autograd batch
    per = max(1, cap // n)                         # images per batch (each with its n noisy copies)
    out = []
    for s in range(0, len(X), per):
        Xs = X[s:s + per]
        noisy = (Xs[:, None] + rng.normal(0.0, sigma, size=(len(Xs), n) + Xs.shape[1:])).reshape(-1, *Xs.shape[1:])
        ts = np.repeat(t[s:s + per], n)
        # more copies than a batch holds (one image, n > cap): the same noise, its copies in batches of cap
        g = torch.cat([tr.backward(noisy[b:b + cap], ts[b:b + cap], of)[0] for b in range(0, len(noisy), cap)])
        out.append(g.to(torch.float64).numpy().reshape(len(Xs), n, *Xs.shape[1:]).mean(axis=1))
    return np.concatenate(out)


def features_end(traced: Traced) -> int:
    """Index of the last stage before the first Linear stage (the authors' ``model.features[-1]``)."""
    first_linear = next((i for i, st in enumerate(traced.stages) if st.kind == "linear"), None)
    if first_linear is None or first_linear == 0:
        raise OptionError("layer='features-end' needs a net whose convolutional part is followed by a Linear layer")
    return first_linear - 1


def default_layer(traced: Traced) -> int:
    """Index of the last Conv2d stage (GradCAM's layer: its output after the activation)."""
    convs = [i for i, st in enumerate(traced.stages) if st.kind == "conv2d"]
    if not convs:
        raise OptionError("GradCAM needs a Conv2d stage (the net has none); pass layer=")
    return convs[-1]


def gradcam(model, X, *, layer=None, targets=None, of: str = "logprob", upsample: str = "bilinear",
            guided: bool = False, backend: str = "autograd", dtype: str = "float64", batch: int = 128,
            extract=_extract, traced: Traced | None = None) -> np.ndarray:
    """GradCAM (n, 1, H, W), or Guided GradCAM (n, C, H, W) with ``guided`` (see the module docstring)."""
    of = choice("of", of, OF, "gradcam")
    upsample = choice("upsample", upsample, UPSAMPLE, "gradcam")
    guided = flag("guided", guided, "gradcam")
    backend = choice("backend", backend, BACKENDS, "gradcam")
    X = _as_batch(X)
    if X.ndim != 4:
        raise InputError(f"GradCAM needs image inputs (n, C, H, W), got shape {X.shape}")
    tr = traced or Traced(model, dtype)
    i = features_end(tr) if layer == "features-end" else default_layer(tr) if layer is None else tr.index(layer)
    t = _targets(targets, len(X))
    batch = tr.batch_limit(X, batch)
    cams, gbps = [], []
    for s in range(0, len(X), batch):
        Xs = X[s:s + batch]
        ts = None if t is None else t[s:s + batch]
        if backend == "autograd":
            _, A, G, used = tr.backward(Xs, ts, of, at=i)
            A, G = A.to(torch.float64), G.to(torch.float64)
        else:
            with torch.no_grad():
                A = tr.outputs(Xs)[i].to(torch.float64)
            G, used = [], []
            for j, x in enumerate(Xs):
                ch = extract(model, x[None], "gradient", materialize=False)
                k = ch.predicted if ts is None else int(ts[j])
                used.append(k)
                G.append(torch.from_numpy(ch.apply(ch.start_vector(k, of), start=i + 1).reshape(ch.shapes[i + 1])))
            G = torch.stack(G)
        if A.ndim != 4:
            raise OptionError(f"GradCAM needs a stage with a (C, h, w) output; {tr.names[i]!r} gives {tuple(A.shape[1:])}")
        alpha = G.mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((alpha * A).sum(dim=1, keepdim=True))
        mode = dict(mode="bilinear", align_corners=False) if upsample == "bilinear" else dict(mode="nearest")
        cams.append(F.interpolate(cam, size=X.shape[2:], **mode).numpy())
        if guided:
            gbps.append(_guided_backprop(model, Xs, np.asarray(used), of, backend, tr, extract))
    cam = np.concatenate(cams)
    return cam * np.concatenate(gbps) if guided else cam


def _guided_backprop(model, X, t, of, backend, tr, extract) -> np.ndarray:
    """Guided backprop of each input (n, C, H, W); the plain gradient for nets without ReLUs (as Captum)."""
    if backend == "autograd":
        g, _, _, _ = tr.backward(X, t, of, guided=True)
        return g.to(torch.float64).numpy()
    rule = "guided-bp" if tr.has_relu else "gradient"
    out = []
    for j, x in enumerate(X):
        try:
            ch = extract(model, x[None], rule, **({} if rule == "guided-bp" else {"materialize": False}))
        except UnsupportedLayerError:      # ReLUs mixed with other activations: Captum hooks the ReLUs only
            raise UnsupportedLayerError("guided GradCAM on chains needs a net whose activations are all ReLU "
                                        "(or none); use backend='autograd'") from None
        out.append(ch.explain(int(t[j]), of=of)[0])
    return np.asarray(out)
