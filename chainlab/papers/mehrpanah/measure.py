"""The numbers of Mehrpanah et al.'s claims, measured on nets: EF of explanations, faithfulness, accuracy, and
the EF of the backward signal at the ReLU masks.

Both EF metrics per image (:mod:`chainlab.measures.spectral`, on the signed channel sum, rank-normalized, radial
spectrum to the corners, L bins):

* ``EF_code`` — the authors' ``(freq * P / P.sum()).mean()`` (src/quant_measures_grads.py:46-50): DC included,
  the mean over the L bins (= the sum / L);
* ``EF`` — ours: Σ_r f_r P(r) / Σ_r P(r) with the DC bin excluded (f_r = r/(L−1)).

Every function takes (ctx, net, images) — images a range of the run's fixed held-out set — and returns
per-image arrays, writing tidy records (``measure="spectral"`` with extras beta/seed/study,
``measure="faithfulness"``, ``measure="accuracy"``); results are cached in the context.
"""
from __future__ import annotations

import numpy as np
import torch

from ...extraction import extract
from ...measures.spectral import channel_maps, layer_spectra
from ...studies import Traced, deletion_insertion, explanation_spectra, predict
from ..context import progress

__all__ = ["METRICS", "spectra", "predictions", "accuracy", "baseline", "faithfulness", "mask_rises", "images_of"]

METRICS = ("EF_code", "EF")
RISE_METRICS = {"dc-included": "include", "dc-excluded": "exclude"}
HELD_OUT = 2000            # data.test_set("scenes"): the fixed held-out set every claim reads a prefix of


def images_of(ctx, net, images):
    """(X float64 numpy (n, C, H, W), labels or None) of ``images`` (a range) of the net's held-out set."""
    X, y = ctx.images(net, images.stop)
    X = X[images.start:images.stop]
    return X.numpy() if hasattr(X, "numpy") else np.asarray(X), (None if y is None else np.asarray(y)[images.start:])


def spectra(ctx, net, images, methods, *, keep=False, **extras) -> dict:
    """{"EF": {label: per-image}, "EF_code": {label: per-image}, "targets": (n,), "maps": {label: (n, H, W)}
    (with ``keep``)} of every method ({label: spec} of :func:`chainlab.studies.explanation_spectra`)."""
    images = ctx.image_range(net, images)
    key = ("mehrpanah-spectra", net, images.start, images.stop, repr(sorted(methods.items())), keep)
    if key in ctx.cache:
        return ctx.cache[key]
    model = ctx.model(net)
    X, _ = images_of(ctx, net, images)
    targets = predictions(ctx, net, images)
    rows, kept = explanation_spectra(model, X, methods, net=net, images=list(images), targets=targets,
                                     reference=None, dtype="float32", keep=True)
    out = {m: {} for m in METRICS}
    for r in rows:
        if r["quantity"] in METRICS and r["image"] is not None:
            out[r["quantity"]].setdefault(r["rule"], []).append(r["value"])
    for r in rows:
        ctx.record(**{**r, **extras})
    out = {m: {lab: np.asarray(v, dtype=np.float64) for lab, v in d.items()} for m, d in out.items()}
    out["targets"] = targets
    if keep:
        out["maps"] = {lab: channel_maps(E, "sum") for lab, E in kept.items()}
    ctx.cache[key] = out
    return out


def predictions(ctx, net, images) -> np.ndarray:
    """The class the net predicts for every image (float32 forward, as the explanations run), cached."""
    images = ctx.image_range(net, images)
    key = ("mehrpanah-predictions", net, images.start, images.stop)
    if key not in ctx.cache:
        X, _ = images_of(ctx, net, images)
        ctx.cache[key] = predict(ctx.model(net), X, traced=Traced(ctx.model(net), "float32"))
    return ctx.cache[key]


