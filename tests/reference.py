"""Loop-built float64 references, written straight from the formulas in DESIGN.md.

Nothing here uses chainlab: the conv (Toeplitz) matrix is unrolled by explicit
loops over output units and kernel taps, and every rule matrix is filled entry by
entry.  Slow on purpose; use small layers.
"""
import numpy as np


def conv_unrolled(weight, in_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """W (n_out × n_in) of a 2-d convolution, by loops over (co, oh, ow) and (ci, kh, kw)."""
    weight = np.asarray(weight, dtype=np.float64)
    C_out, cin_g, KH, KW = weight.shape
    C, H, Wd = in_shape
    OH = (H + 2 * padding[0] - dilation[0] * (KH - 1) - 1) // stride[0] + 1
    OW = (Wd + 2 * padding[1] - dilation[1] * (KW - 1) - 1) // stride[1] + 1
    Wm = np.zeros((C_out * OH * OW, C * H * Wd))
    cout_g = C_out // groups
    for co in range(C_out):
        g = co // cout_g
        for oh in range(OH):
            for ow in range(OW):
                j = co * OH * OW + oh * OW + ow
                for cl in range(cin_g):
                    ci = g * cin_g + cl
                    for kh in range(KH):
                        for kw in range(KW):
                            ih = oh * stride[0] - padding[0] + kh * dilation[0]
                            iw = ow * stride[1] - padding[1] + kw * dilation[1]
                            if 0 <= ih < H and 0 <= iw < Wd:
                                Wm[j, ci * H * Wd + ih * Wd + iw] += weight[co, cl, kh, kw]
    return Wm, (C_out, OH, OW)


def s(d, eps):
    """Stabilizer s(d) = d + eps·sign0(d), sign0(0) = +1."""
    return d + eps * (1.0 if d >= 0 else -1.0)


def rule_matrix(rule, W, x, b, *, relu=False, bias="zennit", eps=1e-6, conn=None, **opt):
    """M (n_in × n_out) of one layer z = W x + b, entry by entry, from DESIGN.md's table.

    W: (n_out, n_in) unrolled weights; x: (n_in,); b: (n_out,) per output unit;
    conn: (n_out, n_in) 0/1 connectivity (for 'flat'); returns (M, bias_share).
    """
    n_out, n_in = W.shape
    b = np.zeros(n_out) if (b is None or bias == "none") else np.asarray(b, dtype=np.float64)
    z_true = W @ x + (np.zeros(n_out) if opt.get("b_true") is None else opt["b_true"])
    M = np.zeros((n_in, n_out))
    share = np.zeros(n_out)
    P = lambda v: max(v, 0.0)  # noqa: E731
    N = lambda v: min(v, 0.0)  # noqa: E731
    for j in range(n_out):
        if rule == "gradient":
            for i in range(n_in):
                M[i, j] = W[j, i] * (1.0 if (not relu or z_true[j] > 0) else 0.0)
        elif rule in ("lrp-0", "lrp-epsilon"):
            e = opt.get("epsilon", eps) if rule == "lrp-epsilon" else eps
            den = s(sum(x[k] * W[j, k] for k in range(n_in)) + b[j], e)
            for i in range(n_in):
                M[i, j] = x[i] * W[j, i] / den
            share[j] = b[j] / den
        elif rule == "zplus":
            den = s(sum(P(x[k]) * P(W[j, k]) + N(x[k]) * N(W[j, k]) for k in range(n_in)) + P(b[j]), eps)
            for i in range(n_in):
                M[i, j] = (P(x[i]) * P(W[j, i]) + N(x[i]) * N(W[j, i])) / den
            share[j] = P(b[j]) / den
        elif rule == "alpha-beta":
            al, be = opt["alpha"], opt["beta"]
            dp = s(sum(P(x[k]) * P(W[j, k]) + N(x[k]) * N(W[j, k]) for k in range(n_in)) + P(b[j]), eps)
            dn = s(sum(P(x[k]) * N(W[j, k]) + N(x[k]) * P(W[j, k]) for k in range(n_in)) + N(b[j]), eps)
            for i in range(n_in):
                M[i, j] = (al * (P(x[i]) * P(W[j, i]) + N(x[i]) * N(W[j, i])) / dp
                           - be * (P(x[i]) * N(W[j, i]) + N(x[i]) * P(W[j, i])) / dn)
            share[j] = al * P(b[j]) / dp - be * N(b[j]) / dn
        elif rule == "gamma":
            g = opt["gamma"]
            if z_true[j] == 0:
                continue
            up = z_true[j] > 0
            def wa(w):  # weight for positive inputs
                return w + g * (P(w) if up else N(w))
            def wb(w):  # weight for negative inputs
                return w + g * (N(w) if up else P(w))
            bb = b[j] + g * (P(b[j]) if up else N(b[j]))
            den = s(sum(P(x[k]) * wa(W[j, k]) + N(x[k]) * wb(W[j, k]) for k in range(n_in)) + bb, eps)
            for i in range(n_in):
                M[i, j] = (P(x[i]) * wa(W[j, i]) + N(x[i]) * wb(W[j, i])) / den
            share[j] = bb / den
        elif rule == "zbox":
            lo, hi = opt["low"], opt["high"]
            den = s(sum(x[k] * W[j, k] - lo[k] * P(W[j, k]) - hi[k] * N(W[j, k]) for k in range(n_in)), eps)
            for i in range(n_in):
                M[i, j] = (x[i] * W[j, i] - lo[i] * P(W[j, i]) - hi[i] * N(W[j, i])) / den
        elif rule == "wsquare":
            den = s(sum(W[j, k] ** 2 for k in range(n_in)) + b[j] ** 2, eps)
            for i in range(n_in):
                M[i, j] = W[j, i] ** 2 / den
            share[j] = b[j] ** 2 / den
        elif rule in ("excitation-bp", "contrastive-excitation"):
            # Zhang et al. 2016: P(a_i | a_j) = a_i w⁺_ij / Σ_k a_k w⁺_kj, no bias; the contrastive final layer
            # (Sixt et al. 2020 eq. 16) subtracts the same with the weights negated
            signs = (1.0,) if rule == "excitation-bp" else (1.0, -1.0)
            for sg in signs:
                den = s(sum(x[k] * P(sg * W[j, k]) for k in range(n_in)), eps)
                for i in range(n_in):
                    M[i, j] += sg * x[i] * P(sg * W[j, i]) / den
        elif rule == "flat":
            den = s(sum(conn[j, k] for k in range(n_in)), eps)
            for i in range(n_in):
                M[i, j] = conn[j, i] / den
        else:
            raise ValueError(rule)
    return M, share
