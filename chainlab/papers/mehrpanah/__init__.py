"""Mehrpanah et al. (ICCV 2025): the spectral view of explanations — M1, M2, M4, M5 and our hypothesis M3.

``SPECS`` (:mod:`.spec`), ``CLAIMS`` {id: fn(ctx) → [Verdict]}, ``ORDER``.  Each claim measures through
:mod:`.measure` (cached in the context: M1 and M5 share the activation study's spectra), decides through
:mod:`.decide` and words its numbers through :mod:`.report`.  M4 and M5 run with ``--extended`` (their nets and
images cost more than the default run's budget); in the default run they are "not checked" with that reason.
"""
from __future__ import annotations

import math
import time

import numpy as np

from ..context import Chunk, on_one_thread
from ..verdict import Verdict, not_checked
from . import decide as D
from . import measure as M
from . import protocol as P
from . import report as R
from .spec import ACCURACY, COST, GAP, GROWTH, RISE, SPECS, TREND

__all__ = ["SPECS", "CLAIMS", "ORDER", "study_spectra", "claim_m1", "claim_m2", "claim_m3", "claim_m4", "claim_m5",
           "plan", "m2_chunks", "m3_chunks"]

VG = {"vanilla": {"kind": "vanilla"}}
RECIPE = ("optimizer", "lr", "epochs", "weight_decay", "batch_size")     # the training recipe in a net's metadata
EXTENDED_ONLY = ("runs with --extended only: {what} (more nets and images than the default run's budget of "
                 "≈ 50 s for Mehrpanah et al.)")


def study_spectra(ctx, study: dict, n: int, tag: str) -> dict:
    """{"ef": {metric: {seed: {β: per-image EF}}}, "acc": {(β, seed): (stored, measured)}, "dropped": [(name,
    accuracy)], "names": {(β, seed): name}} of a study {β: {seed: name}} on the first n held-out images; nets
    whose accuracy is below the authors' minimum are measured but left out of "ef"."""
    out = {"ef": {m: {} for m in M.METRICS}, "acc": {}, "dropped": [], "names": {}, "recipes": {}}
    for beta, seeds in study.items():
        for seed, name in seeds.items():
            meta = getattr(ctx.model(name), "meta", None) or {}
            out["recipes"][name] = tuple((k, meta.get(k)) for k in RECIPE if meta.get(k) is not None)
            stored, measured = M.accuracy(ctx, name, range(n))
            out["acc"][(beta, seed)] = (stored, measured)
            out["names"][(beta, seed)] = name
            sp = M.spectra(ctx, name, range(n), VG, beta=beta, seed=seed, study=tag)
            acc = stored if stored is not None else measured
            if acc is not None and acc < ACCURACY.value:
                out["dropped"].append((name, acc))
                continue
            for m in M.METRICS:
                out["ef"][m].setdefault(seed, {})[beta] = sp[m]["vanilla"]
    return out


def _trend_group(name, st):
    """(primary part, beside part, {seed: outcome}, metric note) of one study's β trend."""
    pre = f"{name}: " if name else ""
    p, seeds = D.decide_trend(f"{pre}slope of mean EF_code on log β", st["ef"]["EF_code"], TREND.value)
    q, _ = D.decide_trend(f"{pre}slope of mean EF (DC excluded) on log β", st["ef"]["EF"], TREND.value)
    return p, q, seeds


