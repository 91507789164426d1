"""The papers' claims on one user's net: which can run, the chunks they measure, the verdicts, the defaults.

Every claim that can be checked on one net runs with the same spec, measure, decision and report code as on the
shipped nets (:mod:`chainlab.papers`): the user's net is registered in the run's context and the papers' protocols
take it as a net of its own (a protocol derived from its trace where the paper has none: injection at the logits,
cascading steps from the top; the Binder family derived from the net by W_l → c·W_l and by the
function-preserving (c, 1/c) rescaling; Sixt's Fig. 1 on the two top logits of the user's images).  The claims that
need what one net cannot give are "not checked" with the reason (:data:`NEEDS`).
"""
from __future__ import annotations

import math

from ...errors import MissingFileError, PatternError
from ...nets.specs import UNTRAINED
from ...papers import binder, mehrpanah, sixt
from ...papers.verdict import not_checked
from ...rules.pattern_rules import resolve_patterns
from ..verify import CLAIMS, ORDER

__all__ = ["ORDER", "SPECS", "NEEDS", "PAPER_IMAGES", "not_applicable", "plan", "verdicts", "default_images",
           "chunk_size", "run_text", "BUDGET_SECONDS", "ASSUMED_GFLOPS", "MACS_PER_IMAGE_FACTOR", "GROUP_PASSES",
           "CLAIM_GROUP", "seconds_per_image", "over_budget", "NORM_SECONDS_PER_ENTRY", "NORM_MEMORY_LIMIT",
           "norm_chains", "LARGE_NET_MACS", "images_that_fit"]

PAPERS = (sixt, binder, mehrpanah)
SPECS = {cid: spec for p in PAPERS for cid, spec in p.SPECS.items()}

NEEDS = {
    "S2": "S2 is about Sixt et al.'s 6-layer CIFAR net (sixt-cifar: LRP-α1β0 converges to 1 − 1e-6 there); it says "
          "nothing about another net",
    "S4": "S4 needs the PatternNet patterns A of the net, fitted on its training data (thousands of images; "
          "scripts/fit_patterns.py fits them for the shipped nets) — none are fitted for this net",
    "M1": "M1 needs a family of nets trained with Softplus(β) activations for several β (the activation study); one "
          "net shows no trend in β",
    "M4": "M4 needs the depth and weight-decay ablation families of trained nets (--extended)",
    "M5": "M5 needs a regularized net and its unregularized twin (--extended)",
}

# the papers' own image sets, for the report (the user's run states its own number beside them)
PAPER_IMAGES = ("Sixt et al.: 200 ImageNet validation images (VGG-16, ResNet-50) and CIFAR-10 test images; Binder et "
                "al.: the bounds hold per image (the study compares nets); Mehrpanah et al.: the first 1000 test images")

# the default run: each claim group's measuring costs about GROUP_PASSES[group] forward passes of the net per image
# (the net's multiply-adds per image × that factor, at ASSUMED_GFLOPS multiply-adds per second on 2 idle cores), and
# the default run must fit BUDGET_SECONDS.  The factors are a claim's seconds per image over 4 images (one-time costs
# included) over the 0.62 s of 15.5 G multiply-adds at 25 G/s, from scripts/bench_verify_own.py on an untrained
# VGG-16 at 224×224 on 2 cores at load 1.1–2.0 (results/bench_verify_own-vgg16-{a,b,c}.txt), rounded up: S1 273 s
# (110 passes), S6 2890 s (1165), S7 475 s (192), M2 468 s (189), S8 16 s and M3 17 s (7: 10 kept, small nets pay
# more per multiply-add), B1 alone (9 of B1–B3's 18 chains) 276 s (111, so 222 for the group: 250) — the probe
# (image 1) then measures the run before the other images start
BUDGET_SECONDS = 15 * 60
ASSUMED_GFLOPS = 25.0
GROUP_PASSES = {"S1/S3/S5": 120.0, "S6": 1200.0, "S7": 200.0, "S8": 10.0, "B1–B3": 250.0, "M2": 200.0, "M3": 10.0}
CLAIM_GROUP = {"S1": "S1/S3/S5", "S2": "S1/S3/S5", "S3": "S1/S3/S5", "S5": "S1/S3/S5", "S4": "S1/S3/S5",
               "S6": "S6", "S7": "S7", "S8": "S8", "B1": "B1–B3", "B2": "B1–B3", "B3": "B1–B3", "M2": "M2",
               "M3": "M3"}
