"""An independent float64 numpy re-implementation of DeepLIFT as the ``deeplift`` package computes it.

Written from the package's layer equations (kundajelab/deeplift, the version berleon/when-explanations-lie
calls), with explicit loops for convolutions and pools, channel-first (C, H, W), one input:

* Input (layers/core.py ``Input``): pos/neg contribs Δx·[Δx > 0], Δx·[Δx < 0].
* Dense / Conv2D (core.py ``Dense`` ~539-586, convolutional.py ``Conv2D`` ~221-326): contribs from the *total*
  input difference Δx = x − x⁰ split by sign, Δz⁺ = W⁺Δx⁺ + W⁻Δx⁻, Δz⁻ = W⁻Δx⁺ + W⁺Δx⁻; both input multipliers get
  m = [Δx>0](W⁺ᵀm⁺ + W⁻ᵀm⁻) + [Δx<0](W⁻ᵀm⁺ + W⁺ᵀm⁻) + [Δx=0] Wᵀ½(m⁺ + m⁻).  Ablation (the authors'
  ``cross_mxts=False``, deeplift_resnet.py ~339-381, ~468-481): only the pos→pos and neg→neg terms,
  [Δx>0] W⁺ᵀm⁺ + [Δx<0] W⁺ᵀm⁻ + [Δx=0] Wᵀ½(m⁺ + m⁻).
* BatchNormalization (normalization.py): contribs and multipliers scaled by g = γ/√(var+ε), swapped where γ < 0.
* ReLU (activations.py ``Activation`` ~81-179, helper_functions.py ``pseudocount_near_zero``, util.py
  NEAR_ZERO_THRESHOLD = 1e-7): Rescale s = Δh/Δz, the gradient at the reference where |Δz| < 1e-7 (contribs
  scaled by s); RevealCancel with pc(t) = t ± 1e-7 where |t| < 0.5e-7:
  Δh⁺ = ½[f(z⁰+pc(Δz⁺)) − f(z⁰)] + ½[f(z⁰+pc(Δz⁻)+pc(Δz⁺)) − f(z⁰+pc(Δz⁻))], Δh⁻ likewise, m_in± = m± Δh±/pc(Δz±).
* MaxPool2D (pooling.py, MaxPoolDeepLiftMode.gradient): the gradient at x, for m⁺ and m⁻ (winner: the first
  maximum of the window in row-major order); contribs are placeholders (a linear layer must follow).
* AvgPool2D, GlobalAvgPool2D: contribs and multipliers pooled / spread as the gradient.  Flatten: a reshape.
* Add (deeplift_resnet.py ~137: a Dense layer of weights 1 over the summands): see :class:`Residual`.
Contributions at the input: m⁺Δx⁺ + m⁻Δx⁻ (``_build_target_contrib_vars``).
"""
import numpy as np

NEAR_ZERO = 1e-7


def pc(t):
    small = np.abs(t) < 0.5 * NEAR_ZERO
    return t + NEAR_ZERO * (small & (t >= 0)) - NEAR_ZERO * (small & (t < 0))


def relu(t):
    return np.maximum(t, 0.0)


def pos(t):
    return np.maximum(t, 0.0)


def neg(t):
    return np.minimum(t, 0.0)


class Dense:
    def __init__(self, W, b):
        self.W, self.b = W, b

    def forward(self, a):
        return self.W @ a.reshape(-1) + self.b

    def contribs(self, a, a0, inp_parts):
        d = (a - a0).reshape(-1)
        Wp, Wn = pos(self.W), neg(self.W)
        dp, dn = d * (d > 0), d * (d < 0)
        return Wp @ dp + Wn @ dn, Wn @ dp + Wp @ dn

    def backward(self, a, a0, mp, mn, ablation):
        d = (a - a0).reshape(-1)
        Wp, Wn = pos(self.W), neg(self.W)
        if ablation:
            m = (d > 0) * (Wp.T @ mp) + (d < 0) * (Wp.T @ mn)
        else:
            m = (d > 0) * (Wp.T @ mp + Wn.T @ mn) + (d < 0) * (Wn.T @ mp + Wp.T @ mn)
        m = m + (d == 0) * (self.W.T @ (0.5 * (mp + mn)))
        return m.reshape(a.shape), m.reshape(a.shape)


