"""The verify job: each claim of the papers checked on the shipped nets, with a verdict.

Claims (Sixt et al. 2020, ``S*``; Binder et al. 2025, ``B*``):

* S1  every modified-BP rule except LRP-z and DeepLIFT reaches a median CSC ≥ 0.99 (signals
      injected at the logits, CSC = median |cos| of the channel vectors of two injections).
* S2  LRP-α1β0 (z⁺) reaches median CSC > 1 − 1e-6 on a small 6-layer net (digits-mlp).
* S3  DeepLIFT (Rescale, RevealCancel) does not converge (CSC < 0.99); DeepLIFT ablation does.
* S4  σ1/σ2 of the inter-layer members T_l = √Σ_l V_l U_(l+1) √Σ_(l+1) is larger for the
      PatternAttribution matrices (W ⊙ A) than for the gradient matrices (W).
* S5  SSIM(map of the true logit, map of a random logit) ≈ 1 for converging rules, clearly lower
      for the gradient and DeepLIFT.
* S6  the cone of the columns of P_k shrinks: angular and Hilbert diameters non-increasing in k
      for non-negative (z⁺, no bias) chains, and Δ(P_(k+1)) ≤ τ(M_1)⋯τ(M_k)·Δ(M_(k+1)).
* B1  LRP-β (z⁺, α2β1) a-priori constants Π‖M_l‖₁ are unchanged when weights and biases are
      scaled by c > 0 (the decision unchanged).
* B2  gradient constants scale with Π c_l; LRP-ε a-priori constants grow with 1/ε.
* B3  the sup-error of the mean of N perturbed attributions stays below the Hoeffding level
      t(N) = B √(2 ln(2d/δ)/N) for every N (with B from the value bounds).

``run(quick=False)`` computes everything and returns the verdicts and all records; the CLI writes
them as ``report/verify.md`` (verdict table beside the papers' numbers) plus the plots of
:func:`chainlab.report.make_report`.  Verdicts are results, not errors: a claim that is not
reproduced is reported with its numbers.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import measures
from ..errors import ConeViolationError, OptionError
from ..extraction import extract
from ..measures import apriori_constants
from ..nets import data, models
from ..studies import averages, weight_scaling

__all__ = ["Verdict", "CLAIMS", "Settings", "run", "verdict_table"]

# modified-BP rules that Sixt et al. report as converging, and the two they except
CONVERGING = ("zplus", "alpha-beta", "patternnet", "patternattribution", "guided-bp", "deconv", "rectgrad",
              "deeplift-ablation")
NOT_CONVERGING = ("lrp-0", "deeplift-rescale", "deeplift-revealcancel")
RULE_OPTIONS = {"alpha-beta": {"alpha": 2.0, "beta": 1.0}}
LABELS = {"zplus": "LRP-α1β0 (z⁺)", "alpha-beta": "LRP-α2β1", "lrp-0": "LRP-z", "gradient": "gradient"}
MIN_CHANNELS = 8      # CSC at boundaries with fewer channels per location is high by chance (d=1: always 1)


@dataclass
class Verdict:
    claim: str
    statement: str
    paper: str
    observed: str
    reproduced: bool | None
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return {True: "reproduced", False: "not reproduced", None: "not checked"}[self.reproduced]


@dataclass
class Settings:
    """How much work.  ``quick``: the CI-sized run (digits nets only, few images);  default: the main
    job (< 10 min on 2 cores);  ``extended``: more sixt-cifar images and sixt-cifar in S4 (~25 min)."""
    quick: bool = False
    extended: bool = False
    seed: int = 0
    progress: bool = True

    @property
    def csc_nets(self):
        return ("digits-cnn",) if self.quick else ("digits-cnn", "sixt-cifar")

    @property
    def spectra_nets(self):
        return ("digits-mlp", "digits-cnn") + (("sixt-cifar",) if self.extended else ())

    def images(self, net) -> int:
        if self.quick:
            return 2
        if net == "sixt-cifar":
            return 8 if self.extended else 2
        return 8

    @property
    def pairs(self) -> int:
        return 4 if self.quick else 10


class _Context:
    """Shared state of one verify run: models, inputs and extracted chains (each extracted once)."""

    def __init__(self, settings: Settings):
        self.s = settings
        self.digits = data.load_digits()
        self._models, self._passes = {}, {}
        self.records: list[dict] = []

    def model(self, net):
        if net not in self._models:
            self._models[net] = models.load(net)
        return self._models[net]

    def x(self, net, i):
        return data.model_input(net, self.digits.x_test[i:i + 1])

    def stream(self, net, rule, n=None, **opts):
        """Chains of the first ``n`` test images, extracted one at a time and not kept (large nets)."""
        n = self.s.images(net) if n is None else n
        for i in _progress(range(n), f"{net} · {rule}", self.s.progress):
            ch = extract(self.model(net), self.x(net, i), rule, **{**RULE_OPTIONS.get(rule, {}), **opts})
            ch.meta.update(net=net, image=i)
            yield ch

    def rule_pass(self, net, rule):
        """One pass over the images: CSC (injection at the logits) and random-logit SSIM, memoized.

        Returns ({boundary j: csc record}, mean SSIM)."""
        key = (net, rule)
        if key not in self._passes:
            ssim_rows = []

            def chains():
                for ch in self.stream(net, rule):
                    ssim_rows.extend(measures.random_logit_ssim([ch], seed=self.s.seed + ch.meta["image"]))
                    yield ch

            rows = measures.csc(chains(), layers=[-1], pairs=self.s.pairs, images=self.s.images(net),
                                        seed=self.s.seed)
            self.records += rows + ssim_rows
            curve = {r["layer"]: r for r in rows if r["quantity"] == "csc"}
            self._passes[key] = (curve, float(np.mean([r["value"] for r in ssim_rows])))
        return self._passes[key]


def _progress(it, desc, on):
    if not on:
        return it
    return tqdm(it, desc=desc, unit="image", file=sys.stderr, leave=False)


def _csc_curve(ctx, net, rule):
    """Median CSC record per boundary j (injection at the logits), pooled over the first images."""
    return ctx.rule_pass(net, rule)[0]


def _reached(curve) -> float:
    """Highest median CSC over the boundaries with at least MIN_CHANNELS channels per location."""
    vals = [r["value"] for r in curve.values() if r["value"] is not None and (r.get("d") or 0) >= MIN_CHANNELS]
    return max(vals) if vals else float("nan")


def _fmt(v, digits=4):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float) and (abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3)):
        return f"{v:.3g}"
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


# --------------------------------------------------------------------------------------------- claims
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
    line = lambda d: "; ".join(f"{n}/{LABELS.get(r, r)} {_fmt(v)}" for (n, r), v in d.items())  # noqa: E731
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
        "LRP_α1β0'.", f"median CSC at the input: {_fmt(inp, 12)} (1 − CSC = {_fmt(1 - inp if inp else None)}; "
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
                     f"{_fmt(float(np.median(list(med['patternattribution'].values()))))} vs W "
                     f"{_fmt(float(np.median(list(med['gradient'].values()))))})")
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
            means[(net, rule)] = ctx.rule_pass(net, rule)[1]
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
            parts.append(f"{net} image {ch.meta['image']}: angle {_fmt(ang[0])} → {_fmt(ang[-1])} rad over "
                         f"{len(ang)} prefix products, Hilbert Δ {_fmt(hil[0])} → {_fmt(hil[-1])}")
    return [Verdict(
        "S6", "For non-negative chains (z⁺, bias ignored) the cone of the columns of P_k shrinks: angular and "
        "Hilbert diameters non-increasing in k, and the Birkhoff bound holds.",
        "Sixt Thm. 1 / Fig. 2: the cone of non-negative matrix products shrinks to one direction.",
        "; ".join(parts), ok, time.perf_counter() - t0)]


def claim_b1_b2(ctx) -> list[Verdict]:
    t0 = time.perf_counter()
    nets = ("digits-mlp", "digits-cnn") if ctx.s.quick else ("digits-mlp", "digits-cnn", "sixt-cifar")
    b1, b2, p1, p2 = True, True, [], []
    for net in nets:
        m = ctx.model(net)
        x = ctx.x(net, 0)
        rows = weight_scaling(m, x, rules=("zplus", ("alpha-beta", {"alpha": 2.0, "beta": 1.0}), "gradient"),
                              c=3.0, stabilizer=1e-12)
        for r in rows:
            r.update(net=net, image=0)
        ctx.records += rows
        get = lambda rule, q: next(r["value"] for r in rows if r["rule"] == rule and r["quantity"] == q)  # noqa
        for rule in ("zplus", "alpha-beta"):
            ratio = get(rule, "constant_ratio")
            b1 &= abs(ratio - 1) < 1e-6
            p1.append(f"{net}/{LABELS[rule]} ratio {ratio:.9f}")
        g, pc = get("gradient", "constant_ratio"), get("gradient", "prod_c")
        b2 &= abs(g / pc - 1) < 1e-6
        p2.append(f"{net}: gradient constant ×{g:.4g} (Π c_l = {pc:.4g})")
        eps_consts = []
        for eps in (1e-1, 1e-2, 1e-3):
            ch = extract(m, x, "lrp-epsilon", epsilon=eps)
            eps_consts.append(math.prod(apriori_constants(ch)))
        b2 &= all(b > a for a, b in zip(eps_consts, eps_consts[1:]))
        p2.append(f"{net}: LRP-ε a-priori constant at ε = 0.1/0.01/0.001: " + " / ".join(f"{v:.3g}" for v in eps_consts))
    dt = time.perf_counter() - t0
    return [
        Verdict("B1", "LRP-β constants (z⁺ and α2β1: Π_l ‖M_l‖₁) are unchanged when every layer's weights and "
                "bias are scaled by c = 3 (stabilizer 1e-12, so that ε·sign0 does not blur the ratio).",
                "Binder et al.: bounds for LRP-β are independent of the weight norms.", "; ".join(p1), b1, dt / 2),
        Verdict("B2", "Gradient constants scale with Π c_l; LRP-ε a-priori constants grow with 1/ε.",
                "Binder et al.: gradient and LRP-ε bounds grow with the weight norms and 1/ε.", "; ".join(p2), b2,
                dt / 2),
    ]


def claim_b3(ctx) -> list[Verdict]:
    t0 = time.perf_counter()
    n = 16 if ctx.s.quick else 48
    kinds = (("smoothgrad", 0.1), ("brightness", 0.1), ("contrast", 0.2), ("noise", 0.05))
    ok, parts = True, []
    for net in ("digits-cnn",) if not ctx.s.extended else ("digits-cnn", "digits-mlp"):
        for rule in ("zplus",) if ctx.s.quick else ("zplus", "gradient"):
            for kind, level in kinds:
                rows = averages(ctx.model(net), ctx.x(net, 0), rule, perturbation=kind, level=level, n=n,
                                seed=ctx.s.seed, net=net, image=0)
                ctx.records += rows
                exceed = next(r["value"] for r in rows if r["quantity"] == "exceed_fraction")
                worst = max(r["value"] / t["value"] for r, t in zip(
                    [r for r in rows if r["quantity"] == "sup_error"],
                    [r for r in rows if r["quantity"] == "hoeffding_t"]))
                ok &= exceed == 0
                parts.append(f"{net}/{rule}/{kind}: max err/t(N) = {worst:.3f}")
    return [Verdict(
        "B3", f"The sup-error of the mean attribution over N ≤ {n} perturbed copies stays below the Hoeffding "
        "level t(N) = B√(2 ln(2d/δ)/N), δ = 0.05.",
        "Binder et al.: averages of bounded attributions converge; N ≥ 2B² ln(2d/δ)/t² samples suffice.",
        "; ".join(parts), ok, time.perf_counter() - t0)]


CLAIMS = {"S1": claim_s1_s3, "S3": claim_s1_s3, "S2": claim_s2, "S4": claim_s4, "S5": claim_s5, "S6": claim_s6,
          "B1": claim_b1_b2, "B2": claim_b1_b2, "B3": claim_b3}


def run(quick: bool = False, claims=None, progress: bool = True, seed: int = 0, extended: bool = False):
    """Check the claims (all by default); returns (verdicts in claim order, records)."""
    wanted = list(CLAIMS) if not claims else [c.upper() for c in claims]
    bad = [c for c in wanted if c not in CLAIMS]
    if bad:
        raise OptionError(f"unknown claim(s) {', '.join(bad)}; known: {', '.join(sorted(CLAIMS))}")
    if quick and extended:
        raise OptionError("choose --quick or --extended, not both")
    ctx = _Context(Settings(quick=quick, extended=extended, seed=seed, progress=progress))
    done, verdicts = set(), {}
    for c in wanted:
        fn = CLAIMS[c]
        if fn in done:
            continue
        done.add(fn)
        for v in fn(ctx):
            verdicts[v.claim] = v
    order = [c for c in ("S1", "S2", "S3", "S4", "S5", "S6", "B1", "B2", "B3") if c in verdicts and c in wanted]
    return [verdicts[c] for c in order], ctx.records


def verdict_table(verdicts, *, quick: bool, seconds: float, extended: bool = False) -> str:
    """Markdown: one section per claim with the paper's statement beside our numbers."""
    n_ok = sum(v.reproduced is True for v in verdicts)
    lines = ["# chainlab verify", "",
             f"{n_ok} of {len(verdicts)} claims reproduced on the shipped nets "
             f"({'--quick run' if quick else '--extended run' if extended else 'full run'}, {seconds:.0f} s). "
             f"Rerun: `chainlab verify{' --quick' if quick else ' --extended' if extended else ''}`.", "",
             "| claim | verdict | seconds |", "|---|---|---:|"]
    lines += [f"| {v.claim} | **{v.label}** | {v.seconds:.1f} |" for v in verdicts]
    lines.append("")
    for v in verdicts:
        lines += [f"## {v.claim}: {v.label}", "", f"*Claim.* {v.statement}", "", f"*Paper.* {v.paper}", "",
                  f"*Measured here.* {v.observed}", ""]
    lines += ["Plots and all records: [report.md](report.md), `records.csv`.", ""]
    return "\n".join(lines)


def script_main(claims, argv=None) -> int:
    """Entry point of scripts/verify_*.py: check ``claims``, print the verdicts, write ``<out>/verify-<ids>.md``."""
    p = argparse.ArgumentParser(description=f"Check claims {', '.join(claims)} on the shipped nets.")
    p.add_argument("--quick", action="store_true", help="CI-sized run (digits nets, fewer images)")
    p.add_argument("--extended", action="store_true", help="more sixt-cifar images, sixt-cifar in S4")
    p.add_argument("-o", "--output", type=Path, default=Path("report"), help="directory for the verdict file")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    verdicts, _ = run(quick=a.quick, claims=claims, extended=a.extended)
    a.output.mkdir(parents=True, exist_ok=True)
    md = a.output / f"verify-{'-'.join(claims)}.md"
    md.write_text(verdict_table(verdicts, quick=a.quick, seconds=time.perf_counter() - t0, extended=a.extended))
    for v in verdicts:
        print(f"{v.claim}  {v.label}\n    claim: {v.statement}\n    paper: {v.paper}\n    here:  {v.observed}")
    print(f"verdicts written to {md}")
    return 0
