"""Sixt, Granz, Landgraf (ICML 2020), "When Explanations Lie": the claims S1–S8 checked on nets.

``SPECS`` (:mod:`.spec`: the pre-registered claims with provenance), ``CLAIMS`` {id: fn(ctx) → [Verdict]} and
``ORDER``.  Each claim: :mod:`.protocol` says which nets (per role and training seed), images and sizes;
:mod:`.measure` measures per-image numbers; :mod:`.decide` turns them into a decision (pure); :mod:`.report`
writes what was observed and draws the figures.  The claims that share a pass (S1, S2, S3, S5: the CSC and
random-logit pass of every method) share it through ``ctx.cache``.

* S1 Fig. 5: every modified BP method but LRP-z and DeepLIFT reaches CSC ≥ 0.99.
* S2 Fig. 5d: LRP-α1β0 1 − CSC < 1e-6 on the 6-layer net.
* S3 DeepLIFT (Rescale, RevealCancel) < 0.99, DeepLIFT Ablation ≥ 0.99.
* S4 Fig. 3: σ1/σ2 of the patterns > 6 for almost all layers; W⊙A more rank-1-like than W.
* S5 Fig. 4a: random-logit SSIM ≥ 0.9 for the converging methods, ≤ 0.8 for the rest.
* S6 Thm. 1 / App. B: σ2/σ1 of the LRP-α1β0 prefix products decays by a factor < 1 per layer; the simulation's
  non-negative products too.
* S7 Fig. 4b / App. E: cascading randomization leaves the converging methods' maps similar.
* S8 Fig. 1: LRP-α1β0 maps of the two labels of a two-object scene hardly differ.
"""
from __future__ import annotations

import time

import numpy as np

from ...errors import MissingFileError, PatternError
from ..context import Chunk, on_one_thread, progress
from ..verdict import Verdict, not_checked
from . import decide as D
from . import measure as M
from . import report as R
from .protocol import EXTENDED, SEED0_ONLY, boundaries, first_conv_step, net_protocol, roles, seed_nets, sizes
from .spec import SPECS, beside, decided

__all__ = ["SPECS", "CLAIMS", "ORDER", "shared_pass", "plan", "pass_chunks", "prefix_chunks", "cascade_chunks",
           "two_object_chunks"]

EXTRA_IDS = ("excitation-bp", "contrastive-ebp", "contrastive-lrp")


# ---------------------------------------------------------------------------------------------------------------
# nets per seed


def _nets(ctx, claim):
    """([(seed, role, net)] with weights, [nets without weights]) for the roles of ``claim`` in this setting (the
    shipped further seeds of :data:`~.protocol.SEED0_ONLY`'s claims only with --extended: :func:`_later_seeds`)."""
    have, missing = [], []
    for role in roles(ctx, claim):
        for seed, net in seed_nets(ctx, role).items():
            if _later(ctx, claim, seed, net):
                continue
            if ctx.shipped(net) is None:
                missing.append(net)
            else:
                have.append((seed, role, net))
    return have, missing


def _later(ctx, claim, seed, net) -> bool:
    """Whether this run leaves ``net``, training seed ``seed`` of one of ``claim``'s roles, to --extended: a shipped
    further seed of a :data:`~.protocol.SEED0_ONLY` claim (a user's own seeds are always measured)."""
    return seed > 0 and not ctx.s.extended and claim in SEED0_ONLY and net not in ctx.registered


def _later_seeds(ctx, claim) -> list:
    """The nets :func:`_later` leaves out of ``claim`` in this run."""
    return [net for role in roles(ctx, claim) for seed, net in seed_nets(ctx, role).items()
            if _later(ctx, claim, seed, net)]


def _seed_caveats(ctx, *claims) -> tuple:
    """"Left to --extended" for the further seeds this run skipped (with the reason), per claim role."""
    later = list(dict.fromkeys(n for c in claims for n in _later_seeds(ctx, c)))
    return (f"Left to --extended: {', '.join(later)} — {EXTENDED['further_seeds']}.",) if later else ()


