"""`chainlab verify --model … --images …` end to end: the shipped sixt-cifar given as a model file with its test
scenes as PNG gives the built-in run's numbers; a small net of the user's (conv, BN, stride, padding, no-bias, pool)
through the CLI, untrained and with a state dict, every applicable claim decided and --resume identical; Binder's
family of a user's net and of torchvision's resnet18; the default run's 15-minute budget and the probe's estimate.
(torchvision's resnet18/vgg11 through the CLI: test_verify_own_torchvision.py.)"""
import csv
import shutil
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import chainlab
from chainlab.app.cli import app
from chainlab.nets import data
from chainlab.papers import sixt
from chainlab.papers.context import Context, Settings

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_pngs(folder: Path, x: np.ndarray):
    """x (N, 3, H, W) in [0, 1] as 8-bit PNGs, sorted by name; returns the images as PNG stores them (k/255)."""
    folder.mkdir()
    q = np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
    for i, im in enumerate(q):
        Image.fromarray(im.transpose(1, 2, 0)).save(folder / f"scene{i:04d}.png")
    return q.astype(np.float64) / 255.0


def test_sixt_cifar_model_file_and_png_scenes_give_the_built_in_numbers(tmp_path):
    n = 2
    x, y = data.test_set("scenes", n)
    q = write_pngs(tmp_path / "scenes", np.asarray(x))
    (tmp_path / "labels.txt").write_text("".join(f"{int(v)}\n" for v in y))
    out = tmp_path / "out"
    res = run("verify", "--model", chainlab.models.data_dir() / "sixt-cifar.npz", "--images", tmp_path / "scenes",
              "--preprocess", "unit", "--labels", tmp_path / "labels.txt", "--claims", "S1,S5", "-o", out)
    assert res.exit_code == 0, res.output
    # the built-in run on the same images (the scenes as the PNGs hold them) and the same vectors
    # (in the own run's chunks: image 1 alone — its probe — then the rest; a float32 convolution of another batch
    # size rounds differently, so other chunks would agree only to float32 rounding)
    ctx = Context(Settings(progress=False, images=n, chunk=50, first_alone=True))
    ctx.cache["scenes"] = (q.astype(np.float32), np.asarray(y))
    sixt.shared_pass(ctx, "sixt-cifar", "sixt-cifar")
    for measure in ("csc_sixt_image", "ssim_sixt"):
        got = rows(out / "records" / f"{measure}.csv")
        want = [r for r in ctx.records if r["measure"] == measure]
        assert len(got) == len(want) > 0
        def key(r):         # a CSV cell of None is empty
            return tuple("" if r[c] is None else str(r[c]) for c in ("rule", "image", "layer", "quantity", "k"))
        got_v = {key(r): float(r["value"]) for r in got}
        want_v = {key(r): float(r["value"]) for r in want}
        assert got_v.keys() == want_v.keys() and len(got_v) == len(got)
        # float32 passes (the authors' precision) agree to its rounding, not bit for bit (measured: CSC ≤ 2e-6,
        # SSIM ≤ 1.5e-4 apart, values 0.2…1); another image or vector would differ by 100× the tolerance
        tol = {"csc_sixt_image": 1e-5, "ssim_sixt": 1e-3}[measure]
        assert max(abs(got_v[k] - want_v[k]) for k in want_v) < tol, measure
        assert np.ptp(list(want_v.values())) > 100 * tol
        assert any(abs(got_v[k] - 0.5) > 0.01 for k in want_v)
    v = {d["id"]: d for d in json.loads((out / "verdicts.json").read_text())["verdicts"]}
    assert v["S1"]["outcome"] in ("reproduced", "not reproduced", "inconclusive")
    text = (out / "verify.md").read_text()
    assert "sixt-cifar" in text and "Images: 2" in text


# -- the plan of a user's run: cheap checks (no measuring) -----------------------------------------------------------

@pytest.fixture(scope="module")
def r18(tmp_path_factory):
    """torchvision's resnet18 (random init) on 5 random 16×16 RGB images."""
    from chainlab.app.own import prepare
    d = tmp_path_factory.mktemp("r18imgs")
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return prepare("torchvision:resnet18", str(d), preprocess="unit")