MACS_PER_IMAGE_FACTOR = sum(GROUP_PASSES.values())      # every group: forward passes per image of the whole run
# B1–B3's exact ‖M_l‖₁ of a residual block multiplies the block out (prepare.NormBlock): seconds per stored entry of
# the multiplied-out blocks per chain (one rule at one scale; 3 scales × 6 rules per image, 3 × 3 with B1 alone),
# from torchvision:resnet18 at 64×64 (1.59e8 entries over its 8 blocks; B1 alone 37 s for image 1, 2-core machine
# at load ≈ 1.5, of which ≈ 2 s its forward passes) — and the largest block the memory of one run may hold (the
# issue's 8 GB for VGG-16/ResNet-50 at 224×224; ResNet-50's blocks there are ≈ 22 GB each)
NORM_SECONDS_PER_ENTRY = 2.5e-8
NORM_MEMORY_LIMIT = 8e9
MAX_IMAGES = 200           # Sixt et al.'s 200 images: the largest protocol of a claim that runs on one net
MIN_IMAGES = 1


def norm_chains(claims) -> int:
    """Chains per image whose residual blocks B1–B3 multiply out: 3 scales × the rules measured (6; 3 when B1 runs
    without B2 and B3, :func:`chainlab.papers.binder.protocol.measured_rules`); 0 without B1–B3."""
    claims = set(claims)
    if not claims & {"B1", "B2", "B3"}:
        return 0
    return 3 * (6 if claims & {"B2", "B3"} else 3)


def seconds_per_image(macs: int, claims, norm_entries: float = 0.0) -> float:
    """The a-priori seconds one image of ``claims`` takes on a net of ``macs`` multiply-adds per forward pass: the
    distinct groups' forward passes per image (GROUP_PASSES; B1–B3's for its 18 chains, half when B1 runs alone)
    × macs at ASSUMED_GFLOPS, plus for B1–B3 the residual blocks' ``norm_entries`` (Σ NormBlock.entries) ×
    NORM_SECONDS_PER_ENTRY × :func:`norm_chains`."""
    groups = {CLAIM_GROUP[c] for c in claims if c in CLAIM_GROUP}
    passes = sum(GROUP_PASSES[g] * (norm_chains(claims) / 18 if g == "B1–B3" else 1.0) for g in groups)
    return passes * macs / (ASSUMED_GFLOPS * 1e9) + norm_entries * NORM_SECONDS_PER_ENTRY * norm_chains(claims)


def default_images(macs: int, claims=None, norm_entries: float = 0.0) -> int:
    """The default ``--n-images`` of a net with ``macs`` multiply-adds per forward pass running ``claims`` (default:
    every group): as many as fit BUDGET_SECONDS at the a-priori speed (:func:`seconds_per_image`), at least 1, at
    most MAX_IMAGES."""
    per_image = seconds_per_image(macs, CLAIM_GROUP if claims is None else claims, norm_entries)
    return int(max(MIN_IMAGES, min(MAX_IMAGES, math.floor(BUDGET_SECONDS / max(per_image, 1e-9)))))


def over_budget(macs: int, claims, norm_entries: float = 0.0) -> dict:
    """{claim: reason} of the claims a default run (no --claims, no --n-images) leaves out because one image of all
    of them would not fit BUDGET_SECONDS: the most expensive groups go first (of equal ones the later in
    GROUP_PASSES) until one image of the rest fits.
    Empty when everything fits (then :func:`default_images` gives the number of images)."""
    kept = list(claims)
    out = {}
    while kept and seconds_per_image(macs, kept, norm_entries) > BUDGET_SECONDS:
        groups = {CLAIM_GROUP[c] for c in kept if c in CLAIM_GROUP}
        if not groups:
            break
        cost = {g: seconds_per_image(macs, [c for c in kept if CLAIM_GROUP.get(c) == g], norm_entries)
                for g in groups}
        worst = max(groups, key=lambda g: (cost[g], list(GROUP_PASSES).index(g)))   # ties: the later
        gone = [c for c in kept if CLAIM_GROUP.get(c) == worst]
        minutes = cost[worst] / 60
        for c in gone:
            out[c] = (f"not checked at this size: one image of {', '.join(gone)} takes about {minutes:.0f} min on 2 "
                      f"cores for a net of {macs / 1e9:.3g} G multiply-adds (estimated before starting), more than the "
                      f"default run's {BUDGET_SECONDS // 60} min with the other claims; run it with --claims "
                      f"{','.join(gone)} (and --n-images)")
        kept = [c for c in kept if c not in gone]
    return out


