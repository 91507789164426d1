"""The claims of Sixt, Granz, Landgraf (ICML 2020), "When Explanations Lie" (S1–S6)."""
from __future__ import annotations

import time

import numpy as np

from ... import measures
from ...errors import ConeViolationError
from .core import LABELS, Verdict, fmt

__all__ = ["CLAIMS", "ORDER"]

# modified-BP rules that Sixt et al. report as converging, and the two they except
CONVERGING = ("zplus", "alpha-beta", "patternnet", "patternattribution", "guided-bp", "deconv", "rectgrad",
              "deeplift-ablation")
NOT_CONVERGING = ("lrp-0", "deeplift-rescale", "deeplift-revealcancel")
MIN_CHANNELS = 8      # CSC at boundaries with fewer channels per location is high by chance (d=1: always 1)


def rule_pass(ctx, net, rule):
    """One pass over the images: CSC (injection at the logits) and random-logit SSIM, memoized.

    Returns ({boundary j: csc record}, mean SSIM)."""
    key = ("rule_pass", net, rule)
    if key not in ctx.cache:
        ssim_rows = []

        def chains():
            for ch in ctx.stream(net, rule):
                ssim_rows.extend(measures.random_logit_ssim([ch], seed=ctx.s.seed + ch.meta["image"]))
                yield ch

        rows = measures.csc(chains(), layers=[-1], pairs=ctx.s.pairs, images=ctx.s.images(net), seed=ctx.s.seed)
        ctx.records += rows + ssim_rows
        curve = {r["layer"]: r for r in rows if r["quantity"] == "csc"}
        ctx.cache[key] = (curve, float(np.mean([r["value"] for r in ssim_rows])))
    return ctx.cache[key]


def _csc_curve(ctx, net, rule):
    """Median CSC record per boundary j (injection at the logits), pooled over the first images."""
    return rule_pass(ctx, net, rule)[0]


def _reached(curve) -> float:
    """Highest median CSC over the boundaries with at least MIN_CHANNELS channels per location."""
    vals = [r["value"] for r in curve.values() if r["value"] is not None and (r.get("d") or 0) >= MIN_CHANNELS]
    return max(vals) if vals else float("nan")


def claim_s1_s3(ctx) -> list[Verdict]:
    t0 = time.perf_counter()
    reached = {}
    for net in ctx.s.csc_nets:
        for rule in CONVERGING + NOT_CONVERGING:
            reached[(net, rule)] = _reached(_csc_curve(ctx, net, rule))
    dt = time.perf_counter() - t0
    conv = {k: v for k, v in reached.items() if k[1] in CONVERGING and k[1] != "deeplift-ablation"}
    ok1 = all(v >= 0.99 for v in conv.values())
    exc = {k: v for k, v in reached.items() if k[1] in NOT_CONVERGING}
    line = lambda d: "; ".join(f"{n}/{LABELS.get(r, r)} {fmt(v)}" for (n, r), v in d.items())  # noqa: E731
    s1 = Verdict(
        "S1", "All modified-BP rules except LRP-z and DeepLIFT converge: median CSC ≥ 0.99 (highest over layers).",
        "Sixt §5: 'Except for LRP_z and DeepLIFT, all methods show convergence up to at least 0.99 cosine "
        "similarity' (VGG-16, ResNet-50, CIFAR net).",
        f"converging rules: {line(conv)} · excepted rules: {line(exc)}",
        ok1, dt)
    dl = {k: v for k, v in reached.items() if k[1] in ("deeplift-rescale", "deeplift-revealcancel")}
    ab = {k: v for k, v in reached.items() if k[1] == "deeplift-ablation"}
    ok3 = all(v < 0.99 for v in dl.values()) and all(v >= 0.99 for v in ab.values())
    s3 = Verdict(
        "S3", "DeepLIFT does not converge (CSC < 0.99); DeepLIFT ablation (W⁺ in the + rule, W⁻ in the − rule) does.",
        "Sixt §3/§5: DeepLIFT is the only method that passes; 'DeepLIFT Ablation … as predicted by the theory, "
        "it converges'.", f"DeepLIFT: {line(dl)} · ablation: {line(ab)}", ok3, 0.0)
    return [s1, s3]


def claim_s2(ctx) -> list[Verdict]:
    t0 = time.perf_counter()
    curve = _csc_curve(ctx, "digits-mlp", "zplus")
    inp = curve[0]["value"]
    ok = inp is not None and inp > 1 - 1e-6
    return [Verdict(
        "S2", "LRP-α1β0 median CSC > 1 − 1e-6 at the input of a small 6-layer net (digits-mlp, 6 Linear layers).",
        "Sixt §5 / Fig. 5d: 'Even on the small 6-layer network, the median CSC is greater than 1-1e-6 for "
        "LRP_α1β0'.", f"median CSC at the input: {fmt(inp, 12)} (1 − CSC = {fmt(1 - inp if inp else None)}; "
        f"{curve[0].get('n_values')} cosines)", ok, time.perf_counter() - t0)]