def claim_m1(ctx) -> list:
    t0 = time.perf_counter()
    spec = SPECS["M1"]
    study, missing = P.activation_study(ctx)
    if len(study) < 2 or math.inf not in study:
        return [not_checked(spec, f"M1 needs the ReLU net and a Softplus net; missing: {', '.join(missing)}",
                            time.perf_counter() - t0)]
    sz = P.sizes(ctx.s)
    st = study_spectra(ctx, study, sz.m1_images, "activation")
    p, q, seeds = _trend_group("", st)
    notes = R.study_notes(st, missing) + ([] if ctx.s.extended else [P.EXTENDED["M1"]])
    dec = D.grouped({"activation study": [p]}, notes, beside={"activation study": [q]})
    other = D.grouped({"activation study": [q]})
    caveats = tuple(c for c in (D.metric_note(dec, other), R.accuracy_caveat(st), R.recipe_caveat(st)) if c)
    return [Verdict(spec, dec, R.observed_m1(st), time.perf_counter() - t0, figures=("spectral_beta.png",),
                    paper_numbers=R.PAPER_NUMBERS_M1, beside=R.beside_m1(st), per_seed=seeds, caveats=caveats,
                    numbers=R.numbers(dec))]


def _concat_spectra(parts: list) -> dict:
    """:func:`measure.spectra` results of consecutive chunks, concatenated per metric and label (and the targets,
    maps)."""
    if not parts:
        return {m: {} for m in M.METRICS}
    out = {m: {lab: np.concatenate([p[m][lab] for p in parts]) for lab in parts[0][m]} for m in M.METRICS}
    out["targets"] = np.concatenate([p["targets"] for p in parts])
    if "maps" in parts[0]:
        out["maps"] = {lab: np.concatenate([p["maps"][lab] for p in parts]) for lab in parts[0]["maps"]}
    return out


def m2_chunk(ctx, net, images, n_sg) -> dict:
    """M2 on one chunk of images: the spectra of every method (SmoothGrad on the images below ``n_sg``) and the
    faithfulness of the maps the decision needs; {"a", "b" (None without SmoothGrad images), "aucs"}."""
    sz = P.sizes(ctx.s)
    full, sg = P.methods(sz.sigmas, sz.sg_samples, ctx.s.seed, extended=ctx.s.extended)
    a = M.spectra(ctx, net, images, full, keep=True, study="methods")
    sg_images = range(images.start, min(images.stop, n_sg))
    b = M.spectra(ctx, net, sg_images, sg, keep=True, study="methods") if len(sg_images) else None
    maps = {lab: m for lab, m in {**a["maps"], **(b["maps"] if b is not None else {})}.items()
            if sz.all_faithfulness or lab in P.DECIDED + P.BESIDE + ("vanilla",)}
    return {"a": a, "b": b, "aucs": M.faithfulness(ctx, net, images, maps, a["targets"], steps=sz.steps)}


def m2_chunks(ctx, net) -> list:
    """The chunks of M2 on ``net`` (one chunk unless a run on a user's net sets ``ctx.s.chunk``)."""
    sz = P.sizes(ctx.s)
    n = ctx.image_range(net, range(sz.m2_images)).stop
    n_sg = min(sz.sg_images, n)
    # min(r.stop, n_sg): the chunk's own SmoothGrad cut (what m2_chunk uses), so a chunk's identity does not depend
    # on the run's image count (the probe's chunk of image 1 is the run's first chunk)
    return [Chunk(m2_chunk, (net, r, min(r.stop, n_sg)), (), f"M2 · {net}", len(r)) for r in ctx.s.chunks(n)]


def m3_chunks(ctx, net) -> list:
    """The chunks of M3 (the ReLU masks' EF rises) on ``net``."""
    sz = P.sizes(ctx.s)
    n = ctx.image_range(net, range(sz.m3_images)).stop
    return [Chunk(M.mask_rises, (net, r), (), f"M3 · {net}", len(r)) for r in ctx.s.chunks(n)]


def plan(ctx, claims) -> list:
    """The per-image chunks of M2 and M3 on a user's net, for a run that stores, resumes or farms them out (M1, M4
    and M5 need families of trained nets)."""
    net = P.relu_net(ctx)
    if net is None or net not in ctx.registered:
        return []
    return (m2_chunks(ctx, net) if "M2" in claims else []) + (m3_chunks(ctx, net) if "M3" in claims else [])


