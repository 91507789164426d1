"""The decisions of Mehrpanah et al.'s claims: per-unit numbers in, :class:`~chainlab.papers.verdict.Decision` out
(pure).

M1 (and the ablations M4), the seed the unit: per seed s and net of Softplus β (ReLU: β = ∞), the mean EF of
the vanilla gradient over the images (the authors' aggregation, interactive/plots.py:982-987); the authors'
regression: the least-squares slope b_s of mean EF on x = log β with ReLU placed at β = 2·max finite β
(plots.py:1009-1021); the estimate is the mean of b_s with its Student-t interval over the seeds, decided
"above t" — combined by :func:`~chainlab.papers.verdict.agree` with every seed's own slope (any disagreement
→ inconclusive).  Nets that did not train (accuracy < the authors' minimum) are left out before.

M2, the image the unit (paired: every method explains the same images as VG):
* gap: ΔEF_m(x) = EF(VG(x)) − EF(m(x)); median over images with its exact order-statistic interval, above t;
* growth with σ: per image, the least-squares slope of ΔEF_SG(σ)(x) on log σ over the σ sweep; median above t;
* faithfulness cost: F(x) = AUC_insertion − AUC_deletion (higher = more faithful); cost_m(x) = F_VG(x) − F_m(x);
  median above t — the trade-off holds for m when its gap and its cost both lie above.

M3 (hypothesis), the image the unit: per ReLU mask, the median rise of EF at the mask step above t, at every
mask (Kleene AND).

Every claim is decided on the primary metric (the authors' EF_code); the same rule on our DC-free EF is decided
beside (:func:`metric_note`): a verdict that changes with the metric says so.
"""
from __future__ import annotations

import math

import numpy as np

from .. import stats
from ..verdict import Decision, Estimate, Part, above, agree, all_of, part

__all__ = ["net_mean", "beta_positions", "linear_slope", "beta_trend", "decide_trend", "gaps", "gap_parts",
           "growth_part", "faithfulness", "tradeoff_parts", "rise_parts", "metric_note", "grouped"]


def net_mean(values) -> float | None:
    """The mean of a net's finite per-image values (the authors' aggregation); None when there is none."""
    v = stats.finite(values)
    return float(v.mean()) if v.size else None


def beta_positions(betas) -> dict:
    """{β: x} with x = log β, ReLU (β = ∞) at log(2·max finite β) as the authors plot it."""
    finite = [b for b in betas if math.isfinite(b)]
    top = 2 * max(finite) if finite else 2.0
    return {b: math.log(b if math.isfinite(b) else top) for b in betas}


