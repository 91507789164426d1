"""Trends across nets: log–log slopes of a measured quantity against a per-net covariate, with bootstrap CIs.

For groups g (nets) with covariate x_g > 0 (e.g. Π_l ‖W_l‖_∞) and a positive per-group statistic y_g,
the trend is the least-squares slope of log y on log x,

    b = Σ_g (u_g − ū)(v_g − v̄) / Σ_g (u_g − ū)²,   u = log x,  v = log y,

so y ∝ x^b: b ≈ 1 means y follows x proportionally, b ≈ 0 that y does not depend on x.

Uncertainty (:func:`bootstrap_slope`): y_g is a statistic (``reduce``, default the maximum: the sup over an
input set) of per-unit values y_{g,u} over units u (images) that all groups share; B bootstrap replicates
draw the units with replacement — one draw for all groups (paired design) — and recompute y_g and b; the
percentile interval of the replicates is the CI.  :func:`replicate_slope` combines per-group replicates
that were drawn independently per group (e.g. a bootstrap over the perturbed copies of each net): replicate
b pairs the b-th replicate of every group.

:func:`unit_values` turns tidy records into the {group: {unit: value}} table these take.
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

__all__ = ["loglog_slope", "bootstrap_slope", "replicate_slope", "unit_values", "spread"]

REDUCERS = {"max": np.max, "median": np.median, "mean": np.mean}


def loglog_slope(x, y):
    """Least-squares slope of log y on log x; None with fewer than two distinct positive x or a y ≤ 0."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() != x.size or x.size < 2:
        return None
    u, v = np.log(x), np.log(y)
    du = u - u.mean()
    den = float(du @ du)
    if den <= 1e-24:
        return None
    return float(du @ (v - v.mean()) / den)


def spread(values) -> float | None:
    """max / min of positive values (the width of the band they occupy); None if any is ≤ 0 or missing."""
    v = [float(a) for a in values if a is not None]
    if not v or min(v) <= 0:
        return None
    return max(v) / min(v)


def _ci(reps, level):
    reps = np.asarray([r for r in reps if r is not None and math.isfinite(r)])
    if reps.size < 10:
        return None, None
    a = (1 - level) / 2
    return float(np.quantile(reps, a)), float(np.quantile(reps, 1 - a))


def bootstrap_slope(values: dict, xs: dict, *, reduce: str = "max", n_boot: int = 1000, seed: int = 0,
                    level: float = 0.95) -> dict:
    """Slope of log(reduce_u y_{g,u}) on log x_g with a paired bootstrap over the units (see module docstring).

    ``values``: {group: {unit: value}}; ``xs``: {group: x}.  Groups without x or values are left out; the
    units used are those every remaining group has.  Returns {slope, lo, hi, n_groups, n_units, y: {group:
    statistic}, x: {group: x}, spread: max/min of the statistics}.
    """
    fn = REDUCERS[reduce]
    groups = sorted(g for g in values if xs.get(g) is not None and values[g])
    units = sorted(set.intersection(*(set(values[g]) for g in groups)), key=str) if groups else []
    out = {"slope": None, "lo": None, "hi": None, "n_groups": len(groups), "n_units": len(units), "y": {},
           "x": {g: xs[g] for g in groups}, "spread": None}
    if not groups or not units:
        return out
    Y = np.array([[values[g][u] for u in units] for g in groups], dtype=np.float64)   # groups × units
    x = np.array([xs[g] for g in groups], dtype=np.float64)
    y = fn(Y, axis=1)
    out["y"] = {g: float(v) for g, v in zip(groups, y)}
    out["spread"] = spread(y)
    out["slope"] = loglog_slope(x, y)
    if out["slope"] is None:
        return out
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(units), len(units))
        reps.append(loglog_slope(x, fn(Y[:, idx], axis=1)))
    out["lo"], out["hi"] = _ci(reps, level)
    return out


def replicate_slope(point: dict, reps: dict, xs: dict, *, level: float = 0.95) -> dict:
    """Slope of log point_g on log x_g; CI from the slopes of the b-th replicates of every group.

    ``point``: {group: value}; ``reps``: {group: sequence of bootstrap replicates of that value, drawn
    independently per group}; ``xs``: {group: x}.  Returns {slope, lo, hi, n_groups, y, x, spread}."""
    groups = sorted(g for g in point if xs.get(g) is not None and point[g] is not None)
    out = {"slope": None, "lo": None, "hi": None, "n_groups": len(groups), "y": {g: point[g] for g in groups},
           "x": {g: xs[g] for g in groups}, "spread": spread([point[g] for g in groups])}
    if len(groups) < 2:
        return out
    x = np.array([xs[g] for g in groups], dtype=np.float64)
    out["slope"] = loglog_slope(x, [point[g] for g in groups])
    n = min(len(reps.get(g, ())) for g in groups)
    if n:
        R = np.array([np.asarray(reps[g][:n], dtype=np.float64) for g in groups])
        out["lo"], out["hi"] = _ci([loglog_slope(x, R[:, b]) for b in range(n)], level)
    return out


def unit_values(records, quantity: str, *, group=("net", "rule"), unit="image", reduce: str = "max",
                measure: str | None = None) -> dict:
    """{group tuple: {unit: reduce of the values}} of the records of ``quantity`` (e.g. the max of an image's
    constants over its perturbed copies); records with a None value are skipped."""
    fn = REDUCERS[reduce]
    acc = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.get("quantity") != quantity or (measure is not None and r.get("measure") != measure):
            continue
        v = r.get("value")
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            continue
        acc[tuple(r.get(k) for k in group)][r.get(unit)].append(float(v))
    return {g: {u: float(fn(vs)) for u, vs in d.items()} for g, d in acc.items()}