def _chunks(ctx, n=None):
    Z = sizes(ctx)
    n = Z.images if n is None else n
    if ctx.s.images is not None:            # a run on a user's net: its chunks (chainlab.app.own)
        return ctx.s.chunks(n, default=Z.chunk)
    return [range(lo, min(lo + Z.chunk, n)) for lo in range(0, n, Z.chunk)]


# ---------------------------------------------------------------------------------------------------------------
# the chunks each claim measures (the claims run exactly these; a run on a user's net stores, resumes and farms
# them out through plan())


def _kw(**kw):
    return tuple(kw.items())


def pass_chunks(ctx, net, role, seed=0, methods=None) -> list:
    """The chunks of the shared pass (S1, S2, S3, S5) on ``net``."""
    P = net_protocol(ctx, net, role)
    inject = tuple(P.inject if ctx.s.extended else P.inject[:1])
    methods = tuple(_pass_methods(ctx, net, role, seed) if methods is None else methods)
    return [Chunk(M.csc_pass, (net, r, methods), _kw(inject=inject, side=P.side, targets=True,
                                                     independent=ctx.s.extended),
                  f"S1/S3/S5 · {net}", len(r)) for r in _chunks(ctx)]


def prefix_chunks(ctx, net, mid) -> list:
    """The chunks of S6's prefix products (method ``mid``) on ``net``'s first theorem images."""
    Z = sizes(ctx)
    n = min(Z.theorem_images, len(ctx.images(net, Z.theorem_images)[0]))
    return [Chunk(M.prefix_ratios, (net, r, M.METHOD[mid]), _kw(columns=Z.columns), f"S6 · {net}", len(r))
            for r in ctx.s.chunks(n, default=Z.prefix_chunk)]


def cascade_chunk(ctx, net, images, methods, steps, keep, pass_chunk=None):
    """S7 on one chunk of images: the cascade of every method in ``methods`` (one randomized copy and one forward
    pass per step for all), with the original maps of the shared pass's chunk when there is one (pattern methods:
    the frozen A⊙W rule recomputes them); {method.id: :func:`~.measure.cascade`'s dict}."""
    orig = {}
    if pass_chunk is not None:
        got = pass_chunk(ctx)
        orig = {m.id: got[m.id].get("maps") for m in methods if not m.rule.startswith("pattern") and m.id in got}
    return M.cascade_many(ctx, net, images, methods, steps, original_maps=orig, keep=keep)


def cascade_chunks(ctx, net, role, seed=0, with_pass=None) -> list:
    """The chunks of S7 on ``net``: every cascaded method together on each chunk of images, after the shared
    pass's chunk whose maps it reuses when the run has the shared pass (``with_pass``; None: when it was measured
    already)."""
    Z = sizes(ctx)
    spec = SPECS["S7"]
    P = net_protocol(ctx, net, role)
    first = first_conv_step(ctx, net, P.cascade)
    steps = tuple(P.cascade if ctx.s.extended else P.cascade[:first + 1])
    if with_pass is None:
        with_pass = ("sixt-shared", net, None) in ctx.cache
    passes = ({c.args[1]: c for c in pass_chunks(ctx, net, role, seed)}
              if with_pass and net in [n for _, _, n in _nets(ctx, "csc")[0]] else {})
    methods = tuple(_cascade_methods(ctx, net, role, spec, seed))
    out = []
    for r in _chunks(ctx):
        pc = passes.get(r)
        out.append(Chunk(cascade_chunk, (net, r, methods, steps, Z.heatmaps if r.start == 0 and seed == 0 else 0, pc),
                         (), f"S7 · {net}", len(r), (pc,) if pc is not None else ()))
    return out


