"""`chainlab verify --model torchvision:resnet18|vgg11` at 64×64 on 2 PNG images from a temp folder, `--claims
S1,S3,S5,B1,M2` (and S2, M1, which one net cannot check: the "not checked" path): once with chainlab's random init,
once with a state dict saved from the plain-torch definition in ``torchvision_reference.py`` (torchvision's key
names, written independently of chainlab's zoo; 10 classes, BatchNorm statistics randomized) — exit 0, a report
naming the net, every applicable claim decided by the papers' code, the others "not checked" with their reasons, and
the weights run measuring exactly the saved tensors.

Each run takes 45–80 s on 2 cores (vgg11's 25088×4096 classifier in float64; the exact ‖M‖₁ of resnet18's
residual blocks, B1's constant, multiplied out for 3 scales × 2 LRP-β rules per image): together about 4 minutes, more
than a suite that must stay well under 10 minutes can take, so they are marked ``heavy``: ``python -m pytest -m heavy``
runs them, ``results/run_heavy_tests.txt`` is their committed output (``scripts/run_heavy_tests.py``).  The suite runs
the same test on resnet18 with the state dict at 32×32 (residual blocks, BatchNorm folded with randomized statistics,
torchvision's key names; its blocks a quarter of the size)."""
import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import torchvision_reference as tv
from chainlab.app.cli import app
from chainlab.app.own.claims import NEEDS

runner = CliRunner()
DECIDED = ("reproduced", "not reproduced", "inconclusive")
CLAIMS = "S1,S2,S3,S5,B1,M1,M2"
APPLICABLE = ("S1", "S3", "S5", "B1", "M2")


def write_images(d, size):
    """2 smooth random size×size RGB PNGs in d (a natural image's spectrum falls off; white noise would not)."""
    g = torch.Generator().manual_seed(11)
    for i in range(2):
        x = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(size, size), mode="bilinear",
                                            align_corners=False)[0]
        Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(d / f"img{i}.png")
    return d


def state_sha(state) -> str:
    """sha256 over (key, dtype, shape, bytes) of every tensor: the run's model fingerprint, computed here."""
    h = hashlib.sha256()
    for k, t in state.items():
        a = np.ascontiguousarray(t.detach().numpy())
        for part in (k.encode(), str(a.dtype).encode(), repr(a.shape).encode(), a.tobytes()):
            h.update(part)
    return f"sha256:{h.hexdigest()}"


HEAVY = pytest.mark.heavy


@pytest.mark.parametrize("arch,variant,size", [
    pytest.param("resnet18", "state-dict", 32, id="resnet18-state-dict-32"),
    pytest.param("resnet18", "random-init", 64, marks=HEAVY, id="resnet18-random-init-64"),
    pytest.param("resnet18", "state-dict", 64, marks=HEAVY, id="resnet18-state-dict-64"),
    pytest.param("vgg11", "random-init", 64, marks=HEAVY, id="vgg11-random-init-64"),
    pytest.param("vgg11", "state-dict", 64, marks=HEAVY, id="vgg11-state-dict-64")])
def test_torchvision_net_every_applicable_claim_decided(tmp_path, arch, variant, size):
    (tmp_path / "imgs").mkdir()
    images = write_images(tmp_path / "imgs", size)
    args = ["verify", "--model", f"torchvision:{arch}", "--images", str(images), "--preprocess", "unit",
            "--n-images", "2", "--claims", CLAIMS, "-o", str(tmp_path / "out")]
    ref = None
    if variant == "state-dict":
        torch.manual_seed(5)
        ref = tv.randomize_batchnorm(tv.build(arch, num_classes=10)).eval()
        torch.save(ref.state_dict(), tmp_path / f"{arch}.pth")
        args += ["--weights", str(tmp_path / f"{arch}.pth")]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    out = tmp_path / "out"
    v = {d["id"]: d for d in json.loads((out / "verdicts.json").read_text())["verdicts"]}
    assert list(v) == ["S1", "S2", "S3", "S5", "B1", "M1", "M2"]
    for c in APPLICABLE:
        assert v[c]["outcome"] in DECIDED, (c, v[c]["outcome"], v[c]["observed"])
        assert v[c]["numbers"], c
        assert v[c]["observed"].startswith("untrained net: about the architecture only") == (ref is None), c
    for c in ("S2", "M1"):
        assert v[c]["outcome"] == "not checked" and NEEDS[c] in v[c]["observed"], c
    text = (out / "verify.md").read_text()
    assert f"torchvision {arch}" in text and "Images: 2" in text and f"input (3, {size}, {size})" in text
    assert ("10 classes" if ref is not None else "1000 classes") in text
    manifest = json.loads((out / "store" / "manifest.json").read_text())
    if ref is not None:                         # the run measured exactly the saved tensors
        assert manifest["model"] == state_sha(ref.state_dict())
    else:                                       # the zoo's init from the fixed seed 0: reproducible
        from chainlab.nets.zoo import torchvision as zoo
        assert manifest["model"] == state_sha(zoo(arch, seed=0).state_dict())
    assert {"csc_sixt_image.csv", "constants.csv"} <= {p.name for p in (out / "records").glob("*.csv")}
