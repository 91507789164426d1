"""The claims of Mehrpanah et al. (ICCV 2025), the spectral view of explanations (M1–M3).

EF is the expected frequency of a rank-normalized explanation map (DC excluded, f_r = r/(L−1), bins to the
corners: :mod:`chainlab.measures.spectral`); the authors' EF_code (DC included, extra 1/L) is reported
beside it.  Explanations are of log p_k (k = the class the net predicts), as the authors' VG/SmoothGrad.
Images: ``load_scenes("test", n, seed=0)``, n = 200 in the full run (the authors use the first 1000 test
images; 200 keep the full verify within its time budget and already give bootstrap intervals of about
±0.005 on the median ΔEF), 6 with ``--quick`` (5 for M3), 1000 (M1) / 500 (M2) with ``--extended``.
SmoothGrad costs n = 64 gradients per image and σ, so the full run computes it on the first 50 of the 200
images (the σ beyond the authors' range, 0.1 and 0.2, only with ``--extended``); M3 needs one chain per
image and uses 32 (64 extended).

* M1  EF of the vanilla gradient decreases as β decreases, on scenes-cnn-relu (β = ∞) and
      scenes-cnn-softplus{1,3,10,30}; accuracy beside it.  Decision: Spearman ρ between β and the median EF
      over the images, with a paired bootstrap over images (B = 2000): reproduced iff the 95 % interval of ρ
      lies above 0 (on the nets with weights, named in the verdict; at least the ReLU net and two Softplus nets).
* M2  surrogate smoothing opens a gap on scenes-cnn-relu: ΔEF(x) = EF(VG(x)) − EF(e_m(x)) > 0 for GradCAM
      and SmoothGrad (σ = the authors' 0.1 in standardized units = 0.1 × our pixel std 0.30 = 0.03, n = 64),
      growing with σ over the authors' sweep (σ = 1e-3, 1e-2, 1e-1 standardized = 3e-4, 3e-3, 3e-2 here).
      Decision: bootstrap 95 % interval of the median ΔEF above 0 for both methods, and of the Spearman ρ
      between σ and the median ΔEF above 0.
* M3  within a ReLU net, EF of the backward signal rises at the ReLU masks: for every mask of the chain
      (scenes-cnn-relu) the rise EF(d ⊙ r) − EF(r) (per channel map, rank-normalized) at the boundary, per
      image.  Decision: the median rise > 0 at every mask, and a one-sided sign test of the per-image mean rise
      over the masks at level 0.05.  Beside it: the same mask step taken before the max-pool scatter (ReLU and
      max-pool commute, so the backward factors either way).

Each decision is a function of the measured numbers (``m1_decide``, ``m2_decide``, ``m3_decide``) so that the
negative controls in tests/test_verify_spectral.py run the same code on cases built to fail.
"""
from __future__ import annotations

import math
import time

import numpy as np
from scipy.stats import binomtest, rankdata

from ...extraction import extract
from ...measures.spectral import code_gap, layer_spectra
from ...nets import data, models
from ...studies import AUTHORS_GRADCAM, explanation_spectra, predict
from .core import Verdict, fmt, on_one_thread

__all__ = ["CLAIMS", "ORDER", "M1_NETS", "RELU_NET", "PIXEL_STD", "m1_measure", "m1_decide", "m2_measure",
           "m2_decide", "m3_measure", "m3_decide", "median_ci", "spearman_ci", "sign_test"]

M1_NETS = {"scenes-cnn-softplus1": 1.0, "scenes-cnn-softplus3": 3.0, "scenes-cnn-softplus10": 10.0,
           "scenes-cnn-softplus30": 30.0, "scenes-cnn-relu": math.inf}
RELU_NET = "scenes-cnn-relu"
PIXEL_STD = 0.30            # std of the pixels of load_scenes("test", 2000, seed=0) (0.3004)
AUTHORS_SIGMAS = (1e-3, 1e-2, 1e-1)      # their SmoothGrad σ sweep in standardized units (final config: 0.1)
BEYOND_SIGMAS = (0.1, 0.2)               # σ in our [0, 1] units, reported beside (not decided)
SURROGATE_BETAS = (1.0, 3.0, 10.0, 30.0)
BOOT = 2000