def test_the_probe_is_the_runs_first_chunk_and_the_chunks_tile_the_images(tiny):
    """The probe (image 1 alone) must be a chunk of the run (else it is measured twice), for every paper's plan; the
    run's chunks of each (function, net, method …) cover images 0…n−1 once, image 0 alone."""
    from chainlab.app.own import claims as C
    from chainlab.app.own import prepare
    from chainlab.app.own.runner import call_name, context_for
    from chainlab.papers.context import Chunk
    user = prepare(f"{tiny / 'tiny.py'}:net", str(tiny / "imgs"), preprocess="unit")
    runnable = [c for c in C.ORDER if C.not_applicable(c, user) is None]
    assert {"S1", "S5", "S6", "S7", "S8", "B1", "M2"} <= set(runnable) and "S2" not in runnable and "M1" not in runnable
    ctx = context_for(user, Settings(progress=False, images=1, chunk=1))
    probe = C.plan(ctx, runnable)
    ctx.s = Settings(progress=False, images=3, chunk=2, first_alone=True)
    run = C.plan(ctx, runnable)
    assert {call_name(c) for c in probe} <= {call_name(c) for c in run}
    assert len(probe) < len(run)
    groups = {}
    for c in run:
        r = next((a for a in c.args if isinstance(a, range)), None)
        if r is None:               # a per-net chunk (S6's layer hypotheses at image 0)
            continue
        rest = tuple(repr(a) for a in c.args if not isinstance(a, (range, Chunk, int)))
        groups.setdefault((c.fn.__qualname__, rest), []).append(r)
    assert {k[0] for k in groups} >= {"csc_pass", "controlled_chunk", "m2_chunk", "top_two_differences",
                                      "cascade_chunk", "prefix_ratios"}
    for key, ranges in groups.items():
        assert [list(r) for r in ranges] == [[0], [1, 2]], key


# -- a small net of the user's through the CLI: every applicable claim decided, the others "not checked" ------------

TINY = """
import torch.nn as nn


def net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
"""
DECIDED = ("reproduced", "not reproduced", "inconclusive")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    (d / "tiny.py").write_text(TINY)
    rng = np.random.default_rng(1)
    write_pngs(d / "imgs", rng.random((3, 3, 16, 16)))
    return d


def _verdicts(out):
    return {v["id"]: v for v in json.loads((out / "verdicts.json").read_text())["verdicts"]}


def test_tiny_net_untrained_every_applicable_claim_decided_and_resume_gives_the_same(tiny):
    out = tiny / "out-untrained"
    args = ("verify", "--model", f"{tiny / 'tiny.py'}:net", "--images", tiny / "imgs", "--preprocess", "unit",
            "--n-images", "2", "--claims", "S1,S2,S5,S8,B1,M1,M2", "-o", out)
    res = run(*args)
    assert res.exit_code == 0, res.output
    assert "probe (image 1 of 2)" in res.output and "estimate" in res.output
    v = _verdicts(out)
    assert list(v) == ["S1", "S2", "S5", "S8", "B1", "M1", "M2"]
    assert v["S2"]["outcome"] == "not checked" and "6-layer" in v["S2"]["observed"]
    assert v["M1"]["outcome"] == "not checked" and "Softplus" in v["M1"]["observed"]
    for c in ("S1", "S8", "B1", "M2"):             # decided by the papers' own code on this net
        assert v[c]["outcome"] in DECIDED, (c, v[c])
        assert v[c]["observed"].startswith("untrained net: about the architecture only"), c
    assert any("two top logits" in c for c in v["S8"]["caveats"])
    text = (out / "verify.md").read_text()
    assert "tiny.py:net" in text and "Images: 2" in text and "Sixt et al.: 200 ImageNet" in text
    rec = {p.name: p.read_text() for p in (out / "records").glob("*.csv")}
    assert {"csc_sixt_image.csv"} <= set(rec)
    assert all(row["net"] == "net" for row in rows(out / "records" / "csc_sixt_image.csv"))
    # --resume on the finished run: nothing measured again (every chunk from the store), the same records/verdicts
    shutil.rmtree(out / "records")
    res = run(*args, "--resume")
    assert res.exit_code == 0, res.output
    assert "from the store" in res.output
    assert {p.name: p.read_text() for p in (out / "records").glob("*.csv")} == rec
    again = _verdicts(out)
    assert {c: (x["outcome"], x["numbers"]) for c, x in again.items()} == {c: (x["outcome"], x["numbers"])
                                                                          for c, x in v.items()}


