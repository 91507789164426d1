"""DeepLIFT (Shrikumar et al. 2017) as a chain of 2×2 block operators (Sixt et al. 2020, eq. 13).

Reference x⁰ (option ``reference``: "zeros" (default), a tensor/array of x's shape, or "blur",
a Gaussian blur of x with standard deviation ``sigma`` pixels).  Every neuron h carries the two
parts of its difference Δh = h − h⁰ = Δh⁺ + Δh⁻ and two multipliers m⁺, m⁻; the backward signal
at a layer boundary with n neurons is the stacked 2n vector [m⁺; m⁻] (+ first, then −).  The
parts are *carried* through the net: at the input Δx⁺ = max(x − x⁰, 0), Δx⁻ = min(x − x⁰, 0);
after that each layer produces the parts of its output from the parts of its input:

* Linear / Conv2d z = Wx + b (BN folded; the bias cancels in Δ), W⁺ = max(W, 0), W⁻ = min(W, 0):
      Δz⁺ = W⁺Δx⁺ + W⁻Δx⁻ ≥ 0,   Δz⁻ = W⁻Δx⁺ + W⁺Δx⁻ ≤ 0,
      m_x⁺ = W⁺ᵀ m_z⁺ + W⁻ᵀ m_z⁻,   m_x⁻ = W⁻ᵀ m_z⁺ + W⁺ᵀ m_z⁻          (the coupled block)
* ReLU h = max(z, 0), multipliers S± = diag(s±), Δh± = s± ⊙ Δz±, m_z± = s± ⊙ m_h±:
      Rescale:       s⁺ = s⁻ = Δh/Δz  (1[z > 0], the gradient at x, where |Δz| < 1e-10, as captum)
      RevealCancel:  Δh⁺ = ½[f(z⁰+Δz⁺) − f(z⁰)] + ½[f(z) − f(z⁰+Δz⁻)],
                     Δh⁻ = ½[f(z⁰+Δz⁻) − f(z⁰)] + ½[f(z) − f(z⁰+Δz⁺)],   s± = Δh±/Δz±
                     (where |Δz±| < 1e-10 the Rescale multiplier of the total is used)
* Max-pool: captum's rule, on both parts: with y = max over window j at x, y⁰ at x⁰, winners a(j),
  a⁰(j): M_ij = ([i = a(j)]·(max(y,y⁰) − y⁰)_j + [i = a⁰(j)]·(y − max(y,y⁰))_j) / Δx_i (summed over
  overlapping windows; the gradient [i = a(j)] in rows with |Δx_i| < 1e-10).  Σ_i M_ij Δx_i = Δy_j,
  so with Δy± = MᵀΔx± it is conservative.  Block diag(M S⁺, M S⁻).
* Average pools are linear with non-negative weights P: the linear rule gives diag(P S⁺, P S⁻).

So the operator of a Linear/Conv2d stage (ReLU after it) is, n_in × n_out blocks,

      [[W⁺ᵀS⁺, W⁻ᵀS⁻],
       [W⁻ᵀS⁺, W⁺ᵀS⁻]]                                       shape (2 n_in, 2 n_out).

The start vector of logit k is [e_k; e_k] (Δf_k = Δf_k⁺ + Δf_k⁻, both with multiplier 1) and the
explanation is the contributions C = m⁺ ⊙ Δx⁺ + m⁻ ⊙ Δx⁻ in the shape of x, with
Σ C = f_k(x) − f_k(x⁰) (summation-to-delta; every step above conserves Σ m⁺Δ⁺ + m⁻Δ⁻).

Variants:

* ``deeplift-rescale``: S⁺ = S⁻ = S.  The blocks *collapse*: A = D = W⁺ᵀS, B = C = W⁻ᵀS, so
  A + B = C + D = WᵀS; the subspace {[v; v]} is invariant and the chain started at [e_k; e_k] is
  the ordinary chain of WᵀS (captum's DeepLift).  ``DeepLiftChain.collapsed()`` returns it.
* ``deeplift-revealcancel``: S⁺ ≠ S⁻ in general, the blocks are genuinely coupled.
* ``deeplift-ablation`` (Sixt et al. §2, "DeepLIFT Ablation"): the intermixing is removed, only W⁺
  in the + chain and only W⁻ in the − chain, with Rescale multipliers:
      [[W⁺ᵀS, 0], [0, W⁻ᵀS]]   (pools: diag(PS, PS); the off-diagonal blocks are exact zeros).
  Removing the cross terms drops W⁻Δx⁻ and W⁻Δx⁺ (resp. W⁺Δx⁻) from the forward accounting, so
  ablation does NOT satisfy summation-to-delta in general (e.g. f(x) = x₁ − x₂ at x = (1, 1),
  x⁰ = 0: Σ C = 1 ≠ 0).  It is the decoupled chain Sixt et al. study for convergence, not an
  attribution method with completeness.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from ..blocks import BlockOperator, zero_operator
from ..chain import Chain
from ..errors import ExtractionError
from ..matrices import ConvGeometry, avgpool_column_weights, conv_matrix, window_operator
from ..operators import DenseOperator, SparseOperator
from ..trace import conv_padding

__all__ = ["DeepLiftChain", "VARIANTS", "make_reference", "build_deeplift", "gaussian_blur"]

VARIANTS = ("rescale", "revealcancel", "ablation")
OWN_OPTIONS = ("reference", "sigma")
DELTA_EPS = 1e-10


class DeepLiftChain(Chain):
    """A DeepLIFT chain of :class:`~chainlab.blocks.BlockOperator` s (``space == "deeplift"``).

    Signals are stacked pairs [m⁺; m⁻] (2n rows, + first); ``shapes`` are the unpaired signal shapes.
    Extra attributes: ``reference`` (x⁰ flat), ``reference_logits`` (f(x⁰)), ``delta_input``
    ((Δx⁺, Δx⁻) flat), ``variant``.
    """

    def __init__(self, *args, reference, reference_logits, delta_input, variant, **kw):
        super().__init__(*args, **kw)
        self.reference = np.asarray(reference, dtype=np.float64).reshape(-1)
        self.reference_logits = np.asarray(reference_logits, dtype=np.float64).reshape(-1)
        self.delta_input = tuple(np.asarray(d, dtype=np.float64).reshape(-1) for d in delta_input)
        self.variant = variant

    def start_vector(self, target: int | None = None) -> np.ndarray:
        """[e_k; e_k] (2 n_logits): the multiplier of Δf_k with respect to both of its parts is 1."""
        K = self.logits.size
        k = self.predicted if target is None else int(target)
        if not 0 <= k < K:
            raise ValueError(f"target {k} is not a logit index (the model has {K} outputs)")
        r = np.zeros(2 * K, dtype=self.dtype)
        r[k] = r[K + k] = 1.0
        return r

    def multipliers(self, target: int | None = None):
        """(m⁺, m⁻) at the input, each flat (n,)."""
        m = self.apply(self.start_vector(target))
        n = self.x.size
        return m[:n], m[n:]

    def explain(self, target: int | None = None) -> np.ndarray:
        """Contributions C = m⁺ ⊙ Δx⁺ + m⁻ ⊙ Δx⁻ in the shape of x (batch dimension included)."""
        mp, mm = self.multipliers(target)
        dp, dm = self.delta_input
        return (mp * dp + mm * dm).reshape(self.input_shape)

    def delta(self, target: int | None = None) -> float:
        """f_k(x) − f_k(x⁰)."""
        k = self.predicted if target is None else int(target)
        return float(self.logits[k] - self.reference_logits[k])

    def collapsed(self) -> Chain:
        """For Rescale: the ordinary chain of the collapsed operators A + B = WᵀS (multipliers; gradient-like).

        ``collapsed().explain(k) * (x − x⁰)`` equals ``explain(k)``.  Raises ValueError if a block
        does not collapse (RevealCancel, ablation).
        """
        ops = [op.collapse(atol=0.0) for op in self.operators]
        return Chain(ops, names=self.names, shapes=self.shapes, input_shape=self.input_shape, x=self.x,
                     logits=self.logits, rule=self.rule + "-collapsed", options=self.options, space="gradient",
                     layer_rules=self.layer_rules, meta=self.meta)


# ---------------------------------------------------------------------------------------------
# reference


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of an image batch (1, C, H, W) with std ``sigma`` pixels (reflect padding)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    C = x.shape[1]
    mode = "reflect" if min(x.shape[2:]) > radius else "replicate"
    h = F.pad(x, (radius, radius, 0, 0), mode=mode)
    h = F.conv2d(h, k.reshape(1, 1, 1, -1).repeat(C, 1, 1, 1), groups=C)
    h = F.pad(h, (0, 0, radius, radius), mode=mode)
    return F.conv2d(h, k.reshape(1, 1, -1, 1).repeat(C, 1, 1, 1), groups=C)


def make_reference(reference, xt: torch.Tensor, sigma=None) -> torch.Tensor:
    """x⁰ as float64 with x's shape (1, …) from "zeros", "blur" (with sigma) or a tensor/array."""
    if isinstance(reference, str):
        if reference == "zeros":
            return torch.zeros_like(xt)
        if reference == "blur":
            s = 1.0 if sigma is None else sigma
            if not (isinstance(s, (int, float)) and s > 0):
                raise ValueError(f"DeepLIFT reference='blur' needs sigma > 0 (pixels), got {sigma!r}")
            if xt.ndim != 4:
                raise ValueError(
                    f"DeepLIFT reference='blur' needs an image input (1, C, H, W); this model takes {tuple(xt.shape)}. "
                    "Pass the blurred image as reference=<tensor> instead"
                )
            return gaussian_blur(xt, float(s))
        raise ValueError(f"unknown DeepLIFT reference {reference!r}; use 'zeros', 'blur' or a tensor of x's shape")
    ref = torch.as_tensor(np.asarray(reference) if not isinstance(reference, torch.Tensor) else reference)
    ref = ref.detach().to(torch.float64)
    if tuple(ref.shape) == tuple(xt.shape[1:]):
        ref = ref.unsqueeze(0)
    if tuple(ref.shape) != tuple(xt.shape):
        raise ValueError(
            f"DeepLIFT reference of shape {tuple(ref.shape)} does not match the input of shape {tuple(xt.shape)} "
            f"(give {tuple(xt.shape)} or {tuple(xt.shape[1:])})"
        )
    if not torch.isfinite(ref).all():
        raise ValueError("DeepLIFT reference contains NaN or infinite values")
    return ref


