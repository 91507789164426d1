"""HDF5 chain archives: bit-exact round trips, plain-h5py readability, corruption (SIGKILL, concurrent writers,
full disks: test_archive_safety.py)."""
import h5py
import numpy as np
import pytest
import scipy.sparse as sp
import torch

import chainlab
from chainlab import archive
from chainlab.archive import ArchiveError
from chainlab.chain import Chain
from chainlab.nets.storage import state_fingerprint
from chainlab.linalg import BlockOperator, DenseOperator, SparseOperator

from conftest import mlp


@pytest.fixture
def block_cls():
    return BlockOperator


def rand_sparse(rng, n, m, fmt, dtype, idx):
    M = sp.random(n, m, density=0.3, format=fmt, random_state=rng, dtype=np.float64).astype(dtype)
    M.indices = M.indices.astype(idx)
    M.indptr = M.indptr.astype(idx)
    return M


def synthetic_chain(seed=0, block_cls=None):
    """Five layers covering every storage kind, dtype and index dtype (shapes 6→5→4→7→3→2)."""
    rng = np.random.default_rng(seed)
    ops = [
        DenseOperator(rng.standard_normal((6, 5))),
        SparseOperator(rand_sparse(rng, 5, 4, "csr", np.float64, np.int32)),
        SparseOperator(rand_sparse(rng, 4, 7, "csc", np.float64, np.int64)),
        DenseOperator(rng.standard_normal((7, 3)).astype(np.float32)),
        SparseOperator(rand_sparse(rng, 3, 2, "csr", np.float32, np.int64), bias_relevance=rng.random(2)),
    ]
    ops[0].bias_relevance = rng.random(5)
    names = [f"layer{i}" for i in range(5)]
    shapes = [(6,), (5,), (4,), (7,), (3,), (2,)]
    if block_cls is not None:
        # a DeepLIFT-like chain: 2x2 blocks of (n_in, n_out) operators, shape (2 n_in, 2 n_out)
        ops = [block_cls(DenseOperator(rng.standard_normal((6, 4))),
                         SparseOperator(sp.csc_matrix((6, 4))),   # an empty block (nnz 0)
                         SparseOperator(rand_sparse(rng, 6, 4, "csc", np.float64, np.int32)),
                         DenseOperator(rng.standard_normal((6, 4)))),
               block_cls(*(SparseOperator(rand_sparse(rng, 4, 3, "csr", np.float64, np.int64)) for _ in range(4)))]
        names, shapes = names[:2], [(6,), (4,), (3,)]
    return Chain(ops, names=names, shapes=shapes, input_shape=(1, 6), x=rng.standard_normal(6),
                 logits=rng.standard_normal(shapes[-1][0]), rule="synthetic" if block_cls is None else "deeplift",
                 options={"epsilon": 0.25, "tuple": (1, 2), "nested": {"a": [1.5, None]}},
                 space="relevance" if block_cls is None else "deeplift",
                 layer_rules=[f"r{i}" for i in range(len(ops))], meta={"net": "toy", "image": seed})


def assert_same_matrix(a, b):
    assert type(a) is type(b) and a.kind == b.kind and a.shape == b.shape and a.dtype == b.dtype
    if a.kind == "block":
        for ra, rb in zip(a.blocks, b.blocks):
            for x, y in zip(ra, rb):
                assert_same_matrix(x, y)
    elif a.kind == "sparse":
        A, B = a.matrix, b.matrix
        assert A.format == B.format
        for f in ("data", "indices", "indptr"):
            u, v = getattr(A, f), getattr(B, f)
            assert u.dtype == v.dtype and u.tobytes() == v.tobytes(), f
    else:
        assert a.array.tobytes() == b.array.tobytes()
    ba, bb = getattr(a, "bias_relevance", None), getattr(b, "bias_relevance", None)
    assert (ba is None) == (bb is None)
    if ba is not None:
        assert np.asarray(ba).tobytes() == np.asarray(bb).tobytes()


