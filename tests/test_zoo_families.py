"""The torchvision families of the zoo (vgg11/13/16/19 ± BN, resnet18/34/50/101/152) against an independent plain-torch
definition (tests/torchvision_reference.py) and torchvision's published parameter counts: the same state-dict keys and
shapes, a state dict of the reference loads unchanged and gives the same logits, the class count comes from the file."""
import pytest
import torch

import chainlab
from chainlab.trace import trace
from chainlab.errors import ModelFileError
from chainlab.nets import zoo

import torchvision_reference as tv


def _meta(build):
    with torch.device("meta"):
        return build()


@pytest.mark.parametrize("name", zoo.TORCHVISION)
def test_family_keys_shapes_and_published_parameter_count(name):
    ours = zoo.torchvision(name, device="meta")
    ref = _meta(lambda: tv.build(name))
    assert sum(p.numel() for p in ours.parameters()) == tv.PARAMS[name]
    a, b = ours.state_dict(), ref.state_dict()
    assert list(a) == list(b)                                   # torchvision's key names, in its order
    assert all(tuple(a[k].shape) == tuple(b[k].shape) for k in a)


@pytest.mark.parametrize("name,size", [("resnet18", 64), ("vgg11_bn", 64)])
def test_reference_state_dict_loads_unchanged_with_its_class_count(tmp_path, name, size):
    torch.manual_seed(3)
    ref = tv.randomize_batchnorm(tv.build(name, num_classes=7)).eval()
    p = tmp_path / f"{name}.pth"
    torch.save(ref.state_dict(), p)
    net = chainlab.models.load(name, weights=p)
    assert net.name == name
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = ref(x), net(x)
    assert got.shape == (2, 7)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)
    # the traced float64 stages (BatchNorm folded) reproduce the reference too
    net.input_shape = (1, 3, size, size)
    traced = trace(net)
    with torch.no_grad():
        out = traced.forward(x[:1].double())[-1].out
    assert torch.allclose(out.float(), want[:1], rtol=1e-4, atol=1e-4)


def test_seeded_init_follows_torchvision_and_is_reproducible():
    r, r_again, r_other = (zoo.torchvision("resnet18", seed=s) for s in (0, 0, 1))
    assert all(torch.equal(v, r_again.state_dict()[k]) for k, v in r.state_dict().items())
    assert not torch.equal(r.conv1.weight, r_other.conv1.weight)
    a = zoo.torchvision("vgg11", seed=0)
    # torchvision's init: conv Kaiming-normal (fan_out), Linear N(0, 0.01) with zero bias
    w = a.features[3].weight        # 128 × 64 × 3 × 3
    assert abs(float(w.detach().std()) / (2 / (128 * 9)) ** 0.5 - 1) < 0.05
    assert abs(float(a.classifier[6].weight.std()) / 0.01 - 1) < 0.05
    assert float(a.classifier[6].bias.abs().max()) == 0.0
    assert float(r.bn1.weight.min()) == float(r.bn1.weight.max()) == 1.0


def test_state_dict_of_another_architecture_is_named(tmp_path):
    torch.manual_seed(0)
    p = tmp_path / "r18.pth"
    torch.save(tv.build("resnet18", num_classes=5).state_dict(), p)
    with pytest.raises(ModelFileError, match=r"r18\.pth does not fit resnet34: missing keys: layer1\.2\.bn1\.bias"):
        chainlab.models.load("resnet34", weights=p)
    with pytest.raises(ModelFileError, match=r"does not fit resnet50: .*shape mismatches: layer1\.0\.conv1\.weight"):
        chainlab.models.load("resnet50", weights=p)