def s2_chunks(ctx, net, role, scale: float = 255.0) -> list:
    """The chunks of S2's own pass (LRP-α1β0, the inputs times ``scale``, no targets) on ``net``: the ×255 pass,
    and the ×1 pass where the shared pass does not cover the net."""
    P = net_protocol(ctx, net, role)
    kw = _kw(inject=tuple(P.inject[:1]), side=P.side, targets=False, scale=scale)
    return [Chunk(M.csc_pass, (net, r, (M.METHOD["lrp-a1b0"],)), kw, f"S2 · {net}", len(r))
            for r in _chunks(ctx)]


def simulation_chunk(ctx) -> Chunk:
    """App. B's simulation of S6 (random matrices of VGG-16's shapes; no net): one chunk."""
    Z = sizes(ctx)
    return Chunk(M.cached_simulation, (("vanilla", "relu", "positive", "non-negative", "stochastic"),),
                 _kw(shapes=Z.sim_shapes, draws=Z.draws, seed=ctx.s.seed,
                     alphas=() if ctx.s.quick else tuple(range(1, 11))), "S6 · App. B simulation", 1)


def class_difference_chunk(ctx, net, methods) -> Chunk:
    """S8 on a shipped net: its two-object test scenes, one chunk."""
    return Chunk(M.class_differences, (net, sizes(ctx).two_object, tuple(methods)), (), f"S8 · {net}",
                 sizes(ctx).two_object)


def two_object_chunks(ctx, net, methods) -> list:
    """S8 on a user's net: the top-two-logit class difference on its own images, per chunk."""
    Z = sizes(ctx)
    return [Chunk(M.top_two_differences, (net, r, tuple(methods)), (), f"S8 · {net}", len(r))
            for r in ctx.s.chunks(Z.two_object, default=Z.two_object)]


def _s8_methods(ctx, net):
    ok, _ = M.methods_on(ctx, net)
    wanted = ("lrp-a1b0", "gradient")
    return [m for m in ok if m.id != M.SMOOTHGRAD.id and (ctx.s.extended or m.id in wanted)
            and (ctx.s.extended or m.id not in EXTRA_IDS)]


def plan(ctx, claims) -> list:
    """Every chunk the claims ``claims`` measure in this run (in the order they run), for a run that stores, resumes
    or farms them out; the claims then find them in ``ctx.cache``."""
    claims = set(claims)
    out = []
    if claims & {"S1", "S3", "S5"}:
        for seed, role, net in _nets(ctx, "csc")[0]:
            out += pass_chunks(ctx, net, role, seed)
    if "S2" in claims:
        shared = {net for _, _, net in _nets(ctx, "csc")[0]} if claims & {"S1", "S3", "S5"} else set()
        for seed, role, net in _nets(ctx, "s2")[0]:
            out += ([] if net in shared else s2_chunks(ctx, net, role, scale=1.0)) + s2_chunks(ctx, net, role)
    if "S6" in claims:
        theorem = _nets(ctx, "theorem")[0]
        if theorem:
            out.append(simulation_chunk(ctx))
        for seed, role, net in theorem:
            out += [c for mid in _s6_methods(ctx, seed) for c in prefix_chunks(ctx, net, mid)]
            out.append(Chunk(M.layer_hypotheses, (net,), (), f"S6 · {net}", 1))
    if "S7" in claims:
        for seed, role, net in _nets(ctx, "cascade")[0]:
            out += cascade_chunks(ctx, net, role, seed, with_pass=bool(claims & {"S1", "S3", "S5"}))
    if "S8" in claims:
        for seed, role, net in _nets(ctx, "two_object")[0]:
            if net in ctx.registered:
                out += two_object_chunks(ctx, net, _s8_methods(ctx, net))
            elif tuple(ctx.images(net, 1)[0].shape[1:]) == (3, 32, 32):
                out.append(class_difference_chunk(ctx, net, _s8_methods(ctx, net)))
    return out


