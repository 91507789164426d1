"""`chainlab verify --model torchvision:resnet18|vgg11` at 64×64 on 2 PNG images from a temp folder, `--claims
S1,S3,S5,B1,M2` (and S2, M1, which one net cannot check: the "not checked" path): once with chainlab's random init,
once with a state dict saved from the plain-torch definition in ``torchvision_reference.py`` (torchvision's key
names, written independently of chainlab's zoo; 10 classes, BatchNorm statistics randomized) — exit 0, a report
naming the net, every applicable claim decided by the papers' code, the others "not checked" with their reasons, and
the weights run measuring exactly the saved tensors.

Each run takes about a minute on 2 cores; the four run as ``chainlab`` subprocesses in the background from the
session's start (``torchvision_runs.py``, the fixture ``torchvision_runs`` in conftest.py), and these tests, which
the suite runs last, check what they wrote."""
import hashlib
import json

import numpy as np
import pytest

from chainlab.app.own.claims import NEEDS

DECIDED = ("reproduced", "not reproduced", "inconclusive")
APPLICABLE = ("S1", "S3", "S5", "B1", "M2")


def state_sha(state) -> str:
    """sha256 over (key, dtype, shape, bytes) of every tensor: the run's model fingerprint, computed here."""
    h = hashlib.sha256()
    for k, t in state.items():
        a = np.ascontiguousarray(t.detach().numpy())
        for part in (k.encode(), str(a.dtype).encode(), repr(a.shape).encode(), a.tobytes()):
            h.update(part)
    return f"sha256:{h.hexdigest()}"


@pytest.mark.parametrize("arch,variant,size", [
    pytest.param("resnet18", "random-init", 64, id="resnet18-random-init-64"),
    pytest.param("resnet18", "state-dict", 64, id="resnet18-state-dict-64"),
    pytest.param("vgg11", "random-init", 64, id="vgg11-random-init-64"),
    pytest.param("vgg11", "state-dict", 64, id="vgg11-state-dict-64")])
def test_torchvision_net_every_applicable_claim_decided(torchvision_runs, arch, variant, size):
    run = torchvision_runs.result(arch, variant, size)
    assert run.error is None, run.error
    p = run.process
    assert p.returncode == 0, f"exit {p.returncode} after {run.seconds:.0f} s:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    out = run.out
    v = {d["id"]: d for d in json.loads((out / "verdicts.json").read_text())["verdicts"]}
    assert list(v) == ["S1", "S2", "S3", "S5", "B1", "M1", "M2"]
    for c in APPLICABLE:
        assert v[c]["outcome"] in DECIDED, (c, v[c]["outcome"], v[c]["observed"])
        assert v[c]["numbers"], c
        assert v[c]["observed"].startswith("untrained net: about the architecture only") == (run.state is None), c
    for c in ("S2", "M1"):
        assert v[c]["outcome"] == "not checked" and NEEDS[c] in v[c]["observed"], c
    text = (out / "verify.md").read_text()
    assert f"torchvision {arch}" in text and "Images: 2" in text and f"input (3, {size}, {size})" in text
    assert ("10 classes" if run.state is not None else "1000 classes") in text
    manifest = json.loads((out / "store" / "manifest.json").read_text())
    if run.state is not None:                   # the run measured exactly the saved tensors
        assert manifest["model"] == state_sha(run.state)
    else:                                       # the zoo's init from the fixed seed 0: reproducible
        from chainlab.nets.zoo import torchvision as zoo
        assert manifest["model"] == state_sha(zoo(arch, seed=0).state_dict())
    assert {"csc_sixt_image.csv", "constants.csv"} <= {p.name for p in (out / "records").glob("*.csv")}
