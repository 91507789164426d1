"""Cosine similarity convergence (CSC), Sixt et al. 2020 §3.

For an injection boundary k (the signal after layer k, shape ``chain.shapes[k]``, n_k values)
draw independent standard-normal vectors v_1 … v_m ~ N(0, I_(n_k)) and propagate each to every
lower boundary j < k:  r_j(v) = M_(j+1) ⋯ M_k v  (``chain.apply(v, start=j, stop=k)``).
At boundary j the signal is split into locations: a conv feature map of shape (C, H, W) has
H·W locations with a C-dimensional channel vector each; a flat layer is one location whose
channel vector is the whole signal.  For a pair (a, b) of injections and a location p

    c = |cos(r_j(v_a)_p, r_j(v_b)_p)| = |⟨r_a, r_b⟩| / (‖r_a‖ ‖r_b‖),

(absolute value: a rank-1 product may flip the sign, Sixt §3).  CSC(k, j) is the median of c over
pairs, locations and images (all chains of one net and rule).  Locations where either vector is
zero are dropped and counted (``n_dropped``), so a summary is never NaN.
``pairs`` (default 10) pairs are taken among the smallest m with m(m−1)/2 ≥ pairs (m = 5 for
10, Sixt's five vectors per sample).

Random baseline: for two independent Gaussian vectors in R^d, t = cos θ has t² ~ Beta(1/2, (d−1)/2),
so  E|t| = Γ(d/2) / (√π Γ((d+1)/2))  (≈ √(2/(π d)) for large d) and the median of |t| is
√(I⁻¹_(1/2)(1/2, (d−1)/2)); both are exact (``random_baseline``).  CSC is compared with the
median baseline of the same channel dimension d.

DeepLIFT chains of the package's rule propagate one multiplier per neuron (measured as any chain); the ±
block chains (``chain.paired``, the ``-pm`` variants) propagate stacked (+, −) multipliers of 2n rows.
The injection is tied, [v; v] with v ~ N(0, I_n), as DeepLIFT's own start vector [e_k; e_k] gives
both parts the same multiplier; independent ± injections would excite the antisymmetric part,
on which the coupled blocks act as the non-negative |W| and converge for a reason that has
nothing to do with DeepLIFT.  At each boundary the + and the − signal are measured separately:
each location contributes one C-dimensional channel vector per sign (2·H·W vectors, d = C), so
CSC asks whether each of the two chains forgets its injection — Sixt's criterion for the
decoupled ablation (both chains converge) versus the coupled rules.
Non-linear chains (guided BP, …) work too: propagation goes through ``chain.apply``.

Batched signals (many inputs at once, :func:`chainlab.extraction.extract_batch`): :func:`cosine_gaps` gives
1 − |cos| per input, pair and location of signals (B, m, *shape), :func:`csc_summary` pools them (median,
quantiles, Sixt's Fig. 5e–g histogram bins, the random baseline).
"""
from __future__ import annotations

import itertools
import math
from collections import defaultdict

import numpy as np
from scipy import special

from ..errors import InputError
from ..linalg import channel_cosine
from ._common import layer_label, record

__all__ = ["csc", "csc_values", "random_baseline", "channel_vectors", "abs_cosines", "pair_list", "cosine_gaps",
           "csc_summary", "HIST_EDGES", "hist_bin"]


def random_baseline(d: int) -> dict:
    """Exact mean and median of |cos| of two independent N(0, I_d) vectors."""
    d = int(d)
    if d < 1:
        raise InputError(f"channel dimension must be ≥ 1, got {d}")
    if d == 1:
        return {"mean": 1.0, "median": 1.0}
    mean = math.exp(special.gammaln(d / 2) - special.gammaln((d + 1) / 2)) / math.sqrt(math.pi)
    median = math.sqrt(float(special.betaincinv(0.5, (d - 1) / 2, 0.5)))
    return {"mean": mean, "median": median}


def channel_vectors(R: np.ndarray, shape, paired: bool = False) -> np.ndarray:
    """Signals R (n, m) [or (2n, m) paired] → array (locations, d, m) of channel vectors."""
    shape = tuple(shape)
    m = R.shape[1]
    if paired:                      # + locations first, then − locations, each with its own channels
        if len(shape) == 3:
            C, H, W = shape
            return R.reshape(2, C, H * W, m).transpose(0, 2, 1, 3).reshape(2 * H * W, C, m)
        return R.reshape(2, -1, m)
    if len(shape) == 3:
        C, H, W = shape
        return R.reshape(C, H * W, m).transpose(1, 0, 2)
    return R.reshape(1, -1, m)


def _pairs(n_pairs: int):
    m = 2
    while m * (m - 1) // 2 < n_pairs:
        m += 1
    return m, list(itertools.combinations(range(m), 2))[:n_pairs]