# ---------------------------------------------------------------------------------------------------------------
# the shared pass of S1, S2, S3, S5


def _pass_methods(ctx, net, role, seed):
    """The methods of the shared pass: every method that runs on the net but SmoothGrad (a map, no chain); on a
    further training seed only those a decision of S1, S3 or S5 rests on (the rest is reported for seed 0)."""
    ok, _ = M.methods_on(ctx, net)
    skip = (M.SMOOTHGRAD.id,)          # §5's extras (EXTRA_IDS) run batched, as cheap as LRP-α1β0: in every run
    ms = [m for m in ok if m.id not in skip]
    if seed == 0 or ctx.s.extended:
        return ms
    needed = {i for c in ("S1", "S3", "S5") for i in decided(SPECS[c], role)}
    return [m for m in ms if m.id in needed]


def shared_pass(ctx, net, role, seed: int = 0, methods=None) -> dict:
    """The CSC and random-logit pass of every method on ``net`` (cached; its records written once):
    {"bounds", "inject" (stage names), "curves": {mid: {(inject, mode): {j: (n,) per-image CSC}}},
    "ssim": {mid: (n,)}, "maps": {mid: (n, H, W)}, "hist": {mid: {(inject, mode): {j: (bins,) pooled counts}}},
    "methods", "seconds"}; ``methods``: the methods (default: :func:`_pass_methods`)."""
    key = ("sixt-shared", net, None if methods is None else tuple(m.id for m in methods))
    if key in ctx.cache:
        return ctx.cache[key]
    t0 = time.perf_counter()
    P = net_protocol(ctx, net, role)
    inject = P.inject if ctx.s.extended else P.inject[:1]
    methods = _pass_methods(ctx, net, role, seed) if methods is None else list(methods)
    chunks = [c(ctx) for c in progress(pass_chunks(ctx, net, role, seed, methods),
                                       f"{net} · Sixt CSC/SSIM ({len(methods)} methods)", ctx.s.progress)]
    bounds = boundaries(ctx, net)
    out = {"bounds": bounds, "inject": inject, "methods": methods, "curves": {}, "ssim": {}, "maps": {}, "hist": {}}
    for m in methods:
        cs = [c[m.id] for c in chunks]
        out["curves"][m.id] = {im: {j: M.per_image(cs, "csc", im, j, "csc") for j in js}
                               for im, js in cs[0]["csc"].items()}
        out["hist"][m.id] = {im: {j: M.per_image(cs, "csc", im, j, "hist").sum(axis=0) for j in js}
                             for im, js in cs[0]["csc"].items()}
        out["ssim"][m.id] = M.per_image(cs, "ssim")
        out["maps"][m.id] = M.per_image(cs, "maps")
    out["seconds"] = time.perf_counter() - t0
    R.record_pass(ctx, net, role, seed, out)
    ctx.cache[key] = out
    return out


def _pm_pass(ctx, net, role):
    """--extended: the shared pass of DeepLIFT's ± rule (``deeplift-*-pm``, beside S3) with tied and independent ±
    injections; {(role, pm id): {(inject, mode): {j: values}}}."""
    ok, _ = M.methods_on(ctx, net)
    have = {m.id for m in ok}
    methods = [m for m in M.DEEPLIFT_PM if m.id[:-len("-pm")] in have]
    if not methods:
        return {}
    sh = shared_pass(ctx, net, role, 0, methods=methods)
    return {(role, mid): modes for mid, modes in sh["curves"].items()}