def linear_slope(x, y) -> float | None:
    """Least-squares slope of y on x, Σ (x − x̄)·y / Σ (x − x̄)² (Σ (x − x̄) = 0, so y need not be centred); None
    with fewer than two distinct x or a non-finite value."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size != y.size or x.size < 2 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return None
    if np.ptp(x) == 0:
        return None
    dx = x - x.mean()
    return float(dx @ y / (dx @ dx))


def beta_trend(ef) -> tuple[Estimate, dict]:
    """(mean over seeds of the per-seed slope of mean EF on log β, t interval; {seed: slope}).
    ``ef``: {seed: {β: per-image EF}}; ReLU placed by :func:`beta_positions` over all β of the study."""
    xs = beta_positions({b for by in ef.values() for b in by})
    per = {}
    for s, by in ef.items():
        pts = [(xs[b], net_mean(v)) for b, v in by.items() if net_mean(v) is not None]
        b = linear_slope([p[0] for p in pts], [p[1] for p in pts])
        if b is not None:
            per[s] = b
    e = stats.mean_ci(list(per.values()), unit="seeds")
    return Estimate(e.value, e.lo, e.hi, e.level, e.n, "seeds", "per-seed slope of mean EF on log β, Student t"), per


def decide_trend(name, ef, t, threshold="trend") -> tuple[Part, dict]:
    """The part "slope of mean EF on log β > t" combined with every seed's own slope (module docstring), and
    {seed: outcome}."""
    est, per = beta_trend(ef)
    full = above(name, est, t, threshold)
    seeds = {s: above(name, Estimate.exact(b), t, threshold).outcome for s, b in per.items()}
    return part(name, agree([full.outcome] + list(seeds.values())), est, full.relation, threshold), seeds


def gaps(ef: dict, reference: str = "vanilla") -> dict:
    """{label: ΔEF per image = EF(reference) − EF(label)} for every other label, paired by image (a method run on
    the first k images pairs with the reference's first k)."""
    ref = np.asarray(ef[reference], dtype=np.float64)
    out = {}
    for lab, v in ef.items():
        if lab == reference:
            continue
        v = np.asarray(v, dtype=np.float64)
        out[lab] = ref[:len(v)] - v
    return out


def gap_parts(ef: dict, labels, t, threshold="gap") -> list:
    """Parts "median ΔEF_m > t" (exact order-statistic interval over images) for every label."""
    d = gaps(ef)
    return [above(f"{lab}: median ΔEF", stats.median_ci(d[lab], unit="images"), t, threshold) for lab in labels]


def growth_part(ef: dict, sigmas: dict, t, threshold="growth") -> Part:
    """Part "median over images of the per-image slope of ΔEF_SG(σ) on log σ > t"; ``sigmas``: {label: σ}."""
    d = gaps(ef)
    labs = [lab for lab in sorted(sigmas, key=sigmas.get) if lab in d]
    vals = []
    if len(labs) >= 2:
        x = [math.log(sigmas[lab]) for lab in labs]
        for i in range(min(len(d[lab]) for lab in labs)):
            b = linear_slope(x, [d[lab][i] for lab in labs])
            vals.append(math.nan if b is None else b)
    return above("SmoothGrad: per-image slope of ΔEF on log σ", stats.median_ci(vals, unit="images"), t, threshold)


def faithfulness(auc: dict) -> np.ndarray:
    """F = AUC_insertion − AUC_deletion per image (``auc``: {"deletion": …, "insertion": …})."""
    return np.asarray(auc["insertion"], dtype=np.float64) - np.asarray(auc["deletion"], dtype=np.float64)


def tradeoff_parts(aucs: dict, labels, t, reference: str = "vanilla", threshold="cost") -> list:
    """Parts "median faithfulness cost F_VG − F_m > t" (exact order-statistic interval over images)."""
    ref = faithfulness(aucs[reference])
    out = []
    for lab in labels:
        f = faithfulness(aucs[lab])
        out.append(above(f"{lab}: median faithfulness cost", stats.median_ci(ref[:len(f)] - f, unit="images"), t,
                         threshold))
    return out


def rise_parts(rises: dict, t, threshold="rise") -> list:
    """Parts "median rise of EF at the mask > t" per mask ({mask layer: per-image rise})."""
    return [above(f"{layer}: median EF rise at the mask", stats.median_ci(v, unit="images"), t, threshold)
            for layer, v in rises.items()]


def grouped(groups: dict, notes=(), beside: dict | None = None) -> Decision:
    """A decision from {group: [parts]} (Kleene AND of the groups, each the AND of its parts; empty groups left
    out) and {group: [parts decided beside]} shown after them, not counted."""
    parts = [Part(f"{g} · {p.name}", p.outcome, p.estimate, p.relation, p.threshold)
             for g, ps in groups.items() for p in ps]
    parts += [Part(f"{g} · {p.name} (beside, not decided)", p.outcome, p.estimate, p.relation, p.threshold)
              for g, ps in (beside or {}).items() for p in ps]
    return Decision(all_of([all_of(ps) for ps in groups.values() if ps]), tuple(parts), tuple(notes))


def metric_note(primary: Decision, other: Decision, names=("the authors' EF_code", "our DC-free EF")) -> str:
    """'' when both metrics give the same outcome, else the sentence that says the verdict depends on the metric."""
    if primary.outcome is other.outcome:
        return ""
    return (f"the verdict depends on the EF metric: {primary.outcome.value} with {names[0]} (decided), "
            f"{other.outcome.value} with {names[1]}")
