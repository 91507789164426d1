"""Per-item work (one image → one chain) run serially or on dask.distributed, written by ONE callback.

``run(tasks, on_result)`` evaluates ``fn(*args)`` for every ``key: (fn, args)`` of ``tasks`` and
hands each result to ``on_result(key, result)`` in the calling process as soon as it arrives
(``as_completed``), so a single writer (the archive's ``append``) sees every finished item once and
a crash loses no finished item.  Keys in ``done`` are skipped (resume).

* serial (``workers == 1`` and no ``scheduler``): a plain loop; dask is not imported.
* ``workers = N > 1``: a ``LocalCluster(n_workers=N, threads_per_worker=1)`` of worker processes
  (their nannies set OMP/MKL/OpenBLAS threads to 1), closed at the end.
* ``scheduler = "tcp://host:port"`` (or a ``distributed.Client``): an existing cluster.

Retries: a task that raises is re-run up to ``retries`` times (serially: in the loop; on dask:
``Client.submit(retries=...)``).  A task whose worker process dies (killed, out of memory,
``os._exit``) is re-scheduled by dask on a new worker; on our own LocalCluster the scheduler gives
up after ``retries`` further deaths (``distributed.scheduler.allowed-failures``); an external
cluster uses its own setting.  Tasks that still fail are collected and reported at the end by
:class:`RunError` — after every other result has been written.

:func:`extract_image` is the ready-made task for chains: ``(model name or path or module, input,
rule, **options) -> Chain`` with ``chain.meta["net"]``/``["image"]`` set; models given by name or
path are loaded once per worker process.
"""
from __future__ import annotations

import functools
import time
import traceback
import uuid
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from ..errors import ChainlabError, InputError, RunError
from ..extraction import extract
from ..nets import models

__all__ = ["run", "RunReport", "RunError", "extract_image"]