def _csc_data(ctx):
    """{seed: {"curves": {(role, mid): {j: values}}, "pm": (the ± rule, tied), "indep": (its independent ±
    injections), "bounds": {role: …}, "ssim": {(role, mid): …}}}, the missing nets, the seconds of the passes run
    here."""
    have, missing = _nets(ctx, "csc")
    data, secs = {}, 0.0
    for seed, role, net in have:
        fresh = ("sixt-shared", net, None) not in ctx.cache
        sh = shared_pass(ctx, net, role, seed)
        secs += sh["seconds"] if fresh else 0.0
        d = data.setdefault(seed, {"curves": {}, "pm": {}, "indep": {}, "bounds": {}, "ssim": {}, "nets": {}})
        d["bounds"][role] = sh["bounds"]
        d["nets"][role] = net
        inj = sh["inject"][0]
        for mid, modes in sh["curves"].items():
            d["curves"][(role, mid)] = modes[(inj, "tied")]
            d["ssim"][(role, mid)] = sh["ssim"][mid]
        if ctx.s.extended and seed == 0:
            for key, modes in _pm_pass(ctx, net, role).items():
                d["pm"][key] = modes[(inj, "tied")]
                if (inj, "independent") in modes:
                    d["indep"][key] = modes[(inj, "independent")]
    return data, missing, secs


def _decided_per_seed(fn, data, *args):
    decisions = {s: fn(*(d[a] for a in args)) for s, d in data.items()}
    return D.over_seeds(decisions)


def claim_s1_s3(ctx) -> list:
    t0 = time.perf_counter()
    data, missing, _ = _csc_data(ctx)
    if not data:
        why = R.missing_text(missing) or "no net of the role ran"
        return [not_checked(SPECS["S1"], why), not_checked(SPECS["S3"], why)]
    d1, p1 = _decided_per_seed(D.decide_s1, data, "curves", "bounds")
    d3, p3 = _decided_per_seed(D.decide_s3, data, "curves", "bounds")
    dt = time.perf_counter() - t0
    s1 = Verdict(SPECS["S1"], d1, R.observed_csc(data, SPECS["S1"], missing), dt,
                 figures=R.fig5_names(data), paper_numbers=R.PAPER_NUMBERS["S1"],
                 beside=R.beside_csc(ctx, data, SPECS["S1"]), per_seed=p1 if len(p1) > 1 else {},
                 caveats=R.extended_caveats(ctx, ("app_f",)) + _seed_caveats(ctx, "csc"),
                 numbers=R.numbers_csc(data, SPECS["S1"]))
    s3 = Verdict(SPECS["S3"], d3, R.observed_csc(data, SPECS["S3"], missing), 0.0, figures=R.fig5_names(data),
                 paper_numbers=R.PAPER_NUMBERS["S3"], beside=R.beside_s3(ctx, data),
                 per_seed=p3 if len(p3) > 1 else {},
                 caveats=R.extended_caveats(ctx, ("independent",)) + _seed_caveats(ctx, "csc"),
                 numbers=R.numbers_csc(data, SPECS["S3"]))
    return [s1, s3]


def claim_s2(ctx) -> list:
    t0 = time.perf_counter()
    spec = SPECS["S2"]
    have, missing = _nets(ctx, "s2")
    if not have:
        return [not_checked(spec, R.missing_text(missing))]
    per_seed, curves255 = {}, {}
    Z = sizes(ctx)
    m = M.METHOD["lrp-a1b0"]
    for seed, role, net in have:
        P = net_protocol(ctx, net, role)
        inj = P.inject[:1]
        sh = ctx.cache.get(("sixt-shared", net, None))
        if sh is not None and "lrp-a1b0" in sh["curves"]:
            curve = sh["curves"]["lrp-a1b0"][(inj[0], "tied")]
        else:
            cs = [c(ctx)[m.id] for c in s2_chunks(ctx, net, role, scale=1.0)]
            curve = {j: M.per_image(cs, "csc", (inj[0], "tied"), j, "csc") for j in cs[0]["csc"][(inj[0], "tied")]}
        c255 = [c(ctx)[m.id] for c in s2_chunks(ctx, net, role)]
        curves255[(seed, role)] = {j: M.per_image(c255, "csc", (inj[0], "tied"), j, "csc")
                                   for j in c255[0]["csc"][(inj[0], "tied")]}
        per_seed.setdefault(seed, {})[(role, "lrp-a1b0")] = curve
        R.record_s2(ctx, net, role, seed, curve, curves255[(seed, role)], Z.images)
    decisions = {s: D.decide_s2({k: 1.0 - c[0] for k, c in v.items()}) for s, v in per_seed.items()}
    dec, ps = D.over_seeds(decisions)
    return [Verdict(spec, dec, R.observed_s2(per_seed, curves255), time.perf_counter() - t0, figures=("sixt_s2.png",),
                    paper_numbers=R.PAPER_NUMBERS["S2"], per_seed=ps if len(ps) > 1 else {},
                    numbers=R.numbers_s2(per_seed))]