def abs_cosines(R: np.ndarray, shape, pairs, paired: bool = False):
    """|cos| of the channel vectors of the signal pairs ``pairs`` at every location (numba kernel
    :func:`chainlab.linalg.channel_cosine`); signals R (n, m), or (2n, m) stacked (+, −) when ``paired``.
    Returns (values, n_dropped): locations where either vector is zero are dropped and counted."""
    shape = tuple(shape)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    cs = (int(shape[0]),) + shape[1:] if len(shape) == 3 else (int(np.prod(shape)),)
    parts = np.split(np.asarray(R), 2) if paired else [np.asarray(R)]
    vals, dropped = [], 0
    for X in parts:
        c = channel_cosine(X, cs, pairs).T.reshape(-1)        # pair-major
        ok = ~np.isnan(c)
        dropped += int((~ok).sum())
        vals.append(np.minimum(c[ok], 1.0))
    return np.concatenate(vals), dropped


def csc_values(chain, k: int, *, pairs: int = 10, seed: int = 0, injections: np.ndarray | None = None):
    """{j: (|cos| values, n_dropped, d)} for injection boundary k (1 ≤ k ≤ L) and every j < k."""
    L = len(chain)
    if not 1 <= k <= L:
        raise InputError(f"injection layer k must be in 1..{L} (boundaries after layers), got {k}")
    paired = bool(getattr(chain, "paired", False))
    n_k = chain[k - 1].shape[1]
    m, pair_list = _pairs(pairs)
    if injections is None and paired:
        v = np.random.default_rng(seed).standard_normal((n_k // 2, m))
        V = np.vstack([v, v])                                   # tied ± injection, see module docstring
    elif injections is None:
        V = np.random.default_rng(seed).standard_normal((n_k, m))
    else:
        V = np.asarray(injections, dtype=np.float64)
        if V.ndim != 2 or V.shape[0] != n_k:
            raise InputError(f"injections for layer {k} ('{layer_label(chain, k - 1)}') need {n_k} rows, "
                             f"got shape {V.shape}")
        m = V.shape[1]
        pair_list = list(itertools.combinations(range(m), 2))[:pairs]
    linear = getattr(chain, "linear", True)
    out = {}
    R = V
    for j in range(k - 1, -1, -1):
        # one layer at a time: r_j = M_(j+1) r_(j+1) (non-linear chains: their own rectified step)
        R = np.asarray(chain[j].matmat(R)) if linear else np.asarray(chain.apply(R, start=j, stop=j + 1))
        shape = chain.shapes[j]
        vals, dropped = abs_cosines(R, shape, pair_list, paired)
        d = shape[0] if len(shape) == 3 else int(np.prod(shape))
        out[j] = (vals, dropped, d)
    return out


def csc(chains, *, layers=None, pairs: int = 10, images: int = 200, seed: int = 0,
        quantiles=(0.25, 0.75)) -> list[dict]:
    """CSC records per (net, rule, injection k, boundary j), pooled over up to ``images`` chains.

    ``chains``: one Chain, a list, or any iterable — it is consumed one chain at a time and no chain is
    kept, so a generator that extracts per image measures hundreds of large chains in the memory of one.
    Chains of different nets/rules are grouped by (chain.meta["net"], chain.rule).
    ``layers``: injection boundaries k (default: every k = 1..L; k = L injects at the logits); a
    negative k counts from the top, as in Python indexing of the boundaries 1..L (−1 = L, the logits).
    Quantities: ``csc`` (median |cos|), ``1-csc``, ``baseline`` (median |cos| of random vectors
    of the same d), ``baseline_mean``; extras n_values, n_dropped, d, q25/q75, n_images, to = name of
    the layer whose input boundary j is (j = 0: the input).
    """
    if not isinstance(chains, (list, tuple)) and hasattr(chains, "operators"):
        chains = [chains]
    groups = {}                 # (net, rule) -> {"labels", "n", "pooled": {k: {j: [vals list, dropped, d]}}}
    for ch in chains:
        key = ((ch.meta or {}).get("net"), ch.rule)
        g = groups.get(key)
        if g is None:
            L = len(ch)
            g = groups[key] = {"labels": [layer_label(ch, i) for i in range(L)], "n": 0, "ref": _GroupRef(ch, *key),
                               "ks": list(range(1, L + 1)) if layers is None
                               else [int(k) if int(k) > 0 else L + 1 + int(k) for k in layers],
                               "pooled": defaultdict(lambda: defaultdict(lambda: [[], 0, None]))}
        if g["n"] >= images:
            continue
        i = g["n"]
        g["n"] += 1
        for k in g["ks"]:
            for j, (vals, dropped, d) in csc_values(ch, k, pairs=pairs, seed=seed + 7919 * i).items():
                acc = g["pooled"][k][j]
                acc[0].append(vals)
                acc[1] += dropped
                acc[2] = d
    rows = []
    for (net, rule), g in groups.items():
        for k in g["ks"]:
            pooled = g["pooled"][k]
            for j in sorted(pooled):
                vals_l, dropped, d = pooled[j]
                vals = np.concatenate(vals_l) if vals_l else np.zeros(0)
                base = random_baseline(d)
                extra = dict(n_values=int(vals.size), n_dropped=int(dropped), d=d, n_images=g["n"],
                             to="input" if j == 0 else g["labels"][j - 1], inject=g["labels"][k - 1])
                if vals.size:
                    med = float(np.median(vals))
                    qs = {f"q{int(q * 100)}": float(np.quantile(vals, q)) for q in quantiles}
                else:
                    med, qs = None, {}
                proto = g["ref"]
                rows.append(record(proto, "csc", "csc", j, k, med, **extra, **qs))
                rows.append(record(proto, "csc", "1-csc", j, k, None if med is None else 1.0 - med, **extra))
                rows.append(record(proto, "csc", "baseline", j, k, base["median"], **extra))
                rows.append(record(proto, "csc", "baseline_mean", j, k, base["mean"], **extra))
    return rows


class _GroupRef:
    """Record source for pooled rows: net and rule of the group, image None (pooled)."""

    def __init__(self, chain, net, rule):
        self.rule = rule
        self.meta = {"net": net, "image": None}


# -------------------------------------------------------------------------------------------------
# batched signals (chainlab.extraction.extract_batch): the gaps 1 − |cos| and their summary

HIST_EDGES = (0.9, 0.99, 0.999, 0.9999)     # Sixt's Fig. 5e–g bins of |cos|: <.9, [.9,.99), …, [.9999, 1]


def hist_bin(cos) -> np.ndarray:
    """The Fig. 5e–g bin of each |cos| value: k with HIST_EDGES[k−1] ≤ |cos| < HIST_EDGES[k] (0 below the first
    edge, len(HIST_EDGES) at or above the last); same shape as ``cos``."""
    return np.searchsorted(np.asarray(HIST_EDGES), cos, side="right")


def pair_list(vectors: int, pairs: int | None = None) -> np.ndarray:
    """The first ``pairs`` (default all) index pairs of ``itertools.combinations(range(vectors), 2)``."""
    pl = list(itertools.combinations(range(int(vectors)), 2))
    return np.asarray(pl[:pairs] if pairs is not None else pl, dtype=np.int64).reshape(-1, 2)


def cosine_gaps(S, shape, pairs) -> np.ndarray:
    """1 − |cos| of the channel vectors of signal pairs at every location, for the signals S (B, m, *shape) of
    B inputs (m per input): a conv boundary (C, H, W) has H·W locations with C channels, a flat one is one
    location.  Computed in float64 from the Gram matrix of the unit vectors (float64 resolution ~1e-16;
    float32 signals resolve ~1e-14).  NaN where either vector is zero.  Returns (B, pairs, locations)."""
    shape = tuple(shape)
    S = np.asarray(S)
    B, m = S.shape[:2]
    C, L = (shape[0], int(np.prod(shape[1:]))) if len(shape) == 3 else (int(np.prod(shape)), 1)
    X = S.reshape(B, m, C, L).astype(np.float64)
    n = np.sqrt(np.einsum("bmcl,bmcl->bml", X, X))                            # (B, m, L)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    gap = np.empty((B, len(pairs), L))
    with np.errstate(invalid="ignore", divide="ignore"):
        for p, (a, b) in enumerate(pairs):
            cos = np.einsum("bcl,bcl->bl", X[:, a], X[:, b]) / (n[:, a] * n[:, b])
            g = np.clip(1.0 - np.abs(cos), 0.0, 1.0)
            g[~np.isfinite(cos)] = np.nan
            gap[:, p] = g
    return gap


def csc_summary(gaps, d: int, quantiles=(0.25, 0.75)) -> dict:
    """CSC of pooled gaps (NaN = zero vectors, dropped and counted): {csc = median |cos| = 1 − median gap,
    gap = 1 − csc, baseline (median |cos| of random vectors in R^d), n_values, n_dropped, q25/q75 (of |cos|),
    hist (fractions of |cos| in Sixt's Fig. 5e–g bins)}."""
    g = np.concatenate([np.asarray(x, dtype=np.float64).reshape(-1) for x in gaps]) if len(gaps) else np.zeros(0)
    ok = ~np.isnan(g)
    v = g[ok]
    out = {"n_values": int(v.size), "n_dropped": int((~ok).sum()), "d": int(d),
           "baseline": random_baseline(d)["median"]}
    if not v.size:
        return {**out, "csc": None, "gap": None}
    med = float(np.median(v))
    out.update(csc=1.0 - med, gap=med)
    for q in quantiles:
        out[f"q{int(q * 100)}"] = 1.0 - float(np.quantile(v, 1.0 - q))
    out["hist"] = [float(n) / v.size for n in np.bincount(hist_bin(1.0 - v), minlength=len(HIST_EDGES) + 1)]
    return out
