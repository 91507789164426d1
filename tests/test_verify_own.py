"""`chainlab verify --model … --images …` end to end: the shipped sixt-cifar given as a model file with its test
scenes as PNG gives the built-in run's numbers; torchvision's resnet18 and vgg11 at 64×64 (random init and a state
dict of the plain-torch definition); a kill -9 and --resume; Dask workers give the serial run's numbers."""
import csv
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
    ctx = Context(Settings(progress=False, images=n))
    ctx.cache["scenes"] = (q.astype(np.float32), np.asarray(y))
    sixt.shared_pass(ctx, "sixt-cifar", "sixt-cifar")
    for measure in ("csc_sixt_image", "ssim_sixt"):
        got = rows(out / "records" / f"{measure}.csv")
        want = [r for r in ctx.records if r["measure"] == measure]
        assert len(got) == len(want) > 0
        key = lambda r: (r["rule"], str(r["image"]), str(r["layer"]))     # noqa: E731
        got_v = {key(r): float(r["value"]) for r in got}
        want_v = {key(r): float(r["value"]) for r in want}
        assert got_v.keys() == want_v.keys()
        # the same images and vectors; the own run measures image 1 alone (its probe) and the rest as a chunk,
        # the built-in run both in one batch: float64 sums in another order (≤ 1e-9 relative, not an other result)
        assert all(np.isclose(got_v[k], want_v[k], rtol=1e-9, atol=0) for k in want_v), measure
        assert any(abs(got_v[k] - 0.5) > 0.01 for k in want_v)
    v = {d["id"]: d for d in json.loads((out / "verdicts.json").read_text())["verdicts"]}
    assert v["S1"]["outcome"] in ("reproduced", "not reproduced", "inconclusive")
    text = (out / "verify.md").read_text()
    assert "sixt-cifar" in text and "Images: 2" in text