def claim_s4(ctx) -> list:
    t0 = time.perf_counter()
    spec = SPECS["S4"]
    have, missing = _nets(ctx, "patterns")
    per_seed, problems, texts = {}, [], []
    for seed, role, net in have:
        try:
            rows, ratios = M.fig3_ratios(ctx, net)
        except (MissingFileError, PatternError) as e:
            problems.append(f"{net}: no usable patterns ({type(e).__name__}: {e})")
            continue
        for r in rows:
            ctx.record(**{**r, "role": role, "seed": seed})
        per_seed.setdefault(seed, {})[role] = ratios
        texts.append(R.s4_line(net, ratios, spec))
    if ctx.s.extended:
        R.record_s4_chains(ctx)
    if not per_seed:
        return [not_checked(spec, "; ".join(problems + [R.missing_text(missing)]).strip("; "))]
    dec, ps = D.over_seeds({s: D.decide_s4(v) for s, v in per_seed.items()})
    figs = tuple(f"sixt_fig3_{net}.png" for _, _, net in have if any(t.startswith(net + ":") for t in texts))
    return [Verdict(spec, dec, "; ".join(texts) + "." + R.missing_text(missing, lead=" "), time.perf_counter() - t0,
                    figures=figs, paper_numbers=R.PAPER_NUMBERS["S4"], per_seed=ps if len(ps) > 1 else {},
                    beside=R.beside_roles(spec, per_seed), caveats=tuple(problems),
                    numbers={p.name: p.estimate.value for p in dec.parts if p.estimate is not None})]


def claim_s5(ctx) -> list:
    t0 = time.perf_counter()
    spec = SPECS["S5"]
    data, missing, _ = _csc_data(ctx)
    if ctx.s.extended:
        for seed, role, net in _nets(ctx, "csc")[0]:
            if M.SMOOTHGRAD.id in decided(spec, role) or M.SMOOTHGRAD.id in beside(spec, role):
                sg = [M.smoothgrad_ssim(ctx, net, r) for r in progress(_chunks(ctx), f"{net} · SmoothGrad",
                                                                        ctx.s.progress)]
                data[seed]["ssim"][(role, M.SMOOTHGRAD.id)] = M.per_image(sg, "ssim")
                R.record_ssim(ctx, net, role, seed, M.SMOOTHGRAD, M.per_image(sg, "ssim"))
    if not data:
        return [not_checked(spec, R.missing_text(missing))]
    dec, ps = _decided_per_seed(D.decide_s5, data, "ssim")
    return [Verdict(spec, dec, R.observed_sanity(data, spec, "ssim", missing), time.perf_counter() - t0,
                    figures=("sixt_fig4a.png",), paper_numbers=R.PAPER_NUMBERS["S5"],
                    beside=R.beside_sanity(data, spec, "ssim"), per_seed=ps if len(ps) > 1 else {},
                    caveats=R.extended_caveats(ctx, ("smoothgrad",)) + _seed_caveats(ctx, "csc"),
                    numbers=R.numbers_sanity(data, spec, "ssim"))]