def images_that_fit(n: int, elapsed: float, per_image: float) -> int:
    """The default run's images once the probe has measured image 1: ``elapsed`` seconds spent (start-up and the
    probe), each further image about ``per_image`` seconds (the probe's estimate) — 1 + the further images that fit
    what is left of BUDGET_SECONDS, at least 1, at most ``n`` (the a-priori choice, which assumed
    ASSUMED_GFLOPS and GROUP_PASSES measured on VGG-16: a ResNet-50 at 224×224 got 3 images and took 18.6 min)."""
    if per_image <= 0:
        return int(n)
    return int(max(1, min(int(n), 1 + math.floor((BUDGET_SECONDS - elapsed) / per_image))))


LARGE_NET_MACS = 2e8       # a forward pass above this: chunks of one image, freed large blocks handed back


def chunk_size(user) -> int:
    """Images per stored chunk: one for nets whose forward pass takes more than LARGE_NET_MACS multiply-adds (a chunk
    of a VGG-16 takes minutes: resuming loses at most one image), else the papers' 50."""
    return 1 if user.macs > LARGE_NET_MACS else 50


def patterns_available(user) -> bool:
    """Whether the net has PatternNet patterns that fit it (the shipped ones of a shipped architecture's name)."""
    try:
        resolve_patterns(user.model, None).check(user.traced, what=user.name)
    except (MissingFileError, PatternError):
        return False
    return True


def not_applicable(claim: str, user):
    """Why ``claim`` cannot be checked on the user's net, or None."""
    if claim == "S2" and user.name == "sixt-cifar":
        return None
    if claim == "S4" and patterns_available(user):
        return None
    if claim == "B3" and any(st.kind == "residual" for st in user.traced.stages):
        return ("B3 rests on the a-priori range of the attributions over a perturbation's support, from interval "
                "bounds that chainlab does not propagate through residual blocks")
    big = max(user.norm_blocks, key=lambda b: b.bytes, default=None)
    if claim in ("B1", "B2", "B3") and big is not None and big.bytes > NORM_MEMORY_LIMIT:
        return (f"{claim} needs each residual block's ‖M_l‖₁ exactly, and chainlab multiplies a block out to get it: "
                f"block {big.name} ({big.n_in}×{big.n_out}) would take ≈ {big.bytes / 1e9:.0f} GB, more than "
                f"{NORM_MEMORY_LIMIT / 1e9:.0f} GB (at a smaller input size the blocks shrink with H·W)")
    return NEEDS.get(claim)


def plan(ctx, claims) -> list:
    """The chunks (:class:`chainlab.papers.context.Chunk`) the claims measure on the registered net, in the order
    the claims run."""
    out = []
    for p in PAPERS:
        out += p.plan(ctx, [c for c in claims if c in p.ORDER])
    return out


def verdicts(ctx, user, wanted, reasons) -> list:
    """The verdicts of ``wanted`` (claim order): "not checked" with the reason where ``reasons`` has one, else the
    paper's claim function on the run's context (its chunks already measured); an untrained net's verdicts say so
    first."""
    got = {}
    done = set()
    for c in wanted:
        if reasons.get(c):
            got[c] = not_checked(SPECS[c], reasons[c])
            continue
        fn = CLAIMS[c]
        if fn in done:
            continue
        done.add(fn)
        for v in fn(ctx):
            got[v.claim] = v
    out = [got[c] for c in ORDER if c in wanted and c in got]
    if not user.info.trained:
        for v in out:
            v.caveats = (UNTRAINED + f" ({user.info.description})",) + tuple(v.caveats)
            v.observed = f"{UNTRAINED}. {v.observed}"
    return out


def run_text(user, n, seconds, est, measured, peak) -> str:
    """The run's paragraph of verify.md: the net, the images (and the papers'), the estimate against the time taken."""
    imgs = user.images
    return (f"Net: {user.info.description} ({user.n_classes} classes, input {tuple(user.model.input_shape[1:])}, "
            f"{user.macs / 1e9:.3g} G multiply-adds per image, state {user.info.fingerprint[:19]}…)"
            + ("" if user.info.trained else f" — **{UNTRAINED}**") + ". "
            f"Images: {n} from {imgs.source} (preprocess {imgs.preprocess}; "
            + ("labels given" if imgs.labels is not None else "labels: the net's predictions")
            + f"); each claim uses at most this many (its protocol may use fewer). The papers: {PAPER_IMAGES}. "
            f"Time: {seconds:.0f} s in all ({measured:.0f} s measuring after the probe; the probe's estimate "
            f"{est.get('seconds', 0) + est.get('probe_seconds', 0):.0f} s); peak memory {peak / 1024:.1f} GB.")
