"""What the benchmark scripts share: ``--smoke`` and ``--output``.

* ``--smoke``: tiny sizes, seconds.  tests/test_scripts.py runs every scripts/bench_*.py and verify_*.py so
  and checks that its tables and ratios are printed; the numbers of a smoke run mean nothing.
* ``--output FILE``: everything the script prints also goes to FILE, after a header line naming the command,
  the time and the load of the machine, so that the README's numbers can be regenerated from committed
  output (e.g. ``--output results/bench_products.txt``).

The README's ``bench-NAME`` blocks (scripts/readme_numbers.py) show the lines of ``results/bench_NAME.txt``
that start with ``|`` (tables printed by :func:`table`) and those that start with ``summary:``; the last
summary line, printed by :func:`printed_to` at the end of every run, states the machine: cores, threads,
the load average at the start and at the end, and how long the run took.

:func:`export_tree`: the package of a git ref as it would be installed, for old-vs-new runs; :func:`child_json`:
run Python code in a fresh process and read the JSON it prints after a tag.

:func:`threads`: the torch threads a benchmark uses, 2 (the machine's cores) unless ``OMP_NUM_THREADS`` says
otherwise (tests/test_scripts.py runs two smoke runs at a time on one thread each).
"""
from __future__ import annotations

import contextlib
import datetime
import time
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def threads() -> int:
    """torch threads of a benchmark: $OMP_NUM_THREADS if set, else 2."""
    return int(os.environ.get("OMP_NUM_THREADS") or 2)


def add_options(ap):
    """Add ``--smoke`` and ``--output`` to an argparse parser."""
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes, seconds: checks that the script runs and prints its tables (tests/test_scripts.py)")
    ap.add_argument("--output", type=Path, metavar="FILE", default=None,
                    help="also write everything printed to FILE (e.g. results/<script>.txt)")


class _Tee:
    def __init__(self, *streams):
        self.streams = streams

    def write(self, s):
        for st in self.streams:
            st.write(s)
        return len(s)

    def flush(self):
        for st in self.streams:
            st.flush()


def table(header, rows):
    """Print a markdown table: ``header`` (column names; the first column left-aligned, the rest right-aligned)
    and ``rows`` (sequences of cells, already formatted)."""
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")


def machine_summary(load_start: float, seconds: float) -> str:
    """``summary: machine: …`` — cores, torch threads, the load average at the start and now, the run's seconds."""
    return (f"summary: machine: {os.cpu_count()} cores, {threads()} torch threads; load average {load_start:.1f} at "
            f"the start and {os.getloadavg()[0]:.1f} at the end (a shared machine: ratios within the run are "
            f"meaningful, absolute times only at that load); the run took {seconds:.0f} s")


@contextlib.contextmanager
def printed_to(path):
    """Within the block, print to stdout and (when ``path`` is not None) to ``path`` as well; when the block ends
    without an error, print :func:`machine_summary` last."""
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    if path is None:
        yield
        print(machine_summary(load0, time.perf_counter() - t0))
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        stdout = sys.stdout
        sys.stdout = _Tee(stdout, f)
        try:
            print(f"# {' '.join([Path(sys.argv[0]).name] + sys.argv[1:])} — "
                  f"{datetime.datetime.now().isoformat(timespec='seconds')}, {os.cpu_count()} cores, "
                  f"load average {load0:.1f} at start")
            yield
            print(machine_summary(load0, time.perf_counter() - t0))
        finally:
            sys.stdout.flush()
            sys.stdout = stdout


def export_tree(ref: str, dest: Path) -> Path:
    """``git archive ref`` of this repository into ``dest``, with kernels/ as chainlab/kernels (setup.cfg's mapping)."""
    arch = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=arch, check=True)
    shutil.copytree(dest / "kernels", dest / "chainlab" / "kernels", dirs_exist_ok=True)
    return dest


def child_json(code: str, *, tag: str, what: str, cwd=None, env=None):
    """Run ``python -c code`` in a fresh process and return the JSON on its stdout line starting with ``tag``;
    SystemExit naming ``what``, the exit code and the end of stderr when it fails or prints no such line."""
    p = subprocess.run([sys.executable, "-c", code], cwd=None if cwd is None else str(cwd), env=env,
                       capture_output=True, text=True)
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith(tag)), None)
    if p.returncode != 0 or line is None:
        raise SystemExit(f"{what} failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(line[len(tag):])