class Conv:
    """Cross-correlation with stride and zero padding, by loops over output positions."""

    def __init__(self, W, b, stride, pad):
        self.W, self.b, self.s, self.p = W, b, stride, pad

    def _conv(self, W, a):
        Co, Ci, K, _ = W.shape
        ap = np.pad(a, ((0, 0), (self.p, self.p), (self.p, self.p)))
        H = (ap.shape[1] - K) // self.s + 1
        Wd = (ap.shape[2] - K) // self.s + 1
        out = np.zeros((Co, H, Wd))
        for i in range(H):
            for j in range(Wd):
                patch = ap[:, i * self.s:i * self.s + K, j * self.s:j * self.s + K]
                out[:, i, j] = np.tensordot(W, patch, axes=([1, 2, 3], [0, 1, 2]))
        return out

    def _conv_t(self, W, m, in_shape):
        Co, Ci, K, _ = W.shape
        C, H, Wd = in_shape
        ap = np.zeros((C, H + 2 * self.p, Wd + 2 * self.p))
        for i in range(m.shape[1]):
            for j in range(m.shape[2]):
                ap[:, i * self.s:i * self.s + K, j * self.s:j * self.s + K] += np.tensordot(m[:, i, j], W, axes=(0, 0))
        return ap[:, self.p:self.p + H, self.p:self.p + Wd]

    def forward(self, a):
        return self._conv(self.W, a) + (0.0 if self.b is None else self.b[:, None, None])

    def contribs(self, a, a0, inp_parts):
        d = a - a0
        Wp, Wn = pos(self.W), neg(self.W)
        dp, dn = d * (d > 0), d * (d < 0)
        return self._conv(Wp, dp) + self._conv(Wn, dn), self._conv(Wn, dp) + self._conv(Wp, dn)

    def backward(self, a, a0, mp, mn, ablation):
        d = a - a0
        Wp, Wn = pos(self.W), neg(self.W)
        t = lambda W, m: self._conv_t(W, m, a.shape)    # noqa: E731
        if ablation:
            m = (d > 0) * t(Wp, mp) + (d < 0) * t(Wp, mn)
        else:
            m = (d > 0) * (t(Wp, mp) + t(Wn, mn)) + (d < 0) * (t(Wn, mp) + t(Wp, mn))
        m = m + (d == 0) * t(self.W, 0.5 * (mp + mn))
        return m, m


class BatchNorm:
    def __init__(self, gamma, beta, mean, var, eps):
        self.g = gamma / np.sqrt(var + eps)
        self.gamma, self.beta, self.mean = gamma, beta, mean

    def _c(self, v):
        return v.reshape((-1,) + (1,) * 2) if self._ndim == 3 else v

    def forward(self, a):
        self._ndim = a.ndim
        return self._c(self.g) * (a - self._c(self.mean)) + self._c(self.beta)

    def contribs(self, a, a0, inp_parts):
        ip, ineg = inp_parts
        g = self._c(self.g)
        gp, gn = self._c(self.gamma > 0), self._c(self.gamma < 0)
        return g * ip * gp + g * ineg * gn, g * ineg * gp + g * ip * gn

    def backward(self, a, a0, mp, mn, ablation):
        g = self._c(self.g)
        gp, gn = self._c(self.gamma > 0), self._c(self.gamma < 0)
        return mp * g * gp + mn * g * gn, mp * g * gn + mn * g * gp


class ReLU:
    def __init__(self, mode):
        self.mode = mode

    def forward(self, a):
        return relu(a)

    def contribs(self, z, z0, inp_parts):
        ip, ineg = inp_parts
        if self.mode == "revealcancel":
            ip, ineg = pc(ip), pc(ineg)
            self.sp = 0.5 * ((relu(z0 + ip) - relu(z0)) + (relu(z0 + ineg + ip) - relu(z0 + ineg))) / ip
            self.sn = 0.5 * ((relu(z0 + ineg) - relu(z0)) + (relu(z0 + ip + ineg) - relu(z0 + ip))) / ineg
            return self.sp * ip, self.sn * ineg
        dz = z - z0
        near = np.abs(dz) < NEAR_ZERO
        s = near * (relu(z0) > 0) + (~near) * ((relu(z) - relu(z0)) / (dz + near))
        self.sp = self.sn = s
        return ip * s, ineg * s

    def backward(self, z, z0, mp, mn, ablation):
        return self.sp * mp, self.sn * mn


