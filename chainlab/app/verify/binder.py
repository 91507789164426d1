"""The claims of Binder et al. (2025), value bounds and convergence of averages of LRP attributions (B1–B3)."""
from __future__ import annotations

import math
import time

from ...extraction import extract
from ...measures import apriori_constants
from ...studies import averages, weight_scaling
from .core import LABELS, Verdict

__all__ = ["CLAIMS", "ORDER"]


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


CLAIMS = {"B1": claim_b1_b2, "B2": claim_b1_b2, "B3": claim_b3}
ORDER = ("B1", "B2", "B3")