def claim_m2(ctx) -> list:
    t0 = time.perf_counter()
    spec = SPECS["M2"]
    net = P.relu_net(ctx)
    if net is None:
        return [not_checked(spec, f"no weights for {P.RELU_NET}", time.perf_counter() - t0)]
    sz = P.sizes(ctx.s)
    got = [c(ctx) for c in m2_chunks(ctx, net)]
    a = _concat_spectra([g["a"] for g in got])
    b = _concat_spectra([g["b"] for g in got if g["b"] is not None])
    ef = {m: {**a[m], **b[m]} for m in M.METRICS}
    aucs = {lab: {k: np.concatenate([g["aucs"][lab][k] for g in got if lab in g["aucs"]]) for k in kinds}
            for lab, kinds in got[0]["aucs"].items()}
    sigmas = {P.sg_label(s): s * P.PIXEL_STD for s in sz.sigmas}
    decided = tuple(lab for lab in P.DECIDED if lab in ef["EF_code"])
    besides = tuple(lab for lab in ef["EF_code"] if lab not in decided and lab != "vanilla")

    def groups(metric):
        return {"gap": D.gap_parts(ef[metric], decided, GAP.value),
                "growth with σ": [D.growth_part(ef[metric], sigmas, GROWTH.value)],
                "trade-off": D.tradeoff_parts(aucs, decided, COST.value)}

    beside = {"gap (DC-free EF)": D.gap_parts(ef["EF"], decided, GAP.value),
              "beside": D.gap_parts(ef["EF_code"], besides, GAP.value)
              + D.tradeoff_parts(aucs, [lab for lab in besides if lab in aucs], COST.value)}
    notes = (() if net == P.RELU_NET else (f"measured on the registered net {net}",)) + (
        () if ctx.s.extended else (P.EXTENDED["M2"],))
    dec = D.grouped(groups("EF_code"), notes, beside=beside)
    other = D.grouped(groups("EF"))
    caveats = tuple(c for c in (D.metric_note(dec, other),) if c)
    return [Verdict(spec, dec, R.observed_m2(ef, aucs, decided), time.perf_counter() - t0,
                    figures=("spectral_tradeoff.png", "spectral_radial.png"), paper_numbers=R.PAPER_NUMBERS_M2,
                    beside=R.beside_m2(ef, aucs, besides), caveats=caveats, numbers=R.numbers(dec))]


def claim_m3(ctx) -> list:
    t0 = time.perf_counter()
    spec = SPECS["M3"]
    net = P.relu_net(ctx)
    if net is None:
        return [not_checked(spec, f"no weights for {P.RELU_NET}", time.perf_counter() - t0)]
    sz = P.sizes(ctx.s)
    parts = [c(ctx) for c in m3_chunks(ctx, net)]
    rises = {k: {lay: np.concatenate([p[k][lay] for p in parts if lay in p.get(k, {})]) for lay in parts[0][k]}
             for k in parts[0]} if parts else {}
    chain = rises.get(("chain", "dc-included"), {})
    if not chain:
        return [not_checked(spec, f"{net} has no ReLU mask with a 2-d signal", time.perf_counter() - t0)]
    beside = {"DC-free EF": D.rise_parts(rises.get(("chain", "dc-excluded"), {}), RISE.value),
              "before the scatter": D.rise_parts(rises.get(("before-scatter", "dc-included"), {}), RISE.value)}
    if ctx.s.extended and ctx.shipped("sixt-cifar") is not None:
        beside["sixt-cifar"] = D.rise_parts(M.mask_rises(ctx, "sixt-cifar", range(sz.m3_images)).get(
            ("chain", "dc-included"), {}), RISE.value)
    dec = D.grouped({"masks (after the scatter)": D.rise_parts(chain, RISE.value)},
                    () if ctx.s.extended else (P.EXTENDED["M3"],), beside=beside)
    other = D.grouped({"masks": beside["DC-free EF"]})
    caveats = tuple(c for c in (D.metric_note(dec, other, ("EF with the DC bin", "our DC-free EF")),) if c)
    return [Verdict(spec, dec, R.observed_m3(rises), time.perf_counter() - t0, figures=("spectral_layers.png",),
                    paper_numbers="none: not a claim of the paper (our hypothesis)", numbers=R.numbers(dec),
                    caveats=caveats)]


