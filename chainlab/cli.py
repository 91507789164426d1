"""The ``chainlab`` command line (typer).

Commands: ``summary`` (per-layer table of a few chains), ``extract`` (chains of a net under a rule
into an HDF5 archive, see :mod:`chainlab.archive`), ``measure`` (tidy measure records of archived
chains as CSV, see :mod:`chainlab.measures`) and ``report`` (Markdown + PNG plots of a measures CSV,
see :mod:`chainlab.report`).

The CLI is the only place that knows about files, progress bars and exit codes.
Errors from bad input (unknown model or rule, missing files, bad ranges) are
printed as one line with exit code 2; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer
from tqdm import tqdm

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="The backward pass of a trained PyTorch network as an explicit chain of matrices.")

STATE = {"debug": False}

SUMMARY_RULES = ["gradient", "lrp-0", "zplus", "alpha-beta", "epsilon-plus"]


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")):
    STATE["debug"] = debug


def _user_errors(fn):
    """Turn bad-input errors of a command into one line on stderr and exit code 2 (``--debug``: traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .errors import ChainlabError

        try:
            return fn(*args, **kwargs)
        except (ChainlabError, ValueError, TypeError, KeyError, OSError) as exc:
            if STATE["debug"]:
                raise
            msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            typer.echo(f"chainlab: error: {msg.splitlines()[0] if msg else type(exc).__name__}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def parse_range(spec: str, n: int) -> list[int]:
    """'0:5' → [0..4], '3' → [3], '1,4,7' → [1, 4, 7]; checked against n items."""
    try:
        if ":" in spec:
            a, b = spec.split(":", 1)
            idx = list(range(int(a or 0), int(b) if b else n))
        else:
            idx = [int(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"bad image range {spec!r}: use 'start:stop', 'i' or 'i,j,k'") from None
    bad = [i for i in idx if not 0 <= i < n]
    if not idx or bad:
        shown = (str(bad[:5])[:-1] + (f", … ({len(bad)} in all)]" if len(bad) > 5 else "]")) if bad else "nothing"
        raise ValueError(f"image range {spec!r} selects {shown}; there are {n} test images (0..{n - 1})")
    return idx


def layer_table(chain) -> str:
    """One row per operator: layer, rule, shape, nnz, column-sum min/max, σ1."""
    from .measures import singular_values

    rows = [("#", "layer", "rule", "shape (n_in × n_out)", "nnz", "colsum min", "colsum max", "σ1")]
    for i, (op, name, rule) in enumerate(zip(chain, chain.names, chain.layer_rules)):
        cs = op.column_sums()
        s1 = singular_values(op, 1)[0]
        rows.append((str(i), name, rule, f"{op.shape[0]} × {op.shape[1]}", f"{op.nnz:,}", f"{cs.min():.4g}",
                     f"{cs.max():.4g}", f"{s1:.4g}"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(v.rjust(w) if c in (0, 4, 5, 6, 7) else v.ljust(w) for c, (v, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@app.command()
@_user_errors
def summary(
    models: List[str] = typer.Option(None, "--model", "-m", help="Shipped net(s) (default: all three)."),
    rules: List[str] = typer.Option(None, "--rule", "-r", help=f"Rule(s) (default: {', '.join(SUMMARY_RULES)})."),
    images: str = typer.Option("0:2", "--images", help="Test images: 'start:stop', 'i' or 'i,j'."),
):
    """Extract the chains of the shipped nets for a few test digits and print a per-layer table."""
    import chainlab

    names = list(models) if models else list(chainlab.models.NAMES)
    rules = list(rules) if rules else SUMMARY_RULES
    digits = chainlab.data.load_digits()
    idx = parse_range(images, len(digits.y_test))
    jobs = [(n, i, r) for n in names for i in idx for r in rules]
    nets = {}
    for n in names:
        nets[n] = chainlab.models.load(n)
    lo, hi = chainlab.data.INPUT_BOUNDS
    for n, i, r in tqdm(jobs, desc="extract", unit="chain", file=sys.stderr):
        net = nets[n]
        x = chainlab.data.model_input(n, digits.x_test[i:i + 1])
        t0 = time.perf_counter()
        opts = {"low": lo, "high": hi} if r in ("zbox", "lrp-cmp", "dtd") else {}
        chain = chainlab.extract(net, x, r, **opts)
        dt = time.perf_counter() - t0
        expl = chain.explain()
        tqdm.write(
            f"\n{n} · test image {i} (label {digits.y_test[i]}, predicted {chain.predicted}, "
            f"logit {chain.logits[chain.predicted]:.3f}) · rule {r} · {len(chain)} operators extracted in {dt:.2f}s\n"
            f"explanation: sum {expl.sum():.4g}, min {expl.min():.4g}, max {expl.max():.4g}\n" + layer_table(chain),
            file=sys.stdout,
        )


# -- options ---------------------------------------------------------------------------------------
def parse_options(items) -> dict:
    """['epsilon=0.1', 'name=foo', 'pairs=[1,2]'] → {'epsilon': 0.1, 'name': 'foo', 'pairs': [1, 2]}.

    Values are read as JSON (numbers, true/false, lists, quoted strings), else kept as strings.
    """
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not key.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"bad option {item!r}: use key=value, e.g. --option epsilon=0.1")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _existing(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a directory, not a file")
    return path


def _net_name(spec: str, model) -> str:
    import chainlab

    if spec in chainlab.models.NAMES:
        return spec
    return getattr(model, "name", None) or Path(spec).stem


# -- extract ---------------------------------------------------------------------------------------
@app.command("extract")
@_user_errors
def extract_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Shipped net name (digits-mlp, digits-cnn, sixt-cifar) or a "
                              "model file (.npz written by chainlab.models.save, or .pt/.pth with a pickled module)."),
    rule: str = typer.Option(..., "--rule", "-r", help="Rule or composite name (gradient, lrp-epsilon, zplus, …)."),
    output: Path = typer.Option(..., "--output", "-o", help="Archive to write (HDF5)."),
    images: str = typer.Option("0:1", "--images", help="Test images: 'start:stop', 'i' or 'i,j,k'."),
    option: List[str] = typer.Option(None, "--option", "-O", help="Rule option key=value (repeatable), e.g. epsilon=0.1."),
    bias: str = typer.Option("zennit", "--bias", help="Bias policy: zennit, none or full."),
    dtype: str = typer.Option("float64", "--dtype", help="Operator storage type: float64 or float32."),
    stabilizer: float = typer.Option(1e-6, "--stabilizer", help="ε of the denominators' stabilizer."),
    avgpool: str = typer.Option("proportional", "--avgpool", help="Average-pool matrix: proportional or gradient."),
    resume: bool = typer.Option(False, "--resume", help="Keep the archive and skip chains already in it."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing archive."),
    workers: int = typer.Option(1, "--workers", help="N > 1: extract on a dask LocalCluster of N worker processes."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Address of an existing dask scheduler "
                                            "(tcp://host:port) to extract on."),
):
    """Extract the chain of every selected test image and append it to an HDF5 archive, chain by chain.

    Each chain is appended as soon as it is extracted (atomically), so an interruption loses nothing
    finished; rerun with --resume to continue.  chain.meta gets net, image, label, fingerprint and the
    request (rule, options, bias, dtype, stabilizer, avgpool) by which --resume recognizes a chain.
    With --workers N > 1 or --scheduler the images are extracted as one dask task each
    (:func:`chainlab.distributed.run`); this process stays the single writer and appends every chain
    as it arrives, so a crash or a lost worker loses no finished chain (lost tasks are retried twice).
    """
    import chainlab
    from . import archive
    from .extract import METHODS
    from .rules import resolve

    opts = parse_options(option)
    if rule in ("zbox", "lrp-cmp", "dtd"):
        lo, hi = chainlab.data.INPUT_BOUNDS
        opts.setdefault("low", lo)
        opts.setdefault("high", hi)
    if rule not in METHODS:   # fail on an unknown rule or option before loading anything
        _, used = resolve(rule, opts)
        stray = sorted(set(opts) - used)
        if stray:
            raise ValueError(f"rule {rule!r} takes no option(s) {', '.join(stray)}"
                             f"{'; it takes ' + ', '.join(sorted(used)) if used else ''}")
    if output.exists() and not (resume or overwrite):
        raise FileExistsError(f"{output} exists; use --resume to add to it (skipping chains it has) or --overwrite")
    if output.is_dir():
        raise IsADirectoryError(f"output {output} is a directory; give a file name such as chains.h5")
    if not output.parent.exists():
        raise FileNotFoundError(f"output directory {output.parent} does not exist")
    _check_cluster(workers, scheduler)

    net = chainlab.models.load(model)
    name = _net_name(model, net)
    digits = chainlab.data.load_digits()
    idx = parse_range(images, len(digits.y_test))
    fp = archive.fingerprint(net)
    request = dict(rule=rule, options=opts, bias=bias, dtype=dtype, stabilizer=stabilizer, avgpool=avgpool)
    req_id = json.dumps(request, sort_keys=True)

    if output.exists() and overwrite:
        output.unlink()
    done = set()
    if output.exists():
        with archive.open(output) as r:
            for k in r.keys():
                info = r.info(k)
                m = info["meta"]
                if (info["net"] == name and info["fingerprint"] == fp
                        and json.dumps(m.get("request"), sort_keys=True) == req_id):
                    done.add(m.get("image"))
    todo = [i for i in idx if i not in done]
    if done & set(idx):
        tqdm.write(f"resume: {len(idx) - len(todo)} of {len(idx)} chains already in {output}", file=sys.stderr)
    kwargs = dict(bias=bias, dtype=dtype, stabilizer=stabilizer, avgpool=avgpool, **opts)
    model_ref = model if model in chainlab.models.NAMES or model in getattr(chainlab.models, "ZOO_NAMES", ()) \
        else str(Path(model).resolve())

    def write(i, chain):   # the single writer: meta, then one atomic append per chain
        chain.meta.update(net=name, image=int(i), label=int(digits.y_test[i]), fingerprint=fp, request=request)
        if model not in chainlab.models.NAMES:
            chain.meta["model_path"] = model_ref
        return archive.append(output, chain)

    if workers > 1 or scheduler is not None:
        from . import distributed
        tasks = {int(i): (_extract_task, (model_ref, chainlab.data.model_input(net, digits.x_test[i:i + 1]), rule,
                                          kwargs)) for i in idx}
        rep = distributed.run(tasks, write, workers=workers, scheduler=scheduler, done=done, progress=True)
        typer.echo(f"{output}: {len(rep.completed)} chain(s) added ({name}, {rule}, images {images}) on "
                   f"{rep.mode}, {rep.rate:.2f} chains/s")
        return
    bar = tqdm(todo, desc=f"extract {name} {rule}", unit="chain", file=sys.stderr)
    for i in bar:
        x = chainlab.data.model_input(net, digits.x_test[i:i + 1])
        chain = chainlab.extract(net, x, rule, **kwargs)
        key = write(i, chain)
        bar.set_postfix(key=key, image=i)
    typer.echo(f"{output}: {len(todo)} chain(s) added ({name}, {rule}, images {images})")


def _check_cluster(workers, scheduler):
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if scheduler is not None and workers > 1:
        raise ValueError("give either --workers N (a local cluster) or --scheduler ADDRESS (an existing one), not both")
    if workers > 1 or scheduler is not None:
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ValueError("--workers/--scheduler need dask.distributed: pip install 'chainlab[dask]'") from None


@functools.lru_cache(maxsize=4)
def _task_model(ref: str):
    import chainlab
    return chainlab.models.load(ref)


def _extract_task(model_ref: str, x, rule: str, kwargs: dict):
    """One image's chain on a dask worker (the model is loaded once per worker process)."""
    import chainlab
    return chainlab.extract(_task_model(model_ref), x, rule, **kwargs)


# -- measure ---------------------------------------------------------------------------------------
MODEL_MEASURES = ("averages", "sanity")   # measures that re-run the model (loaded from chain.meta)


def _measure_table():
    """The measures module, the per-chain measures (incl. the model measures) and the pooled ones, by name."""
    from . import measures

    per_chain = dict(measures.PER_CHAIN)
    per_chain.update({w: getattr(measures, w) for w in MODEL_MEASURES})
    return measures, per_chain, dict(measures.POOLED)


def _accepts(fn, key) -> bool:
    import inspect

    if fn is None:
        return True
    params = inspect.signature(fn).parameters
    return key in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


@app.command("measure")
@_user_errors
def measure_cmd(
    chains: Path = typer.Argument(..., help="Chain archive written by 'chainlab extract'."),
    what: str = typer.Option("spectra,rank1,csc,cone,bounds", "--what", "-w",
                             help="Comma-separated measures: spectra, rank1, csc, cone, bounds, averages, sanity."),
    output: Path = typer.Option(..., "--output", "-o", help="CSV of tidy records to write."),
    option: List[str] = typer.Option(None, "--option", "-O", help="Measure option key=value (repeatable)."),
    keys: Optional[str] = typer.Option(None, "--keys", help="Comma-separated chain keys (default: all)."),
    workers: int = typer.Option(1, "--workers", help="N > 1: measure on a dask LocalCluster of N worker processes."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Address of an existing dask scheduler "
                                            "(tcp://host:port) to measure on."),
):
    """Run measures on archived chains and write tidy records (net, rule, image, measure, quantity, layer, k, value).

    With --workers N > 1 or --scheduler every chain is one dask task (and every (net, rule) group of a
    pooled measure such as csc another) that reads its chain from the archive and returns records;
    the records are written in the same order as a serial run's.
    """
    from . import archive

    _existing(chains, "chain archive")
    names = [w.strip() for w in what.split(",") if w.strip()]
    if not names:
        raise ValueError("--what names no measure")
    opts = parse_options(option)
    measures, per_chain, pooled = _measure_table()
    known = list(per_chain) + list(pooled)
    unknown = [w for w in names if w not in known]
    if unknown:
        raise ValueError(f"unknown measure(s) {', '.join(unknown)}; available: {', '.join(known)}")
    table = {**per_chain, **pooled}
    stray = [k for k in opts if not any(_accepts(table.get(w), k) for w in names)]
    if stray:
        raise ValueError(f"option(s) {', '.join(stray)} are taken by none of the measures {', '.join(names)}")
    if not output.parent.exists():
        raise FileNotFoundError(f"output directory {output.parent} does not exist")
    _check_cluster(workers, scheduler)

    def opts_for(ws):
        return {k: v for k, v in opts.items() if any(_accepts(table.get(w), k) for w in ws)}

    run_chain = [w for w in names if w in per_chain and w not in MODEL_MEASURES]
    run_model = [w for w in names if w in MODEL_MEASURES]
    run_pooled = [w for w in names if w in pooled]
    rows = []
    models = {}
    with archive.open(chains) as r:
        sel = r.keys() if keys is None else [k.strip() for k in keys.split(",") if k.strip()]
        missing = [k for k in sel if k not in r]
        if missing:
            raise ValueError(f"{chains} has no chain(s) {', '.join(missing)}")
        if not sel:
            raise ValueError(f"{chains} holds no chains")
        groups = {}
        if run_pooled:
            for key in sel:
                info = r.info(key)
                groups.setdefault((info["net"], info["rule"]), []).append(key)
        plan = dict(run_chain=run_chain, chain_opts=opts_for(run_chain),
                    run_model={w: opts_for([w]) for w in run_model})
        if workers > 1 or scheduler is not None:
            from . import distributed
            path = str(chains.resolve())
            tasks = {("chain", k): (_measure_task, (path, [k], plan, None)) for k in sel if run_chain or run_model}
            tasks.update({("pooled", g): (_measure_task, (path, ks, None, dict(what=run_pooled,
                                                                                 opts=opts_for(run_pooled))))
                          for g, ks in groups.items()})
            got = {}
            distributed.run(tasks, got.__setitem__, workers=workers, scheduler=scheduler, progress=True)
            rows = [row for t in tasks for row in got[t]]   # serial order, whatever the arrival order
        else:
            for key in tqdm(sel, desc="measure", unit="chain", file=sys.stderr):
                if not (run_chain or run_model):
                    break
                rows += _measure_chain(r.load(key), plan, models)
            for (net, rule), ks in tqdm(groups.items(), desc="measure (pooled)", unit="group", file=sys.stderr):
                group = [r.load(k) for k in ks]
                rows += measures.measure(group, what=run_pooled, **opts_for(run_pooled))
    measures.write_csv(rows, output)
    typer.echo(f"{output}: {len(rows)} records ({', '.join(names)}) from {len(sel)} chain(s)")


def _measure_chain(chain, plan, models) -> list[dict]:
    """Records of the per-chain measures ``plan["run_chain"]`` and the model measures ``plan["run_model"]``."""
    measures, per_chain, _ = _measure_table()
    rows = []
    if plan["run_chain"]:
        rows += measures.measure([chain], what=plan["run_chain"], **plan["chain_opts"])
    for w, o in plan["run_model"].items():
        rows += _model_measure(per_chain[w], w, chain, models, o)
    return rows


_TASK_MODELS: dict = {}


def _measure_task(path: str, keys, plan, pooled) -> list[dict]:
    """A dask task: read chain(s) ``keys`` from the archive at ``path`` and return their records
    (per-chain ``plan`` for one key, or the ``pooled`` measures of a group of keys)."""
    from . import archive, measures

    with archive.open(path) as r:
        if pooled is None:
            return _measure_chain(r.load(keys[0]), plan, _TASK_MODELS)
        return measures.measure([r.load(k) for k in keys], what=pooled["what"], **pooled["opts"])


def _model_measure(fn, what, chain, models, opts) -> list[dict]:
    """A measure that needs the model: fn(model, x, rule, **opts), model from chain.meta (shipped name or path)."""
    import torch

    import chainlab

    src = chain.meta.get("model_path") or chain.meta.get("net")
    if not src:
        raise ValueError(f"measure {what!r} needs the model, but the chain's meta names none (net / model_path)")
    if src not in models:
        models[src] = chainlab.models.load(src).double()
    x = torch.from_numpy(chain.x.reshape(chain.input_shape))
    rows = fn(models[src], x, chain.rule, **opts)
    for row in rows:
        for k in ("net", "image"):
            if row.get(k) is None:
                row[k] = chain.meta.get(k)
    return rows


# -- report ----------------------------------------------------------------------------------------
@app.command("report")
@_user_errors
def report_cmd(
    measures_csv: Path = typer.Argument(..., help="Tidy measures CSV written by 'chainlab measure'."),
    output: Path = typer.Option(Path("report"), "--output", "-o", help="Report directory (made if missing)."),
    chains: Optional[Path] = typer.Option(None, "--chains", help="Chain archive for example heatmaps per rule."),
):
    """A Markdown report with PNG plots of the measures found in the CSV (and heatmaps from --chains)."""
    from . import report

    _existing(measures_csv, "measures file")
    if chains is not None:
        _existing(chains, "chain archive")
    if output.exists() and not output.is_dir():
        raise NotADirectoryError(f"report output {output} exists and is not a directory")
    records = report.read_records(measures_csv)
    md = report.make_report(records, output, chains=chains, source=measures_csv, progress=True)
    typer.echo(f"{md}: report with {len(list(output.glob('*.png')))} plot(s)")



@app.command("verify")
@_user_errors
def verify_cmd(
    output: Path = typer.Option(Path("report"), "--output", "-o", help="Report directory (made if missing)."),
    quick: bool = typer.Option(False, "--quick", help="CI-sized run: digits nets only, fewer images and pairs."),
    extended: bool = typer.Option(False, "--extended", help="More sixt-cifar images, sixt-cifar in S4 (~25 min)."),
    claims: Optional[str] = typer.Option(None, "--claims", help="Comma-separated subset, e.g. S1,S3,B1."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when a claim is not reproduced."),
):
    """The main job: reproduce the papers' claims (S1–S6, B1–B3) on the shipped nets; writes report/verify.md."""
    from . import report, verify
    from .measures import write_csv

    if output.exists() and not output.is_dir():
        raise NotADirectoryError(f"report output {output} exists and is not a directory")
    t0 = time.perf_counter()
    wanted = [c.strip() for c in claims.split(",") if c.strip()] if claims else None
    verdicts, records = verify.run(quick=quick, claims=wanted, progress=True, extended=extended)
    seconds = time.perf_counter() - t0
    output.mkdir(parents=True, exist_ok=True)
    write_csv(records, output / "records.csv")
    report.make_report(records, output, source=output / "records.csv", progress=True)
    md = output / "verify.md"
    md.write_text(verify.verdict_table(verdicts, quick=quick, seconds=seconds, extended=extended))
    width = max(len(v.label) for v in verdicts)
    for v in verdicts:
        typer.echo(f"{v.claim}  {v.label:<{width}}  {v.observed[:160]}")
    n_ok = sum(v.reproduced is True for v in verdicts)
    typer.echo(f"{n_ok}/{len(verdicts)} claims reproduced in {seconds:.0f} s; verdicts in {md}")
    if strict and n_ok < len(verdicts):
        raise typer.Exit(1)


def main():
    """Console entry point: run the app, turning user errors into one line and an exit code."""
    try:
        rc = app(standalone_mode=False)
    except Exception as exc:  # noqa: BLE001 — the one place errors meet the user
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # usage errors of typer's click
            exc.show()
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
            sys.exit(130)
        if STATE["debug"]:
            raise
        print(f"chainlab: error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(rc if isinstance(rc, int) else 0)

if __name__ == "__main__":
    main()
