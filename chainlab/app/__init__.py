"""What users run: the command line, reports, the verify job and distributed runs.

* :mod:`.cli` — the ``chainlab`` command (the only place that knows files, progress bars, exit codes);
* :mod:`.report` — Markdown reports with PNG plots from tidy records;
* :mod:`.verify` — the papers' claims, each with a verdict, on the shipped nets;
* :mod:`.distributed` — per-image work serially or on dask, results to one writer.

May import every other layer of chainlab; nothing imports it (except the console entry point).
"""
import os

# Threads that wait for work sleep instead of spinning: OpenMP's (torch's intra-op pool) default spin-wait makes a
# run on a busy machine several times slower than the load explains (scripts/bench_load.py measures it).  Set
# before torch is first imported (the command line imports it after this); an explicit setting is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

