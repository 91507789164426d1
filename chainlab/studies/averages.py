"""Convergence of averaged attributions (Binder et al.): SmoothGrad and non-geometric augmentations.

Perturbed copies x_1, x_2, … of one input x (``perturbation``, level a; every copy is clipped to the data
box [lo, hi] = ``input_bounds``, which makes the support bounded, see :mod:`.ranges`):
    "smoothgrad":  x + N(0, (a·(hi − lo))²) per value
    "noise":       x + U(−a, a) per value
    "brightness":  x + U(−a, a) (one shift per copy)
    "contrast":    mean(x) + (x − mean(x))·U(1 − a, 1 + a)
and their attributions A_j = R(x_j) ∈ ℝ^d for one logit t (default: the prediction at x), r_L as the rule's
start vector at x_j.

Hoeffding + union bound: if every component of A_j lies in [−B, B] then for the mean m_N of N copies
    P(‖m_N − E A‖_∞ ≥ t) ≤ 2d·exp(−N t²/(2B²)),
so with probability ≥ 1 − δ the sup-error is below t(N) = B·√(2 ln(2d/δ)/N), and N ≥ 2B² ln(2d/δ)/t²
copies suffice for error t (:func:`hoeffding_samples`).  The a-priori constant of e(N)·√N is therefore
K_apriori = B·√(2 ln(2d/δ)).

B is fixed before sampling: by default the a-priori range of :func:`.ranges.apriori_range` (chain bound ×
interval bounds of the support); a B given by the caller is used as is (a too small B is reported in
``range_exceeded``, never silently widened).  An a-priori B below an observed component is a bug
(BoundViolationError).

Estimate of E A: a pool of P = n + n_ref independent copies.  For each N of the grid (powers of two up to
n, and n) the pool is cut into ⌊P/N⌋ disjoint groups g of N copies; each group's mean m_g is compared with
the mean of the P − N other copies (the reference, independent of g and far larger than N):
    e_g(N) = ‖m_g − m_(P∖g)‖_∞ ≤ ‖m_g − E A‖_∞ + ‖m_(P∖g) − E A‖_∞ ≤ t(N) + t(P − N)
with probability ≥ 1 − 2δ (two Hoeffding events), and e(N) = mean_g e_g(N).

Records (``measure="averages"``), per N (k = N): ``sup_error`` e(N), ``sup_error_max`` max_g e_g(N),
``hoeffding_t`` t(N), ``hoeffding_t_ref`` t(P − N), ``error_bound`` t(N) + t(P − N), ``sqrtN_error``
e(N)·√N; per run: ``B`` (extra ``B_source`` "apriori" | "given"), ``range_max`` max_j ‖A_j‖_∞,
``range_exceeded`` (share of copies with a component above B), ``exceed_fraction`` (share of groups
with e_g > t(N) + t(P − N), all N), ``rate_slope`` (least-squares slope of log e(N) on log N; −1/2 for the
Hoeffding/CLT rate), ``K_fit`` (median over N of e(N)√N), ``K_apriori`` B·√(2 ln(2d/δ)), ``start_norm`` s =
‖r_L(x)‖₁ at the unperturbed x (|f_t(x)| for relevance rules, 1 for gradient-space rules), ``K_rel`` =
K_fit / s and ``K_apriori_rel`` = K_apriori / s (the constants per unit of logit: comparable across nets),
``weight_norm_product`` Π‖W_l‖_∞, ``hoeffding_N`` (copies for error t = ``t`` or 5 % of B), and ``K_rel_boot``
(k = replicate b): K_rel recomputed on a bootstrap resample of the pool (copies drawn with replacement).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import BoundViolationError, InputError, OptionError
from ..extraction import extract as _extract
from ..measures import weight_norm_product
from ..measures._common import record
from .ranges import PERTURBATIONS, apriori_range

__all__ = ["averages", "hoeffding_samples", "hoeffding_t", "perturb", "group_errors", "PERTURBATIONS"]


def hoeffding_samples(B: float, d: int, t: float, delta: float) -> int:
    """Smallest N with 2d·exp(−N t²/(2B²)) ≤ δ, i.e. N = ⌈2B² ln(2d/δ)/t²⌉."""
    if not (B >= 0 and t > 0 and 0 < delta < 1 and d >= 1):
        raise InputError(f"need B ≥ 0, t > 0, 0 < δ < 1, d ≥ 1; got B={B}, t={t}, δ={delta}, d={d}")
    return int(math.ceil(2 * B * B * math.log(2 * d / delta) / (t * t)))


def hoeffding_t(B: float, d: int, N: int, delta: float) -> float:
    """t(N) = B·√(2 ln(2d/δ)/N): the sup-error guaranteed with probability ≥ 1 − δ."""
    return B * math.sqrt(2 * math.log(2 * d / delta) / N)


def perturb(x: np.ndarray, kind: str, level: float, rng, bounds=(0.0, 1.0)) -> np.ndarray:
    """One perturbed copy of x, clipped to the box ``bounds`` (see module docstring)."""
    lo, hi = bounds
    if kind == "smoothgrad":
        y = x + rng.normal(0.0, level * (hi - lo), size=x.shape)
    elif kind == "noise":
        y = x + rng.uniform(-level, level, size=x.shape)
    elif kind == "brightness":
        y = x + rng.uniform(-level, level)
    elif kind == "contrast":
        m = x.mean()
        y = m + (x - m) * rng.uniform(1 - level, 1 + level)
    else:
        raise OptionError(f"unknown perturbation {kind!r}; known: {', '.join(PERTURBATIONS)}")
    return np.clip(y, lo, hi)


def group_errors(A: np.ndarray, N: int) -> np.ndarray:
    """e_g(N) = ‖mean of group g − mean of the other copies‖_∞ for the ⌊P/N⌋ disjoint groups of N rows of A."""
    P = A.shape[0]
    G = P // N
    if G < 1 or P - N < 1:
        raise InputError(f"a pool of {P} copies has no group of {N} with a reference left")
    total = A.sum(axis=0)
    means = A[: G * N].reshape(G, N, -1).mean(axis=1)
    ref = (total[None, :] - N * means) / (P - N)
    return np.abs(means - ref).max(axis=1)


def _grid(n):
    Ns = {1 << k for k in range(int(math.log2(n)) + 1)} | {n}
    return sorted(N for N in Ns if N <= n)


def _k_fit(A, Ns):
    return float(np.median([group_errors(A, N).mean() * math.sqrt(N) for N in Ns]))


def _slope(Ns, errs):
    if len(Ns) < 2 or min(errs) <= 0:
        return None
    return float(np.polyfit(np.log(Ns), np.log(errs), 1)[0])


def averages(model, x, rule, *, perturbation: str = "smoothgrad", level: float = 0.1, n: int = 16,
             n_ref: int | None = None, delta: float = 0.05, B: float | None = None, t: float | None = None,
             target=None, seed: int = 0, input_bounds=(0.0, 1.0), n_boot: int = 100, label: str | None = None,
             extract=_extract, net=None, image=None, **extract_options) -> list[dict]:
    """Sup-error of the mean attribution over N perturbed copies against the Hoeffding level, with the
    expectation from a reference pool (records; see the module docstring).

    ``n``: the largest N; ``n_ref``: reference copies at N = n (default 8n; the pool has n + n_ref copies);
    ``B``: the range (default: a-priori); ``label``: the ``rule`` field of the records (default the chain's
    rule name); ``extract``: the extraction callable.
    """
    if perturbation not in PERTURBATIONS:
        raise OptionError(f"unknown perturbation {perturbation!r}; known: {', '.join(PERTURBATIONS)}")
    if int(n) < 1:
        raise OptionError(f"n must be ≥ 1, got {n}")
    n = int(n)
    n_ref = 8 * n if n_ref is None else int(n_ref)
    if n_ref < 1:
        raise OptionError(f"n_ref must be ≥ 1, got {n_ref}")
    if not 0 < delta < 1:
        raise OptionError(f"delta must be in (0, 1), got {delta}")
    x0 = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    base = extract(model, x0, rule, **extract_options)
    t_logit = base.predicted if target is None else int(target)
    s = float(np.abs(base.start_vector(t_logit)).sum())
    if B is None:
        B, source = apriori_range(model, base, perturbation, level, input_bounds, t_logit)["B"], "apriori"
    else:
        B, source = float(B), "given"
        if not B > 0:
            raise OptionError(f"the range B must be positive, got {B}")
    rng = np.random.default_rng(seed)
    P = n + n_ref
    A = np.empty((P, base.n_input))
    for j in range(P):
        ch = extract(model, perturb(x0, perturbation, level, rng, input_bounds), rule, **extract_options)
        A[j] = ch.apply(ch.start_vector(t_logit)).reshape(-1)
    amax = np.abs(A).max(axis=1)
    exceeded = float((amax > B * (1 + 1e-9)).mean())
    if source == "apriori" and exceeded > 0:
        raise BoundViolationError(f"an attribution component {amax.max():.9g} exceeds the a-priori range B = {B:.9g} "
                                  f"(rule {base.rule!r}, perturbation {perturbation!r})")
    d = A.shape[1]
    Ns = _grid(n)
    src = base
    src.meta.update({k: v for k, v in (("net", net), ("image", image)) if v is not None})
    ex = dict(perturbation=perturbation, level=level, delta=delta)
    if label is not None:
        ex["rule_name"] = base.rule
    rows, errs, n_groups, n_exceed = [], [], 0, 0
    for N in Ns:
        eg = group_errors(A, N)
        tN, tR = hoeffding_t(B, d, N, delta), hoeffding_t(B, d, P - N, delta)
        n_groups += eg.size
        n_exceed += int((eg > tN + tR).sum())
        errs.append(float(eg.mean()))
        rows += [record(src, "averages", "sup_error", None, N, errs[-1], **ex),
                 record(src, "averages", "sup_error_max", None, N, float(eg.max()), **ex),
                 record(src, "averages", "hoeffding_t", None, N, tN, **ex),
                 record(src, "averages", "hoeffding_t_ref", None, N, tR, n_ref=P - N, **ex),
                 record(src, "averages", "error_bound", None, N, tN + tR, **ex),
                 record(src, "averages", "sqrtN_error", None, N, errs[-1] * math.sqrt(N), **ex)]
    K = float(np.median([e * math.sqrt(N) for e, N in zip(errs, Ns)]))
    Ka = B * math.sqrt(2 * math.log(2 * d / delta))
    t_use = t if t is not None else 0.05 * B
    boot = np.random.default_rng(seed + 1)
    reps = [_k_fit(A[boot.integers(0, P, P)], Ns) / s if s > 0 else None for _ in range(n_boot)]
    run = dict(ex, n=n, n_ref=n_ref, pool=P, d=d, target=t_logit, B_source=source)
    rows += [record(src, "averages", "B", None, None, B, **run),
             record(src, "averages", "range_max", None, None, float(amax.max()), **run),
             record(src, "averages", "range_exceeded", None, None, exceeded, **run),
             record(src, "averages", "exceed_fraction", None, None, n_exceed / n_groups, **run),
             record(src, "averages", "rate_slope", None, None, _slope(Ns, errs), **run),
             record(src, "averages", "K_fit", None, None, K, **run),
             record(src, "averages", "K_apriori", None, None, Ka, **run),
             record(src, "averages", "start_norm", None, None, s, **run),
             record(src, "averages", "K_rel", None, None, K / s if s > 0 else None, **run),
             record(src, "averages", "K_apriori_rel", None, None, Ka / s if s > 0 else None, **run),
             record(src, "averages", "weight_norm_product", None, None, weight_norm_product(base), **run),
             record(src, "averages", "hoeffding_N", None, None, hoeffding_samples(B, d, t_use, delta), t=t_use,
                    **run)]
    rows += [record(src, "averages", "K_rel_boot", None, b, v, **ex) for b, v in enumerate(reps)]
    if label is not None:
        for r in rows:
            r["rule"] = label
    return rows
