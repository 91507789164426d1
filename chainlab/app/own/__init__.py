"""``chainlab verify --model SPEC --images DIR_OR_NPY``: the papers' claims checked on a user's own net.

The run, in order (every check before anything is written; everything written inside ``--output``):

1. :func:`~.prepare.prepare` — the model (:mod:`chainlab.nets.specs`), the images (:mod:`chainlab.nets.images`),
   the checks (channels, a classifier, layers chainlab reads); ``--n-images`` defaults to what fits about 15
   minutes on 2 cores (:func:`.claims.default_images`, from the net's multiply-adds per image and each claim
   group's forward passes per image);
2. the claims that cannot run on one net are "not checked" with their reason (:func:`.claims.not_applicable`);
   without ``--claims`` and ``--n-images`` so are those whose one image would not fit the 15 minutes with the
   others (:func:`.claims.over_budget`: the most expensive groups first, e.g. on VGG-16 at 224×224); the a-priori
   estimate is printed; the others are cut into per-image-chunk measure calls (:func:`.claims.plan`);
3. the probe: the first image through every measure call (kept: the run's chunks start with image 1 alone, so
   the probe is the run's first chunk and nothing is measured twice); the estimate of time (per (claim, net) group, seconds per image × images left) and
   memory (the peak resident set so far) is printed before the rest starts; a default run (no ``--claims``, no
   ``--n-images``) then keeps the images the probe's estimate fits in the budget (:func:`.claims.images_that_fit`);
4. every chunk computed (or loaded with ``--resume``) into the resumable store (:mod:`.store`), serially or on
   Dask workers (:mod:`.runner`), with a progress bar per claim and net;
5. the claims decided by the papers' own code on the measured chunks; written as ``verify.md`` (naming the net,
   the images and what the papers used), ``verdicts.json`` and ``records/``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ...errors import OptionError
from ...nets.specs import UNTRAINED
from ...memory import keep_freed_memory, peak_mib
from ...papers.context import Settings
from ...papers.verdict import Outcome
from ..verify.write import tally, write_run
from . import claims as C
from .prepare import UserNet, prepare
from .runner import Call, Source, call_name, context_for, run_calls
from .store import ChunkStore

__all__ = ["verify_own", "OwnRun", "prepare", "UserNet", "estimate", "Call"]


@dataclass
class OwnRun:
    """What :func:`verify_own` did: the verdicts, the records, verify.md, the net, the estimate and what the run
    then took."""

    verdicts: list
    records: list
    md: Path
    user: UserNet
    estimate: dict = field(default_factory=dict)
    seconds: float = 0.0
    peak_mib: float = 0.0


def _wanted(claims) -> list:
    if not claims:
        return list(C.ORDER)
    wanted = [c.strip().upper() for c in claims if c.strip()]
    bad = [c for c in wanted if c not in C.ORDER]
    if bad:
        raise OptionError(f"unknown claim(s) {', '.join(bad)}; known: {', '.join(C.ORDER)}")
    return [c for c in C.ORDER if c in wanted]


def _fmt_s(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _kind(call) -> tuple:
    """What a chunk computes apart from its images: (group, function, the other arguments as text)."""
    return (call.group, call.fn.__qualname__, tuple(repr(a) for a in call.args if not isinstance(a, range)),
            tuple(sorted(call.kwargs)))


def estimate(probe_calls, result, n_images: int, calls, workers: int) -> dict:
    """{"groups": {group: (seconds per image, images left)}, "seconds": total left}: each remaining chunk costs the
    probe's seconds per image of the chunk of the same kind (function and arguments other than the image range) ×
    its images; per-net chunks (no image range: S6's layer hypotheses) ran in the probe and are not repeated; the
    total is divided among the workers."""
    per_kind, per_group = {}, {}
    for c in probe_calls:          # image 1: every kind of chunk once
        s = result["seconds"].get(call_name(c), result["stored_seconds"].get(call_name(c), 0.0))
        per_kind[_kind(c)] = s / max(c.images, 1)
        per_group[c.group] = per_group.get(c.group, 0.0) + s
    secs, images_left = 0.0, {g: 0 for g in per_group}
    for c in calls:
        r = next((a for a in c.args if isinstance(a, range)), None)
        if r is None:
            continue
        secs += per_kind.get(_kind(c), 0.0) * c.images
        images_left[c.group] = max(images_left.get(c.group, 0), r.stop - 1)    # images 2…n (image 1: the probe)
    groups = {g: (per_group.get(g, 0.0), images_left.get(g, 0)) for g in set(per_group) | set(images_left)}
    return {"groups": groups, "seconds": secs / max(workers, 1)}


LARGE_NET_KEEP_BYTES = 32 << 20     # glibc's own largest mmap threshold: larger blocks are mmapped and handed back


def verify_own(*, model, images, weights=None, preprocess=None, n_images=None, labels=None, claims=None,
               output="report", resume=False, workers=1, scheduler=None, extended=False, seed=0, echo=print,
               progress=True, chunk=None) -> OwnRun:
    """The run of the module docstring; returns an :class:`OwnRun`."""
    t0 = time.perf_counter()
    wanted = _wanted(claims)
    output = Path(output)
    budgeted = claims is None and n_images is None      # the default run: it must fit C.BUDGET_SECONDS

    def default_images(macs, norm_entries):
        likely = [c for c in wanted if c not in C.NEEDS]
        cut = C.over_budget(macs, likely, norm_entries) if budgeted else {}
        return C.default_images(macs, [c for c in likely if c not in cut], norm_entries)

    user = prepare(str(model), str(images), weights=weights, preprocess=preprocess, n_images=n_images,
                   labels=None if labels is None else str(labels), seed=seed, claims=wanted,
                   default_images=default_images)
    n = len(user.images)
    if user.macs > C.LARGE_NET_MACS:        # a VGG-16's blocks of 0.1–1 GB: freed ones back to the kernel
        keep_freed_memory(LARGE_NET_KEEP_BYTES)
    chunk = C.chunk_size(user) if chunk is None else int(chunk)
    settings = Settings(quick=False, extended=extended, seed=seed, progress=False, images=n, chunk=chunk,
                        first_alone=True)
    ctx = context_for(user, settings)
    reasons = {c: C.not_applicable(c, user) for c in wanted}
    if budgeted:                # claims whose one image alone would break the default run's budget: not checked
        reasons.update(C.over_budget(user.macs, [c for c in wanted if reasons[c] is None], user.norm_entries))
    user.traced = None          # its float64 copy of the weights (1.1 GB for VGG-16) is not needed past this point
    runnable = [c for c in wanted if reasons[c] is None]
    settings = replace(settings, claims=tuple(runnable))      # a paper measures only what these claims read
    ctx.s = settings
    calls = C.plan(ctx, runnable)
    imgs = user.images
    echo(f"net: {user.info.description}; {user.n_classes} classes; input {tuple(user.model.input_shape)}; "
         f"{user.macs / 1e9:.3g} G multiply-adds per image" + ("" if user.info.trained else f" — {UNTRAINED}"))
    echo(f"images: {n} from {imgs.source} (preprocess {imgs.preprocess}"
         + (", labels given)" if imgs.labels is not None else ", labels: the net's predictions)")
         + f"; chunks of {chunk}; claims {', '.join(runnable) or 'none'}"
         + ("; not checked: " + ", ".join(f"{c} ({r})" for c, r in reasons.items() if r) if any(reasons.values())
            else ""))
    if runnable:
        a_priori = C.seconds_per_image(user.macs, runnable, user.norm_entries)
        echo(f"estimate before starting (from the net's size at {C.ASSUMED_GFLOPS:g} G multiply-adds/s on 2 idle "
             f"cores): about {_fmt_s(a_priori)} per image, {_fmt_s(a_priori * n)} for {n} image(s); the probe (image "
             "1) measures it")
    manifest = {"model": user.info.fingerprint, "spec": user.spec.text, "images": imgs.digest, "n_images": n,
                "preprocess": imgs.preprocess, "seed": seed, "extended": bool(extended), "chunk": chunk,
                "input_shape": list(user.model.input_shape)}
    store = ChunkStore(output, manifest, resume=resume)
    # the probe: image 1 through every measure call, in this process (its peak memory is this process's); the
    # run's chunks start with image 1 alone (Settings.first_alone), so the probe's chunks are the run's first
    # chunks: measured (and recorded) once
    t_probe = time.perf_counter()
    ctx.s = replace(settings, images=1, chunk=1)
    probe_calls = C.plan(ctx, runnable)
    ctx.s = settings
    res = run_calls(ctx, probe_calls, store, progress=False)
    seen = {call_name(c) for c in probe_calls}
    probe_s = time.perf_counter() - t_probe
    unknown = seen - {call_name(c) for c in calls}
    if unknown:                 # the plan of one image must be the first chunks of the plan of n images
        raise RuntimeError(f"{len(unknown)} probe chunk(s) are not chunks of the run")
    calls = [c for c in calls if call_name(c) not in seen]
    rest = [c for c in calls if not store.has(call_name(c))]
    n_workers = workers if scheduler is None else 1
    est = estimate(probe_calls, res, n, rest, n_workers) if runnable else {"seconds": 0.0}
    trimmed = None
    if budgeted and runnable and n > 1 and rest:
        # the a-priori choice of n rests on VGG-16's costs; the probe measured this net: keep what fits the budget
        fit = C.images_that_fit(n, time.perf_counter() - t0, est["seconds"] / (n - 1))
        if fit < n:
            trimmed, n = n, fit
            settings = replace(settings, images=n)
            ctx.s = settings
            calls = [c for c in C.plan(ctx, runnable) if call_name(c) not in seen]
            rest = [c for c in calls if not store.has(call_name(c))]
            est = estimate(probe_calls, res, n, rest, n_workers)
    est.update(probe_seconds=probe_s, peak_mib=peak_mib(), probe_stored=res["stored"] if res else 0)
    source = Source(user.spec, str(Path(images).resolve()), imgs.preprocess, len(imgs),
                    None if labels is None else str(Path(labels).resolve()), imgs.digest, user.name,
                    tuple(sorted({"quick": False, "extended": bool(extended), "seed": seed, "images": n,
                                  "chunk": chunk, "first_alone": True, "claims": tuple(runnable)}.items())))
    if runnable:
        first = "image 1"
        echo(f"probe ({first} of {n}{', from the store' if est['probe_stored'] else ''}): "
             + "; ".join(f"{g} {_fmt_s(s)}/image" for g, (s, _) in sorted(est["groups"].items()))
             + f" → estimate {_fmt_s(est['seconds'])} for the {len(rest)} chunk(s) left"
             + (" (an upper bound: image 1 includes one-time costs)" if first == "image 1" and rest else "")
             + (f" on {workers} workers" if workers > 1 else "")
             + f"; peak memory {est['peak_mib'] / 1024:.1f} GB so far"
             + (" (each worker loads its own copy of the net)" if workers > 1 or scheduler else ""))
        if trimmed:
            echo(f"the probe's estimate for {trimmed} images does not fit the default run's budget "
                 f"({_fmt_s(C.BUDGET_SECONDS)}): {n} image(s) instead (--n-images sets the number)")
    t_run = time.perf_counter()
    run_calls(ctx, calls, store, source=source, workers=workers, scheduler=scheduler, progress=progress)
    measured = time.perf_counter() - t_run
    est["measured"] = measured          # the chunks after the probe (images 2…n)
    verdicts = C.verdicts(ctx, user, wanted, reasons)
    seconds = time.perf_counter() - t0
    peak = peak_mib()
    run_text = C.run_text(user, n, seconds, est, measured, peak)
    rerun = (f"chainlab verify --model {user.spec.arg}" + (f" --weights {weights}" if weights else "")
             + f" --images {images} --preprocess {imgs.preprocess} --n-images {n}"
             + (f" --labels {labels}" if labels else "") + (f" --claims {','.join(wanted)}" if claims else "")
             + (" --extended" if extended else "") + (f" --seed {seed}" if seed else "") + f" --chunk {chunk}"
             + f" --output {output}")
    md = write_run(verdicts, ctx.records, output, run_text=run_text, rerun=rerun,
                   title=f"chainlab verify — {user.name}", kind="own net", net=user.info.description,
                   trained=user.info.trained, images=n, claims=[v.claim for v in verdicts])
    width = max((len(v.label) for v in verdicts), default=0)
    for v in verdicts:
        echo(f"{v.claim}  {v.label:<{width}}  {v.observed[:160]}")
    c = tally(verdicts)
    echo(f"{user.name}: {c.get(Outcome.REPRODUCED, 0)} reproduced, {c.get(Outcome.NOT_REPRODUCED, 0)} not "
         f"reproduced, {c.get(Outcome.INCONCLUSIVE, 0)} inconclusive, {c.get(Outcome.NOT_CHECKED, 0)} not checked in "
         f"{_fmt_s(seconds)} (estimate {_fmt_s(est['seconds'] + probe_s)}); verdicts in {md}")
    return OwnRun(verdicts, ctx.records, md, user, est, seconds, peak)