# -- statistics ---------------------------------------------------------------------------------------
def median_ci(d, B: int = BOOT, seed: int = 0, level: float = 0.95):
    """(median, lo, hi): the median of d and its percentile-bootstrap interval (B resamples)."""
    d = np.asarray(d, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(B, len(d)))
    meds = np.median(d[idx], axis=1)
    a = (1 - level) / 2
    return float(np.median(d)), float(np.quantile(meds, a)), float(np.quantile(meds, 1 - a))


def _rho(x, Y) -> np.ndarray:
    """Spearman ρ between x (m,) and every column of Y (m, B) (average ranks for ties; 0 for a constant column)."""
    rx = rankdata(np.asarray(x, dtype=np.float64))
    ry = rankdata(Y, axis=0)
    rx, ry = rx - rx.mean(), ry - ry.mean(axis=0)
    den = np.sqrt((rx ** 2).sum() * (ry ** 2).sum(axis=0))
    return np.where(den > 0, (rx[:, None] * ry).sum(axis=0) / np.where(den > 0, den, 1.0), 0.0)


def spearman_ci(xs, columns, B: int = BOOT, seed: int = 0, level: float = 0.95):
    """(ρ, lo, hi): Spearman ρ between xs and the medians of the paired columns (each over the same images),
    and its bootstrap interval over images (resampled jointly for all columns; ρ = 0 when the medians tie)."""
    cols = np.asarray([np.asarray(c, dtype=np.float64) for c in columns])          # (m, n)
    rng = np.random.default_rng(seed)
    n = cols.shape[1]
    idx = rng.integers(0, n, size=(B, n))
    meds = np.median(cols[:, idx], axis=2)                                           # (m, B)
    rhos = _rho(xs, meds)
    a = (1 - level) / 2
    rho = float(_rho(xs, np.median(cols, axis=1)[:, None])[0])
    return rho, float(np.quantile(rhos, a)), float(np.quantile(rhos, 1 - a))


def sign_test(d) -> float:
    """One-sided exact sign test of median(d) > 0 (zeros dropped); 1.0 when nothing is non-zero."""
    d = np.asarray(d, dtype=np.float64)
    nz = d[d != 0]
    if nz.size == 0:
        return 1.0
    return float(binomtest(int((nz > 0).sum()), nz.size, 0.5, alternative="greater").pvalue)


def _values(records, quantity, rule=None, net=None):
    rows = [r for r in records if r.get("quantity") == quantity and (rule is None or r.get("rule") == rule)
            and (net is None or r.get("net") == net) and r.get("image") is not None]
    rows.sort(key=lambda r: r["image"])
    return np.array([r["value"] for r in rows], dtype=np.float64)


def _images(ctx, n):
    """The first n of the run's test scenes: load_scenes("test", N, seed=0) with N = 6 (quick), 200 or 1000
    (extended), loaded once per run (the scene set depends on N, so every claim slices the same one)."""
    N = _n(ctx, 6, 200, 1000)
    if ("scenes", N) not in ctx.cache:
        s = data.load_scenes("test", N, seed=0)
        ctx.cache[("scenes", N)] = (s.x.astype(np.float64), s.y)
    x, y = ctx.cache[("scenes", N)]
    return x[:n], y[:n]


def _n(ctx, quick, full, extended):
    return quick if ctx.s.quick else extended if ctx.s.extended else full


# -- M1 -----------------------------------------------------------------------------------------------
def m1_measure(nets: dict, X, y=None, *, gradcam: bool = False, dtype: str = "float32"):
    """EF of the vanilla gradient (of log p_k) of every net {label: (β, model)} on the images X.

    Returns (records, {label: EF per image}, {label: (stored test accuracy or None, accuracy on X or None)})."""
    rows, ef, acc = [], {}, {}
    for label, (beta, model) in nets.items():
        methods = {"vanilla": {"kind": "vanilla"}}
        if gradcam:
            methods["gradcam"] = {"kind": "gradcam"}
        r = explanation_spectra(model, X, methods, net=label, dtype=dtype)
        for row in r:
            row["net_beta"] = beta
        rows += r
        ef[label] = _values(r, "EF", "vanilla")
        stored = (getattr(model, "meta", None) or {}).get("test_accuracy")
        on_x = float((predict(model, X) == np.asarray(y)).mean()) if y is not None else None
        acc[label] = (stored, on_x)
    return rows, ef, acc


def m1_decide(ef: dict, betas: dict, B: int = BOOT, seed: int = 0):
    """(reproduced, ρ, lo, hi): Spearman ρ(β, median EF) with its paired bootstrap interval; lo > 0 required."""
    labels = list(ef)
    rho, lo, hi = spearman_ci([betas[k] for k in labels], [ef[k] for k in labels], B, seed)
    return lo > 0, rho, lo, hi