def write_flipped(path, raw: bytes, pos: int, mask: int = 0xFF) -> None:
    """Write ``raw`` to ``path`` with byte ``pos`` XOR ``mask`` (one flipped byte)."""
    b = bytearray(raw)
    b[pos] ^= mask
    path.write_bytes(bytes(b))


def assert_same_chain(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert_same_matrix(x, y)
    assert a.names == b.names and a.layer_rules == b.layer_rules and a.shapes == b.shapes
    assert a.input_shape == b.input_shape and a.rule == b.rule and a.space == b.space
    assert a.x.tobytes() == b.x.tobytes() and a.logits.tobytes() == b.logits.tobytes()
    assert a.meta == b.meta


def test_round_trip_every_kind_dtype_and_index_dtype(tmp_path, block_cls):
    c1, c2 = synthetic_chain(1), synthetic_chain(2, block_cls)
    path = tmp_path / "a.h5"
    keys = archive.write(path, [c1, c2])
    assert keys == ["000000", "000001"]
    with archive.open(path) as r:
        assert len(r) == 2 and list(r) == keys and "000001" in r
        b1, b2 = r.load(keys[0]), r.load(keys[1])
        assert_same_chain(c1, b1)
        assert_same_chain(c2, b2)
        # options survive as JSON (tuples come back as lists)
        assert b1.options == {"epsilon": 0.25, "tuple": [1, 2], "nested": {"a": [1.5, None]}}
        # the block chain still computes: M @ v equals the assembled 2x2 block product
        v = np.random.default_rng(0).standard_normal(6)
        assert np.array_equal(b2.apply(v), c2.apply(v))
        info = r.info(keys[0])
        assert info["net"] == "toy" and info["image"] == 1 and info["rule"] == "synthetic"
        assert info["kinds"] == ["dense", "sparse", "sparse", "dense", "sparse"]
        assert info["input_hash"] == archive.input_hash(c1.x, c1.input_shape)
        assert r.info(keys[1])["kinds"] == ["block", "block"]
        assert_same_matrix(r.load_layer(keys[0], 2), c1[2])
        assert_same_matrix(r.load_layer(keys[0], -1), c1[4])


def test_round_trip_extracted_chain_and_fingerprint(tmp_path):
    net = mlp(0)
    x = torch.randn(1, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    chain = chainlab.extract(net, x, "lrp-epsilon", epsilon=0.1, bias="full", dtype="float32")
    chain.meta.update(net="mlp0", image=3, fingerprint=state_fingerprint(net))
    path = tmp_path / "e.h5"
    key = archive.append(path, chain)
    with archive.open(path) as r:
        back = r.load(key)
        info = r.info(key)
    assert_same_chain(chain, back)
    assert back.options == chain.options
    assert np.array_equal(back.explain(), chain.explain())
    assert info["fingerprint"] == state_fingerprint(net) and info["fingerprint"].startswith("sha256:")
    # the fingerprint changes with any weight
    other = mlp(0)
    with torch.no_grad():
        other[0].weight[0, 0] += 1e-12
    assert state_fingerprint(other) != state_fingerprint(net) and state_fingerprint(mlp(0)) == info["fingerprint"]


def test_plain_h5py_and_scipy_read_sparse_group_without_chainlab_reader(tmp_path, monkeypatch):
    c = synthetic_chain(3)
    path = tmp_path / "p.h5"
    archive.write(path, [c])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)      # the index's external links resolve beside the index, not in the cwd
    with h5py.File(path, "r") as f:
        assert f.attrs["encoding-type"].decode() == "chainlab-archive" and f.attrs["schema_version"] == 2
        link = f["chains"].get("000000", getlink=True)
        assert isinstance(link, h5py.ExternalLink) and link.filename.startswith("p.h5.chains/")
        for i, fmt, cls in ((1, "csr", sp.csr_matrix), (2, "csc", sp.csc_matrix)):
            g = f["chains/000000/layers"][f"{i:04d}"]["matrix"]
            assert g.attrs["encoding-type"].decode() == f"{fmt}_matrix"
            M = cls((g["data"][:], g["indices"][:], g["indptr"][:]), shape=tuple(g.attrs["shape"]))
            assert (M != c[i].matrix).nnz == 0
            for ds in g.values():
                assert ds.compression == "gzip" and ds.fletcher32
        d = f["chains/000000/layers/0000/matrix"]
        assert d.chunks is not None and d.compression == "gzip" and d.fletcher32
        assert np.array_equal(d[:], c[0].array)


def test_append_delete_and_errors_keep_archive_intact(tmp_path):
    path = tmp_path / "d.h5"
    keys = [archive.append(path, synthetic_chain(s)) for s in range(3)]
    assert keys == ["000000", "000001", "000002"]
    archive.delete(path, "000001")
    with archive.open(path) as r:
        assert r.keys() == ["000000", "000002"]
        assert_same_chain(r.load("000002"), synthetic_chain(2))
    assert archive.append(path, synthetic_chain(5)) == "000003"   # keys are never reused
    with pytest.raises(ArchiveError, match="no chain '000001'"):
        archive.delete(path, "000001")
    with archive.open(path) as r, pytest.raises(ArchiveError, match="no chain 'nope'"):
        r.load("nope")
    # a non-linear chain (guided-bp & co.) cannot be archived; the file stays as it was
    before = path.read_bytes()
    bad = synthetic_chain(9)
    bad.linear = False
    with pytest.raises(ArchiveError, match="not linear"):
        archive.append(path, bad)
    with pytest.raises(ArchiveError, match="not linear"):
        archive.write(path, [synthetic_chain(0), bad])   # fails after the first chain was written to the temp
    assert path.read_bytes() == before
    # no temp file left behind: the index, its lock, and exactly the files of the chains it lists
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.h5", "d.h5.chains", "d.h5.lock"]
    with archive.open(path) as r:
        assert sorted(r.chain_file(k).name for k in r.keys()) == sorted(p.name for p in (tmp_path / "d.h5.chains").iterdir())


# -- unreadable files -----------------------------------------------------------------------------
@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.h5"
    rng = np.random.default_rng(0)
    c = synthetic_chain(0)
    c.operators[3] = DenseOperator(rng.standard_normal((7, 3)).astype(np.float32))
    archive.write(path, [c, synthetic_chain(1)])
    return path


def test_missing_text_and_foreign_files(tmp_path):
    with pytest.raises(ArchiveError, match="nothere.h5: no such archive"):
        archive.open(tmp_path / "nothere.h5")
    txt = tmp_path / "notes.h5"
    txt.write_text("just some text\n" * 100)
    with pytest.raises(ArchiveError, match="notes.h5: not a readable HDF5 file"):
        archive.open(txt)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["X"] = np.zeros(3)
    with pytest.raises(ArchiveError, match="foreign.h5: an HDF5 file but not a chainlab archive"):
        archive.open(foreign)
    with pytest.raises(ArchiveError, match="foreign.h5: an HDF5 file but not a chainlab archive"):
        archive.append(foreign, synthetic_chain(0))   # never appended into a foreign file
    with pytest.raises(ArchiveError, match="is a directory"):
        archive.open(tmp_path)


def test_newer_schema(good):
    with h5py.File(good, "r+") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(ArchiveError, match=r"good.h5: archive schema version 99 is newer"):
        archive.open(good)


def archive_files(path):
    """[index, chain file of every key] of an archive."""
    with archive.open(path) as r:
        return [path] + [r.chain_file(k) for k in r.keys()]


def test_truncated_file(good):
    for victim in archive_files(good):
        data = victim.read_bytes()
        for frac in (0.5, 0.9):
            victim.write_bytes(data[: int(len(data) * frac)])
            with pytest.raises(ArchiveError, match="good.h5"):
                with archive.open(good) as r:
                    for k in r.keys():
                        r.load(k)
        victim.write_bytes(data)


def test_flipped_bytes_in_a_layer_name_the_chain_and_layer(good):
    with h5py.File(good, "r") as f:
        ds = f["chains/000000/layers/0003/matrix"]
        info = ds.id.get_chunk_info(0)
        offset, size = info.byte_offset, info.size
        other = f["chains/000001/layers/0000/matrix"][()]
    victim = archive_files(good)[1]
    raw = bytearray(victim.read_bytes())
    raw[offset + size // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
    with archive.open(good) as r:
        assert r.info("000000")["n_layers"] == 5                  # metadata intact
        with pytest.raises(ArchiveError, match=r"good.h5: chain '000000', layer 3 \('layer3'\): corrupt"):
            r.load("000000")
        with pytest.raises(ArchiveError, match=r"layer 3"):
            r.load_layer("000000", 3)
        assert_same_matrix(r.load_layer("000000", 2), synthetic_chain(0)[2])   # other layers still read
        assert np.array_equal(r.load("000001")[0].array, other)


def test_flipped_bytes_in_metadata(good):
    raw = bytearray(good.read_bytes())
    raw[20] ^= 0x01   # inside the superblock, which the v110 file format checksums
    good.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match="good.h5"):
        with archive.open(good) as r:
            for k in r.keys():
                r.load(k)


def test_single_byte_flips_anywhere_are_detected_or_harmless(good):
    """Every byte flip in the index or any chain file either raises ArchiveError or leaves every chain bit-exact
    (never a silent change, never a raw h5py error): data chunks carry fletcher32, metadata the latest format's
    checksums, and string attributes live in the checksummed object headers."""
    with archive.open(good) as r:
        expected = [r.load(k) for k in r.keys()]
    rng = np.random.default_rng(1)
    outcomes = {"error": 0, "same": 0}
    for victim in archive_files(good):
        raw = victim.read_bytes()
        for pos in rng.choice(len(raw), 60, replace=False):
            write_flipped(victim, raw, pos)
            try:
                with archive.open(good) as r:
                    got = [r.load(k) for k in r.keys()]
                    [r.info(k) for k in r.keys()]
            except ArchiveError as exc:
                assert "good.h5" in str(exc)
                outcomes["error"] += 1
                continue
            assert len(got) == len(expected), pos
            for a, c in zip(got, expected):
                assert_same_chain(a, c)
            outcomes["same"] += 1
        victim.write_bytes(raw)
    assert outcomes["error"] > 90   # most bytes of the files matter


def test_implicit_and_residual_chains_are_stored_as_their_matrices(tmp_path):
    """An implicit chain archives as the CSC matrices it applies: loading gives exactly the materialized chain.
    A residual block (chainlab.residual) is stored multiplied out; products agree with the original to 1e-12."""
    import torch

    import chainlab
    from chainlab import archive

    net = chainlab.models.load("digits-cnn")
    x = chainlab.data.model_input("digits-cnn", chainlab.data.load_digits().x_test[:1])
    implicit = chainlab.extract(net, x, "zplus", materialize=False)
    explicit = chainlab.extract(net, x, "zplus")
    assert any(op.kind == "implicit" for op in implicit)
    path = tmp_path / "a.h5"
    key = archive.append(path, implicit)
    with archive.open(path) as r:
        loaded = r.load(key)
    for a, b in zip(loaded, explicit):
        A = a.to_sparse("csc") if a.kind != "dense" else a.to_dense()
        B = b.to_sparse("csc") if b.kind != "dense" else b.to_dense()
        diff = abs(A - B).max() if hasattr(A, "tocsc") else np.abs(A - B).max()
        assert diff <= 1e-12 * max(abs(B).max(), 1e-300)

    res_net = chainlab.models.load("resnet-tiny", seed=0).double()
    xr = torch.rand(res_net.input_shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ch = chainlab.extract(res_net, xr, "gradient")
    assert any(op.kind == "residual" for op in ch)
    key = archive.append(path, ch)
    with archive.open(path) as r:
        back = r.load(key)
    R = np.random.default_rng(0).standard_normal((ch.n_output, 3))
    np.testing.assert_allclose(back.apply(R), ch.apply(R), rtol=1e-12, atol=1e-14)
    with __import__("h5py").File(path, "r") as f:
        kinds = {f[f"chains/{key}/layers/{n}/matrix"].attrs.get("materialized-from") for n in f[f"chains/{key}/layers"]}
    assert b"residual" in {k if isinstance(k, bytes) or k is None else bytes(k) for k in kinds}
