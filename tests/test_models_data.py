"""Shipped data and nets: provenance, accuracy as documented, storage round trip, size budget."""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import chainlab
from chainlab import models


def test_digits_are_sklearns_bundled_digits(digits):
    from sklearn.datasets import load_digits

    d = load_digits()
    z = np.load(models.data_dir() / "digits.npz")
    np.testing.assert_array_equal(d.data.reshape(-1, 8, 8)[z["train_index"]], z["x_train"])
    np.testing.assert_array_equal(d.target[z["test_index"]], z["y_test"])
    assert digits.x_train.shape == (1437, 1, 8, 8) and digits.x_test.shape == (360, 1, 8, 8)
    assert digits.x_train.min() == 0 and digits.x_train.max() == 1
    assert np.bincount(digits.y_test).min() >= 35  # stratified: every digit in the test split


def test_model_input_shapes(digits):
    for name, shape in [("digits-mlp", (2, 64)), ("digits-cnn", (2, 1, 8, 8)), ("sixt-cifar", (2, 3, 32, 32))]:
        x = chainlab.data.model_input(name, digits.x_test[:2])
        assert tuple(x.shape) == shape
        assert float(x.min()) >= 0 and float(x.max()) <= 1


PAPER_NETS = ("sixt-cifar", "vgg-cifar", "resnet-cifar")     # the target: ≥ 90 % on held-out scenes
SEED_GROUPS = sorted({models.seed_names(n) for n in models.NAMES if len(models.seed_names(n)) > 1})
# the recipe entries of a scene net's metadata that every seed of a net shares (scripts/train_scenes.py)
RECIPE = ("epochs", "lr", "weight_decay", "optimizer", "batch_size", "train_images_per_epoch", "data_init")
# files trained before a recipe entry was stored: sixt-cifar.npz has no 'data_init' — its recipe never had one
# (scripts/train_scenes.CONFIG), and every net whose recipe has it stored it (vgg-cifar, the scenes-cnn study)
RECIPE_DEFAULTS = {"data_init": False}


def _recipe(meta):
    return {r: meta[r] if r in meta else RECIPE_DEFAULTS[r] for r in RECIPE}


@pytest.fixture(scope="module")
def scenes_2000():
    return chainlab.data.test_set("scenes")


@pytest.mark.parametrize("name", models.NAMES)
def test_shipped_nets_reach_their_documented_accuracy(name, digits, scenes_2000):
    """Re-measured on the weights as loaded: digits nets on the 360 test digits (= the stored metadata);
    scenes nets on the 2000 held-out scenes (the README's column), next to the stored accuracy on 10 000
    other held-out scenes (sampling error of 2000 images: ~0.5 %)."""
    net = models.load(name)
    assert not net.training
    x, y = (digits.x_test, digits.y_test) if name.startswith("digits") else scenes_2000
    with torch.no_grad():
        acc = float((net(chainlab.data.model_input(name, x)).argmax(1).numpy() == y).mean())
    readme = (models.data_dir() / "README.md").read_text()
    row = next((line for line in readme.splitlines() if line.startswith(f"| {name} |")), None)
    assert row is not None, f"data/README.md has no accuracy row for {name}"
    assert f"{acc * 100:.1f} %" in row, f"data/README.md must state {name}'s test accuracy {acc * 100:.1f} %: {row}"
    assert f"{net.meta['test_accuracy'] * 100:.1f} %" in row
    if name.startswith("digits"):
        assert acc == pytest.approx(net.meta["test_accuracy"], abs=1e-6)
        assert acc >= 0.95
    else:
        assert abs(acc - net.meta["test_accuracy"]) < 0.02
        assert acc >= (0.90 if models.seed_names(name)[0] in PAPER_NETS else 0.80)


def test_seed_names_follow_the_naming_convention():
    """data/README.md: seed 0 keeps the net's name, seed k > 0 is '<name>-seed<k>'."""
    assert models.seed_names("scenes-cnn-wd0") == ("scenes-cnn-wd0", "scenes-cnn-wd0-seed1", "scenes-cnn-wd0-seed2")
    assert models.seed_names("scenes-cnn-wd0-seed1") == models.seed_names("scenes-cnn-wd0")
    assert models.seed_names("digits-mlp") == ("digits-mlp",)
    for bad in ("scenes-cnn-wd0-seed9", "no-such-net", "scenes-cnn-wd0-seed0"):
        with pytest.raises(ValueError, match="no shipped net"):
            models.seed_names(bad)
    # every shipped name lies in exactly one seed group, and every group's names are shipped
    groups = {models.seed_names(n) for n in models.NAMES}
    assert sorted(n for g in groups for n in g) == sorted(models.NAMES)
    assert all(g[0] + f"-seed{k}" == n for g in groups for k, n in enumerate(g) if k)


