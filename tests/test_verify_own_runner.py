"""The chunk runner of `verify --model`: a measure call's cache entries and records are captured, stored, loaded
on resume without measuring again, equal on two Dask workers and serially, and survive a kill -9 of the run."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from PIL import Image

from chainlab.app.own import prepare
from chainlab.app.own.runner import Call, Source, capture, context_for, run_calls
from chainlab.app.own.store import ChunkStore
from chainlab.papers.context import Settings

CALLS = []


def toy(ctx, net, images, scale=1.0):
    """A per-image measure in the papers' shape: logits of the chunk's images, cached and recorded."""
    key = ("toy", net, images.start, images.stop, scale)
    if key in ctx.cache:
        return ctx.cache[key]
    CALLS.append(key)
    X, _ = ctx.images(net, images.stop)
    model = ctx.model(net)
    with torch.no_grad():
        out = model(X[images.start:images.stop].float()).double().numpy() * scale
    for i, row in zip(images, out):
        ctx.record("toy", net=net, image=i, value=float(row.max()))
    ctx.cache[key] = {"logits": out, "ids": np.arange(images.start, images.stop)}
    return ctx.cache[key]


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return prepare("torchvision:resnet18", str(d), preprocess="unit")


def calls_for(net, n, chunk):
    return [Call(toy, (net, range(s, min(s + chunk, n))), (("scale", 2.0),), f"toy · {net}", min(chunk, n - s))
            for s in range(0, n, chunk)]


def test_capture_store_and_resume_without_measuring(user, tmp_path):
    ctx = context_for(user, Settings(progress=False))
    calls = calls_for(user.name, 5, 2)
    store = ChunkStore(tmp_path, {"model": user.info.fingerprint}, resume=False)
    CALLS.clear()
    got = run_calls(ctx, calls, store, progress=False)
    assert got["computed"] == 3 and len(CALLS) == 3
    assert [r["image"] for r in ctx.records] == [0, 1, 2, 3, 4]
    # a new run on the same store measures nothing and has the same entries and records
    ctx2 = context_for(user, Settings(progress=False))
    CALLS.clear()
    got = run_calls(ctx2, calls, ChunkStore(tmp_path, {"model": user.info.fingerprint}, resume=True), progress=False)
    assert got == {**got, "stored": 3, "computed": 0} and CALLS == []
    assert ctx2.records == ctx.records
    for k, v in ctx.cache.items():
        if k[0] == "toy":
            assert np.array_equal(ctx2.cache[k]["logits"], v["logits"])
    # the claim code then finds its chunks: calling the measure again computes nothing
    toy(ctx2, user.name, range(0, 2), scale=2.0)
    assert CALLS == []


def test_two_dask_workers_equal_serial(user, tmp_path):
    pytest.importorskip("distributed")
    cloudpickle = pytest.importorskip("cloudpickle")
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    imgs = user.images
    source = Source(user.spec, imgs.source, imgs.preprocess, len(imgs), None, imgs.digest, user.name,
                    (("seed", 0),))
    calls = calls_for(user.name, 5, 1)
    serial = context_for(user, Settings(progress=False))
    run_calls(serial, calls, None, progress=False)
    ctx = context_for(user, Settings(progress=False))
    store = ChunkStore(tmp_path, {"m": 1}, resume=False)
    got = run_calls(ctx, calls, store, source=source, workers=2, progress=False)
    assert got["computed"] == 5 and len(store.names()) == 5
    assert sorted(ctx.records, key=lambda r: r["image"]) == serial.records
    for k, v in serial.cache.items():
        if k[0] == "toy":
            assert np.array_equal(ctx.cache[k]["logits"], v["logits"])       # bit-exact


SCRIPT = textwrap.dedent('''
    import sys, time
    import numpy as np
    from chainlab.app.own import prepare
    from chainlab.app.own.runner import Call, context_for, run_calls
    from chainlab.app.own.store import ChunkStore
    from chainlab.papers.context import Settings

    def slow(ctx, net, images):
        key = ("slow", net, images.start, images.stop)
        if key not in ctx.cache:
            X, _ = ctx.images(net, images.stop)
            time.sleep(float(sys.argv[3]))
            ctx.record("slow", net=net, image=images.start, value=float(X[images.start].sum()))
            ctx.cache[key] = {"sum": X[images.start:images.stop].numpy().sum(axis=(1, 2, 3))}
        return ctx.cache[key]

    user = prepare("torchvision:resnet18", sys.argv[1], preprocess="unit")
    ctx = context_for(user, Settings(progress=False))
    store = ChunkStore(sys.argv[2], {"model": user.info.fingerprint}, resume=True)
    calls = [Call(slow, (user.name, range(i, i + 1)), (), "slow", 1) for i in range(5)]
    got = run_calls(ctx, calls, store, progress=False)
    print("stored", got["stored"], "computed", got["computed"])
    print("sums", [float(ctx.cache[("slow", user.name, i, i + 1)]["sum"][0]) for i in range(5)])
''')


def test_resume_after_kill_9(user, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    ChunkStore(out, {"model": user.info.fingerprint}, resume=False)     # the store of the run
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    p = subprocess.Popen([sys.executable, str(script), user.images.source, str(out), "1.0"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chunks = out / "store" / "chunks"
    deadline = time.time() + 300
    while time.time() < deadline and len([f for f in chunks.glob("*.npz") if ".tmp-" not in f.name]) < 2:
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    done = len([f for f in chunks.glob("*.npz") if ".tmp-" not in f.name])
    assert 2 <= done < 5
    res = subprocess.run([sys.executable, str(script), user.images.source, str(out), "0"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"stored {done} computed {5 - done}" in res.stdout
    x = user.images.x.numpy().sum(axis=(1, 2, 3))
    sums = eval(res.stdout.split("sums ", 1)[1])
    assert np.allclose(sums, x, rtol=1e-6)
    assert not [f for f in chunks.iterdir() if ".tmp-" in f.name]


def _helper_chunk(ctx, tag):
    """Caches a transient helper (as Sixt's traced net or Binder's derived model) and a result."""
    ctx.cache[("helper",)] = "GBs"
    ctx.transient.add(("helper",))
    ctx.cache[("result", tag)] = 1


def _seen_chunk(ctx, tag):
    """Records whether the helper is still cached."""
    ctx.cache[("seen", tag)] = ("helper",) in ctx.cache


def test_transient_helpers_are_released_between_groups():
    """A serial run drops the context's transient helpers when the next chunk belongs to another group (and at the
    end), keeps them within a group, and keeps every result."""
    from chainlab.app.own.runner import run_calls
    from chainlab.papers.context import Chunk, Context, Settings
    ctx = Context(Settings(progress=False))
    calls = [Chunk(_helper_chunk, ("a",), (), "A", 1), Chunk(_seen_chunk, ("a",), (), "A", 1),
             Chunk(_seen_chunk, ("b",), (), "B", 1)]
    run_calls(ctx, calls, None, progress=False)
    assert ctx.cache[("seen", "a")] is True and ctx.cache[("seen", "b")] is False
    assert ("helper",) not in ctx.cache and ctx.cache[("result", "a")] == 1 and not ctx.transient