class MaxPool:
    def __init__(self, k, s):
        self.k, self.s = k, s

    def _windows(self, a):
        C, H, W = a.shape
        for c in range(C):
            for i in range((H - self.k) // self.s + 1):
                for j in range((W - self.k) // self.s + 1):
                    yield c, i, j, a[c, i * self.s:i * self.s + self.k, j * self.s:j * self.s + self.k]

    def forward(self, a):
        C, H, W = a.shape
        out = np.zeros((C, (H - self.k) // self.s + 1, (W - self.k) // self.s + 1))
        for c, i, j, win in self._windows(a):
            out[c, i, j] = win.max()
        return out

    def contribs(self, a, a0, inp_parts):
        y = self.forward(a)
        return np.zeros_like(y), np.zeros_like(y)

    def backward(self, a, a0, mp, mn, ablation):
        gp, gn = np.zeros_like(a), np.zeros_like(a)
        for c, i, j, win in self._windows(a):
            r, q = np.unravel_index(np.argmax(win), win.shape)
            gp[c, i * self.s + r, j * self.s + q] += mp[c, i, j]
            gn[c, i * self.s + r, j * self.s + q] += mn[c, i, j]
        return gp, gn


class AvgPool:
    def __init__(self, k):
        self.k = k

    def forward(self, a):
        C, H, W = a.shape
        return a.reshape(C, H // self.k, self.k, W // self.k, self.k).mean(axis=(2, 4))

    def contribs(self, a, a0, inp_parts):
        return self.forward(inp_parts[0]), self.forward(inp_parts[1])

    def backward(self, a, a0, mp, mn, ablation):
        spread = lambda m: np.repeat(np.repeat(m, self.k, axis=1), self.k, axis=2) / self.k ** 2   # noqa: E731
        return spread(mp), spread(mn)


class Flatten:
    def forward(self, a):
        return a.reshape(-1)

    def contribs(self, a, a0, inp_parts):
        return inp_parts[0].reshape(-1), inp_parts[1].reshape(-1)

    def backward(self, a, a0, mp, mn, ablation):
        return mp.reshape(a.shape), mn.reshape(a.shape)


def contributions(layers, x, x0, target, ablation=False):
    """The package's input contributions m⁺Δx⁺ + m⁻Δx⁻ for the logit ``target`` (x, x⁰ without batch dimension)."""
    acts, refs = [x], [x0]
    d = x - x0
    parts = [(d * (d > 0), d * (d < 0))]
    for layer in layers:
        a, a0 = acts[-1], refs[-1]
        acts.append(layer.forward(a))
        refs.append(layer.forward(a0))
        parts.append(layer.contribs(a, a0, parts[-1]))
    mp = np.zeros_like(acts[-1])
    mp[target] = 1.0
    mn = mp.copy()
    for i in range(len(layers) - 1, -1, -1):
        mp, mn = layers[i].backward(acts[i], refs[i], mp, mn, ablation)
    return mp * parts[0][0] + mn * parts[0][1]


class GlobalAvgPool:
    """deeplift_resnet.py ``GlobalAvgPool2D``: the mean over the plane; contribs pooled, multipliers spread."""

    def forward(self, a):
        return a.mean(axis=(1, 2))

    def contribs(self, a, a0, inp_parts):
        return inp_parts[0].mean(axis=(1, 2)), inp_parts[1].mean(axis=(1, 2))

    def backward(self, a, a0, mp, mn, ablation):
        n = a.shape[1] * a.shape[2]
        return (np.broadcast_to(mp[:, None, None] / n, a.shape).copy(),
                np.broadcast_to(mn[:, None, None] / n, a.shape).copy())


class Residual:
    """Branches (lists of layers; [] the identity) summed by deeplift_resnet.py's ``Add`` — a Dense layer of weights 1
    over the summands: contribs Σ_t (Δz_t)⁺, Σ_t (Δz_t)⁻ from each summand's total difference; summand t receives
    [Δz_t>0] m⁺ + [Δz_t<0] m⁻ + [Δz_t=0] ½(m⁺ + m⁻)."""

    def __init__(self, branches):
        self.branches = branches

    def _run(self, branch, a, a0, parts):
        acts, refs, ps = [a], [a0], [parts]
        for layer in branch:
            acts.append(layer.forward(acts[-1]))
            refs.append(layer.forward(refs[-1]))
            ps.append(layer.contribs(acts[-2], refs[-2], ps[-1]))
        return acts, refs

    def forward(self, a):
        out = 0.0
        for branch in self.branches:
            h = a
            for layer in branch:
                h = layer.forward(h)
            out = out + h
        return out

    def contribs(self, a, a0, inp_parts):
        self.saved = [self._run(b, a, a0, inp_parts) for b in self.branches]
        dz = [acts[-1] - refs[-1] for acts, refs in self.saved]
        return sum(pos(d) for d in dz), sum(neg(d) for d in dz)

    def backward(self, a, a0, mp, mn, ablation):
        gp, gn = 0.0, 0.0
        for branch, (acts, refs) in zip(self.branches, self.saved):
            d = acts[-1] - refs[-1]
            m = (d > 0) * mp + (d < 0) * mn + (d == 0) * 0.5 * (mp + mn)
            bp, bn = m, m
            for i in range(len(branch) - 1, -1, -1):
                bp, bn = branch[i].backward(acts[i], refs[i], bp, bn, ablation)
            gp, gn = gp + bp, gn + bn
        return gp, gn