def test_b1_alone_measures_only_the_rules_it_reads_and_decides_as_beside_b2(tiny):
    """--claims B1 measures the LRP-β rules B1 decides on and the gradient (its axis Π‖W_l‖_∞), not the ε rules B2
    needs, the bound's constant c_norm1 (residual blocks multiplied out) of the LRP-β rules only, neither B3's
    support constants nor the function-preserving rescaling B2's report shows: the same B1 verdict and numbers as
    a run of B1 and B2 (which measures all six rules, each with its c_norm1, and the rescaling)."""
    got = {}
    for claims in ("B1", "B1,B2"):
        out = tiny / f"out-rules-{claims.replace(',', '-')}"
        res = run("verify", "--model", f"{tiny / 'tiny.py'}:net", "--images", tiny / "imgs", "--preprocess", "unit",
                  "--n-images", "2", "--claims", claims, "-o", out)
        assert res.exit_code == 0, res.output
        table = rows(out / "records" / "constants.csv")
        got[claims] = (_verdicts(out)["B1"], {r["rule"] for r in table},
                       {r["rule"] for r in table if r["quantity"] == "c_norm1"}, {r["role"] for r in table})
        assert not {"support_constant", "logit_range_rel"} & {r["quantity"] for r in table}   # B3's quantities
    (b1, rules1, normed1, roles1), (b12, rules12, normed12, roles12) = got["B1"], got["B1,B2"]
    assert rules1 == {"gradient", "zplus", "alpha2-beta1"}
    assert rules12 == rules1 | {"lrp-epsilon=0.1", "lrp-epsilon=0.01", "lrp-epsilon=0.001"}
    assert normed1 == {"zplus", "alpha2-beta1"} and normed12 == rules12
    assert roles1 == {"controlled"} and roles12 == {"controlled", "rescaled"}   # the rescaling: B2's report only
    assert b1["outcome"] in DECIDED and (b1["outcome"], b1["numbers"]) == (b12["outcome"], b12["numbers"])


