"""The four `chainlab verify --model torchvision:…` runs of test_verify_own_torchvision.py, in the background.

Each run takes about a minute on 2 cores, four minutes together — more than the suite can add in series.  They
start as ``chainlab`` subprocesses (the console entry point, one torch thread each, niceness 10) when the session
starts, beside the rest of the suite: most of its tests leave one of the 2 cores idle (Python between small torch
calls), and the runs take the cycles the suite leaves.  One run at a time while other tests run; two at a time once
the torchvision tests, which the suite runs last, wait for them (:meth:`Runs.result`).  The tests then check each run's output exactly as they would after an in-process call;
nothing about a run depends on when it ran.

A run's inputs are made here, before it starts: 2 smooth random PNGs (:func:`write_images`) and, for a
``state-dict`` run, the weights of the plain-torch definition in ``torchvision_reference.py`` saved with
``torch.save`` — its state dict is kept for the test (:attr:`Run.state`)."""
from __future__ import annotations

import contextlib
import os
import queue
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import torchvision_reference as tv
from conftest import CHAINLAB

CLAIMS = "S1,S2,S3,S5,B1,M1,M2"
THREADS = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")}
TIMEOUT = 1800
NICE = 10          # the rest of the suite first: a run takes the cycles it leaves


def write_images(d: Path, size: int) -> Path:
    """2 smooth random size×size RGB PNGs in d (a natural image's spectrum falls off; white noise would not)."""
    g = torch.Generator().manual_seed(11)
    for i in range(2):
        x = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(size, size), mode="bilinear",
                                            align_corners=False)[0]
        Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(d / f"img{i}.png")
    return d


@dataclass
class Run:
    """One run: its arguments, the reference state dict (``state-dict`` runs), and when done its completed process
    and seconds."""

    arch: str
    variant: str
    size: int
    root: Path
    args: list = field(default_factory=list)
    state: dict | None = None
    done: threading.Event = field(default_factory=threading.Event)
    process: subprocess.CompletedProcess | None = None
    popen: subprocess.Popen | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def out(self) -> Path:
        return self.root / "out"

    def prepare(self) -> None:
        (self.root / "imgs").mkdir(parents=True)
        images = write_images(self.root / "imgs", self.size)
        self.args = ["verify", "--model", f"torchvision:{self.arch}", "--images", str(images), "--preprocess", "unit",
                     "--n-images", "2", "--claims", CLAIMS, "-o", str(self.out)]
        if self.variant == "state-dict":
            torch.manual_seed(5)
            ref = tv.randomize_batchnorm(tv.build(self.arch, num_classes=10)).eval()
            self.state = {k: v.detach().clone() for k, v in ref.state_dict().items()}
            torch.save(ref.state_dict(), self.root / f"{self.arch}.pth")
            self.args += ["--weights", str(self.root / f"{self.arch}.pth")]

    def execute(self) -> None:
        t0 = time.perf_counter()
        try:
            self.popen = subprocess.Popen([*CHAINLAB, *self.args], stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, cwd=self.root,
                                          env={**os.environ, **THREADS})
            with contextlib.suppress(ProcessLookupError):    # (a run that failed at once reports its own error)
                os.setpriority(os.PRIO_PROCESS, self.popen.pid, NICE)  # before it starts its threads (torch's import)
            out, err = self.popen.communicate(timeout=TIMEOUT)
            self.process = subprocess.CompletedProcess(self.popen.args, self.popen.returncode, out, err)
        except Exception as exc:            # a timeout or a failed start: the test reports it
            self.kill()
            self.error = f"{type(exc).__name__}: {exc}"
        self.seconds = time.perf_counter() - t0
        self.done.set()

    def summary(self) -> str:
        """One line: exit status, seconds, and the peak memory the run's report states."""
        head = f"{self.arch} {self.variant} {self.size}×{self.size}: "
        if self.process is None:
            return head + (self.error or "not run")
        m = re.search(r"peak memory ([0-9.]+ GB)", (self.out / "verify.md").read_text()) if (
            self.out / "verify.md").exists() else None
        return head + f"exit {self.process.returncode}, {self.seconds:.0f} s on one torch thread" + (
            f", peak memory {m.group(1)}" if m else "")

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


class Runs:
    """The runs, executed by two threads: the first starts at once, the second only once a test waits
    (:meth:`result`) — until then the other core is the rest of the suite's."""

    def __init__(self, runs: list):
        self.runs = {(r.arch, r.variant, r.size): r for r in runs}
        self._todo = queue.Queue()
        for r in runs:
            self._todo.put(r)
        self._waiting = threading.Event()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, args=(k,), daemon=True) for k in range(2)]
        for t in self._threads:
            t.start()

    def _work(self, k: int) -> None:
        if k > 0:
            self._waiting.wait()
        while not self._stop.is_set():
            try:
                run = self._todo.get_nowait()
            except queue.Empty:
                return
            run.execute()

    def result(self, arch: str, variant: str, size: int) -> Run:
        """The run, once done (waits; from now on two runs at a time)."""
        run = self.runs[(arch, variant, size)]
        self._waiting.set()
        if not run.done.wait(TIMEOUT + 60):
            raise TimeoutError(f"the {arch} {variant} run did not finish in {TIMEOUT + 60} s")
        return run

    def stop(self) -> None:
        """At the session's end: no new run starts and a run still going is killed (a session that ended early)."""
        self._stop.set()
        self._waiting.set()
        for r in self.runs.values():
            r.kill()


def start(root: Path, keys) -> Runs:
    """The runs ``keys`` ((arch, variant, size), longest first: vgg11 before resnet18) prepared under ``root`` and
    started."""
    order = sorted(keys, key=lambda k: (k[0] != "vgg11", k[1] != "state-dict"))
    runs = []
    for arch, variant, size in order:
        r = Run(arch, variant, size, root / f"{arch}-{variant}-{size}")
        r.prepare()
        runs.append(r)
    return Runs(runs)
