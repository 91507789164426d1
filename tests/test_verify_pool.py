"""The main job's worker pool (chainlab.app.verify.pool): chunks measured in other processes are merged in plan
order, a chunk gets the entries of the chunks it comes after, and failures reach the caller.  (That a real run on
the pool gives the records of a serial run bit for bit: tests/test_verify.py.)"""
import time

import pytest

from chainlab.app.verify import pool
from chainlab.errors import InputError
from chainlab.papers.context import Chunk, Context, Settings


def put(ctx, key, value, sleep=0.0):
    """A toy chunk: cache ``value`` under ("toy", key) after ``sleep`` seconds and record it."""
    time.sleep(sleep)
    ctx.cache[("toy", key)] = value
    ctx.record("toy", key=key, value=value)
    return value


def plus_one(ctx, key, of):
    """A toy chunk that reads another chunk's entry."""
    ctx.cache[("toy", key)] = ctx.cache[("toy", of)] + 1
    ctx.record("toy", key=key, value=ctx.cache[("toy", key)])


def mark_transient(ctx, key):
    ctx.cache[("helper", key)] = object()        # a helper that cannot even be pickled: must stay in the worker
    ctx.transient.add(("helper", key))
    ctx.cache[("toy", key)] = 7


def fail(ctx):
    raise InputError("no such layer: conv9 (a toy failure)")


def test_chunks_merge_in_plan_order_with_their_dependencies():
    slow = Chunk(put, ("a", 1), (("sleep", 1.5),), "toy", 1)
    fast = Chunk(put, ("b", 2), (), "toy", 1)
    after = Chunk(plus_one, ("c", "a"), (), "toy", 1, (slow,))
    helper = Chunk(mark_transient, ("d",), (), "toy", 1)
    ctx = Context(Settings(progress=False))
    got = pool.measure(ctx, [slow, fast, after, helper], workers=3)     # this process and 2 workers
    # b finishes long before a, yet the records come in plan order: a, b, c
    assert [r["key"] for r in ctx.records] == ["a", "b", "c"]
    assert [r["value"] for r in ctx.records] == [1, 2, 2]
    assert ctx.cache[("toy", "c")] == 2 and ctx.cache[("toy", "d")] == 7
    assert ("helper", "d") not in ctx.cache          # transient helpers are not sent back
    assert got["chunks"] == 4 and len(got["seconds"]) == 4 and got["seconds"][0] >= 1.5 > got["seconds"][1]
    assert 1 <= len(got["worker_peak_mib"]) <= 2 and min(got["worker_peak_mib"]) > 10
    assert got["peak_bound_mib"] >= got["peak_sampled_mib"] > 10


def test_a_workers_error_reaches_the_caller_and_a_missing_dependency_is_refused():
    ctx = Context(Settings(progress=False))
    with pytest.raises(InputError, match="conv9"):
        pool.measure(ctx, [Chunk(put, ("a", 1)), Chunk(fail)], workers=2)
    a = Chunk(put, ("a", 1))
    with pytest.raises(ValueError, match="not in the plan"):
        pool.measure(ctx, [Chunk(plus_one, ("c", "a"), (), "toy", 1, (a,))], workers=2)