@dataclass
class RunReport:
    """What :func:`run` did: keys written (in arrival order), skipped (done before), failed (key → error text)."""

    completed: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: dict = field(default_factory=dict)
    mode: str = "serial"
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Completed items per second."""
        return len(self.completed) / self.seconds if self.seconds > 0 else float("nan")


def _run_error(report: RunReport) -> RunError:
    """The RunError of a run with failed tasks (carries the report)."""
    first_key, first_err = next(iter(report.failed.items()))
    return RunError(
        f"{len(report.failed)} of {len(report.failed) + len(report.completed)} task(s) failed after retries "
        f"(e.g. {first_key!r}: {first_err.strip().splitlines()[-1] if first_err.strip() else '?'}); "
        f"{len(report.completed)} result(s) were written, rerun with resume to retry the rest", report)


def _validate(tasks, workers, retries):
    if not isinstance(tasks, dict):
        raise InputError(f"tasks must be a dict key -> (fn, args), got {type(tasks).__name__}")
    for key, spec in tasks.items():
        if not (isinstance(spec, tuple) and len(spec) == 2 and callable(spec[0]) and isinstance(spec[1], (tuple, list))):
            raise InputError(f"task {key!r} must be (callable, tuple of args), got {spec!r:.80}")
    if not (isinstance(workers, int) and workers >= 1):
        raise InputError(f"workers must be an integer >= 1, got {workers!r}")
    if not (isinstance(retries, int) and retries >= 0):
        raise InputError(f"retries must be an integer >= 0, got {retries!r}")


def run(tasks: dict, on_result, *, workers: int = 1, scheduler=None, retries: int = 2, progress: bool = True,
        done=None) -> RunReport:
    """Run ``fn(*args)`` for every ``key: (fn, args)`` in ``tasks``; call ``on_result(key, result)`` per result.

    Parameters
    ----------
    tasks : dict
        key -> (fn, args).  Keys are any hashable (image indices, (net, rule, image) tuples, …).
        On dask, ``fn`` and ``args`` are pickled (cloudpickle) to the workers.
    on_result : callable(key, result)
        Called in this process, one result at a time, in completion order.  If it raises, the
        run stops (remaining tasks are cancelled) and the exception propagates.
    workers : int
        1 (default): serial in this process, unless ``scheduler`` is given.  N > 1: a local
        dask cluster of N single-threaded worker processes.
    scheduler : str | distributed.Client | None
        Address of an existing dask scheduler (or a connected Client) to run on instead.
    retries : int
        Re-runs of a failing task (exception, or death of its worker process).
    progress : bool
        A tqdm bar on stderr.
    done : iterable of keys | callable(key) -> bool | None
        Keys already finished (e.g. already in the archive): skipped, never submitted.

    Returns a :class:`RunReport`; raises :class:`RunError` (carrying the report) if any task failed.
    """
    _validate(tasks, workers, retries)
    if done is None:
        is_done = lambda k: False  # noqa: E731
    elif callable(done):
        is_done = done
    else:
        done_set = set(done)
        is_done = done_set.__contains__
    report = RunReport()
    todo = {}
    for key, spec in tasks.items():
        if is_done(key):
            report.skipped.append(key)
        else:
            todo[key] = spec
    start = time.perf_counter()
    bar = _bar(len(todo), progress)
    try:
        if workers == 1 and scheduler is None:
            report.mode = "serial"
            _run_serial(todo, on_result, retries, report, bar)
        else:
            _run_dask(todo, on_result, workers, scheduler, retries, report, bar)
    finally:
        if bar is not None:
            bar.close()
        report.seconds = time.perf_counter() - start
    if report.failed:
        raise _run_error(report)
    return report


def _bar(total, progress):
    if not progress or total == 0:
        return None
    return tqdm(total=total, unit="task", dynamic_ncols=True)


# errors a task may meet for reasons of its input or its machine (reported per task, the others written): chainlab's
# user errors, I/O and memory, and torch's RuntimeError (allocation failures, a worker's lost tensors); anything
# else (TypeError, KeyError, …) is a bug and stops the run
TASK_ERRORS = (ChainlabError, OSError, MemoryError, TimeoutError, RuntimeError)


def _run_serial(todo, on_result, retries, report, bar):
    for key, (fn, args) in todo.items():
        for attempt in range(retries + 1):
            try:
                result = fn(*args)
            except TASK_ERRORS:               # the task's input or its machine: retry, then record; a bug propagates
                if attempt == retries:
                    report.failed[key] = traceback.format_exc()
                continue
            on_result(key, result)
            report.completed.append(key)
            break
        if bar is not None:
            bar.update(1)


def _run_dask(todo, on_result, workers, scheduler, retries, report, bar):
    import dask
    from distributed import Client, LocalCluster, as_completed
    from distributed.scheduler import KilledWorker

    cluster = None
    own_client = True
    if scheduler is not None:
        if isinstance(scheduler, Client):
            client, own_client = scheduler, False
        else:
            try:
                client = Client(scheduler, timeout="30s")
            except (OSError, TimeoutError) as exc:
                raise InputError(f"cannot connect to the dask scheduler at {scheduler!r}: {exc}") from None
        report.mode = f"scheduler {client.scheduler.address}"
    else:
        with dask.config.set({"distributed.scheduler.allowed-failures": retries}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=":0")
        client = Client(cluster)
        report.mode = f"LocalCluster({workers} workers)"
    futures = {}
    try:
        for i, (key, (fn, args)) in enumerate(todo.items()):
            name = getattr(fn, "__name__", "task")
            fut = client.submit(fn, *args, key=f"chainlab-{name}-{i}-{_token()}", retries=retries, pure=False)
            futures[fut] = key
        for fut in as_completed(list(futures)):
            key = futures.pop(fut)
            if fut.status == "error":
                exc, tb = fut.exception(), fut.traceback()
                if not isinstance(exc, TASK_ERRORS + (KilledWorker,)):
                    raise exc                 # a bug in the task: not a failed image to retry later
                report.failed[key] = "".join(traceback.format_exception(type(exc), exc, tb))
            elif fut.status == "cancelled":
                report.failed[key] = "cancelled (the cluster went away)\n"
            else:
                result = fut.result()
                fut.release()
                on_result(key, result)
                report.completed.append(key)
            if bar is not None:
                bar.update(1)
    finally:
        if futures:
            client.cancel(list(futures))
        if own_client:
            client.close()
        if cluster is not None:
            cluster.close()


def _token() -> str:
    return uuid.uuid4().hex[:8]


# ---------------------------------------------------------------------------------------------
# the chain task


@functools.lru_cache(maxsize=4)
def cached_model(ref: str):
    """The model of a name or file path, loaded once per process (a dask worker keeps it between tasks)."""
    return models.load(ref)


def extract_image(model, x, rule, image=None, net=None, **options):
    """One image's chain: ``chainlab.extract(model, x, rule, **options)`` with ``meta["net"]``/``meta["image"]``.

    ``model``: a model name or file path (loaded once per process and cached) or an nn.Module.
    ``image``: the image's id (e.g. its test-set index), stored in ``chain.meta["image"]``;
    ``net``: the net's name for ``chain.meta["net"]`` (default: ``model`` when it is a string).
    """
    mod = cached_model(str(model)) if isinstance(model, str) else model
    chain = extract(mod, x, rule, **options)
    chain.meta["net"] = net if net is not None else (model if isinstance(model, str) else chain.meta.get("model"))
    chain.meta["image"] = image
    return chain