def _not_checked(claim, statement, paper, net, t0) -> Verdict:
    return Verdict(claim, statement, paper, f"not checked: no weights for {net}", None, time.perf_counter() - t0)


def claim_m1(ctx) -> list[Verdict]:
    t0 = time.perf_counter()
    n = _n(ctx, 6, 200, 1000)
    statement = ("EF of the vanilla gradient (of log p_k) decreases as β decreases: scenes-cnn-softplus1/3/10/30 and "
                 f"scenes-cnn-relu (β = ∞), {n} test scenes; Spearman ρ(β, median EF) with a paired bootstrap 95 % "
                 "interval above 0.")
    paper = ("Mehrpanah et al. (abstract; code plots.py plot_ef: EF regressed on log β): smaller β gives smoother "
             "gradients (lower EF), ReLU (β → ∞) the highest; test accuracy scattered against β "
             "(their nets stop at test acc > 0.6). No numbers are published in the code.")
    nets, missing = {}, []
    for name, beta in M1_NETS.items():
        model = ctx.shipped(name)
        if model is None:
            missing.append(name)
        else:
            nets[name] = (beta, model)
    if len(nets) < 3 or RELU_NET not in nets:
        return [Verdict("M1", statement, paper, f"not checked: no weights for {', '.join(missing)} "
                        f"(looked in {models.data_dir()}; M1 needs {RELU_NET} and at least two Softplus nets)", None,
                        time.perf_counter() - t0)]
    X, y = _images(ctx, n)
    rows, ef, acc = m1_measure(nets, X, y, gradcam=not ctx.s.quick)
    ctx.records += rows
    ok, rho, lo, hi = m1_decide(ef, {k: b for k, (b, _) in nets.items()}, seed=ctx.s.seed)
    code = {k: float(np.mean(_values(rows, "EF_code", "vanilla", k))) for k in nets}
    fig = {r["net"]: r["value"] for r in rows if r["quantity"] == "EF_fig" and r["rule"] == "vanilla"}
    parts = [f"β={'∞' if math.isinf(b) else f'{b:g}'}: median EF {fmt(float(np.median(ef[k])))} "
             f"(mean EF_code ×1e5 {code[k] * 1e5:.3f}, EF_fig ×1e4 {fig[k] * 1e4:.3f}), "
             f"test acc {fmt(acc[k][0]) if acc[k][0] is not None else 'n/a'} (on these {n}: {fmt(acc[k][1])})"
             for k, (b, _) in sorted(nets.items(), key=lambda kv: kv[1][0])]
    observed = "; ".join(parts) + f" — Spearman ρ = {rho:.2f}, 95 % CI [{lo:.2f}, {hi:.2f}]"
    if missing:
        observed += f" (on the {len(nets)} nets with weights; missing: {', '.join(missing)})"
    return [Verdict("M1", statement, paper, observed, bool(ok), time.perf_counter() - t0)]


# -- M2 -----------------------------------------------------------------------------------------------
def _sg(sigma, n):
    return {"kind": "smoothgrad", "sigma": float(sigma), "n": int(n)}


def m2_measure(model, X, sigmas, *, n_samples: int = 64, sg_images: int | None = None, net: str = RELU_NET,
               beyond=(), authors: bool = True, seed: int = 0, dtype: str = "float32"):
    """Records and {label: ΔEF per image} of GradCAM (all of X) and SmoothGrad(σ) for σ in ``sigmas`` and
    ``beyond`` (on the first ``sg_images`` images: n_samples gradients per image and σ)."""
    methods = {"vanilla": {"kind": "vanilla"}, "gradcam": {"kind": "gradcam"}}
    if authors:
        methods["guided-gradcam (authors)"] = {"kind": "gradcam", **AUTHORS_GRADCAM}
    rows = explanation_spectra(model, X, methods, net=net, dtype=dtype)
    k = len(X) if sg_images is None else min(int(sg_images), len(X))
    sg = {"vanilla": {"kind": "vanilla"}}
    for s in tuple(sigmas) + tuple(beyond):
        sg[f"smoothgrad σ={s:g}"] = {**_sg(s, n_samples), "seed": seed}
    more = explanation_spectra(model, X[:k], sg, net=net, dtype=dtype)
    rows += [r for r in more if r["rule"] != "vanilla"]        # ΔEF rows pair SmoothGrad with this call's VG
    labels = [lab for lab in list(methods) + list(sg) if lab != "vanilla"]
    delta = {lab: _values(rows, "delta_EF", lab) for lab in labels}
    return rows, delta


