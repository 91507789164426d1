"""Convergence of averaged attributions (Binder et al.): SmoothGrad and non-geometric augmentations.

For perturbed copies x_1, x_2, … of one input (``perturbation``):
    "smoothgrad":  x + N(0, (σ·(hi − lo))²) per value,   σ = level
    "noise":       x + U(−a, a) per value,                a = level
    "brightness":  x + U(−a, a) (one shift per copy)
    "contrast":    mean(x) + (x − mean(x))·U(1 − a, 1 + a)
the attributions A_i = explanation of the same logit t (default: the prediction at x) under the rule.
The mean of the first N, m_N, is compared with a reference mean over ``n_ref`` further independent
copies: sup-error e(N) = ‖m_N − m_ref‖_∞.

Hoeffding + union bound: if every component of A_i lies in [−B, B], then
    P(‖m_N − E A‖_∞ ≥ t) ≤ 2d·exp(−N t²/(2B²)),
so N ≥ 2B² ln(2d/δ)/t² copies give sup-error ≤ t with probability ≥ 1 − δ; equivalently at N the
guaranteed error is t(N) = B·√(2 ln(2d/δ)/N).  B is taken from the value bounds:
B = max_i Π_l ‖M_l(x_i)‖₁ · ‖r_L(x_i)‖₁ over the copies (≥ every |A_i| component, see ``bounds``).
Records (``measure="averages"``, k = N): ``sup_error``, ``hoeffding_t``; per run ``B``,
``hoeffding_N`` (for t = ``t`` or 5 % of B), ``exceed_fraction`` (share of N with e(N) > t(N), expected ≈ 0).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import BoundViolationError, InputError, OptionError
from ..extraction import extract as _extract
from ..measures._common import record
from ..measures.bounds import norm1

__all__ = ["averages", "hoeffding_samples", "perturb", "PERTURBATIONS"]

PERTURBATIONS = ("smoothgrad", "noise", "brightness", "contrast")


def hoeffding_samples(B: float, d: int, t: float, delta: float) -> int:
    """Smallest N with 2d·exp(−N t²/(2B²)) ≤ δ, i.e. N = ⌈2B² ln(2d/δ)/t²⌉."""
    if not (B >= 0 and t > 0 and 0 < delta < 1 and d >= 1):
        raise InputError(f"need B ≥ 0, t > 0, 0 < δ < 1, d ≥ 1; got B={B}, t={t}, δ={delta}, d={d}")
    return int(math.ceil(2 * B * B * math.log(2 * d / delta) / (t * t)))


def perturb(x: np.ndarray, kind: str, level: float, rng, bounds=(0.0, 1.0)) -> np.ndarray:
    """One perturbed copy of x (see module docstring)."""
    lo, hi = bounds
    if kind == "smoothgrad":
        return x + rng.normal(0.0, level * (hi - lo), size=x.shape)
    if kind == "noise":
        return x + rng.uniform(-level, level, size=x.shape)
    if kind == "brightness":
        return x + rng.uniform(-level, level)
    if kind == "contrast":
        m = x.mean()
        return m + (x - m) * rng.uniform(1 - level, 1 + level)
    raise OptionError(f"unknown perturbation {kind!r}; known: {', '.join(PERTURBATIONS)}")


def averages(model, x, rule, *, perturbation: str = "smoothgrad", level: float = 0.1, n: int = 64,
             n_ref: int | None = None, delta: float = 0.05, t: float | None = None, target=None, seed: int = 0,
             input_bounds=(0.0, 1.0), extract=_extract, net=None, image=None, **extract_options) -> list[dict]:
    """Empirical sup-error of the mean attribution vs N, against the Hoeffding level (records)."""
    if perturbation not in PERTURBATIONS:
        raise OptionError(f"unknown perturbation {perturbation!r}; known: {', '.join(PERTURBATIONS)}")
    if n < 1:
        raise OptionError(f"n must be ≥ 1, got {n}")
    n_ref = n if n_ref is None else int(n_ref)
    x0 = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    base = extract(model, x0, rule, **extract_options)
    t_logit = base.predicted if target is None else int(target)
    A, Bs = [], []
    for _ in range(n + n_ref):
        xi = perturb(x0, perturbation, level, rng, input_bounds)
        ch = extract(model, xi, rule, **extract_options)
        r = ch.start_vector(t_logit)
        A.append(ch.apply(r).reshape(-1))
        Bs.append(math.prod(norm1(op) for op in ch) * float(np.abs(r).sum()))
    A = np.asarray(A)
    B = max(Bs)
    if np.abs(A).max() > B * (1 + 1e-7):
        raise BoundViolationError(f"an attribution component {np.abs(A).max():.6g} exceeds B = {B:.6g}")
    d = A.shape[1]
    ref = A[n:].mean(axis=0)
    cums = np.cumsum(A[:n], axis=0) / np.arange(1, n + 1)[:, None]
    Ns = sorted({int(v) for v in np.unique(np.geomspace(1, n, num=min(n, 12)).astype(int))} | {n})
    meta = {"net": net, "image": image}

    class _Src:
        pass
    src = _Src()
    src.rule, src.meta = base.rule, {**base.meta, **{k: v for k, v in meta.items() if v is not None}}
    rows, exceed = [], 0
    for N in Ns:
        err = float(np.abs(cums[N - 1] - ref).max())
        tN = B * math.sqrt(2 * math.log(2 * d / delta) / N)
        exceed += err > tN
        ex = dict(perturbation=perturbation, level=level, delta=delta)
        rows += [record(src, "averages", "sup_error", None, N, err, **ex),
                 record(src, "averages", "hoeffding_t", None, N, tN, **ex)]
    t_use = t if t is not None else 0.05 * B
    ex = dict(perturbation=perturbation, level=level, delta=delta, n_ref=n_ref, d=d)
    rows += [record(src, "averages", "B", None, None, B, **ex),
             record(src, "averages", "hoeffding_N", None, None,
                    hoeffding_samples(B, d, t_use, delta) if B > 0 else 0, t=t_use, **ex),
             record(src, "averages", "exceed_fraction", None, None, exceed / len(Ns), **ex)]
    return rows
