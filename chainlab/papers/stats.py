"""The statistics verdicts are decided on: intervals whose resampling unit is the claim's (images, pairs, seeds).

Each function returns an :class:`~chainlab.papers.verdict.Estimate` (value, lo, hi, level, n, unit, method).

* :func:`median_ci` / :func:`quantile_ci` — distribution-free intervals from order statistics: for i.i.d.
  units the number of values below the q-quantile is Binomial(n, q), so with
  l = max{l : P(B ≤ l − 1) ≤ α/2} and u = min{u : P(B ≥ u) ≤ α/2} (B ~ Bin(n, q)),
  P(x_(l) ≤ ξ_q ≤ x_(u)) ≥ 1 − α.  When n is too small for the level (l = 0 or u = n + 1) the open
  side is ±inf: the interval has no coverage there, and a decision on it is inconclusive.
* :func:`mean_ci` — Student's t interval mean ± t_{1−α/2, n−1} s/√n (n ≥ 2), for a handful of independent
  replications such as training seeds (the seed is the unit: one number per seed).
* :func:`bca_ci` — bias-corrected and accelerated bootstrap (Efron 1987) of any statistic of the rows of a
  data array (the rows are the units, resampled jointly: a paired design): z₀ = Φ⁻¹(#{θ*_b < θ̂} + ½#{θ*_b = θ̂})/B),
  acceleration a = Σ(θ̄ − θ₍ᵢ₎)³ / (6 [Σ(θ̄ − θ₍ᵢ₎)²]^{3/2}) from the jackknife, and the interval's ends are the
  bootstrap quantiles at Φ(z₀ + (z₀ + z_α)/(1 − a(z₀ + z_α))).  The point estimate always lies inside.
* :func:`loglog_slope`, :func:`slope_over_seeds` — y ∝ x^b: least-squares slope of log y on log x, fitted per
  seed; the interval is :func:`mean_ci` of the per-seed slopes.
* :func:`spearman` — Spearman's ρ with average ranks (0 when either side is constant).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr, ndtri
from scipy.stats import binom, rankdata
from scipy.stats import t as student_t

from .verdict import Estimate

__all__ = ["median_ci", "quantile_ci", "mean_ci", "bca_ci", "loglog_slope", "slope_over_seeds", "spearman",
           "finite"]


def finite(values) -> np.ndarray:
    """The finite entries of ``values`` as float64 (None, NaN and ±inf left out)."""
    a = np.asarray([np.nan if v is None else v for v in np.ravel(np.asarray(values, dtype=object))], dtype=np.float64)
    return a[np.isfinite(a)]


def quantile_ci(values, q: float = 0.5, level: float = 0.95, unit: str = "units") -> Estimate:
    """The q-quantile of ``values`` (finite ones; numpy's linear interpolation) and its exact order-statistic
    interval (module docstring)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must lie in (0, 1), got {q}")
    x = np.sort(finite(values))
    n = x.size
    method = "exact order statistics"
    if n == 0:
        return Estimate(None, None, None, level, 0, unit, method)
    alpha = 1.0 - level
    ks = np.arange(n + 2)                            # equivalent mutant: ranks beyond n + 1 never qualify first
    # 1-based ranks of the ends; rank 0 → −inf and rank n + 1 → +inf always qualify (P(B ≤ −1) = P(B ≥ n + 1) = 0)
    below = binom.cdf(ks - 1, n, q)                  # P(B ≤ k − 1) for k = 0 … n + 1
    lo_rank = int(np.nonzero(below <= alpha / 2)[0].max())  # equivalent mutant: ≤ vs < only at cdf == α/2
    above_ = binom.sf(ks - 1, n, q)                  # P(B ≥ k)
    hi_rank = int(np.nonzero(above_ <= alpha / 2)[0].min())  # equivalent mutant: ≤ vs < only at sf == α/2
    lo = -math.inf if lo_rank < 1 else float(x[lo_rank - 1])
    hi = math.inf if hi_rank > n else float(x[hi_rank - 1])
    return Estimate(float(np.quantile(x, q)), lo, hi, level, n, unit, method)


def median_ci(values, level: float = 0.95, unit: str = "units") -> Estimate:
    """The median and its exact order-statistic interval (:func:`quantile_ci` at q = ½)."""
    return quantile_ci(values, 0.5, level, unit)


def mean_ci(values, level: float = 0.95, unit: str = "seeds") -> Estimate:
    """Mean ± t_{1−α/2, n−1}·s/√n of the finite values; with one value the interval is (−inf, inf)."""
    x = finite(values)
    n = x.size
    method = "Student t"
    if n == 0:
        return Estimate(None, None, None, level, 0, unit, method)
    m = float(x.mean())
    if n < 2:
        return Estimate(m, -math.inf, math.inf, level, n, unit, method)
    half = float(student_t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return Estimate(m, m - half, m + half, level, n, unit, method)


def bca_ci(data, statistic, *, B: int = 2000, seed: int = 0, level: float = 0.95, unit: str = "units") -> Estimate:
    """BCa interval of ``statistic(rows)`` over the rows of ``data`` (module docstring).  ``data``: array whose
    first axis is the unit; ``statistic``: rows → float.  Degenerate cases (every replicate equal, or fewer than
    3 units) give lo = hi = the estimate only when all replicates equal it, else (−inf, inf)."""
    d = np.asarray(data)
    n = d.shape[0]
    method = f"BCa bootstrap (B = {B})"
    if n == 0:
        return Estimate(None, None, None, level, 0, unit, method)
    theta = float(statistic(d))
    if not math.isfinite(theta):
        return Estimate(theta, None, None, level, n, unit, method)
    rng = np.random.default_rng(seed)
    reps = np.array([statistic(d[rng.integers(0, n, n)]) for _ in range(B)], dtype=np.float64)
    reps = reps[np.isfinite(reps)]
    if reps.size == 0 or n < 3:
        return Estimate(theta, -math.inf, math.inf, level, n, unit, method)
    if np.all(reps == theta):
        return Estimate(theta, theta, theta, level, n, unit, method)
    p0 = (np.sum(reps < theta) + 0.5 * np.sum(reps == theta)) / reps.size
    p0 = min(max(p0, 0.5 / reps.size), 1 - 0.5 / reps.size)
    z0 = float(ndtri(p0))
    jack = np.array([statistic(np.delete(d, i, axis=0)) for i in range(n)], dtype=np.float64)
    jack = jack[np.isfinite(jack)]
    dev = jack.mean() - jack
    den = 6.0 * float(np.sum(dev ** 2)) ** 1.5
    a = float(np.sum(dev ** 3)) / den if den > 0 else 0.0
    ends = []
    for z_a in (ndtri((1 - level) / 2), ndtri(0.5 + level / 2)):
        w = z0 + z_a
        ends.append(float(ndtr(z0 + w / (1 - a * w))))
    lo, hi = (float(np.quantile(reps, p)) for p in ends)
    return Estimate(theta, min(lo, theta), max(hi, theta), level, n, unit, method)


def loglog_slope(x, y) -> float | None:
    """Least-squares slope b of log y on log x (y ∝ x^b); None with fewer than two distinct x or any value ≤ 0 or
    not finite."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size != y.size or x.size < 2 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return None
    if np.any(x <= 0) or np.any(y <= 0):
        return None
    if np.all(x == x[0]):                                      # equivalent mutant: x[1] (all equal either way)
        return None
    u, v = np.log(x), np.log(y)
    du = u - u.mean()
    return float(du @ (v - v.mean()) / float(du @ du))  # equivalent mutant: v + v.mean() (Σ du = 0)


def slope_over_seeds(xs: dict, ys: dict, level: float = 0.95) -> tuple[Estimate, dict]:
    """The log–log slope of y on x fitted per seed, and its t interval over the seeds (the seed is the unit).

    ``xs``, ``ys``: {seed: {group: value}} (e.g. group = the net of a study, x = Π‖W_l‖_∞, y = a constant);
    each seed's slope uses the groups it has in both.  Returns (Estimate over seeds, {seed: slope})."""
    per_seed = {}
    for s in sorted(set(xs) & set(ys), key=str):
        groups = sorted(set(xs[s]) & set(ys[s]), key=str)
        b = loglog_slope([xs[s][g] for g in groups], [ys[s][g] for g in groups])
        if b is not None:
            per_seed[s] = b
    est = mean_ci(list(per_seed.values()), level, unit="seeds")
    return Estimate(est.value, est.lo, est.hi, est.level, est.n, "seeds", "per-seed log-log slope, Student t"), per_seed


def spearman(x, y) -> float:
    """Spearman's ρ of two equally long sequences (average ranks for ties); 0 when either is constant."""
    rx, ry = rankdata(np.asarray(x, dtype=np.float64)), rankdata(np.asarray(y, dtype=np.float64))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry) / den if den > 0 else 0.0
