"""Records/CSV, the dispatcher, and the measures that need the model: weight scaling, averages, sanity."""
import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from chainlab import measures as ms
from chainlab import studies
from conftest import conv_net, mlp

from measures_helpers import make_chain


def _x(shape, seed=0):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_csv_round_trip_and_errors(tmp_path):
    recs = [{"net": "n", "rule": "zplus", "image": 3, "measure": "m", "quantity": "q", "layer": "fc1", "k": 1,
             "value": math.inf, "extra": 0.1 + 0.2},
            {"net": None, "rule": "g", "image": None, "measure": "m", "quantity": "q", "layer": None, "k": None,
             "value": None, "flag": True}]
    p = ms.write_csv(recs, tmp_path / "r.csv")
    back = ms.read_csv(p)
    assert back[0]["value"] == math.inf and back[0]["extra"] == 0.1 + 0.2 and back[0]["flag"] is None
    assert back[1] == {**recs[1], "extra": None}
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        ms.read_csv(tmp_path / "nope.csv")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="missing column"):
        ms.read_csv(tmp_path / "bad.csv")


def test_dispatcher_keys_and_bad_names():
    ch = make_chain([np.random.default_rng(0).uniform(size=(4, 3)), np.eye(3)], meta={"net": "toy", "image": 7})
    recs = ms.measure([ch], what=["spectra", "rank1", "cone", "bounds", "csc"], pairs=3)
    assert {r["measure"] for r in recs} == {"spectra", "rank1", "cone", "bounds", "csc"}
    for r in recs:
        assert {"net", "rule", "image", "measure", "quantity", "layer", "k", "value"} <= set(r)
        assert r["net"] == "toy" and r["image"] in (7, None)
    with pytest.raises(ValueError, match="unknown measure"):
        ms.measure(ch, what=["spectrum"])
    with pytest.raises(ValueError, match="paris"):
        ms.measure(ch, what=["csc"], paris=3)


def test_weight_scaling_constants():
    """IDENTITY (algebra, a regression test, not a claim): scaling layer l by c_l scales the logits and the
    gradient by Π c_l and leaves the 0-homogeneous z⁺/αβ matrices unchanged (up to the stabilizer)."""
    net = conv_net(1)                         # has BatchNorm: the scaling must stay exact through it
    x = _x((1, 2, 7, 7))
    cs = [2.0, 0.5, 3.0, 1.5, 0.25]
    scaled, used = studies.scale_weights(net, cs)
    C = math.prod(cs)
    assert torch.allclose(scaled(x), C * net(x), rtol=1e-9, atol=1e-12)
    rows = studies.weight_scaling(net, x, rules=["gradient", "zplus", ("alpha-beta", {"alpha": 2, "beta": 1})], c=cs,
                             avgpool="gradient", stabilizer=1e-12)   # invariance holds up to ε
    v = {(r["rule"], r["quantity"]): r["value"] for r in rows}
    assert math.isclose(v[("gradient", "constant_ratio")], C, rel_tol=1e-7)
    assert math.isclose(v[("gradient", "map_ratio")], C, rel_tol=1e-7)
    for rule in ("zplus", "alpha-beta"):
        assert math.isclose(v[(rule, "constant_ratio")], 1.0, rel_tol=1e-5)
        assert v[(rule, "map_change")] < 1e-5
    with pytest.raises(ValueError, match="5 Linear/Conv2d"):
        studies.scale_weights(net, [1.0, 2.0])


def test_hoeffding_and_averages():
    assert studies.hoeffding_samples(1.0, 1, 1.0, 0.5) == math.ceil(2 * math.log(4))
    assert studies.hoeffding_samples(2.0, 10, 0.1, 0.05) == math.ceil(2 * 4 * math.log(400) / 0.01)
    net = mlp(0).float()
    x = _x((1, 7)).float()
    still = studies.averages(net, x, "zplus", level=0.0, n=8)          # no perturbation: every mean is exact
    assert all(r["value"] == 0.0 for r in still if r["quantity"] == "sup_error")
    rows = studies.averages(net, x, "gradient", perturbation="brightness", level=0.2, n=16)
    err = {r["k"]: r["value"] for r in rows if r["quantity"] == "sup_error"}
    tN = {r["k"]: r["value"] for r in rows if r["quantity"] == "hoeffding_t"}
    assert set(err) == set(tN) and max(err) == 16 and all(err[n] <= tN[n] for n in err)
    assert all(tN[a] > tN[b] for a, b in zip(sorted(tN), sorted(tN)[1:]))


def test_sanity_ssim_and_cascading():
    a = np.random.default_rng(0).normal(size=(1, 1, 8, 8))
    assert math.isclose(ms.ssim(a, a), 1.0) and ms.ssim(a, -a) < 0
    m = a[0, 0] / np.abs(a).max()
    assert math.isclose(ms.ssim(a, 2 * a + 0), structural_similarity(m, m, data_range=2.0, win_size=7))
    net = conv_net(0)
    net2 = conv_net(0)
    x = _x((1, 2, 7, 7))
    rows = studies.sanity(net, x, "gradient", avgpool="gradient")
    casc = [r for r in rows if r["quantity"] == "ssim_cascading"]
    assert [r["k"] for r in casc] == [1, 2, 3, 4, 5] and casc[0]["layer"] == "fc2"
    assert all(-1 <= r["value"] <= 1 for r in rows)
    for p, q in zip(net.parameters(), net2.parameters()):      # the model itself is untouched
        assert torch.equal(p, q)
