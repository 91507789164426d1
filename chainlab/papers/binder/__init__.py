"""Binder et al. (2025): the value-bound constants of LRP-type attributions across weight norms (B1–B3).

``SPECS`` (:mod:`.spec`), ``CLAIMS`` {id: fn(ctx) → [Verdict]}, ``ORDER``.  One measuring pass
(:func:`measure_all`, cached in the context) serves the three claims: the bounds' constants of every study net
and seed on its images, of the controlled net at every scale, and of its function-preserving rescaling;
:mod:`.decide` turns them into decisions, :mod:`.report` into text and figures.
"""
from __future__ import annotations

import time

from ..context import Chunk, on_one_thread
from ..verdict import Verdict, not_checked
from . import decide as D
from . import measure as M
from . import protocol as P
from . import report as R
from .spec import BAND, DISTINCTION, SPECS

__all__ = ["SPECS", "CLAIMS", "ORDER", "measure_all", "claim_b1", "claim_b2", "claim_b3", "plan"]


def _add(table, seed, net, got):
    """table[quantity][rule][seed][net] = per-image values of ``got`` ({rule: {quantity: values}})."""
    for rule, qs in got.items():
        for q, arr in qs.items():
            table.setdefault(q, {}).setdefault(rule, {}).setdefault(seed, {})[net] = arr


def measure_all(ctx) -> dict:
    """{"trained": {quantity: {rule: {seed: {net: per-image}}}}, "xs": {seed: {net: Π‖W_l‖_∞}},
    "controlled": {quantity: {rule: {c: per-image}}}, "cxs": {c: Π‖W_l‖_∞}, "controlled_net", "rescaled",
    "missing", "nets", "seconds"} — measured once per run."""
    if "binder" in ctx.cache:
        return ctx.cache["binder"]
    t0 = time.perf_counter()
    sz = P.sizes(ctx.s)
    rules = P.rule_table(P.measured_rules(ctx.s, sz.extra_rules))
    nets, missing = P.study(ctx)
    trained, xs = {}, {}
    for net, seeds in nets.items():
        for seed, name in seeds.items():
            got = M.constants(ctx, name, range(sz.images), rules=rules, study=net, seed=seed)
            _add(trained, seed, net, got)
            xs.setdefault(seed, {})[net] = D.net_value(got["gradient"]["weight_norm_product"])
    out = {"trained": trained, "xs": xs, "nets": nets, "missing": missing, "controlled": {}, "cxs": {},
           "controlled_net": P.controlled_net(ctx), "rescaled": None}
    cnet = out["controlled_net"]
    if cnet is not None:
        images = range(sz.controlled_images)
        for c, got in M.controlled(ctx, cnet, images, rules=P.measured_rules(ctx.s)).items():
            for rule, qs in got.items():
                for q, arr in qs.items():
                    out["controlled"].setdefault(q, {}).setdefault(rule, {})[c] = arr
            out["cxs"][c] = D.net_value(got["gradient"]["weight_norm_product"])
        if not ctx.s.quick and P.measures_rescaling(ctx.s) and M.rescalable(ctx, cnet):
            out["rescaled"] = M.rescaled(ctx, cnet, images, rules=P.measured_rules(ctx.s))
    for net in sz.sigma_bounds:
        if ctx.shipped(net) is not None:
            M.sigma_bounds(ctx, net)
    if sz.averages:
        for net, seeds in nets.items():
            if 0 in seeds:
                M.averages_study(ctx, seeds[0], range(sz.averages_images), study=net, seed=0)
    out["seconds"] = time.perf_counter() - t0
    ctx.cache["binder"] = out
    return out


def plan(ctx, claims) -> list:
    """The chunks of the controlled experiment on a user's net (the scales c and the function-preserving rescaling,
    per chunk of images) that :func:`measure_all` then finds in ``ctx.cache`` — for a run that stores, resumes or
    farms them out (the study nets and the extended parts are measured by the claims themselves)."""
    if not set(claims) & set(ORDER):
        return []
    cnet = P.controlled_net(ctx)
    if cnet is None or cnet not in ctx.registered:
        return []
    sz = P.sizes(ctx.s)
    chunks = M.image_chunks(ctx, cnet, range(sz.controlled_images))
    group = f"B1–B3 · {cnet}"
    kw = (("rules", P.measured_rules(ctx.s)),)
    out = [Chunk(M.controlled_chunk, (cnet, c, r), kw, group, len(r)) for c in P.SCALES for r in chunks]
    if not ctx.s.quick and P.measures_rescaling(ctx.s) and M.rescalable(ctx, cnet):
        out += [Chunk(M.rescaled_chunk, (cnet, r), kw, group, len(r)) for r in chunks]
    return out


