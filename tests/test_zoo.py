"""VGG-16 / ResNet-50 defined in chainlab: published parameter counts, traced chain shapes, seeds, weight files."""
import dataclasses

import numpy as np
import pytest
import torch

import chainlab
import chainlab.nets.zoo
from chainlab.trace import Net, trace
from chainlab.nets.storage import load_weights
from chainlab.nets.zoo import resnet_tiny

# published torchvision parameter counts (an independent oracle for the configurations)
VGG16_PARAMS = 138_357_544
RESNET50_PARAMS = 25_557_032


def n_params(net):
    return sum(p.numel() for p in net.parameters())


def meta_shapes(traced, input_shape):
    """Output shape of every stage, from the traced stages run on the meta device (shapes only, no arithmetic)."""
    def to_meta(st):
        kw = {a: getattr(st, a).to("meta") for a in ("weight", "bias") if getattr(st, a) is not None}
        if st.kind == "residual":
            kw["branches"] = tuple(tuple(to_meta(s) for s in b) for b in st.branches)
        return dataclasses.replace(st, **kw)
    meta = Net([to_meta(st) for st in traced.stages], None, traced.source)
    return [r.out_shape for r in meta.forward(torch.zeros(input_shape, dtype=torch.float64, device="meta"))]


@pytest.fixture(scope="module")
def resnet50():
    return chainlab.models.load("resnet50", seed=0)


def test_vgg16_parameter_count_and_traced_shapes():
    net = chainlab.nets.zoo.vgg16(device="meta")     # the architecture without 0.5 GB of weights
    assert n_params(net) == VGG16_PARAMS
    assert net.input_shape == (1, 3, 224, 224)
    traced = trace(net)
    kinds = [s.kind for s in traced.stages]
    assert kinds == ["conv2d"] * 2 + ["maxpool2d"] + ["conv2d"] * 2 + ["maxpool2d"] + (["conv2d"] * 3 + ["maxpool2d"]) * 3 \
        + ["adaptiveavgpool2d"] + ["linear"] * 3
    assert [s.relu for s in traced.stages if s.is_parametric] == [True] * 15 + [False]
    # spatial sizes by hand: 224 halves at each of the five max-pools
    outs = meta_shapes(traced, net.input_shape)
    expected = []
    size, widths = 224, iter([64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512])
    c = 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if v == "M":
            size //= 2
        else:
            c = next(widths)
        expected.append((c, size, size))
    expected += [(512, 7, 7), (4096,), (4096,), (1000,)]
    assert outs == expected


def test_resnet50_parameter_count_and_traced_blocks(resnet50):
    net = resnet50
    assert n_params(net) == RESNET50_PARAMS
    traced = trace(net)
    kinds = [s.kind for s in traced.stages]
    assert kinds == ["conv2d", "maxpool2d"] + ["residual"] * 16 + ["adaptiveavgpool2d", "linear"]
    blocks = [s for s in traced.stages if s.kind == "residual"]
    assert all(b.relu for b in blocks)
    # three 1×1/3×3/1×1 convs (BN folded) per residual branch; a 1×1 conv + BN shortcut opens each stage
    assert all([st.kind for st in b.branches[0]] == ["conv2d"] * 3 for b in blocks)
    shortcut = [len(b.branches[1]) for b in blocks]
    assert shortcut == [1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0]
    assert blocks[0].name == "layer1.0" and blocks[-1].name == "layer4.2"
    assert all("bn" in " ".join(st.members) for b in blocks for st in b.branches[0])   # BN folded
    # the float64 stages (BN folded, blocks summed) reproduce the model (on a 64×64 input to stay fast)
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        recs = traced.forward(x)
        ref = net.double()(x)
    net.float()
    assert np.abs(recs[-1].out.numpy() - ref.numpy()).max() < 1e-9 * (1 + np.abs(ref.numpy()).max())
    outs = meta_shapes(traced, net.input_shape)
    widths = [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3
    sizes = [56] * 3 + [28] * 4 + [14] * 6 + [7] * 3
    assert [o for o, st in zip(outs, traced.stages) if st.kind == "residual"] == [(w, s, s) for w, s in zip(widths, sizes)]
    assert outs[0] == (64, 112, 112) and outs[1] == (64, 56, 56)
    assert outs[-1] == (1000,)


def test_vgg16_allocated_init():
    net = chainlab.models.build("vgg16", seed=0)
    assert n_params(net) == VGG16_PARAMS
    assert abs(float(net.classifier[0].weight[:64].detach().std()) / 0.01 - 1) < 0.01
    assert float(net.classifier[0].bias.detach().abs().max()) == 0.0
    assert abs(float(net.features[0].weight.detach().std()) / np.sqrt(2 / (64 * 9)) - 1) < 0.15


def test_seeded_init_is_reproducible_and_leaves_global_rng_alone(resnet50):
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = chainlab.models.build("resnet50", seed=0)
    after = torch.rand(3)
    assert torch.equal(before, after)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), resnet50.state_dict().items()):
        assert ka == kb and torch.equal(va, vb.float())
    t = chainlab.models.build("resnet-tiny", seed=0)
    assert t.input_shape == (1, 3, 8, 8) and tuple(t(torch.rand(t.input_shape)).shape) == (1, 10)
    c = chainlab.models.build("resnet50", seed=1)
    assert not torch.equal(c.conv1.weight, a.conv1.weight)
    # kaiming fan_out init: std of the stem conv ≈ sqrt(2 / (64·7·7))
    assert abs(float(a.conv1.weight.detach().std()) / np.sqrt(2 / (64 * 49)) - 1) < 0.05


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
def test_weights_file_round_trip(tmp_path, suffix):
    src = resnet_tiny(seed=5)
    p = tmp_path / f"w{suffix}"
    if suffix == ".pt":
        torch.save(src.state_dict(), p)
    else:
        np.savez(p, **{k: v.numpy() for k, v in src.state_dict().items()})
    dst = load_weights(resnet_tiny(seed=0), p)
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    x = torch.rand(src.input_shape)
    assert torch.equal(dst(x), src.eval()(x))


def test_bad_weights_files_are_named(tmp_path):
    p = tmp_path / "other.pt"
    torch.save(resnet_tiny(seed=0, widths=(4, 16)).state_dict(), p)
    with pytest.raises(ValueError, match=r"other\.pt.*shape mismatches"):
        load_weights(resnet_tiny(seed=0), p)
    q = tmp_path / "w.txt"
    q.write_text("x")
    with pytest.raises(ValueError, match="unknown suffix"):
        load_weights(resnet_tiny(seed=0), q)
    with pytest.raises(FileNotFoundError, match="nothere"):
        chainlab.models.load("resnet50", weights=tmp_path / "nothere.pth")
    with pytest.raises(ValueError, match=r"other\.pt does not fit digits-mlp: missing keys: fc1\.bias"):
        chainlab.models.load("digits-mlp", weights=p)      # a state dict of another architecture
    with pytest.raises(ValueError, match="weights= needs an architecture name"):
        chainlab.models.load(str(p), weights=p)