def _s6_methods(ctx, seed):
    """S6's chains: LRP-α1β0 (decided) and the gradient (beside) on seed 0; a further seed: the decided only."""
    return ("lrp-a1b0", "gradient") if seed == 0 or ctx.s.extended else ("lrp-a1b0",)


def claim_s6(ctx) -> list:
    t0 = time.perf_counter()
    spec = SPECS["S6"]
    Z = sizes(ctx)
    have, missing = _nets(ctx, "theorem")
    prefix, texts = {}, []
    for seed, role, net in have:
        for mid in _s6_methods(ctx, seed):
            prs = [c(ctx) for c in prefix_chunks(ctx, net, mid)]
            pr = {"ratio": np.concatenate([p["ratio"] for p in prs]),
                  "hilbert": np.concatenate([p["hilbert"] for p in prs]), "names": prs[0]["names"]}
            prefix.setdefault(seed, {})[(role, mid)] = pr["ratio"]
            R.record_prefix(ctx, net, role, seed, mid, pr)
        hyp = M.layer_hypotheses(ctx, net)
        R.record_hypotheses(ctx, net, role, seed, hyp)
        texts.append(R.s6_net_line(net, prefix[seed][(role, "lrp-a1b0")], prefix[seed].get((role, "gradient")), hyp))
    sim = simulation_chunk(ctx)(ctx)
    R.record_simulation(ctx, "VGG-16 shapes" if not ctx.s.quick else "VGG-16 shapes / 16", sim)
    for seed, role, net in have:                  # App. B's variants from the real nets' weights (beside)
        if seed != 0 or ctx.s.quick:
            continue
        try:
            learned = M.learned_matrices(ctx, net)
        except (MissingFileError, PatternError) as e:
            texts.append(f"{net}: no learned simulation ({type(e).__name__})")
            continue
        if learned:
            shapes = tuple(np.shape(mm) for mm in next(iter(learned.values()))[0])
            R.record_simulation(ctx, net, M.simulation(("vanilla", "relu", "non-negative"), shapes=shapes,
                                                       draws=Z.draws, seed=ctx.s.seed, learned=learned))
    if not prefix:
        return [not_checked(spec, R.missing_text(missing))]
    decisions = {s: D.decide_s6(p, sim if s == 0 else {}) for s, p in prefix.items()}
    dec, ps = D.over_seeds(decisions)
    return [Verdict(spec, dec, "; ".join(texts) + ". " + R.sim_line(sim) + R.missing_text(missing, lead=" "),
                    time.perf_counter() - t0, figures=("sixt_theorem1.png", "sixt_appB.png"),
                    paper_numbers=R.PAPER_NUMBERS["S6"], per_seed=ps if len(ps) > 1 else {},
                    caveats=_seed_caveats(ctx, "theorem"), numbers=R.numbers_s6(prefix, sim))]


def _cascade_methods(ctx, net, role, spec, seed):
    """The methods cascaded on a net: decided and beside ones (Fig. 6a's LRP-CMP); a further seed: the decided."""
    ok, _ = M.methods_on(ctx, net)
    wanted = set(decided(spec, role)) | (set(beside(spec, role)) if seed == 0 or ctx.s.extended else set())
    out = []
    for m in ok:
        if m.id == M.SMOOTHGRAD.id and not ctx.s.extended:
            continue
        if m.id in EXTRA_IDS and not ctx.s.extended:
            continue
        if m.id in wanted or role not in spec.scope.methods and role not in spec.scope.beside:
            out.append(m)
    return out


