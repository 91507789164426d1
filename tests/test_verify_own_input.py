"""`chainlab verify --model … --images …`: the images a user gives (folder / .npy, preprocessing by hand), the model
specs, the resumable store, and every bad input as one `chainlab: error:` line with exit 2 and nothing written."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from chainlab.app.cli import app
from chainlab.app.own.store import ChunkStore
from chainlab.errors import ArchiveError, InputError, OptionError
from chainlab.nets.images import IMAGENET_MEAN, IMAGENET_STD, load_images, load_labels
from chainlab.nets.specs import parse_spec

import torchvision_reference as tv

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def save(path, a):
    Image.fromarray(np.asarray(a, dtype=np.uint8)).save(path)
    return path


def rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# -- images ------------------------------------------------------------------------------------------
def test_folder_sorted_by_name_unit_and_none(tmp_path):
    a, b = rgb(6, 5, 1), rgb(6, 5, 2)
    save(tmp_path / "b.png", b)
    save(tmp_path / "a.jpeg", a)             # JPEG is lossy: compare with what PIL decodes
    got = load_images(tmp_path, "unit")
    assert got.names == ["a.jpeg", "b.png"]
    dec_a = np.asarray(Image.open(tmp_path / "a.jpeg").convert("RGB"), dtype=np.float64)
    assert np.array_equal(got.x[0].numpy(), dec_a.transpose(2, 0, 1) / 255.0)
    assert np.array_equal(got.x[1].numpy(), b.transpose(2, 0, 1) / 255.0)
    raw = load_images(tmp_path, "none", n=1)
    assert len(raw) == 1 and np.array_equal(raw.x[0].numpy(), dec_a.transpose(2, 0, 1))


def test_imagenet_preprocessing_by_hand(tmp_path):
    # short side already 256: the resize keeps the image, the crop takes rows 16:240, columns round(117/2)=58:282
    a = rgb(256, 341, 3)
    save(tmp_path / "x.png", a)
    got = load_images(tmp_path, "imagenet").x[0].numpy()
    want = (a[16:240, 58:282] / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert got.shape == (3, 224, 224)
    assert np.allclose(got, want.transpose(2, 0, 1), atol=1e-12)
    # another size: the short side goes to 256 (a constant image stays constant), then the centre crop
    save(tmp_path / "x.png", np.full((300, 200, 3), (10, 128, 250)))
    got = load_images(tmp_path, "imagenet").x[0].numpy()
    want = (np.array([10, 128, 250]) / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert np.allclose(got, want[:, None, None], atol=1e-12)


def test_grayscale_alpha_npy_and_labels(tmp_path):
    d = tmp_path / "g"
    d.mkdir()
    save(d / "g.png", np.arange(12).reshape(3, 4) * 20)
    g = load_images(d, "unit")
    assert g.shape == (1, 3, 4) and np.allclose(g.x[0, 0].numpy(), np.arange(12).reshape(3, 4) * 20 / 255)
    a = np.concatenate([rgb(3, 4), np.full((3, 4, 1), 255, np.uint8)], axis=2)
    Image.fromarray(a, "RGBA").save(d / "g.png")                     # opaque alpha: dropped
    assert load_images(d, "unit").shape == (3, 3, 4)
    a[0, 0, 3] = 10
    Image.fromarray(a, "RGBA").save(d / "g.png")
    with pytest.raises(InputError, match="transparent"):
        load_images(d, "unit")
    x = np.random.default_rng(0).integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)     # (N, H, W, C)
    np.save(tmp_path / "x.npy", x)
    got = load_images(tmp_path / "x.npy", "unit", n=3)
    assert got.shape == (3, 5, 6) and len(got) == 3
    assert np.array_equal(got.x.numpy(), x[:3].transpose(0, 3, 1, 2) / 255.0)
    (tmp_path / "y.txt").write_text("3\n1\n4\n")
    assert load_labels(tmp_path / "y.txt", 2).tolist() == [3, 1]
    np.save(tmp_path / "y2.npy", np.array([1, 2]))
    with pytest.raises(InputError, match="2 label.* for 4 image"):
        load_images(tmp_path / "x.npy", "unit", labels=tmp_path / "y2.npy")


def test_specs():
    assert parse_spec("torchvision:vgg16_bn").kind == "torchvision"
    assert parse_spec("vgg16").kind == "torchvision"
    assert parse_spec("sixt-cifar").kind == "shipped"
    assert parse_spec("sixt-cifar", weights="w.pt").kind == "architecture"
    assert parse_spec("nets/mine.py:make_net").kind == "callable"
    assert parse_spec("mypkg.models:Net").kind == "callable"
    assert parse_spec("model.npz").kind == "file"
    with pytest.raises(OptionError, match="densenet121"):
        parse_spec("torchvision:densenet121")
    with pytest.raises(OptionError, match="--weights needs an architecture"):
        parse_spec("model.npz", weights="w.pt")


# -- the store -----------------------------------------------------------------------------------------
def test_store_round_trip_resume_and_refusals(tmp_path):
    key = ("sixt-csc", "net", 0, 1, "zplus", ("fc",), 1.5, None, True)
    value = {"csc": {("fc", "tied"): {3: {"csc": np.arange(3.0), "n": np.int64(4)}}}, "names": ["input", "fc"],
             "t": torch.ones(2, dtype=torch.float64), "nan": float("nan"), "r": range(0, 4), 7: (1, 2.5, None)}
    s = ChunkStore(tmp_path, {"model": "m"}, resume=False)
    s.put("c0", {key: value, ("opaque",): object()}, [{"measure": "x", "value": 1.0}], 2.5)
    (tmp_path / "store" / "chunks" / "junk.tmp-999999-0.npz").write_bytes(b"half")   # a killed writer's temp file
    entries, records, seconds = ChunkStore(tmp_path, {"model": "m"}, resume=True).get("c0")
    assert list(entries) == [key] and seconds == 2.5 and records == [{"measure": "x", "value": 1.0}]
    v = entries[key]
    assert np.array_equal(v["csc"][("fc", "tied")][3]["csc"], np.arange(3.0)) and v[7] == (1, 2.5, None)
    assert torch.equal(v["t"], value["t"]) and np.isnan(v["nan"]) and v["r"] == range(0, 4)
    assert not (tmp_path / "store" / "chunks" / "junk.tmp-999999-0.npz").exists()
    with pytest.raises(InputError, match="earlier run"):
        ChunkStore(tmp_path, {"model": "m"}, resume=False)
    with pytest.raises(InputError, match="model: stored 'm', now 'other'"):
        ChunkStore(tmp_path, {"model": "other"}, resume=True)
    p = next((tmp_path / "store" / "chunks").glob("*.npz"))
    p.write_bytes(p.read_bytes()[:50])                                 # a damaged entry is named
    with pytest.raises(ArchiveError, match="cannot be read"):
        ChunkStore(tmp_path, {"model": "m"}, resume=True).get("c0")


# -- bad input through the command line ------------------------------------------------------------
USER_NETS = '''
import torch.nn as nn

def gelu_net():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))

def feature_map():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
'''


def tree(root: Path, skip: Path):
    out = {}
    for dirpath, dirs, files in os.walk(root):
        if Path(dirpath) == skip or skip in Path(dirpath).parents:
            continue
        for f in files:
            p = Path(dirpath) / f
            out[str(p)] = p.stat().st_mtime_ns
        for d in dirs:
            out[str(Path(dirpath) / d)] = "dir"
    return out


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text(USER_NETS)
    good = tmp_path / "rgb"
    good.mkdir()
    for i in range(2):
        save(good / f"{i}.png", rgb(8, 8, i))
    torch.manual_seed(0)
    torch.save(tv.build("resnet34", num_classes=3).state_dict(), tmp_path / "r34.pth")
    return tmp_path


def _bad_cases(d: Path):
    (d / "mixed").mkdir()
    save(d / "mixed" / "0.png", rgb(8, 8))
    (d / "mixed" / "notes.txt").write_text("not an image")
    (d / "empty").mkdir()
    (d / "gray").mkdir()
    save(d / "gray" / "0.png", np.zeros((8, 8)))
    (d / "broken").mkdir()
    (d / "broken" / "0.png").write_bytes(b"\x89PNG garbage")
    return [
        (["--model", "torchvision:resnet18", "--images", "mixed"], ["notes.txt", "not a PNG or JPEG"]),
        (["--model", "torchvision:resnet18", "--images", "empty"], ["empty"]),
        (["--model", "torchvision:resnet18", "--images", "gray", "--preprocess", "unit"], ["1 channel", "takes 3"]),
        (["--model", "torchvision:resnet18", "--images", "broken"], ["0.png", "not a readable"]),
        (["--model", "torchvision:resnet18", "--weights", "r34.pth", "--images", "rgb"],
         ["r34.pth does not fit resnet18", "unexpected keys: layer1.2"]),
        (["--model", "nets.py:gelu_net", "--images", "rgb", "--preprocess", "unit", "--claims", "S1,B1"],
         ["GELU", "claims that cannot run: S1, B1"]),
        (["--model", "nets.py:feature_map", "--images", "rgb", "--preprocess", "unit"],
         ["not a classifier", "(1, 2, 4, 4)"]),
        (["--model", "torchvision:resnet18", "--images", "rgb", "--claims", "S9"], ["unknown claim(s) S9"]),
        (["--model", "torchvision:resnet18", "--images", "rgb", "--n-images", "5"], ["holds 2 image(s)"]),
        (["--images", "rgb"], ["give --model"]),
        (["--model", "torchvision:resnet18"], ["--model needs --images"]),
        (["--model", "torchvision:densenet121", "--images", "rgb"], ["densenet121"]),
        (["--model", "torchvision:resnet18", "--images", "rgb", "--workers", "2", "--scheduler", "tcp://x:1"],
         ["not both"]),
    ]


def test_bad_input_is_one_line_exit_2_and_nothing_written(workdir):
    cases = _bad_cases(workdir)
    for args, fragments in cases:
        out = workdir / "out"
        before = tree(workdir, out)
        res = run("verify", *args, "--output", out)
        assert res.exit_code == 2, (args, res.exit_code, res.output, res.exception)
        lines = [ln for ln in res.output.strip().splitlines() if ln.startswith("chainlab: error:")]
        assert len(lines) == 1 and "Traceback" not in res.output, (args, res.output)
        for f in fragments:
            assert f in lines[0], (args, lines[0])
        assert tree(workdir, out) == before, args          # nothing written outside --output …
        assert not out.exists(), args                       # … and nothing inside: every check comes first


def test_resume_refuses_another_run(workdir):
    out = workdir / "out"
    res = run("verify", "--model", "torchvision:resnet18", "--images", "rgb", "--claims", "S2", "-o", out)
    assert res.exit_code == 0, res.output
    res = run("verify", "--model", "torchvision:resnet18", "--images", "rgb", "--claims", "S2", "-o", out)
    assert res.exit_code == 2 and "--resume continues it" in res.output
    res = run("verify", "--model", "torchvision:resnet18", "--seed", "1", "--images", "rgb", "--claims", "S2",
              "--resume", "-o", out)
    assert res.exit_code == 2 and "another run" in res.output
    m = json.loads((out / "store" / "manifest.json").read_text())
    assert m["spec"] == "torchvision:resnet18" and m["n_images"] == 2