def claim_m4(ctx) -> list:
    t0 = time.perf_counter()
    spec = SPECS["M4"]
    if not ctx.s.extended:
        return [not_checked(spec, EXTENDED_ONLY.format(what="10 depth-ablation nets and the weight-decay nets × "
                                                             "seeds × 1000 images"))]
    sz = P.sizes(ctx.s)
    groups, beside, notes, missing = {}, {}, [], []
    for label, (study, miss) in (("depth", P.depth_study(ctx)), ("weight decay", P.l2_study(ctx))):
        missing += miss
        for key, nets in study.items():
            if len(nets) < 2:
                continue
            st = study_spectra(ctx, nets, sz.m1_images, f"{label} {key:g}")
            p, q, _ = _trend_group(f"{label} {key:g}", st)
            groups.setdefault(label, []).append(p)
            beside.setdefault(f"{label} (DC-free EF)", []).append(q)
            notes += R.study_notes(st, [])
    if missing:
        notes.append("not checked: net not shipped — " + ", ".join(missing))
    if not groups:
        return [not_checked(spec, "not checked: net not shipped — " + ", ".join(missing), time.perf_counter() - t0)]
    dec = D.grouped(groups, notes, beside=beside)
    other = D.grouped({k.replace(" (DC-free EF)", ""): v for k, v in beside.items()})
    caveats = tuple(c for c in (D.metric_note(dec, other),) if c)
    return [Verdict(spec, dec, R.observed_parts(dec), time.perf_counter() - t0, numbers=R.numbers(dec),
                    caveats=caveats)]


def claim_m5(ctx) -> list:
    t0 = time.perf_counter()
    spec = SPECS["M5"]
    if not ctx.s.extended:
        return [not_checked(spec, EXTENDED_ONLY.format(what="the penalized nets and the activation study at 1000 "
                                                             "images"))]
    sz = P.sizes(ctx.s)
    study, missing = P.activation_study(ctx)
    pairs = dict(P.REGULARIZED)
    relu = study.get(math.inf, {}).get(0)
    pairs.update({seeds[0]: relu for beta, seeds in study.items() if math.isfinite(beta) and 0 in seeds and relu})
    ef, acc = {}, {}
    for reg, twin in pairs.items():
        for name in (reg, twin):
            if ctx.shipped(name) is None:
                continue
            acc[name] = M.accuracy(ctx, name, range(sz.m1_images))
            ef[name] = M.spectra(ctx, name, range(sz.m1_images), VG)["EF_code"]["vanilla"]
    parts = [D.gap_parts({"vanilla": ef[twin], reg: ef[reg]}, (reg,), GAP.value)[0]
             for reg, twin in pairs.items() if reg in ef and twin in ef]
    if not parts:
        return [not_checked(spec, "not checked: net not shipped — " + ", ".join(missing or list(pairs)),
                            time.perf_counter() - t0)]
    dec = D.grouped({"regularized vs unregularized": parts})
    return [Verdict(spec, dec, R.observed_parts(dec), time.perf_counter() - t0, beside=R.accuracy_costs(pairs, acc),
                    numbers=R.numbers(dec))]


# batched autograd sums (SmoothGrad, the ranks of EF) change in the last bits with the thread count
CLAIMS = {"M1": on_one_thread(claim_m1), "M2": on_one_thread(claim_m2), "M3": on_one_thread(claim_m3),
          "M4": on_one_thread(claim_m4), "M5": on_one_thread(claim_m5)}
ORDER = ("M1", "M2", "M3", "M4", "M5")