def _notes(d, ctx):
    notes = []
    if ctx.s.quick:
        notes.append("trained nets: not checked (--quick runs the digits nets, one per architecture: no weight-norm "
                     "family); the controlled group decides")
    elif not d["nets"]:
        notes.append("trained nets: not checked — no weight-norm study net has weights")
    else:
        seeds = sorted({s for v in d["nets"].values() for s in v})
        if len(seeds) < 2:
            notes.append(f"trained nets: seeds {seeds} only — the interval over seeds needs ≥ 2 (inconclusive)")
    if d["missing"]:
        notes.append("not shipped / no weights: " + ", ".join(d["missing"]))
    if d["controlled_net"] is None:
        notes.append(f"controlled group: not checked — no weights for {P.CONTROLLED}")
    elif not ctx.s.quick and not M.rescalable(ctx, d["controlled_net"]):
        notes.append(f"function-preserving rescaling of {d['controlled_net']}: none — no two consecutive "
                     "Linear/Conv2d layers that positive scaling passes between (residual blocks, non-ReLU "
                     "activations), so only W → c·W is measured")
    if not ctx.s.extended:
        notes.append(P.EXTENDED)
    return notes


def _groups(ctx, quantity, independent, dependent):
    """(measurements, {group: decided parts}, {group: leave-one-out parts}, {seed: outcome}) of one quantity."""
    d = measure_all(ctx)
    groups, checks, per_seed = {}, {}, {}
    tr = d["trained"].get(quantity, {})
    if tr:
        parts, loo, seeds = [], [], {}
        if independent:
            p, lo, s = D.independence(tr, d["xs"], independent, BAND.value)
            parts, loo, seeds = parts + p, loo + lo, D.merge_seeds(seeds, s)
        if dependent:
            p, lo, s = D.distinction(tr, d["xs"], dependent, P.BETA, DISTINCTION.value)
            parts, loo, seeds = parts + p, loo + lo, D.merge_seeds(seeds, s)
        groups["trained nets"], checks["trained nets"], per_seed = parts, loo, seeds
    ct = d["controlled"].get(quantity, {})
    if ct:
        parts = []
        if independent:
            parts += D.independence_controlled(ct, d["cxs"], independent, BAND.value)
        if dependent:
            parts += D.distinction_controlled(ct, d["cxs"], dependent, P.BETA, DISTINCTION.value)
        groups[f"controlled ({d['controlled_net']} × c)"] = parts
    return d, groups, checks, per_seed


def claim_b1(ctx) -> list:
    t0 = time.perf_counter()
    spec = SPECS["B1"]
    d, groups, checks, per_seed = _groups(ctx, "c_norm1", P.BETA, ())
    if not groups:
        return [not_checked(spec, "; ".join(_notes(d, ctx)) or "nothing measured", time.perf_counter() - t0)]
    dec = D.combine(groups, checks, _notes(d, ctx))
    return [Verdict(spec, dec, R.observed_trend(d, "c_norm1", P.BETA), time.perf_counter() - t0,
                    figures=R.FIGURE_NAMES["B1"], paper_numbers=R.PAPER_NUMBERS, beside=R.beside_b1(d),
                    per_seed=per_seed, numbers=R.numbers(dec), caveats=R.caveats(ctx, d))]


def claim_b2(ctx) -> list:
    t0 = time.perf_counter()
    spec = SPECS["B2"]
    d, groups, checks, per_seed = _groups(ctx, "c_norm1", (), P.DEPENDENT)
    if not groups:
        return [not_checked(spec, "; ".join(_notes(d, ctx)) or "nothing measured", time.perf_counter() - t0)]
    dec = D.combine(groups, checks, _notes(d, ctx))
    caveats = R.caveats(ctx, d) + R.small_distinction(d, "c_norm1", BAND.value)
    return [Verdict(spec, dec, R.observed_trend(d, "c_norm1", P.DEPENDENT + P.BETA), time.perf_counter() - t0,
                    figures=R.FIGURE_NAMES["B2"], paper_numbers=R.PAPER_NUMBERS, beside=R.beside_b2(d),
                    per_seed=per_seed, numbers=R.numbers(dec), caveats=caveats)]


def claim_b3(ctx) -> list:
    t0 = time.perf_counter()
    spec = SPECS["B3"]
    d = measure_all(ctx)
    groups, checks, per_seed = {}, {}, {}
    for pert, _ in P.PERTURBATIONS:
        _, g, c, s = _groups(ctx, f"support_constant:{pert}", P.BETA, P.DEPENDENT)
        groups.update({f"{pert} · {k}": v for k, v in g.items()})
        checks.update({f"{pert} · {k}": v for k, v in c.items()})
        per_seed = D.merge_seeds(per_seed, s)
    if not groups:
        return [not_checked(spec, "; ".join(_notes(d, ctx)) or "nothing measured", time.perf_counter() - t0)]
    dec = D.combine(groups, checks, _notes(d, ctx))
    return [Verdict(spec, dec, R.observed_b3(d), time.perf_counter() - t0, figures=R.FIGURE_NAMES["B3"],
                    paper_numbers=R.PAPER_NUMBERS, beside=R.beside_b3(d), per_seed=per_seed, numbers=R.numbers(dec),
                    caveats=R.caveats(ctx, d))]


CLAIMS = {"B1": on_one_thread(claim_b1), "B2": on_one_thread(claim_b2), "B3": on_one_thread(claim_b3)}
ORDER = ("B1", "B2", "B3")