def accuracy(ctx, net, images) -> tuple:
    """(the held-out accuracy stored with the net or None, the accuracy on these images or None)."""
    model = ctx.model(net)
    images = ctx.image_range(net, images)
    _, y = images_of(ctx, net, images)
    stored = (getattr(model, "meta", None) or {}).get("test_accuracy")
    measured = float((predictions(ctx, net, images) == y).mean()) if y is not None else None
    ctx.record("accuracy", net=net, rule=None, image=None, quantity="accuracy", value=measured, stored=stored,
               n_images=len(images))
    return stored, measured


def baseline(ctx, net) -> np.ndarray:
    """The deletion/insertion baseline: a constant image at the per-channel mean of the net's held-out set (all
    2000 scenes of ``data.test_set("scenes")``; a registered net's own images)."""
    key = ("mehrpanah-baseline", net)
    if key not in ctx.cache:
        X = ctx.registered[net].x if net in ctx.registered else ctx.images(net, HELD_OUT)[0]
        X = np.asarray(X, dtype=np.float64)
        ctx.cache[key] = np.broadcast_to(X.mean(axis=(0, 2, 3))[:, None, None], X.shape[1:]).copy()
    return ctx.cache[key]


def faithfulness(ctx, net, images, maps: dict, targets, *, steps: int) -> dict:
    """{label: {"deletion": per-image AUC, "insertion": per-image AUC}} of every map set (n, H, W) against the
    fixed baseline (:mod:`chainlab.studies.faithfulness`), cached per (net, images, labels and their sizes,
    steps)."""
    images = ctx.image_range(net, images)
    key = ("mehrpanah-faithfulness", net, images.start, images.stop, tuple((lab, len(m)) for lab, m in maps.items()),
           steps)
    if key in ctx.cache:
        return ctx.cache[key]
    model = ctx.model(net)
    X, _ = images_of(ctx, net, images)
    b = baseline(ctx, net)
    out = {}
    for label, m in progress(maps.items(), f"faithfulness {net}", ctx.s.progress):
        n = len(m)
        d, i, _, _ = deletion_insertion(model, X[:n], m, targets[:n], b, steps=steps)
        out[label] = {"deletion": d, "insertion": i}
        for j in range(n):
            for q, v in (("deletion_auc", d[j]), ("insertion_auc", i[j])):
                ctx.record("faithfulness", net=net, rule=label, image=images.start + j, quantity=q, value=float(v),
                           steps=steps, baseline="held-out per-channel mean")
    ctx.cache[key] = out
    return out


def mask_rises(ctx, net, images) -> dict:
    """{(order, metric): {mask layer: per-image rise}} of the gradient chain (of log p_k) of every image: the EF of
    the signed channel sum of the backward signal after the mask minus before it (``EF_mask_rise`` of
    :func:`chainlab.measures.spectral.layer_spectra` with channels="sum"); metric "dc-included" (the authors'
    EF_code times L — a mask step keeps the map's size, so L and the sign of the rise are the same) and
    "dc-excluded" (ours); order "chain" (the mask after the max-pool's scatter, as the backward pass runs: the
    signal reaches a ReLU under a pool through the pool's scatter) and "before-scatter" (the same masks taken at
    the pooled resolution: ReLU and max-pool commute)."""
    images = ctx.image_range(net, images)
    key = ("mehrpanah-rises", net, images.start, images.stop)
    if key in ctx.cache:
        return ctx.cache[key]
    model = ctx.model(net)
    X, _ = images_of(ctx, net, images)
    out = {}
    for j, i in enumerate(progress(images, f"M3 {net}", ctx.s.progress)):
        x = torch.as_tensor(X[j:j + 1]).to(next(model.parameters()).dtype)
        ch = extract(model, x, "gradient", materialize=False)
        ch.meta.update(net=net, image=i)
        for metric, dc in RISE_METRICS.items():
            for r in layer_spectra(ch, of="logprob", channels="sum", dc=dc):
                if r["quantity"] == "EF_mask_rise":
                    out.setdefault((r["order"], metric), {}).setdefault(r["layer"], []).append(
                        np.nan if r["value"] is None else r["value"])
                r["metric"] = metric
                ctx.record(**r)
    out = {k: {lay: np.asarray(v, dtype=np.float64) for lay, v in d.items()} for k, d in out.items()}
    ctx.cache[key] = out
    return out
