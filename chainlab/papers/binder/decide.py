"""The decisions of Binder et al.'s claims: per-unit numbers in, :class:`~chainlab.papers.verdict.Decision` out (pure).

Trend of a constant y against the weight norms x = Π_l ‖W_l‖_∞ across the nets of a study, for one rule:

* per net, y_net = the median over its images of the per-image constant (:func:`net_value`);
* per training seed s, the least-squares slope b_s of log y_net on log x_net over the nets of that seed
  (:func:`chainlab.papers.stats.loglog_slope`), y ∝ x^b;
* the estimate: mean of b_s with its Student-t interval over the seeds — the seed is the unit
  (:func:`chainlab.papers.stats.slope_over_seeds`); one seed → (−∞, ∞): inconclusive.

Independence (the LRP-β rules): the interval of b lies in [−band, band] (:func:`~chainlab.papers.verdict.within`).
Distinction (the gradient and LRP-ε): per seed d_s = b_rule,s − mean_β b_β,s (the rule's slope minus the LRP-β
slopes of the same seed, a paired difference), its t interval over seeds above t (= 0).

Robustness, combined per rule by :func:`~chainlab.papers.verdict.agree` (any disagreement → inconclusive):
the interval with all nets, the interval with each net left out (leave-one-net-out: a verdict resting on one
net is not a verdict), and each seed's own slope (an exact number compared with the same threshold).

Controlled group (one net, its weights multiplied by c over a grid; the image is the unit): per image i the
slope b_i of log y_i(c) on log x(c) over the grid; the median of b_i (or of d_i = b_rule,i − mean_β b_β,i) with
its exact order-statistic interval (:func:`chainlab.papers.stats.median_ci`).

A claim's outcome is the Kleene AND (:func:`~chainlab.papers.verdict.all_of`) of its groups' outcomes, each
group the AND of its rules; a group with nothing measured is left out (not checked).
"""
from __future__ import annotations

import math

import numpy as np

from .. import stats
from ..verdict import Decision, Estimate, Part, agree, all_of, above, part, within

__all__ = ["net_value", "trend", "difference", "independence", "distinction", "controlled_slopes",
           "independence_controlled", "distinction_controlled", "combine", "merge_seeds", "within_band"]


def net_value(values) -> float | None:
    """The median of a net's finite per-image values; None when there is none."""
    v = stats.finite(values)
    return float(np.median(v)) if v.size else None


def _tables(ys, xs, drop=()):
    """({seed: {net: x}}, {seed: {net: y_net}}) over the nets not in ``drop`` with a value."""
    X, Y = {}, {}
    for s, nets in ys.items():
        for net, vals in nets.items():
            y = net_value(vals)
            x = xs.get(s, {}).get(net)
            if net in drop or y is None or x is None:
                continue
            X.setdefault(s, {})[net] = x
            Y.setdefault(s, {})[net] = y
    return X, Y


def trend(ys, xs, drop=()) -> tuple[Estimate, dict]:
    """(mean slope over seeds with its t interval, {seed: slope}) of one rule (module docstring).
    ``ys``: {seed: {net: per-image values}}; ``xs``: {seed: {net: Π‖W_l‖_∞}}; ``drop``: nets left out."""
    X, Y = _tables(ys, xs, drop)
    return stats.slope_over_seeds(X, Y)


def difference(ys, refs, xs, drop=()) -> tuple[Estimate, dict]:
    """(mean over seeds of d_s = b_s − mean of the reference rules' b_s, t interval; {seed: d_s}); seeds where a
    slope is missing are left out."""
    _, own = trend(ys, xs, drop)
    ref = [trend(r, xs, drop)[1] for r in refs]
    ds = {}
    for s, b in own.items():
        rb = [r[s] for r in ref if s in r]
        if len(rb) == len(ref) and rb:
            ds[s] = b - float(np.mean(rb))
    est = stats.mean_ci(list(ds.values()), unit="seeds")
    return Estimate(est.value, est.lo, est.hi, est.level, est.n, "seeds", "per-seed slope difference, Student t"), ds


def _nets(ys):
    return sorted({net for nets in ys.values() for net in nets}, key=str)


def _robust(name, estimate_fn, compare, nets, threshold):
    """The combined part of one rule (the full interval, each net left out, each seed), the leave-one-out parts
    whose outcome differs from the full interval's (the ones a reader must see), and {seed: outcome}."""
    est, per_seed = estimate_fn(())
    full = compare(name, est)
    loo = [compare(f"{name}, without {net}", estimate_fn((net,))[0]) for net in nets] if len(nets) > 2 else []
    seeds = {s: compare(name, Estimate.exact(v)).outcome for s, v in per_seed.items()}
    outcome = agree([full.outcome] + [p.outcome for p in loo] + list(seeds.values()))
    return part(name, outcome, est, full.relation, threshold), [p for p in loo if p.outcome is not full.outcome], seeds


