"""Glyph-on-scene images (chainlab.nets.scenes) and the CIFAR-size architectures trained on them."""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from chainlab.nets import architectures, models, scenes
from chainlab.nets.digits import load_digits

DATA = Path(__file__).resolve().parent.parent / "data"


# ---------------------------------------------------------------------------------------------
# determinism, shapes, balance


def test_same_seed_same_bytes_other_seed_differs():
    a = scenes.load_scenes("train", 300, seed=5)
    b = scenes.load_scenes("train", 300, seed=5)
    c = scenes.load_scenes("train", 300, seed=6)
    assert a.x.tobytes() == b.x.tobytes() and a.y.tobytes() == b.y.tobytes()
    assert not np.array_equal(a.x, c.x)
    t1 = scenes.load_two_object_scenes("test", 100, seed=2)
    t2 = scenes.load_two_object_scenes("test", 100, seed=2)
    assert t1.x.tobytes() == t2.x.tobytes()
    assert np.array_equal(t1.y_left, t2.y_left) and np.array_equal(t1.y_right, t2.y_right)
    assert not np.array_equal(t1.x, scenes.load_two_object_scenes("test", 100, seed=3).x)


def test_train_and_test_differ_for_the_same_seed():
    assert not np.array_equal(scenes.load_scenes("train", 50, seed=0).x, scenes.load_scenes("test", 50, seed=0).x)


def test_bit_identical_across_thread_counts():
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = scenes.load_scenes("test", 2000, seed=1)
        t_a = scenes.load_two_object_scenes("train", 500, seed=1)
        torch.set_num_threads(2)
        b = scenes.load_scenes("test", 2000, seed=1)
        t_b = scenes.load_two_object_scenes("train", 500, seed=1)
    finally:
        torch.set_num_threads(old)
    assert a.x.tobytes() == b.x.tobytes()
    assert t_a.x.tobytes() == t_b.x.tobytes()


@pytest.mark.parametrize("split", ["train", "test"])
def test_shapes_dtypes_range(split):
    s = scenes.load_scenes(split, 257, seed=0)
    assert s.x.shape == (257, 3, 32, 32) and s.x.dtype == np.float32
    assert s.y.shape == (257,) and s.y.dtype == np.int64
    assert s.x.min() >= 0.0 and s.x.max() <= 1.0
    assert set(np.unique(s.y)) <= set(range(10))
    assert s.x.std() > 0.1                    # not a constant image set
    t = scenes.load_two_object_scenes(split, 33, seed=0)
    assert t.x.shape == (33, 3, 32, 32) and t.x.dtype == np.float32
    assert t.y_left.dtype == np.int64 and t.y_right.dtype == np.int64
    assert t.x.min() >= 0.0 and t.x.max() <= 1.0
    assert scenes.load_scenes(split, 0).x.shape == (0, 3, 32, 32)


def test_bad_arguments():
    with pytest.raises(ValueError):
        scenes.load_scenes("validation", 10)
    with pytest.raises(ValueError):
        scenes.load_scenes("train", -1)


@pytest.mark.parametrize("n", [1000, 1003])
def test_class_balance(n):
    counts = np.bincount(scenes.load_scenes("train", n, seed=4).y, minlength=10)
    assert counts.min() >= n // 10 and counts.max() <= n // 10 + 1 and counts.sum() == n


def test_labels_are_not_in_a_fixed_order():
    y = scenes.load_scenes("train", 100, seed=0).y
    assert not np.array_equal(y, np.arange(100) % 10)


# ---------------------------------------------------------------------------------------------
# train/test separation


def _overlap(a, b):
    """Pairwise overlap of half-open boxes (x0, y0, x1, y1): bool (len(a), len(b))."""
    return ((a[:, None, 0] < b[None, :, 2]) & (b[None, :, 0] < a[:, None, 2])
            & (a[:, None, 1] < b[None, :, 3]) & (b[None, :, 1] < a[:, None, 3]))


def test_train_and_test_crop_boxes_never_overlap():
    tr = scenes.load_scenes("train", 3000, seed=0, return_info=True).info
    te = scenes.load_scenes("test", 3000, seed=0, return_info=True).info
    tw = scenes.load_two_object_scenes("test", 1000, seed=0, return_info=True).info
    photos = scenes.photographs()
    for p in range(len(photos)):
        h, w = photos[p].shape[:2]
        a, b = tr["box"][tr["photo"] == p], np.concatenate([te["box"][te["photo"] == p], tw["box"][tw["photo"] == p]])
        assert len(a) > 100 and len(b) > 100       # every photograph is used in both splits
        for boxes in (a, b):
            assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
            side = boxes[:, 2] - boxes[:, 0]
            assert (side == boxes[:, 3] - boxes[:, 1]).all() and (side >= 32).all()
        assert not _overlap(a, b).any()