# ---------------------------------------------------------------------------------------------
# per-stage pieces


def _rescale_multiplier(z: np.ndarray, z0: np.ndarray) -> np.ndarray:
    """Δrelu/Δz, or the gradient 1[z > 0] at x where |Δz| < DELTA_EPS."""
    dz = z - z0
    dh = np.maximum(z, 0) - np.maximum(z0, 0)
    small = np.abs(dz) < DELTA_EPS
    return np.where(small, (z > 0).astype(np.float64), dh / np.where(small, 1.0, dz))


def _revealcancel(z: np.ndarray, z0: np.ndarray, dzp: np.ndarray, dzm: np.ndarray):
    """(s⁺, s⁻) of RevealCancel for a ReLU with pre-activations z (at x), z0 (at x⁰) and parts Δz±."""
    f = lambda v: np.maximum(v, 0.0)  # noqa: E731
    dhp = 0.5 * (f(z0 + dzp) - f(z0)) + 0.5 * (f(z) - f(z0 + dzm))
    dhm = 0.5 * (f(z0 + dzm) - f(z0)) + 0.5 * (f(z) - f(z0 + dzp))
    fallback = _rescale_multiplier(z, z0)
    sp_ = np.where(np.abs(dzp) < DELTA_EPS, fallback, dhp / np.where(np.abs(dzp) < DELTA_EPS, 1.0, dzp))
    sm_ = np.where(np.abs(dzm) < DELTA_EPS, fallback, dhm / np.where(np.abs(dzm) < DELTA_EPS, 1.0, dzm))
    return sp_, sm_