def independence(ys, xs, rules, band, threshold="band") -> tuple[list, list, dict]:
    """Parts "slope of rule in [−band, band]" for every rule (combined: module docstring), the leave-one-out
    parts that disagree with the full interval, and {seed: outcome of every rule's own slope}.
    ``ys``: {rule: {seed: {net: per-image values}}}."""
    parts, shown, per_seed = [], [], {}
    for rule in rules:
        def est(drop, rule=rule):
            return trend(ys[rule], xs, drop)
        p, loo, seeds = _robust(f"{rule}: slope", est, lambda n, e: within(n, e, -band, band, threshold),
                                _nets(ys[rule]), threshold)
        parts.append(p)
        shown += loo
        for s, o in seeds.items():
            per_seed.setdefault(s, []).append(o)
    return parts, shown, {s: all_of(o) for s, o in per_seed.items()}


def distinction(ys, xs, rules, refs, t, threshold="distinction") -> tuple[list, list, dict]:
    """Parts "slope of rule − mean slope of the ``refs`` rules > t" (combined: module docstring), the
    leave-one-out parts that disagree with the full interval, and {seed: outcome}."""
    parts, shown, per_seed = [], [], {}
    for rule in rules:
        def est(drop, rule=rule):
            return difference(ys[rule], [ys[r] for r in refs], xs, drop)
        p, loo, seeds = _robust(f"{rule}: slope − LRP-β slope", est, lambda n, e: above(n, e, t, threshold),
                                _nets(ys[rule]), threshold)
        parts.append(p)
        shown += loo
        for s, o in seeds.items():
            per_seed.setdefault(s, []).append(o)
    return parts, shown, {s: all_of(o) for s, o in per_seed.items()}


def controlled_slopes(ys, xs) -> np.ndarray:
    """Per-image slopes b_i of log y_i(c) on log x(c) over the scale grid.  ``ys``: {c: per-image values} (the
    same images at every c), ``xs``: {c: Π‖W_l‖_∞ of the net scaled by c}; NaN where a slope is undefined."""
    cs = [c for c in sorted(ys) if c in xs]
    if not cs:
        return np.zeros(0)
    Y = np.array([np.asarray(ys[c], dtype=np.float64) for c in cs])
    x = [xs[c] for c in cs]
    out = [stats.loglog_slope(x, Y[:, i]) for i in range(Y.shape[1])]
    return np.array([math.nan if b is None else b for b in out], dtype=np.float64)


def independence_controlled(ys, xs, rules, band, threshold="band") -> list:
    """Parts "median per-image slope in [−band, band]" (exact order-statistic interval, the image the unit).
    ``ys``: {rule: {c: per-image values}}."""
    return [within(f"{rule}: per-image slope", stats.median_ci(controlled_slopes(ys[rule], xs), unit="images"),
                   -band, band, threshold) for rule in rules]


def distinction_controlled(ys, xs, rules, refs, t, threshold="distinction") -> list:
    """Parts "median of d_i = b_rule,i − mean_β b_β,i above t" (exact order-statistic interval over images)."""
    ref = np.mean([controlled_slopes(ys[r], xs) for r in refs], axis=0)
    return [above(f"{rule}: per-image slope − LRP-β slope",
                  stats.median_ci(controlled_slopes(ys[rule], xs) - ref, unit="images"), t, threshold)
            for rule in rules]


def combine(groups: dict, checks: dict | None = None, notes=()) -> Decision:
    """The claim's decision from its groups {group name: [parts]} (module docstring).  ``checks``: {group:
    [leave-one-out parts]} listed after the decided parts — their outcomes already entered the combined parts
    through :func:`~chainlab.papers.verdict.agree`: they are shown, not counted again."""
    outcomes = [all_of(ps) for ps in groups.values() if ps]
    parts = [Part(f"{g} · {p.name}", p.outcome, p.estimate, p.relation, p.threshold)
             for g, ps in groups.items() for p in ps]
    parts += [Part(f"{g} · {p.name} (check)", p.outcome, p.estimate, p.relation, p.threshold)
              for g, ps in (checks or {}).items() for p in ps]
    return Decision(all_of(outcomes), tuple(parts), tuple(notes))


def merge_seeds(a: dict, b: dict) -> dict:
    """{seed: Kleene AND of the seed's outcomes in ``a`` and ``b``} (a seed in one of them keeps its outcome)."""
    return {k: all_of([o for o in (a.get(k), b.get(k)) if o is not None]) for k in {**a, **b}}


def within_band(est: Estimate, band: float) -> bool:
    """Whether an estimate's whole interval also lies in the independence band (a caveat of the distinction:
    significant but small)."""
    return est is not None and est.known and -band <= est.lo and est.hi <= band
