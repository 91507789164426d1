"""chainlab.app.distributed.run: a 2-worker LocalCluster equals the serial run; lost workers are retried; resume skips."""
import os
import sys

import numpy as np
import pytest
import torch

import chainlab
from chainlab.app import distributed
from chainlab.app.distributed import RunError, extract_image

cloudpickle = pytest.importorskip("cloudpickle")     # comes with dask[distributed] (the test extra)
# the workers unpickle this module's task functions by value (tests/ is not importable there)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

N_IMAGES = 4


@pytest.fixture(scope="module")
def cluster():
    """One LocalCluster of 2 single-threaded worker processes for the module; a worker may die once."""
    dask = pytest.importorskip("dask")
    from distributed import LocalCluster
    with dask.config.set({"distributed.scheduler.allowed-failures": 2}):
        c = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    yield c
    c.close()


def image_tasks(digits):
    xs = chainlab.data.model_input("digits-cnn", digits.x_test[:N_IMAGES])
    tasks = {i: (extract_image, ("digits-cnn", xs[i:i + 1].numpy(), "epsilon-plus", i)) for i in range(N_IMAGES)}
    # a residual net passed as a module: its chain (residual operators) travels back from the worker
    from chainlab.nets.zoo import resnet_tiny
    net = resnet_tiny(seed=0)
    x = torch.rand(net.input_shape, generator=torch.Generator().manual_seed(0))
    tasks["resnet"] = (extract_image, (net, x, "zplus", "r0", "resnet-tiny"))
    return tasks


def same_chain(a, b):
    assert a.names == b.names and a.shapes == b.shapes and a.meta == b.meta
    assert np.array_equal(a.x, b.x) and np.array_equal(a.logits, b.logits)
    for p, q in zip(a, b):
        assert p.kind == q.kind
        if p.kind == "sparse":
            P, Q = p.to_sparse("csc"), q.to_sparse("csc")
            assert np.array_equal(P.indptr, Q.indptr) and np.array_equal(P.indices, Q.indices)
            assert np.array_equal(P.data, Q.data)       # bit-exact
        elif p.kind == "residual":
            assert len(p.terms) == len(q.terms)
            for s, t in zip(p.terms, q.terms):
                assert all(np.array_equal(A.to_dense(), B.to_dense()) for A, B in zip(s.factors, t.factors))
        else:
            assert np.array_equal(p.to_dense(), q.to_dense())


def test_two_workers_equal_serial_bit_exact(cluster, digits):
    tasks = image_tasks(digits)
    serial, par = {}, {}
    rep_s = distributed.run(tasks, serial.__setitem__, progress=False)
    rep_p = distributed.run(tasks, par.__setitem__, scheduler=cluster.scheduler_address, progress=False)
    assert rep_s.mode == "serial" and rep_p.mode.startswith("scheduler")
    assert set(rep_p.completed) == set(tasks) and not rep_p.failed
    assert set(serial) == set(par) == set(tasks)
    for i in range(N_IMAGES):
        assert serial[i].meta == {"model": "Sequential", "net": "digits-cnn", "image": i}
    assert par["resnet"].meta == {"model": "ResNet", "net": "resnet-tiny", "image": "r0"}
    assert "residual" in [op.kind for op in par["resnet"]]
    for key in tasks:
        same_chain(serial[key], par[key])
    # the workers really ran the tasks in other processes
    pids = {}
    distributed.run({i: (os.getpid, ()) for i in range(4)}, pids.__setitem__, scheduler=cluster.scheduler_address,
                    progress=False)
    assert len(pids) == 4 and os.getpid() not in pids.values()


def die_once(marker, value):
    """Kill the worker process on the first attempt (the marker file records it), succeed afterwards."""
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write("died")
        os._exit(1)
    return value * 10


def test_task_whose_worker_dies_is_retried(cluster, tmp_path):
    marker = str(tmp_path / "died-once")
    got = {}
    tasks = {k: (die_once, (marker, k)) for k in range(3)}
    tasks["ok"] = (int, ("7",))
    rep = distributed.run(tasks, got.__setitem__, scheduler=cluster.scheduler_address, retries=2, progress=False)
    assert os.path.exists(marker)                    # a worker did die
    assert got == {0: 0, 1: 10, 2: 20, "ok": 7} and not rep.failed


def fail_on(key, bad):
    if key == bad:
        raise RuntimeError(f"task {key} is broken")
    return key


def test_failures_are_reported_after_the_others_are_written(cluster):
    got = {}
    tasks = {k: (fail_on, (k, 2)) for k in range(4)}
    with pytest.raises(RunError, match=r"1 of 4 task\(s\) failed.*task 2 is broken") as err:
        distributed.run(tasks, got.__setitem__, scheduler=cluster.scheduler_address, retries=1, progress=False)
    assert got == {0: 0, 1: 1, 3: 3}
    assert list(err.value.report.failed) == [2]
    # serial path: same contract
    got.clear()
    with pytest.raises(RunError) as err:
        distributed.run(tasks, got.__setitem__, retries=1, progress=False)
    assert got == {0: 0, 1: 1, 3: 3} and list(err.value.report.failed) == [2]


def buggy(key):
    if key == 1:
        return {}["no such key"]              # a bug in the task (KeyError), not a failed input
    return key


def test_a_bug_in_a_task_propagates_instead_of_being_counted_as_a_failed_task(cluster):
    """Negative control of the retry-and-record path: only input/machine errors (chainlab's user errors, I/O, memory,
    torch's RuntimeError) are retried and reported per task; a KeyError is a bug and stops the run as itself."""
    tasks = {k: (buggy, (k,)) for k in range(3)}
    with pytest.raises(KeyError):
        distributed.run(tasks, {}.__setitem__, retries=1, progress=False)
    with pytest.raises(KeyError):
        distributed.run(tasks, {}.__setitem__, scheduler=cluster.scheduler_address, retries=0, progress=False)


def count_calls(log, key):
    with open(log, "a") as f:
        f.write(f"{key}\n")
    return key


def test_resume_skips_done_keys(cluster, tmp_path):
    log = str(tmp_path / "calls.txt")
    tasks = {k: (count_calls, (log, k)) for k in range(5)}
    got = {}
    rep = distributed.run(tasks, got.__setitem__, scheduler=cluster.scheduler_address, done={0, 3},
                          progress=False)
    assert sorted(rep.skipped) == [0, 3] and sorted(rep.completed) == [1, 2, 4]
    assert sorted(int(v) for v in open(log).read().split()) == [1, 2, 4]
    rep = distributed.run(tasks, got.__setitem__, done=lambda k: k in got, progress=False)
    assert rep.completed == [0, 3] and sorted(got) == list(range(5))


def test_writer_error_stops_the_run():
    def writer(key, result):
        if key == 1:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        distributed.run({k: (int, (k,)) for k in range(3)}, writer, progress=False)


def test_local_cluster_path_and_bad_arguments():
    got = {}
    rep = distributed.run({k: (pow, (k, 2)) for k in range(4)}, got.__setitem__, workers=2, progress=False)
    assert got == {0: 0, 1: 1, 2: 4, 3: 9} and rep.mode == "LocalCluster(2 workers)"
    with pytest.raises(ValueError, match="workers"):
        distributed.run({}, got.__setitem__, workers=0)
    with pytest.raises(ValueError, match="task 'a'"):
        distributed.run({"a": pow}, got.__setitem__)