@pytest.mark.parametrize("names", SEED_GROUPS, ids=lambda g: g[0])
def test_seeds_of_a_net_share_its_recipe_and_differ_in_weights(names):
    """Seed k's file says seed k, was trained by the same recipe as seed 0, and is not a copy of another seed;
    its storage (float32 or float16 weights) is what the file holds."""
    nets = [models.load(n) for n in names]
    for k, (n, net) in enumerate(zip(names, nets)):
        assert net.name == n and net.meta["seed"] == k
        assert _recipe(net.meta) == _recipe(nets[0].meta), n
        with np.load(models.data_dir() / f"{n}.npz") as z:
            stored = {z[key].dtype for key in z.files if key.endswith(".weight") and z[key].ndim >= 2}
        assert stored == {np.dtype(net.meta.get("storage", "float32"))}, n
    first = [p for p in nets[0].parameters() if p.ndim >= 2][0]
    for n, net in zip(names[1:], nets[1:]):
        other = [p for p in net.parameters() if p.ndim >= 2][0]
        assert not torch.equal(first, other), f"{n} has the weights of {names[0]}"


def test_architectures_are_as_specified():
    cnn = models.build("digits-cnn")
    kinds = [type(m).__name__ for m in cnn]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU",
                     "AdaptiveAvgPool2d", "Flatten", "Linear", "ReLU", "Dropout", "Linear"]
    assert cnn.conv2.bias is None and cnn.conv3.stride == (2, 2) and cnn.conv1.padding == (1, 1)
    mlp = models.build("digits-mlp")
    lin = [m for m in mlp if isinstance(m, nn.Linear)]
    assert len(lin) == 6 and lin[0].in_features == 64 and lin[-1].out_features == 10
    six = models.build("sixt-cifar")
    convs = [(m.in_channels, m.out_channels) for m in six if isinstance(m, nn.Conv2d)]
    assert convs == [(3, 32), (32, 64), (64, 128), (128, 128)]
    assert six.fc1.in_features == 8192 and six.fc1.out_features == 1024 and six.fc2.out_features == 10


def test_save_load_round_trip_quantizes_only_large_tensors(tmp_path):
    net = models.build("sixt-cifar")
    models.save(net, tmp_path / "m.npz", "sixt-cifar", note="x")
    back = models.load(str(tmp_path / "m.npz"))
    np.testing.assert_array_equal(back.conv2.weight.detach(), net.conv2.weight.detach())
    w, wq = net.fc1.weight.detach().numpy(), back.fc1.weight.detach().numpy()
    step = np.abs(w).max(axis=1, keepdims=True) / 127
    assert np.all(np.abs(w - wq) <= step / 2 + 1e-7)
    assert back.meta["note"] == "x"


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="digits-mlp"):
        models.load("no-such-net")
    bad = tmp_path / "foreign.npz"
    np.savez(bad, a=np.ones(3))
    with pytest.raises(ValueError, match="not a chainlab model file"):
        models.load(str(bad))


def test_float16_storage_rounds_the_weight_tensors_only(tmp_path):
    """float16=True: every weight tensor with ≥ 2 axes comes back as torch's own float16 rounding of it (as
    float32), biases and BatchNorm entries exactly; int8 storage of tensors above QUANTIZE_ABOVE is unchanged."""
    net = models.build("scenes-cnn-bn")
    torch.manual_seed(0)
    with torch.no_grad():
        for b in net.modules():
            if isinstance(b, nn.BatchNorm2d):
                b.running_mean.normal_()
                b.running_var.uniform_(0.5, 2.0)
                b.bias.normal_()
    models.save(net, tmp_path / "h.npz", "scenes-cnn-bn", float16=True)
    models.save(net, tmp_path / "f.npz", "scenes-cnn-bn")
    back = models.load(str(tmp_path / "h.npz"))
    assert back.conv2.weight.dtype == torch.float32
    changed = 0
    for key, v in net.state_dict().items():
        b = back.state_dict()[key]
        if v.is_floating_point() and v.ndim >= 2:
            assert torch.equal(b, v.half().float()), key
            changed += int(not torch.equal(b, v))
        else:
            assert torch.equal(b, v), key
    assert changed == 7                      # 5 conv kernels and 2 fc matrices: none exactly representable
    assert (tmp_path / "h.npz").stat().st_size < 0.55 * (tmp_path / "f.npz").stat().st_size
    big = models.build("sixt-cifar")
    models.save(big, tmp_path / "s.npz", "sixt-cifar", float16=True)
    with np.load(tmp_path / "s.npz") as z:
        assert z["fc1.weight::q"].dtype == np.int8 and z["conv1.weight"].dtype == np.float16
        assert z["conv1.bias"].dtype == np.float32


DATA_BUDGET_MIB, FILE_LIMIT_MB = 64, 20       # data/README.md, "Size": why 64 MiB


def test_data_folder_stays_within_its_budget():
    files = [p for p in Path(models.data_dir()).rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    assert total < DATA_BUDGET_MIB * 2**20, f"data/ holds {total / 2**20:.1f} MiB"
    big = [(p.name, p.stat().st_size) for p in files if p.stat().st_size > FILE_LIMIT_MB * 10**6]
    assert not big, f"files above {FILE_LIMIT_MB} MB: {big}"