def test_crops_have_random_scale_and_flips():
    info = scenes.load_scenes("train", 2000, seed=0, return_info=True).info
    side = info["box"][:, 2] - info["box"][:, 0]
    assert side.max() >= 2 * side.min()
    assert 0.4 < info["flip_h"].mean() < 0.6 and 0.4 < info["flip_v"].mean() < 0.6


def test_no_background_pixel_crosses_the_split(monkeypatch):
    """Photographs that are 1 only on the other split's side give exactly-zero backgrounds."""
    real = scenes.photographs()

    def marked(side):
        out = []
        for a in real:
            m = np.zeros_like(a)
            c = scenes.split_column(a.shape[1])
            if side == "test":
                m[:, c:] = 255
            else:
                m[:, :c] = 255
            out.append(m)
        return tuple(out)

    for split, other in (("train", "test"), ("test", "train")):
        monkeypatch.setattr(scenes, "photographs", lambda other=other: marked(other))
        scenes._pyramids.cache_clear()
        try:
            bg = scenes.load_backgrounds(split, 2000, seed=0)
            own = scenes.load_backgrounds(other, 200, seed=0)
        finally:
            scenes._pyramids.cache_clear()
        assert bg.max() == 0.0
        assert own.min() > 0.5                       # the marked side is seen by its own split
    monkeypatch.undo()
    scenes._pyramids.cache_clear()


def test_scenes_use_only_their_split_glyphs(monkeypatch):
    """Fake digits: every train glyph has intensity 1, every test glyph 0.5."""
    d = load_digits()
    fake = type(d)(np.ones_like(d.x_train), d.y_train, np.full_like(d.x_test, 0.5), d.y_test)
    monkeypatch.setattr(scenes, "load_digits", lambda *a, **k: fake)
    scenes._glyph_source.cache_clear()
    try:
        a_tr = scenes.load_scenes("train", 500, seed=0, return_info=True).info["alpha"]
        a_te = scenes.load_scenes("test", 500, seed=0, return_info=True).info["alpha"]
        t_te = scenes.load_two_object_scenes("test", 200, seed=0, return_info=True).info["alpha"]
    finally:
        scenes._glyph_source.cache_clear()
    assert np.allclose(a_tr.max((1, 2)), 1.0)
    assert np.allclose(a_te.max((1, 2)), 0.5) and np.allclose(t_te.max((2, 3)), 0.5)


def test_glyph_indices_match_labels_of_their_split():
    d = load_digits()
    for split, ys in (("train", d.y_train), ("test", d.y_test)):
        s = scenes.load_scenes(split, 1000, seed=1, return_info=True)
        gi = s.info["glyph_index"]
        assert gi.min() >= 0 and gi.max() < len(ys)
        assert np.array_equal(ys[gi], s.y)
        assert len(np.unique(gi)) > 0.5 * min(1000, len(ys))   # many different glyphs, not one per class


# ---------------------------------------------------------------------------------------------
# composition


def test_image_is_alpha_blend_of_glyph_on_background():
    s = scenes.load_scenes("train", 400, seed=2, return_info=True)
    i = s.info
    # the background in info is the same crop load_backgrounds returns
    assert np.array_equal(i["background"], scenes.load_backgrounds("train", 400, seed=2))
    a = i["alpha"][:, None]
    expect = np.clip(i["background"] * (1 - a) + i["colour"][:, :, None, None] * a, 0, 1)
    assert np.abs(s.x - expect).max() < 1e-5
    # alpha is zero outside the glyph box and the box has a size of 14–24 px
    gb = i["glyph_box"]
    size = gb[:, 2] - gb[:, 0]
    assert (size == gb[:, 3] - gb[:, 1]).all() and size.min() >= 14 and size.max() <= 24
    assert (gb[:, :2] >= 0).all() and (gb[:, 2:] <= 32).all()
    cols, rows = np.arange(32)[None, :], np.arange(32)[:, None]
    for k in range(len(gb)):
        inside = (cols >= gb[k, 0]) & (cols < gb[k, 2]) & (rows >= gb[k, 1]) & (rows < gb[k, 3])
        assert (i["alpha"][k][~inside] == 0).all()
        assert i["alpha"][k].max() > 0.5              # the glyph is really there


def test_glyph_contrasts_with_its_background():
    i = scenes.load_scenes("test", 1000, seed=3, return_info=True).info
    luma = np.array([0.299, 0.587, 0.114])
    a = i["alpha"]
    local = (np.einsum("nchw,c->nhw", i["background"], luma) * a).sum((1, 2)) / a.sum((1, 2))
    glyph = i["colour"] @ luma
    assert np.abs(glyph - local).min() > 0.05
    assert np.median(np.abs(glyph - local)) > 0.3