def m2_decide(delta: dict, sigmas, B: int = BOOT, seed: int = 0, reference_sigma=None):
    """(reproduced, details): GradCAM and SmoothGrad(reference σ, default the largest) median ΔEF intervals above
    0, and the Spearman ρ(σ, median ΔEF_SG(σ)) interval above 0."""
    sigmas = list(sigmas)
    ref = max(sigmas) if reference_sigma is None else reference_sigma
    gc = median_ci(delta["gradcam"], B, seed)
    sg = median_ci(delta[f"smoothgrad σ={ref:g}"], B, seed)
    rho = spearman_ci(sigmas, [delta[f"smoothgrad σ={s:g}"] for s in sigmas], B, seed)
    ok = gc[1] > 0 and sg[1] > 0 and rho[1] > 0
    return ok, {"gradcam": gc, "smoothgrad": sg, "reference_sigma": ref, "rho": rho}


def claim_m2(ctx) -> list[Verdict]:
    t0 = time.perf_counter()
    n = _n(ctx, 6, 200, 500)
    n_sg = _n(ctx, 6, 50, 500)
    n_samples = 8 if ctx.s.quick else 64
    sigmas = tuple(s * PIXEL_STD for s in (AUTHORS_SIGMAS[1:] if ctx.s.quick else AUTHORS_SIGMAS))
    statement = (f"ΔEF = EF(VG) − EF(method) > 0 for GradCAM and SmoothGrad (σ = 0.03 = the authors' 0.1 standardized, "
                 f"n = {n_samples}), growing with σ over σ = {', '.join(f'{s:.2g}' for s in sigmas)} "
                 f"({RELU_NET}, {n} test scenes, SmoothGrad on the first {min(n, n_sg)}; bootstrap 95 % intervals "
                 "above 0).")
    paper = ("Mehrpanah et al.: surrogate smoothing (GradCAM, SmoothGrad) lowers EF at the cost of faithfulness, "
             "the explanation gap (figure caption: 'trade-off between complexity and faithfulness, quantified by "
             "EF and ΔEF'); code: table of mean EF_code ×1e5 per method and the gap (method − VG of ReLU) ×1e5, "
             "no numbers published.")
    model = ctx.shipped(RELU_NET)
    if model is None:
        return [_not_checked("M2", statement, paper, RELU_NET, t0)]
    X, _ = _images(ctx, n)
    rows, delta = m2_measure(model, X, sigmas, n_samples=n_samples, sg_images=n_sg,
                             beyond=BEYOND_SIGMAS if ctx.s.extended else (), authors=not ctx.s.quick, seed=ctx.s.seed)
    if not ctx.s.quick:                           # surrogate chains for the trade-off figure (fewer images)
        k = 8 if not ctx.s.extended else 32
        sur = {"vanilla": {"kind": "vanilla"}}
        for b in SURROGATE_BETAS:
            sur[f"smooth-gradient β={b:g}"] = {"kind": "rule", "rule": "smooth-gradient", "beta": b,
                                               "materialize": False}
        extra = explanation_spectra(model, X[:k], sur, net=RELU_NET)
        rows += [r for r in extra if r["rule"] != "vanilla" and not str(r["quantity"]).startswith("P_")
                 and r["quantity"] != "EF_fig"]
        for b in SURROGATE_BETAS:
            delta[f"smooth-gradient β={b:g}"] = _values(extra, "delta_EF", f"smooth-gradient β={b:g}")
    rows += code_gap(rows, RELU_NET, "vanilla")
    ctx.records += rows
    ok, d = m2_decide(delta, sigmas, seed=ctx.s.seed, reference_sigma=sigmas[-1])
    gc, sg, rho = d["gradcam"], d["smoothgrad"], d["rho"]
    med = {lab: float(np.median(v)) for lab, v in delta.items() if len(v)}
    code = {r["rule"]: r["value"] for r in rows if r["quantity"] == "code_gap_x1e5"}
    parts = [f"GradCAM median ΔEF {gc[0]:.4f} [{gc[1]:.4f}, {gc[2]:.4f}]",
             f"SmoothGrad σ={d['reference_sigma']:.2g} median ΔEF {sg[0]:.4f} [{sg[1]:.4f}, {sg[2]:.4f}]",
             "median ΔEF_SG per σ " + ", ".join(f"{s:.2g}: {med[f'smoothgrad σ={s:g}']:.4f}" for s in sigmas)
             + f" — Spearman ρ = {rho[0]:.2f} [{rho[1]:.2f}, {rho[2]:.2f}]"]
    if not ctx.s.quick:
        decided = {"gradcam"} | {f"smoothgrad σ={s:g}" for s in sigmas}
        parts.append("median ΔEF beside (not decided): " + ", ".join(f"{lab} {v:.4f}" for lab, v in med.items()
                                                                     if lab not in decided))
        parts.append("authors' gap table (mean EF_code − mean EF_code(VG)) ×1e5: "
                     + ", ".join(f"{lab} {v:.3f}" for lab, v in code.items() if lab != "vanilla"))
    return [Verdict("M2", statement, paper, "; ".join(parts), bool(ok), time.perf_counter() - t0)]