def claim_s7(ctx) -> list:
    t0 = time.perf_counter()
    spec = SPECS["S7"]
    have, missing = _nets(ctx, "cascade")
    data, where, texts, figs = {}, {}, [], ["sixt_fig4b.png"]
    for seed, role, net in have:
        P = net_protocol(ctx, net, role)
        first = first_conv_step(ctx, net, P.cascade)
        steps = P.cascade if ctx.s.extended else P.cascade[:first + 1]
        d = data.setdefault(seed, {"ssim": {}})
        by_method = {}
        for c in progress(cascade_chunks(ctx, net, role, seed), f"{net} · cascading randomization", ctx.s.progress):
            got = c(ctx)
            for m in c.args[2]:
                by_method.setdefault(m.id, (m, []))[1].append(got[m.id])
        for m, chunks in by_method.values():
            ssim = np.concatenate([c["ssim"] for c in chunks], axis=1)
            d["ssim"][(role, m.id)] = ssim[first]
            R.record_cascade(ctx, net, role, seed, m, chunks[0]["labels"], ssim, first, chunks[0])
        where[role] = P.cascade[first][0]
        figs += [f"sixt_fig1a_{net}.png"] if seed == 0 else []
        texts.append(f"{net}: steps {', '.join(label for label, _ in steps)}; decided at '{P.cascade[first][0]}'")
    if not data:
        return [not_checked(spec, R.missing_text(missing))]
    dec, ps = D.over_seeds({s: D.decide_s7(v["ssim"], where=where) for s, v in data.items()})
    extra = ("cascade_all", "app_e", "smoothgrad", "extras")
    return [Verdict(spec, dec, "; ".join(texts) + ". " + R.observed_sanity(data, spec, "ssim", missing),
                    time.perf_counter() - t0, figures=tuple(figs),
                    paper_numbers=R.PAPER_NUMBERS["S7"], beside=R.beside_sanity(data, spec, "ssim"),
                    per_seed=ps if len(ps) > 1 else {},
                    caveats=R.extended_caveats(ctx, extra) + _seed_caveats(ctx, "cascade"),
                    numbers=R.numbers_sanity(data, spec, "ssim"))]


def claim_s8(ctx) -> list:
    t0 = time.perf_counter()
    spec = SPECS["S8"]
    have, missing = _nets(ctx, "two_object")
    data = {}
    top_two = []
    for seed, role, net in have:
        methods = _s8_methods(ctx, net)
        if net in ctx.registered:         # no two-object images of the user's: the two top logits of its own images
            chunks = [c(ctx) for c in two_object_chunks(ctx, net, methods)]
            diffs = {m.id: np.concatenate([c[m.id] for c in chunks]) for m in methods}
            top_two.append(net)
        elif tuple(ctx.images(net, 1)[0].shape[1:]) != (3, 32, 32):
            continue
        else:
            diffs = class_difference_chunk(ctx, net, methods)(ctx)
        for mid, v in diffs.items():
            data.setdefault(seed, {})[(role, mid)] = v
        R.record_class_difference(ctx, net, role, seed, methods, diffs)
    if not data:
        return [not_checked(spec, R.missing_text(missing) or "no net takes two-object scenes")]
    dec, ps = D.over_seeds({s: D.decide_s8(v) for s, v in data.items()})
    top = ((f"{', '.join(top_two)}: no two-object images given — the two labels are the net's two top logits on its "
            "own images (the paper's Fig. 1: two objects of one image)",) if top_two else ())
    return [Verdict(spec, dec, R.observed_s8(data, spec, missing), time.perf_counter() - t0, figures=("sixt_fig1.png",),
                    paper_numbers=R.PAPER_NUMBERS["S8"], beside=R.beside_s8(data, spec),
                    per_seed=ps if len(ps) > 1 else {}, caveats=top + R.extended_caveats(ctx, ("s8_all",)),
                    numbers=R.numbers_s8(data))]


# S6's float32 prefix columns change in the last bits with torch's thread count: it runs on one thread
CLAIMS = {"S1": claim_s1_s3, "S3": claim_s1_s3, "S2": claim_s2, "S4": claim_s4, "S5": claim_s5,
          "S6": on_one_thread(claim_s6), "S7": claim_s7, "S8": claim_s8}
ORDER = ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8")