def _linear_forward(st, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if st.kind == "linear":
        return F.linear(a.reshape(1, -1), w)
    m = st.module
    return F.conv2d(a, w, None, m.stride, conv_padding(m), m.dilation, m.groups)


def _sign_split(M: sp.csc_matrix):
    """(positive part, negative part) of a CSC matrix, as CSC matrices without explicit zeros (one pass)."""
    n_out = M.shape[1]
    col = np.repeat(np.arange(n_out, dtype=np.int64), np.diff(M.indptr))
    out = []
    for keep in (M.data > 0, M.data < 0):
        indptr = np.zeros(n_out + 1, dtype=M.indptr.dtype)
        np.cumsum(np.bincount(col[keep], minlength=n_out), out=indptr[1:])
        P = sp.csc_matrix((M.data[keep], M.indices[keep], indptr), shape=M.shape, copy=False)
        P.has_sorted_indices = M.has_sorted_indices
        out.append(P)
    return out[0], out[1]


def _weight_blocks(st, s: np.ndarray):
    """(W⁺ᵀ diag(s), W⁻ᵀ diag(s)) of a Linear/Conv2d stage for s ≥ 0, as operators (n_in × n_out)."""
    W = st.weight.numpy()
    if st.kind == "linear":
        Wt = W.T * s[None, :]
        return DenseOperator(np.maximum(Wt, 0.0)), DenseOperator(np.minimum(Wt, 0.0))
    geom = ConvGeometry.of_stage(st)
    M = conv_matrix(geom, np.ones((1, geom.n_in)), W[None], s[None, :])
    P, N = _sign_split(M)
    return SparseOperator(P), SparseOperator(N)


def _maxpool_matrix(st, rec, rec0, dx: np.ndarray) -> sp.csc_matrix:
    """captum's DeepLIFT max-pool multipliers as a CSC matrix M (n_in × n_out); see the module docstring."""
    C, H, W = st.in_shape
    n_in, n_out = C * H * W, int(np.prod(st.out_shape))
    off = (np.arange(C, dtype=np.int64) * H * W)[:, None]
    a = (rec.argmax.reshape(C, -1).numpy().astype(np.int64) + off).reshape(-1)
    a0 = (rec0.argmax.reshape(C, -1).numpy().astype(np.int64) + off).reshape(-1)
    y, y0 = rec.z.reshape(-1).numpy(), rec0.z.reshape(-1).numpy()
    ymax = np.maximum(y, y0)
    cols = np.arange(n_out)
    U = sp.coo_matrix((np.concatenate([ymax - y0, y - ymax]), (np.concatenate([a, a0]), np.concatenate([cols, cols]))),
                      shape=(n_in, n_out)).tocsr()
    U.sum_duplicates()
    small = np.abs(dx) < DELTA_EPS
    U = sp.diags(1.0 / np.where(small, 1.0, dx)) @ U
    if small.any():  # gradient rows: [i = a(j)]
        G = sp.coo_matrix((np.ones(n_out), (a, cols)), shape=(n_in, n_out)).tocsr()
        keep = sp.diags((~small).astype(np.float64))
        U = keep @ U + sp.diags(small.astype(np.float64)) @ G
    U = U.tocsc()
    U.eliminate_zeros()
    return U


def _pool_matrix(st, rec, rec0, dx: np.ndarray) -> sp.csc_matrix:
    if st.kind == "maxpool2d":
        return _maxpool_matrix(st, rec, rec0, dx)
    n_in = int(np.prod(st.in_shape))
    return window_operator(st, np.ones(n_in), avgpool_column_weights(st)).matrix.tocsc()


def _pool_forward(st, M: sp.spmatrix, d: np.ndarray) -> np.ndarray:
    return np.asarray(M.T @ d).reshape(-1)


def _scale_cols(M: sp.spmatrix, s: np.ndarray) -> SparseOperator:
    return SparseOperator((M @ sp.diags(s)).tocsc())


# ---------------------------------------------------------------------------------------------
# the builder


def build_deeplift(model, net, xt, records, options: dict, variant: str) -> DeepLiftChain:
    """Extract the DeepLIFT block chain of ``variant`` ("rescale", "revealcancel", "ablation")."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown DeepLIFT variant {variant!r}; known: {', '.join(VARIANTS)}")
    from ..extract import COMMON_OPTIONS, DTYPES  # late import: extract imports the rules package

    rule = f"deeplift-{variant}"
    unknown = sorted(set(options) - set(COMMON_OPTIONS) - set(OWN_OPTIONS))
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(map(repr, unknown))} for rule {rule!r}; "
                        f"it takes {', '.join(OWN_OPTIONS)}; common options: {', '.join(COMMON_OPTIONS)}")
    reference = options.get("reference", "zeros")
    sigma = options.get("sigma")
    if sigma is not None and not (isinstance(reference, str) and reference == "blur"):
        raise ValueError("option sigma is only used with reference='blur'")
    x0 = make_reference(reference, xt, sigma)
    with torch.no_grad():
        records0 = net.forward(x0)
        net.forward(xt)  # restore the stages' shapes of x (identical anyway)

    dx = (xt - x0).reshape(-1).numpy()
    dp, dm = np.maximum(dx, 0.0), np.minimum(dx, 0.0)
    delta_input = (dp.copy(), dm.copy())
    ops, names, layer_rules = [], [], []
    for st, rec, rec0 in zip(net.stages, records, records0):
        n_in = int(np.prod(st.in_shape))
        z, z0 = rec.z.reshape(-1).numpy(), rec0.z.reshape(-1).numpy()
        x_in = (rec.x - rec0.x).reshape(-1).numpy()
        # forward of the parts through the linear map of the stage
        if st.is_parametric:
            Wt = st.weight
            a_p = torch.from_numpy(dp).reshape(rec.x.shape)
            a_m = torch.from_numpy(dm).reshape(rec.x.shape)
            Wp, Wn = Wt.clamp(min=0), Wt.clamp(max=0)
            zp = (_linear_forward(st, a_p, Wp) + _linear_forward(st, a_m, Wn)).reshape(-1).numpy()
            zm = (_linear_forward(st, a_p, Wn) + _linear_forward(st, a_m, Wp)).reshape(-1).numpy()
            pool = None
        elif st.kind == "relu":
            zp, zm, pool = dp, dm, None
        else:
            pool = _pool_matrix(st, rec, rec0, x_in)
            zp, zm = _pool_forward(st, pool, dp), _pool_forward(st, pool, dm)
        dz = z - z0
        err = float(np.abs(zp + zm - dz).max()) if dz.size else 0.0
        if err > 1e-8 * (1.0 + float(np.abs(dz).max())):
            raise ExtractionError(f"DeepLIFT parts of layer {st.describe()} do not add up to Δz (error {err:.3g})")
        # multipliers of the ReLU after the stage (identity without one)
        if st.relu:
            if variant == "revealcancel":
                sp_, sm_ = _revealcancel(z, z0, zp, zm)
            else:
                sp_ = sm_ = _rescale_multiplier(z, z0)
        else:
            sp_ = sm_ = np.ones_like(z)
        # blocks
        if st.is_parametric:
            Ap, Bp = _weight_blocks(st, sp_)          # W⁺ᵀS⁺, W⁻ᵀS⁺
            if variant == "revealcancel":
                Dm, Bm = _weight_blocks(st, sm_)      # W⁺ᵀS⁻, W⁻ᵀS⁻
                op = BlockOperator(Ap, Bm, Bp, Dm)
            elif variant == "rescale":
                op = BlockOperator(Ap, Bp, Bp, Ap)    # shared blocks: A = D, B = C
            else:
                Z = zero_operator(*Ap.shape)
                op = BlockOperator(Ap, Z, Z, Bp)
            kind_name = "linear-block"
        else:
            if st.kind == "relu":
                base = sp.identity(n_in, format="csc")
            else:
                base = pool
            P = _scale_cols(base, sp_)
            Q = P if sm_ is sp_ else _scale_cols(base, sm_)
            Z = zero_operator(*P.shape)
            op = BlockOperator(P, Z, Z, Q)
            kind_name = {"maxpool2d": "maxpool-deeplift", "relu": "relu-deeplift"}.get(st.kind, "avgpool-linear")
        ops.append(op)
        names.append(st.name)
        layer_rules.append(f"{rule}:{kind_name}")
        dp, dm = sp_ * zp, sm_ * zm   # the parts carried to the next stage
        out_delta = (rec.out - rec0.out).reshape(-1).numpy()
        err = float(np.abs(dp + dm - out_delta).max())
        if err > 1e-7 * (1.0 + float(np.abs(out_delta).max())):
            raise ExtractionError(f"DeepLIFT output parts of layer {st.describe()} do not add up to Δh (error {err:.3g})")

    np_dtype = DTYPES[options.get("dtype", "float64")]
    if np_dtype != np.float64:
        ops = [op.astype(np_dtype) for op in ops]
    stages = net.stages
    common = {k: options[k] for k in COMMON_OPTIONS if k in options}
    ref_desc = reference if isinstance(reference, str) else f"array{tuple(x0.shape)}"
    own = {"reference": ref_desc}
    if sigma is not None:
        own["sigma"] = float(sigma)
    return DeepLiftChain(
        ops,
        names=names,
        shapes=[stages[0].in_shape] + [s.out_shape for s in stages],
        input_shape=tuple(xt.shape),
        x=xt.reshape(-1).numpy(),
        logits=records[-1].out.reshape(-1).numpy(),
        rule=rule,
        options={**common, **own},
        space="deeplift",
        layer_rules=layer_rules,
        meta={"model": net.source},
        reference=x0.reshape(-1).numpy(),
        reference_logits=records0[-1].out.reshape(-1).numpy(),
        delta_input=delta_input,
        variant=variant,
    )


def _builder(variant):
    def build(model, net, xt, records, options):
        return build_deeplift(model, net, xt, records, options, variant)
    build.__name__ = f"build_deeplift_{variant}"
    return build


def register():
    from ..extract import register_method
    for v in VARIANTS:
        register_method(f"deeplift-{v}", _builder(v))