# -- M3 -----------------------------------------------------------------------------------------------
def m3_measure(model, X, net: str, images=None):
    """layer_spectra records of the gradient chain (of log p_k) of every image."""
    rows = []
    for i, x in enumerate(X):
        ch = extract(model, x[None], "gradient", materialize=False)
        ch.meta.update(net=net, image=i if images is None else images[i])
        rows += layer_spectra(ch)
    return rows


def m3_decide(records, alpha: float = 0.05, order: str = "chain"):
    """(reproduced, {mask layer: (median rise, #images)}, sign-test p of the per-image mean rise).

    Reproduced iff there is at least one mask, the median rise is > 0 at every mask and p < alpha."""
    rises = {}
    for r in records:
        if r.get("quantity") == "EF_mask_rise" and r.get("order") == order and r.get("value") is not None:
            rises.setdefault((r.get("net"), r.get("layer")), {})[r.get("image")] = r["value"]
    if not rises:
        return False, {}, 1.0
    per = {key: (float(np.median(list(v.values()))), len(v)) for key, v in rises.items()}
    images = sorted({i for v in rises.values() for i in v}, key=str)
    mean_rise = [np.mean([v[i] for v in rises.values() if i in v]) for i in images]
    p = sign_test(mean_rise)
    ok = all(m > 0 for m, _ in per.values()) and p < alpha
    return ok, per, p


def claim_m3(ctx) -> list[Verdict]:
    t0 = time.perf_counter()
    n = _n(ctx, 5, 32, 64)
    nets = (RELU_NET,) + (("sixt-cifar",) if ctx.s.extended else ())
    statement = (f"EF of the backward signal rises at every ReLU mask: EF(d ⊙ r) − EF(r) per channel map at each "
                 f"mask boundary of the gradient chain ({', '.join(nets)}, {n} test scenes); median rise > 0 at every "
                 "mask and a one-sided sign test of the per-image mean rise, p < 0.05.")
    paper = ("Issue 18 / Mehrpanah et al. abstract: ReLU networks contribute the high frequencies (masks multiply "
             "pointwise, convolutions are nearly diagonal in Fourier space). The authors' code has no per-layer "
             "analysis (nearest: the depth ablation).")
    rows = []
    for net in nets:
        model = ctx.shipped(net)
        if model is None:
            return [_not_checked("M3", statement, paper, net, t0)]
        X, _ = _images(ctx, n)
        rows += m3_measure(model, X, net)
    ctx.records += rows
    ok, per, p = m3_decide(rows)
    _, per_b, p_b = m3_decide(rows, order="before-scatter")
    parts = ["median rise per mask " + ", ".join(f"{net}/{lay} {m:+.4f}" for (net, lay), (m, _) in per.items())
             + f"; sign test of the per-image mean rise p = {p:.3g}"]
    if per_b:
        parts.append("the same masks taken before the max-pool scatter (ReLU and max-pool commute): "
                     + ", ".join(f"{lay} {m:+.4f}" for (_, lay), (m, _) in per_b.items()))
    return [Verdict("M3", statement, paper, "; ".join(parts), bool(ok), time.perf_counter() - t0)]


# batched autograd sums (SmoothGrad, the ranks of EF) change in the last bits with the thread count
CLAIMS = {"M1": on_one_thread(claim_m1), "M2": on_one_thread(claim_m2), "M3": on_one_thread(claim_m3)}
ORDER = ("M1", "M2", "M3")