def test_two_object_labels_differ_and_glyphs_lie_in_separate_halves():
    t = scenes.load_two_object_scenes("test", 1000, seed=0, return_info=True)
    assert (t.y_left != t.y_right).all()
    assert np.bincount(t.y_left, minlength=10).min() == 100
    assert len(np.unique(t.y_right)) == 10
    a = t.info["alpha"]                                  # (n, 2, 32, 32): left, right
    assert (a[:, 0, :, 16:] == 0).all() and (a[:, 1, :, :16] == 0).all()
    assert (a[:, 0].max((1, 2)) > 0.5).all() and (a[:, 1].max((1, 2)) > 0.5).all()
    gb = t.info["glyph_box"]
    assert (gb[:, 0, 2] <= 16).all() and (gb[:, 1, 0] >= 16).all()
    d = load_digits()
    assert np.array_equal(d.y_test[t.info["glyph_index"][:, 0]], t.y_left)
    assert np.array_equal(d.y_test[t.info["glyph_index"][:, 1]], t.y_right)


# ---------------------------------------------------------------------------------------------
# image statistics


def _power_law_crops(beta, n_fields, rng, size=256):
    f = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :])
    f[0, 0] = 1
    amp = f ** (-beta / 2)
    amp[0, 0] = 0
    out = []
    for _ in range(n_fields):
        z = np.fft.ifft2(amp * np.fft.fft2(rng.standard_normal((size, size)))).real
        out += [z[i:i + 32, j:j + 32] for i in range(0, size, 32) for j in range(0, size, 32)]
    return np.array(out)


def test_spectrum_slope_estimator_on_controls():
    rng = np.random.default_rng(0)
    assert abs(scenes.radial_power_spectrum_slope(rng.random((2000, 3, 32, 32)))) < 0.15
    assert abs(scenes.radial_power_spectrum_slope(_power_law_crops(2.0, 20, rng)) + 2.0) < 0.25
    assert abs(scenes.radial_power_spectrum_slope(_power_law_crops(1.0, 20, rng)) + 1.0) < 0.25


@pytest.mark.parametrize("split", ["train", "test"])
def test_backgrounds_have_a_natural_image_spectrum(split):
    # natural images: power ~ 1/f^alpha with alpha around 2 (roughly 1 to 3.5)
    bg = scenes.load_backgrounds(split, 2000, seed=0)
    assert -3.5 < scenes.radial_power_spectrum_slope(bg) < -1.0
    # the scenes stay power-law-like; the smooth upsampled glyphs steepen the spectrum
    x = scenes.load_scenes(split, 2000, seed=0).x
    assert -4.5 < scenes.radial_power_spectrum_slope(x) < -1.0


def test_colour_channels_correlate_as_in_photographs():
    c = scenes.channel_correlation(scenes.load_backgrounds("train", 1000, seed=0))
    assert c.shape == (3, 3) and np.allclose(np.diag(c), 1)
    assert c[np.triu_indices(3, 1)].min() > 0.3
    noise = scenes.channel_correlation(np.random.default_rng(0).random((500, 3, 32, 32)))
    assert np.abs(noise[np.triu_indices(3, 1)]).max() < 0.02


# ---------------------------------------------------------------------------------------------
# architectures and shipped weights

ALLOWED = (nn.Conv2d, nn.Linear, nn.ReLU, nn.Softplus, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
           nn.BatchNorm1d, nn.BatchNorm2d, nn.Flatten, nn.Dropout,
           nn.Identity)    # chainlab.zoo.ResNet's maxpool with stem="small"


CIFAR_NETS = [n for n, shape in architectures.INPUT_SHAPES.items() if shape == (1, 3, 32, 32)]


@pytest.mark.parametrize("name", CIFAR_NETS)
def test_architecture(name):
    net = models.build(name).eval()
    assert net.name == name and net.input_shape == (1, 3, 32, 32) and not net.training
    leaves = [m for m in net.modules() if not list(m.children())]
    assert all(isinstance(m, ALLOWED) for m in leaves), {type(m).__name__ for m in leaves}
    assert all(m.padding_mode == "zeros" for m in leaves if isinstance(m, nn.Conv2d))
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    if name.startswith("scenes-cnn"):
        assert sum(p.numel() for p in net.parameters()) <= 300_000
    if isinstance(net, nn.Sequential):         # BN only directly after a conv / linear
        mods = list(net.children())
        for k, m in enumerate(mods):
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                assert isinstance(mods[k - 1], (nn.Conv2d, nn.Linear))


def test_seeded_init():
    a = architectures.init_weights(models.build("scenes-cnn-relu"), 1)
    b = architectures.init_weights(models.build("scenes-cnn-relu"), 1)
    c = architectures.init_weights(models.build("scenes-cnn-relu"), 2)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_activation_variants():
    sp = models.build("scenes-cnn-softplus10")
    acts = [m for m in sp.modules() if isinstance(m, nn.Softplus)]
    assert len(acts) == 6 and all(m.beta == 10 for m in acts)
    assert not any(isinstance(m, nn.ReLU) for m in sp.modules())
    bn = models.build("scenes-cnn-bn")
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 5
    with pytest.raises(ValueError):
        architectures.scenes_cnn(activation="tanh")