def test_tiny_net_with_weights_is_trained_and_its_weights_are_used(tiny):
    torch.manual_seed(7)
    import importlib.util
    spec = importlib.util.spec_from_file_location("tiny_ref", tiny / "tiny.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ref = mod.net().eval()
    torch.save(ref.state_dict(), tiny / "w.pth")
    out = tiny / "out-weights"
    res = run("verify", "--model", f"{tiny / 'tiny.py'}:net", "--weights", tiny / "w.pth", "--images", tiny / "imgs",
              "--preprocess", "unit", "--n-images", "2", "--claims", "S1,S2", "-o", out)
    assert res.exit_code == 0, res.output
    v = _verdicts(out)
    assert v["S1"]["outcome"] in DECIDED and "untrained" not in v["S1"]["observed"]
    # the run's net is the reference module's state (sha256 over its tensors, computed here independently)
    import hashlib
    h = hashlib.sha256()
    for k, t in ref.state_dict().items():
        a = np.ascontiguousarray(t.detach().numpy())
        h.update(k.encode())
        h.update(str(a.dtype).encode())
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    manifest = json.loads((out / "store" / "manifest.json").read_text())
    assert manifest["model"] == f"sha256:{h.hexdigest()}"


def _randomize_bn(model):
    """BatchNorm statistics and affine parameters away from the init's (μ 0, σ² 1, γ 1, β 0), under which every
    BatchNorm is positively homogeneous and a wrong rescaling would go unnoticed."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g))
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.randn(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g))
    return model


def test_binder_family_of_the_users_net(tiny, r18):
    """Binder's family from one net: W_l → c·W_l, W_{l+1} → W_{l+1}/c keeps the logits (1e-6, BatchNorm with real
    statistics and biases) and moves the per-layer norms ‖W_l‖_∞ by c_l ∈ {4, 1/4, 1}, their product not (Π c_l = 1);
    the plain scaling W → c·W changes the logits and multiplies Π ‖W_l‖ by c^L.  A torchvision ResNet has no two
    Linear/Conv2d layers that scaling passes between outside its residual blocks: no rescaling is offered (the old
    (c, 1/c) on conv1 and fc changed its logits by tens of percent once BatchNorm is not at its init)."""
    from chainlab.app.own import prepare
    from chainlab.app.own.runner import context_for
    from chainlab.errors import OptionError
    from chainlab.papers.binder import measure as BM
    from chainlab.studies import scale_weights
    user = prepare(f"{tiny / 'tiny.py'}:net", str(tiny / "imgs"), preprocess="unit")
    _randomize_bn(user.model)
    ctx = context_for(user, Settings(progress=False, images=3))
    net = user.name
    base = ctx.model(net)
    assert BM.rescalable(ctx, net)
    resc = BM.derived_model(ctx, net, "rescaled", 4.0)
    scaled = BM.derived_model(ctx, net, "scaled", 2.0)
    assert BM.derived_model(ctx, net, "scaled", 1.0) is base
    x = torch.as_tensor(user.images.x[:3]).float()
    with torch.no_grad():
        a, b, s = base(x).double(), resc(x).double(), scaled(x).double()
    assert float((a - b).abs().max() / a.abs().max()) < 1e-6
    assert float((a - s).abs().max() / a.abs().max()) > 1e-2

    def norms(m):
        ws = [mod.weight.detach().double() for mod in m.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear))]
        return np.array([float(w.reshape(w.shape[0], -1).abs().sum(1).max()) for w in ws])

    n0, n1, n2 = norms(base), norms(resc), norms(scaled)
    assert np.allclose(n1 / n0, [4.0, 0.25, 1.0], rtol=1e-9)         # the norms move …
    assert np.prod(n1) == pytest.approx(np.prod(n0), rel=1e-9)      # … their product does not
    assert np.prod(n2) == pytest.approx(np.prod(n0) * 2.0 ** 3, rel=1e-9)
    # the ResNet: refused, and the naive (c, 1/c) on its only plain layers would change the function
    rctx = context_for(r18, Settings(progress=False, images=5))
    _randomize_bn(r18.model)
    assert not BM.rescalable(rctx, r18.name)
    with pytest.raises(OptionError, match="no function-preserving"):
        BM.derived_model(rctx, r18.name, "rescaled", 4.0)
    naive, _ = scale_weights(r18.model, [4.0, 0.25])
    xr = torch.as_tensor(r18.images.x[:2]).float()
    with torch.no_grad():
        ra, rb = r18.model(xr), naive(xr)
    assert float((ra - rb).abs().max() / ra.abs().max()) > 1e-2


# -- the default run's budget: claims whose one image would not fit are "not checked" with the estimate ------------

def test_over_budget_drops_the_most_expensive_groups_until_one_image_fits():
    """The default run keeps the claims whose one image fits the budget together: groups leave most expensive first,
    the kept ones fit, putting back any dropped group would not; a small net keeps everything and gets
    ⌊budget / seconds per image⌋ images (at most 200)."""
    from chainlab.app.own import claims as C
    every = [c for c in C.ORDER if c not in C.NEEDS]
    cost = {g: p * 15.5e9 / (C.ASSUMED_GFLOPS * 1e9) for g, p in C.GROUP_PASSES.items()}    # VGG-16 at 224×224
    cut = C.over_budget(15.5e9, every)
    kept = [c for c in every if c not in cut]
    groups_kept = {C.CLAIM_GROUP[c] for c in kept}
    groups_cut = {C.CLAIM_GROUP[c] for c in cut}
    assert sum(cost[g] for g in groups_kept) <= C.BUDGET_SECONDS
    assert groups_cut and all(cost[g] >= max(cost[k] for k in groups_kept) for g in groups_cut)
    assert all(sum(cost[g] for g in groups_kept | {d}) > C.BUDGET_SECONDS for d in groups_cut)
    for c, why in cut.items():
        assert why.startswith("not checked at this size") and f"--claims" in why and "min on 2 cores" in why
    assert C.default_images(15.5e9, kept) == max(1, min(200, int(C.BUDGET_SECONDS // sum(cost[g] for g in groups_kept))))
    assert C.over_budget(1e6, every) == {}
    per = sum(C.GROUP_PASSES.values()) * 1e6 / (C.ASSUMED_GFLOPS * 1e9)
    assert C.default_images(1e6) == min(200, int(C.BUDGET_SECONDS // per))


def test_residual_blocks_multiplied_out_are_counted_and_too_large_ones_refuse_b1_to_b3():
    """B1–B3's exact ‖M‖₁ multiplies each residual block out.  Its entries, worked out by hand for torchvision's
    resnet18 at 64×64: layer1.0 (64×16×16 → 64×16×16, two 3×3 convs: receptive field 5) 16384 · 64 · 5² = 26 214 400;
    layer2.0 (3×3 stride 2 then 3×3: field 1 + 2 + 2·2 = 7) 8192 · 64 · 7² = 25 690 112; layer4.1 (512×2×2, field
    clipped to 2×2) 2048 · 512 · 4 = 2048², dense; layer2.1 (128×8×8, field 5) 8192 · 128 · 25.  They bound the multiplied-out gradient block's stored entries
    (counted on the block itself; an interior output unit's column fills its field).  The estimate adds entries × seconds per entry × chains for B1–B3 only; ResNet-50
    at 224×224 (blocks of 802816² with ≈ 1.8e9 entries, ≈ 22 GB) gets B1–B3 "not checked" with the block and its
    size, resnet18 at 64×64 does not."""
    from types import SimpleNamespace
    import chainlab
    from chainlab.app.own import claims as C
    from chainlab.app.own.prepare import residual_norm_blocks
    from chainlab.nets.zoo import torchvision as zoo
    from chainlab.trace.model import trace
    net = zoo("resnet18").eval()
    net.input_shape = (1, 3, 64, 64)
    blocks = {b.name: b for b in residual_norm_blocks(trace(net), (1, 3, 64, 64))}
    assert len(blocks) == 8
    assert (blocks["layer1.0"].n_in, blocks["layer1.0"].entries) == (16384, 26_214_400)
    assert (blocks["layer2.0"].n_in, blocks["layer2.0"].n_out, blocks["layer2.0"].entries) == (16384, 8192, 25_690_112)
    assert blocks["layer4.1"].entries == 2048 ** 2 and blocks["layer4.1"].bytes == 8 * 2048 ** 2
    assert blocks["layer1.0"].bytes == 12 * 26_214_400
    ch = chainlab.extract(net, torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)), "gradient",
                          materialize=False)
    for name, per_column in (("layer2.1", 128 * 5 * 5), ("layer4.1", 512 * 2 * 2)):
        op = ch[list(ch.names).index(name)]
        M = op.materialize().to_csc()
        assert M.shape == (blocks[name].n_in, blocks[name].n_out)
        assert blocks[name].entries == blocks[name].n_out * per_column
        # an output unit the ReLU after the sum lets through reaches its whole field (an interior one: all of it)
        assert M.nnz <= blocks[name].entries and np.diff(M.indptr).max() == per_column, name
    total = sum(b.entries for b in blocks.values())
    assert C.norm_chains(["B1"]) == 9 and C.norm_chains(["B1", "B2"]) == 18 and C.norm_chains(["S1", "M2"]) == 0
    base = C.seconds_per_image(1e9, ["B1"])
    assert C.seconds_per_image(1e9, ["B1"], total) == pytest.approx(base + total * C.NORM_SECONDS_PER_ENTRY * 9)
    assert C.seconds_per_image(1e9, ["S1", "M2"], total) == C.seconds_per_image(1e9, ["S1", "M2"])
    small = SimpleNamespace(name="resnet18", traced=SimpleNamespace(stages=()), norm_blocks=tuple(blocks.values()))
    assert C.not_applicable("B1", small) is None
    big = residual_norm_blocks(trace(zoo("resnet50").eval()), (1, 3, 224, 224))
    worst = max(big, key=lambda b: b.bytes)
    assert (worst.n_in, worst.entries) == (802816, 802816 * 256 * 9) and worst.bytes > C.NORM_MEMORY_LIMIT
    user = SimpleNamespace(name="resnet50", traced=SimpleNamespace(stages=()), norm_blocks=big)
    for c in ("B1", "B2", "B3"):
        why = C.not_applicable(c, user)
        assert why and worst.name in why and "GB" in why and "‖M_l‖₁" in why, c
    assert C.not_applicable("S1", user) is None


def test_default_run_of_a_net_over_budget_leaves_claims_out_with_the_estimate(tiny, monkeypatch):
    """Without --claims and --n-images, a net too large for the budget (here: the tiny net at a speed set so that
    only the cheapest group's one image fits) runs the claims that fit and reports the others "not checked at this
    size" with their estimate; the a-priori estimate is printed before the probe."""
    from chainlab.app.own import claims as C
    from chainlab.app.own.prepare import forward_macs
    spec = __import__("importlib.util").util.spec_from_file_location("tiny_b", tiny / "tiny.py")
    mod = __import__("importlib.util").util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    macs = forward_macs(mod.net().eval(), torch.zeros(1, 3, 16, 16))
    cheapest = min(C.GROUP_PASSES, key=lambda g: (C.GROUP_PASSES[g], list(C.GROUP_PASSES).index(g)))
    pass_seconds = C.BUDGET_SECONDS / C.GROUP_PASSES[cheapest]
    monkeypatch.setattr(C, "ASSUMED_GFLOPS", macs / 1e9 / pass_seconds)
    cut = C.over_budget(macs, [c for c in C.ORDER if c not in C.NEEDS])
    assert {c for c in C.ORDER if c not in C.NEEDS and c not in cut} == \
        {c for c, g in C.CLAIM_GROUP.items() if g == cheapest and c not in C.NEEDS}
    out = tiny / "out-budget"
    res = run("verify", "--model", f"{tiny / 'tiny.py'}:net", "--images", tiny / "imgs", "--preprocess", "unit",
              "-o", out)
    assert res.exit_code == 0, res.output
    assert "estimate before starting" in res.output
    v = _verdicts(out)
    for c in cut:
        assert v[c]["outcome"] == "not checked" and "not checked at this size" in v[c]["observed"], c
    ran = [c for c in v if c not in cut and c not in C.NEEDS]
    assert ran and all(v[c]["outcome"] in DECIDED for c in ran), {c: v[c]["outcome"] for c in ran}
    assert "Images: 1 " in (out / "verify.md").read_text()


def test_images_that_fit_what_the_probe_leaves_of_the_budget(monkeypatch):
    """After the probe (image 1): 1 + ⌊(budget − elapsed) / seconds per further image⌋ images, within [1, n]."""
    from chainlab.app.own import claims as C
    monkeypatch.setattr(C, "BUDGET_SECONDS", 900)
    assert C.images_that_fit(5, 300.0, 250.0) == 3          # 600 s left: 2 more images of 250 s
    assert C.images_that_fit(5, 300.0, 200.0) == 4          # exactly 3 more: 600 / 200
    assert C.images_that_fit(3, 300.0, 100.0) == 3          # 6 more would fit: at most n
    assert C.images_that_fit(5, 950.0, 10.0) == 1           # the probe alone overran the budget
    assert C.images_that_fit(5, 100.0, 0.0) == 5            # nothing left to measure: no cut


def test_default_run_keeps_the_images_the_probe_says_fit(tiny, monkeypatch):
    """Without --claims and --n-images the a-priori speed picks n (here every image of the folder: 3); when the
    probe's measured time per image does not fit what is left of the budget (here: the probe alone overruns a
    0.01 s budget), the run measures fewer images, says so, and its report states the number it used."""
    from chainlab.app.own import claims as C
    monkeypatch.setattr(C, "ASSUMED_GFLOPS", 1e12)          # a priori: every image fits
    monkeypatch.setattr(C, "BUDGET_SECONDS", 0.01)
    out = tiny / "out-trim"
    res = run("verify", "--model", f"{tiny / 'tiny.py'}:net", "--images", tiny / "imgs", "--preprocess", "unit",
              "-o", out)
    assert res.exit_code == 0, res.output
    assert "images: 3 from" in res.output
    assert "for 3 images does not fit the default run's budget (0 s): 1 image(s) instead (--n-images sets the " \
           "number)" in res.output
    text = (out / "verify.md").read_text()
    assert "Images: 1 " in text and "--n-images 1 " in text
    assert {r["image"] for r in rows(out / "records" / "csc_sixt_image.csv")} == {"0"}


def _prefix(ctx, net, images, method):
    """A per-image chunk function (stand-in)."""


def _hypotheses(ctx, net):
    """A per-net chunk function (stand-in)."""


def test_the_probe_estimate_prices_each_chunk_by_its_own_kind():
    """The estimate of the chunks left: each costs the probe's seconds per image of the chunk of the same function and
    arguments × its images (two methods of one group at different speeds), a per-net chunk is not repeated, the total
    is split among the workers — the sums worked out by hand."""
    from chainlab.app.own import estimate
    from chainlab.app.own.runner import call_name
    from chainlab.papers.context import Chunk
    a0 = Chunk(_prefix, ("net", range(0, 1), "a1b0"), (), "S6 · net", 1)
    g0 = Chunk(_prefix, ("net", range(0, 1), "gradient"), (), "S6 · net", 1)
    h = Chunk(_hypotheses, ("net",), (), "S6 · net", 1)
    probe = [a0, g0, h]
    res = {"seconds": {call_name(a0): 10.0, call_name(g0): 2.0, call_name(h): 30.0}, "stored_seconds": {}}
    rest = [Chunk(_prefix, ("net", range(1, 3), "a1b0"), (), "S6 · net", 2),
            Chunk(_prefix, ("net", range(3, 4), "a1b0"), (), "S6 · net", 1),
            Chunk(_prefix, ("net", range(1, 4), "gradient"), (), "S6 · net", 3)]
    e = estimate(probe, res, 4, rest, workers=1)
    assert e["seconds"] == pytest.approx(10.0 * 3 + 2.0 * 3)          # not (10 + 2 + 30) × 3
    assert e["groups"] == {"S6 · net": (42.0, 3)}
    assert estimate(probe, res, 4, rest, workers=2)["seconds"] == pytest.approx(18.0)


def test_every_claim_on_a_residual_net_is_decided_or_says_why_not(tmp_path):
    """chainlab's residual architecture resnet-tiny (random init, 3×8×8) with every claim on 2 images: each claim is
    decided by the papers' code or "not checked" with its reason, none fails the run (S6 did on torchvision's
    ResNet-50: Birkhoff's τ of a residual block's signed z⁺ matrix); S6 reports the blocks' τ as "n/a (signed)"."""
    from chainlab.app.own.claims import NEEDS

    x = torch.rand((2, 3, 8, 8), generator=torch.Generator().manual_seed(4)).numpy()
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out"
    res = run("verify", "--model", "resnet-tiny", "--images", tmp_path / "x.npy", "--preprocess", "none",
              "--n-images", "2", "-o", out)
    assert res.exit_code == 0, res.output
    v = _verdicts(out)
    assert list(v) == list(chainlab.app.verify.ORDER)
    for c in ("S2", "S4", "M1", "M4", "M5"):
        assert v[c]["outcome"] == "not checked" and NEEDS[c] in v[c]["observed"], c
    assert v["B3"]["outcome"] == "not checked" and "residual blocks" in v["B3"]["observed"]
    for c in ("S1", "S3", "S5", "S6", "S7", "S8", "B1", "B2", "M2", "M3"):
        assert v[c]["outcome"] in DECIDED and v[c]["numbers"], (c, v[c]["outcome"], v[c]["observed"][:300])
    assert "n/a (signed)" in v["S6"]["observed"]