def claim_s4(ctx) -> list[Verdict]:
    t0 = time.perf_counter()
    nets = ctx.s.spectra_nets
    n_img = 1 if ctx.s.quick else 3
    wins, total, parts = 0, 0, []
    for net in nets:
        med = {}
        for rule in ("gradient", "patternattribution"):
            rows = []
            for ch in ctx.stream(net, rule, n=n_img):
                rows += measures.spectra(ch, of=("interlayer",), rank=8)
            ctx.records += rows
            by_l = {}
            for r in rows:
                if r["quantity"] == "sigma1/sigma2" and r["value"] is not None:
                    by_l.setdefault(r["k"], []).append(r["value"])
            med[rule] = {l: float(np.median(v)) for l, v in by_l.items()}
        ls = sorted(set(med["gradient"]) & set(med["patternattribution"]))
        w = sum(med["patternattribution"][l] > med["gradient"][l] for l in ls)
        wins, total = wins + w, total + len(ls)
        parts.append(f"{net}: W⊙A larger at {w}/{len(ls)} members (median σ1/σ2 W⊙A "
                     f"{fmt(float(np.median(list(med['patternattribution'].values()))))} vs W "
                     f"{fmt(float(np.median(list(med['gradient'].values()))))})")
    ok = total > 0 and wins > total / 2
    return [Verdict(
        "S4", "σ1/σ2 of the inter-layer members T_l is larger for W⊙A (PatternAttribution) than for W (gradient).",
        "Sixt §3 / Fig. 3: σ1/σ2 of T_l is larger for W⊙A than for W on VGG-16 (ratios > 6 for the patterns).",
        "; ".join(parts) + f" — overall {wins}/{total}", ok, time.perf_counter() - t0)]


def claim_s5(ctx) -> list[Verdict]:
    t0 = time.perf_counter()
    means = {}
    for net in ctx.s.csc_nets:
        for rule in CONVERGING + ("gradient", "deeplift-rescale", "deeplift-revealcancel"):
            means[(net, rule)] = rule_pass(ctx, net, rule)[1]
    conv = {k: v for k, v in means.items() if k[1] in CONVERGING}
    low = {k: v for k, v in means.items() if k[1] not in CONVERGING}
    ok = min(conv.values()) >= 0.9 and max(low.values()) <= 0.7
    fmt = lambda d: "; ".join(f"{n}/{LABELS.get(r, r)} {v:.3f}" for (n, r), v in d.items())  # noqa: E731
    return [Verdict(
        "S5", "SSIM(true-logit map, random-logit map) ≈ 1 (≥ 0.9) for converging rules, clearly lower (≤ 0.7) for "
        "the gradient and DeepLIFT.",
        "Sixt §4 / Fig. 4a: SSIM close to 1 for the converging methods, low for gradient and DeepLIFT.",
        f"converging: {fmt(conv)} · gradient/DeepLIFT: {fmt(low)}", ok, time.perf_counter() - t0)]


def claim_s6(ctx) -> list[Verdict]:
    t0 = time.perf_counter()
    parts, ok = [], True
    for net in ("digits-mlp", "digits-cnn"):
        for ch in ctx.stream(net, "zplus", n=1 if ctx.s.quick else 3, bias="none", avgpool="gradient"):
            try:
                rows = measures.cone(ch, check=True)
            except ConeViolationError as e:
                ok = False
                parts.append(f"{net} image {ch.meta['image']}: {e}")
                continue
            ctx.records += rows
            ang = [r["value"] for r in rows if r["quantity"] == "angular_diameter" and r["value"] is not None]
            hil = [r["value"] for r in rows if r["quantity"] == "hilbert_diameter"]
            ok &= all(b <= a + 1e-7 for a, b in zip(ang, ang[1:]))
            parts.append(f"{net} image {ch.meta['image']}: angle {fmt(ang[0])} → {fmt(ang[-1])} rad over "
                         f"{len(ang)} prefix products, Hilbert Δ {fmt(hil[0])} → {fmt(hil[-1])}")
    return [Verdict(
        "S6", "For non-negative chains (z⁺, bias ignored) the cone of the columns of P_k shrinks: angular and "
        "Hilbert diameters non-increasing in k, and the Birkhoff bound holds.",
        "Sixt Thm. 1 / Fig. 2: the cone of non-negative matrix products shrinks to one direction.",
        "; ".join(parts), ok, time.perf_counter() - t0)]


CLAIMS = {"S1": claim_s1_s3, "S3": claim_s1_s3, "S2": claim_s2, "S4": claim_s4, "S5": claim_s5, "S6": claim_s6}
ORDER = ("S1", "S2", "S3", "S4", "S5", "S6")
