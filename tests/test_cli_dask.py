"""`chainlab extract/measure --workers N | --scheduler ADDRESS`: the cluster's archive and records equal the serial run's."""
import numpy as np
import pytest

from chainlab import archive
from chainlab.measures import read_csv
from test_cli import assert_one_line_error, run

pytest.importorskip("distributed")

ARGS = ("-m", "digits-cnn", "-r", "epsilon-plus", "--images", "0:4")


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster
    c = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    yield c
    c.close()


@pytest.fixture(scope="module")
def serial_archive(tmp_path_factory):
    path = tmp_path_factory.mktemp("dask") / "serial.h5"
    res = run("extract", *ARGS, "-o", path)
    assert res.exit_code == 0, res.output
    return path


def chains_by_image(path):
    with archive.open(path) as r:
        return {r.info(k)["image"]: (k, r.load(k)) for k in r.keys()}


def assert_same_chain(a, b):
    assert a.names == b.names and a.rule == b.rule and a.options == b.options
    assert np.array_equal(a.x, b.x) and np.array_equal(a.logits, b.logits)
    assert {k: v for k, v in a.meta.items()} == {k: v for k, v in b.meta.items()}
    for p, q in zip(a, b):
        assert p.kind == q.kind and p.shape == q.shape
        P, Q = p.to_sparse("csc"), q.to_sparse("csc")
        assert np.array_equal(P.indptr, Q.indptr) and np.array_equal(P.indices, Q.indices)
        assert np.array_equal(P.data, Q.data)          # bit-exact


def test_two_workers_equal_serial_and_resume_skips(serial_archive, cluster, tmp_path):
    path = tmp_path / "par.h5"
    res = run("extract", *ARGS, "-o", path, "--workers", 2)
    assert res.exit_code == 0, res.output
    assert "LocalCluster(2 workers)" in res.output
    ser, par = chains_by_image(serial_archive), chains_by_image(path)
    assert sorted(par) == sorted(ser) == [0, 1, 2, 3]
    for i in ser:
        assert_same_chain(par[i][1], ser[i][1])
    # lose two chains, then resume on an existing scheduler: only those two are extracted again
    for i in (1, 3):
        archive.delete(path, par[i][0])
    kept = {par[i][0] for i in (0, 2)}
    res = run("extract", *ARGS, "-o", path, "--resume", "--scheduler", cluster.scheduler_address)
    assert res.exit_code == 0, res.output
    assert "2 chain(s) added" in res.output and cluster.scheduler_address in res.output
    again = chains_by_image(path)
    assert sorted(again) == [0, 1, 2, 3]
    assert kept <= {k for k, _ in again.values()}      # finished chains were not re-extracted
    for i in ser:
        assert_same_chain(again[i][1], ser[i][1])
    # everything done: a further resume adds nothing
    res = run("extract", *ARGS, "-o", path, "--resume", "--scheduler", cluster.scheduler_address)
    assert res.exit_code == 0 and "0 chain(s) added" in res.output


def test_measure_on_a_cluster_equals_serial(serial_archive, cluster, tmp_path):
    a, b = tmp_path / "serial.csv", tmp_path / "cluster.csv"
    what = ("-w", "spectra,cone,csc", "-O", "pairs=3", "-O", "of=layer")
    res = run("measure", serial_archive, *what, "-o", a)
    assert res.exit_code == 0, res.output
    res = run("measure", serial_archive, *what, "-o", b, "--scheduler", cluster.scheduler_address)
    assert res.exit_code == 0, res.output
    ra, rb = read_csv(a), read_csv(b)
    assert len(ra) > 0 and {r["measure"] for r in ra} == {"spectra", "cone", "csc"}
    # same records in the same order; values to rounding (ARPACK/BLAS on a single-threaded worker may
    # round differently from this process's threaded BLAS)
    assert len(ra) == len(rb)
    for x, y in zip(ra, rb):
        assert {k: v for k, v in x.items() if k != "value"} == {k: v for k, v in y.items() if k != "value"}
        vx, vy = x["value"], y["value"]
        assert (vx is None and vy is None) or np.isclose(vx, vy, rtol=1e-9, atol=1e-12, equal_nan=True), (x, y)


@pytest.mark.parametrize("extra, fragment", [(("--workers", 0), "--workers"),
                                             (("--workers", 2, "--scheduler", "tcp://127.0.0.1:1"), "not both")])
def test_bad_cluster_options(serial_archive, tmp_path, extra, fragment):
    res = run("extract", *ARGS, "-o", tmp_path / "x.h5", *extra)
    assert_one_line_error(res, fragment)
    res = run("measure", serial_archive, "-w", "spectra", "-o", tmp_path / "m.csv", *extra)
    assert_one_line_error(res, fragment)
