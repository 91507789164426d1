"""What users run: the command line, reports, the verify job and distributed runs.

* :mod:`.cli` — the ``chainlab`` command (the only place that knows files, progress bars, exit codes);
* :mod:`.report` — Markdown reports with PNG plots from tidy records;
* :mod:`.verify` — the papers' claims, each with a verdict, on the shipped nets;
* :mod:`.distributed` — per-image work serially or on dask, results to one writer.

May import every other layer of chainlab; nothing imports it (except the console entry point).
"""
