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
* activation h = f(z) (ReLU, or any monotone activation: softplus, …), multipliers S± = diag(s±),
  Δh± = s± ⊙ Δz±, m_z± = s± ⊙ m_h±:
      Rescale:       s⁺ = s⁻ = Δh/Δz  (f'(z), the gradient at x, where |Δz| < 1e-10, as captum)
      RevealCancel:  Δh⁺ = ½[f(z⁰+Δz⁺) − f(z⁰)] + ½[f(z) − f(z⁰+Δz⁻)],
                     Δh⁻ = ½[f(z⁰+Δz⁻) − f(z⁰)] + ½[f(z) − f(z⁰+Δz⁺)],   s± = Δh±/Δz±
                     (where |Δz±| < 1e-10 the Rescale multiplier of the total is used)
* Max-pool: captum's rule, on both parts: with y = max over window j at x, y⁰ at x⁰, winners a(j),
  a⁰(j): M_ij = ([i = a(j)]·(max(y,y⁰) − y⁰)_j + [i = a⁰(j)]·(y − max(y,y⁰))_j) / Δx_i (summed over
  overlapping windows; the gradient [i = a(j)] in rows with |Δx_i| < 1e-10).  Σ_i M_ij Δx_i = Δy_j,
  so with Δy± = MᵀΔx± it is conservative.  Block diag(M S⁺, M S⁻).
* Average pools are linear with non-negative weights P: the linear rule gives diag(P S⁺, P S⁻).

* Residual block z = Σ_t f_t(h), h_out = f(z): the parts are carried through every branch from the
  block input's parts (an identity shortcut passes them unchanged); the addition is linear, so
  Δz± = Σ_t Δz_t± (the sums of the branches' parts) and the multiplier at the sum passes unchanged
  to every branch (the gradient of a sum, Sixt et al. 2020 eq. 3).  The activation after the sum
  gets its multipliers S± from Δz± of the sum like any other (Rescale, RevealCancel, Rescale for
  ablation), so the block is ONE operator
      Σ_t P_t · diag(S⁺, S⁻),   P_t = the product of branch t's 2×2 block operators (I for the identity),
  a :class:`~chainlab.extraction.residual.DeepLiftResidual` (kind "residual"), applied factor by
  factor; its blocks (BlockOperator @ BlockOperator stays blockwise) are multiplied out on demand.

So the operator of a Linear/Conv2d stage (ReLU after it) is, n_in × n_out blocks,

      [[W⁺ᵀS⁺, W⁻ᵀS⁻],
       [W⁻ᵀS⁺, W⁺ᵀS⁻]]                                       shape (2 n_in, 2 n_out).

The start vector of logit k is [e_k; e_k] (Δf_k = Δf_k⁺ + Δf_k⁻, both with multiplier 1) and the
explanation is the contributions C = m⁺ ⊙ Δx⁺ + m⁻ ⊙ Δx⁻ in the shape of x, with
Σ C = f_k(x) − f_k(x⁰) (summation-to-delta; every step above conserves Σ m⁺Δ⁺ + m⁻Δ⁻); the chain
is a :class:`~chainlab.chain.DeepLiftChain`.

Checks while building: the parts must add up, Δz⁺ + Δz⁻ = Δz at every stage, to a tolerance that
scales with the parts (|Δz⁺|, |Δz⁻| grow ~13× per layer in deep random nets while Δz stays O(1), so
their cancellation alone loses digits in proportion to them).

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

from ..chain import DeepLiftChain
from ..errors import ExtractionError, OptionError
from ..linalg import (BlockOperator, ConvGeometry, DenseOperator, Diagonal, SparseOperator, conv_matrix,
                      zero_operator)
from ..linalg.pool import column_weights, window_matrix
from ..options import choice, number
from .residual import DeepLiftResidual

__all__ = ["VARIANTS", "OWN_OPTIONS", "make_reference", "build_deeplift", "gaussian_blur"]

VARIANTS = ("rescale", "revealcancel", "ablation")
OWN_OPTIONS = ("reference", "sigma")
DELTA_EPS = 1e-10


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


def make_reference(reference, xt: torch.Tensor, sigma=None, where: str = "DeepLIFT") -> torch.Tensor:
    """x⁰ as float64 with x's shape (1, …) from "zeros", "blur" (with sigma) or a tensor/array."""
    if isinstance(reference, str):
        if reference == "zeros":
            return torch.zeros_like(xt)
        if reference == "blur":
            s = 1.0 if sigma is None else sigma
            if not (isinstance(s, (int, float)) and s > 0):
                raise OptionError(f"option sigma of {where} must be > 0 (pixels), got {sigma!r}")
            if xt.ndim != 4:
                raise OptionError(
                    f"option reference of {where} must be a tensor here: reference='blur' needs an image input "
                    f"(1, C, H, W); this model takes {tuple(xt.shape)}. Pass the blurred image as reference=<tensor>"
                )
            return gaussian_blur(xt, float(s))
        raise OptionError(f"option reference of {where} must be 'zeros', 'blur' or a tensor of x's shape, "
                          f"got {reference!r}")
    if not isinstance(reference, (torch.Tensor, np.ndarray, list, tuple)):
        raise OptionError(f"option reference of {where} must be 'zeros', 'blur' or a tensor of x's shape, "
                          f"got {reference!r}")
    ref = torch.as_tensor(np.asarray(reference) if not isinstance(reference, torch.Tensor) else reference)
    ref = ref.detach().to(torch.float64)
    if tuple(ref.shape) == tuple(xt.shape[1:]):
        ref = ref.unsqueeze(0)
    if tuple(ref.shape) != tuple(xt.shape):
        raise OptionError(
            f"option reference of {where} must have the input's shape {tuple(xt.shape)} (or {tuple(xt.shape[1:])}), "
            f"got a reference of shape {tuple(ref.shape)}"
        )
    if not torch.isfinite(ref).all():
        raise OptionError(f"option reference of {where} must be finite; it contains NaN or infinite values")
    return ref


# ---------------------------------------------------------------------------------------------
# per-stage pieces


def _rescale_multiplier(f, z: np.ndarray, z0: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Δf/Δz, or the gradient ``grad`` = f'(z) at x where |Δz| < DELTA_EPS."""
    dz = z - z0
    dh = f(z) - f(z0)
    small = np.abs(dz) < DELTA_EPS
    return np.where(small, grad, dh / np.where(small, 1.0, dz))


def _revealcancel(f, z: np.ndarray, z0: np.ndarray, dzp: np.ndarray, dzm: np.ndarray, grad: np.ndarray):
    """(s⁺, s⁻) of RevealCancel for an activation f with pre-activations z (at x), z0 (at x⁰) and parts Δz±."""
    dhp = 0.5 * (f(z0 + dzp) - f(z0)) + 0.5 * (f(z) - f(z0 + dzm))
    dhm = 0.5 * (f(z0 + dzm) - f(z0)) + 0.5 * (f(z) - f(z0 + dzp))
    fallback = _rescale_multiplier(f, z, z0, grad)
    sp_ = np.where(np.abs(dzp) < DELTA_EPS, fallback, dhp / np.where(np.abs(dzp) < DELTA_EPS, 1.0, dzp))
    sm_ = np.where(np.abs(dzm) < DELTA_EPS, fallback, dhm / np.where(np.abs(dzm) < DELTA_EPS, 1.0, dzm))
    return sp_, sm_


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


def _weight_blocks(st, rec, s: np.ndarray):
    """(W⁺ᵀ diag(s), W⁻ᵀ diag(s)) of a Linear/Conv2d stage for s ≥ 0, as operators (n_in × n_out)."""
    W = st.weight.numpy()
    if st.kind == "linear":
        Wt = W.T * s[None, :]
        return DenseOperator(np.maximum(Wt, 0.0)), DenseOperator(np.minimum(Wt, 0.0))
    c = st.conv
    geom = ConvGeometry.of(rec.in_shape, rec.out_shape, W.shape[2:], c.stride, c.padding, c.dilation, c.groups)
    M = conv_matrix(geom, np.ones((1, geom.n_in)), W[None], s[None, :])
    P, N = _sign_split(M)
    return SparseOperator(P), SparseOperator(N)


def _maxpool_matrix(rec, rec0, dx: np.ndarray) -> sp.csc_matrix:
    """captum's DeepLIFT max-pool multipliers as a CSC matrix M (n_in × n_out); see the module docstring."""
    C, H, W = rec.in_shape
    n_in, n_out = C * H * W, int(np.prod(rec.out_shape))
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
        return _maxpool_matrix(rec, rec0, dx)
    n_in = int(np.prod(rec.in_shape))
    w = column_weights(st.pool, rec.in_shape, rec.out_shape)
    return window_matrix(st.pool, rec.in_shape, rec.out_shape, np.ones(n_in), w).tocsc()


def _scale_cols(M: sp.spmatrix, s: np.ndarray) -> SparseOperator:
    return SparseOperator((M @ sp.diags(s)).tocsc())


def _check_parts(st, plus, minus, delta, what):
    """Δ⁺ + Δ⁻ = Δ up to rounding that scales with the parts (see the module docstring)."""
    if not delta.size:
        return
    err = float(np.abs(plus + minus - delta).max())
    tol = 1e-8 * (1.0 + float(np.abs(delta).max())) + 1e-12 * float(np.abs(plus).max() + np.abs(minus).max())
    if err > tol:
        raise ExtractionError(f"DeepLIFT {what} of layer {st.describe()} do not add up (error {err:.3g} > {tol:.3g})")


# ---------------------------------------------------------------------------------------------
# the builder


def check_own(variant: str, own: dict) -> dict:
    """The DeepLIFT options (reference, sigma) of ``own``, checked."""
    where = f"rule 'deeplift-{variant}'"
    reference = own.get("reference", "zeros")
    sigma = own.get("sigma")
    if sigma is not None:
        if not (isinstance(reference, str) and reference == "blur"):
            raise OptionError(f"option sigma of {where} is only used with reference='blur'")
        sigma = number("sigma", sigma, where, positive=True)
    if isinstance(reference, str):
        choice("reference", reference, ("zeros", "blur"), where)
    elif not isinstance(reference, (torch.Tensor, np.ndarray, list, tuple)):
        raise OptionError(f"option reference of {where} must be 'zeros', 'blur' or a tensor of x's shape, "
                          f"got {reference!r}")
    return {"reference": reference, "sigma": sigma}


def _multipliers(act, z, z0, zp, zm, variant):
    """(s⁺, s⁻) of the activation ``act`` after a stage (ones without one); see the module docstring."""
    if act is None:
        ones = np.ones_like(z)
        return ones, ones
    f = (lambda v, a=act: a(torch.from_numpy(v)).numpy())
    grad = act.derivative(torch.from_numpy(z)).numpy()
    if variant == "revealcancel":
        return _revealcancel(f, z, z0, zp, zm, grad)
    s = _rescale_multiplier(f, z, z0, grad)
    return s, s


def _diag_block(sp_, sm_) -> BlockOperator:
    """diag(S⁺, S⁻) as a block operator (the multipliers of an activation after a residual sum)."""
    P = Diagonal(sp_)
    Q = P if sm_ is sp_ else Diagonal(sm_)
    Z = zero_operator(sp_.size, sp_.size)
    return BlockOperator(P, Z, Z, Q)


def _residual_block(st, rec, rec0, dp, dm, variant, rule):
    """The operator Σ_t P_t diag(S⁺, S⁻) of a residual stage (see the module docstring) and its output parts."""
    terms, names, rules = [], [], []
    zp = zm = None
    for b_st, b_rec, b_rec0 in zip(st.branches, rec.branches, rec0.branches):
        ops, bp, bm = [], dp, dm
        for s, r, r0 in zip(b_st, b_rec, b_rec0):
            op, kind_name, bp, bm = _stage_block(s, r, r0, bp, bm, variant, rule)
            ops.append(op)
        if not ops and bp.size != rec.z.numel():
            raise ExtractionError(f"identity branch of residual block {st.describe()} maps {bp.size} to "
                                  f"{rec.z.numel()} values")
        zp = bp.copy() if zp is None else zp + bp      # Δz± of the sum: the sums of the branches' parts
        zm = bm.copy() if zm is None else zm + bm
        terms.append(ops)
        names.append([s.name for s in b_st])
        rules.append([_kind_name(s, rule) for s in b_st])
    z, z0 = rec.z.reshape(-1).numpy(), rec0.z.reshape(-1).numpy()
    _check_parts(st, zp, zm, z - z0, "parts Δz⁺ + Δz⁻ of the sum")
    sp_, sm_ = _multipliers(st.activation, z, z0, zp, zm, variant)
    D = _diag_block(sp_, sm_)
    op = DeepLiftResidual([t + [D] for t in terms], names, rules)
    return op, sp_ * zp, sm_ * zm


def _kind_name(st, rule) -> str:
    if st.is_parametric:
        kind = "linear-block"
    elif st.kind == "residual":
        kind = "residual"
    else:
        kind = {"maxpool2d": "maxpool-deeplift", "activation": "relu-deeplift"}.get(st.kind, "avgpool-linear")
    return f"{rule}:{kind}"


def _stage_block(st, rec, rec0, dp, dm, variant, rule):
    """(block operator, layer-rule name, Δh⁺, Δh⁻) of one stage given the parts (Δx⁺, Δx⁻) of its input."""
    if st.kind == "residual":
        op, dp, dm = _residual_block(st, rec, rec0, dp, dm, variant, rule)
        _check_parts(st, dp, dm, (rec.out - rec0.out).reshape(-1).numpy(), "output parts Δh⁺ + Δh⁻")
        return op, _kind_name(st, rule), dp, dm
    n_in = int(np.prod(rec.in_shape))
    z, z0 = rec.z.reshape(-1).numpy(), rec0.z.reshape(-1).numpy()
    x_in = (rec.x - rec0.x).reshape(-1).numpy()
    act = st.activation if st.kind != "activation" else None
    # forward of the parts through the linear map of the stage
    if st.is_parametric:
        W = st.weight
        a_p = torch.from_numpy(dp).reshape(rec.x.shape)
        a_m = torch.from_numpy(dm).reshape(rec.x.shape)
        Wp, Wn = W.clamp(min=0), W.clamp(max=0)
        zp = (st.linear_map(a_p, Wp) + st.linear_map(a_m, Wn)).reshape(-1).numpy()
        zm = (st.linear_map(a_p, Wn) + st.linear_map(a_m, Wp)).reshape(-1).numpy()
        pool = None
    elif st.kind == "activation":
        zp, zm, pool = dp, dm, None
        act = st.activation
        z, z0 = rec.x.reshape(-1).numpy(), rec0.x.reshape(-1).numpy()
    else:
        pool = _pool_matrix(st, rec, rec0, x_in)
        zp, zm = np.asarray(pool.T @ dp).reshape(-1), np.asarray(pool.T @ dm).reshape(-1)
    _check_parts(st, zp, zm, z - z0, "parts Δz⁺ + Δz⁻")
    # multipliers of the activation after the stage (identity without one)
    sp_, sm_ = _multipliers(act, z, z0, zp, zm, variant)
    # blocks
    if st.is_parametric:
        Ap, Bp = _weight_blocks(st, rec, sp_)     # W⁺ᵀS⁺, W⁻ᵀS⁺
        if variant == "revealcancel":
            Dm, Bm = _weight_blocks(st, rec, sm_)  # W⁺ᵀS⁻, W⁻ᵀS⁻
            op = BlockOperator(Ap, Bm, Bp, Dm)
        elif variant == "rescale":
            op = BlockOperator(Ap, Bp, Bp, Ap)    # shared blocks: A = D, B = C
        else:
            Z = zero_operator(*Ap.shape)
            op = BlockOperator(Ap, Z, Z, Bp)
    else:
        base = sp.identity(n_in, format="csc") if st.kind == "activation" else pool
        P = _scale_cols(base, sp_)
        Q = P if sm_ is sp_ else _scale_cols(base, sm_)
        Z = zero_operator(*P.shape)
        op = BlockOperator(P, Z, Z, Q)
    dp, dm = sp_ * zp, sm_ * zm   # the parts carried to the next stage
    _check_parts(st, dp, dm, (rec.out - rec0.out).reshape(-1).numpy(), "output parts Δh⁺ + Δh⁻")
    return op, _kind_name(st, rule), dp, dm


def build_deeplift(model, net, xt, records, opts, own: dict, variant: str) -> DeepLiftChain:
    """Extract the DeepLIFT block chain of ``variant`` ("rescale", "revealcancel", "ablation")."""
    rule = f"deeplift-{variant}"
    own = check_own(variant, own)
    reference, sigma = own["reference"], own["sigma"]
    x0 = make_reference(reference, xt, sigma, f"rule {rule!r}")
    with torch.no_grad():
        records0 = net.forward(x0)

    dx = (xt - x0).reshape(-1).numpy()
    dp, dm = np.maximum(dx, 0.0), np.minimum(dx, 0.0)
    delta_input = (dp.copy(), dm.copy())
    ops, names, layer_rules = [], [], []
    for st, rec, rec0 in zip(net.stages, records, records0):
        op, kind_name, dp, dm = _stage_block(st, rec, rec0, dp, dm, variant, rule)
        ops.append(op)
        names.append(st.name)
        layer_rules.append(kind_name)

    if opts.np_dtype != np.float64:
        ops = [op.astype(opts.np_dtype) for op in ops]
    ref_desc = reference if isinstance(reference, str) else f"array{tuple(x0.shape)}"
    own_rec = {"reference": ref_desc, **({"sigma": sigma} if sigma is not None else {})}
    return DeepLiftChain(
        ops,
        names=names,
        shapes=net.shapes(records),
        input_shape=tuple(xt.shape),
        x=xt.reshape(-1).numpy(),
        logits=records[-1].out.reshape(-1).numpy(),
        rule=rule,
        options={**opts.record(opts.given), **own_rec},
        space="deeplift",
        layer_rules=layer_rules,
        meta={"model": net.source},
        reference=x0.reshape(-1).numpy(),
        reference_logits=records0[-1].out.reshape(-1).numpy(),
        delta_input=delta_input,
        variant=variant,
    )
